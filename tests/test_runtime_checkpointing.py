"""Checkpoints: a run killed half-way resumes to the same prompt; checkpoints hold the prompt only.

The straight run is the shared trained run (in this process). The other run is
the CLI, killed with SIGKILL once its half-way checkpoint is committed; a
half-written later checkpoint is then left beside it, as a crash during a save
would, and the restart (in this process) finishes the run. The toy model has
no dropout, so the RNG's round trip is checked on the Checkpointer itself.
"""

import ast
import json
import signal

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import runtime_helpers as h
from prompt_tuning.runtime import checkpointing, optimizer
from prompt_tuning.runtime.trainer import TrainState

HALF = h.TRAINED_STEPS // 2


@pytest.fixture(scope='module')
def restarted(tmp_path_factory):
  """(MODEL_DIR, step resumed from, TrainResult) of the killed and restarted run."""
  model_dir = tmp_path_factory.mktemp('killed')
  macros = h.trained_macros(model_dir)
  child = h.start(h.cli_command('train', h.TRAIN_GIN, macros))
  # Orbax renames the checkpoint folder into place when it commits the save.
  killer = h.signal_when_present(model_dir / f'checkpoint_{HALF}', child.process.pid,
                                 signal.SIGKILL)
  h.trained_run()  # the straight run, meanwhile
  killed = h.finish(child)
  if killer.poll() is None:  # the child ended on its own: no kill is due any more
    killer.kill()
  killer.wait()
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  steps = h.committed_steps(model_dir)
  assert HALF in steps and h.TRAINED_STEPS not in steps, steps
  # A save that crashed before its commit: orbax's temporary folder, half written.
  partial = model_dir / f'checkpoint_{steps[-1] + 5}.orbax-checkpoint-tmp' / 'state'
  partial.mkdir(parents=True)
  (partial / '_METADATA').write_text('{"tree_metadata": {')
  # Evaluation plays no part in resuming; the restart skips it.
  return model_dir, steps[-1], h.train_in_process(
      {**macros, 'train_script.train.infer_eval_dataset_cfg': 'None'})


def test_a_killed_run_resumes_from_its_last_committed_checkpoint(restarted):
  _, resumed_from, result = restarted
  assert len(result.losses) == h.TRAINED_STEPS - resumed_from
  assert int(result.state.step) == h.TRAINED_STEPS


def test_a_killed_and_restarted_run_ends_with_the_prompt_of_a_straight_run(restarted):
  _, _, result = restarted
  _, straight = h.trained_run()
  np.testing.assert_array_equal(result.params['encoder']['prompt']['prompt']['prompt'],
                                straight.params['encoder']['prompt']['prompt']['prompt'])
  assert result.losses == straight.losses[-len(result.losses):]


def test_every_period_leaves_a_checkpoint(restarted):
  model_dir, _, _ = restarted
  assert h.committed_steps(model_dir) == [5, 10, 15, 20]
  assert h.committed_steps(h.trained_run()[0]) == [5, 10, 15, 20]


def test_a_checkpoint_holds_the_prompt_and_its_optimizer_state_only():
  model_dir, result = h.trained_run()
  tree = ocp.StandardCheckpointer().metadata(
      model_dir / f'checkpoint_{h.TRAINED_STEPS}' / 'state').item_metadata.tree
  assert jax.tree_util.tree_structure(tree['target']) == jax.tree_util.tree_structure(
      {'encoder': {'prompt': {'prompt': {'prompt': 0}}}})
  prompt_key = "['encoder']['prompt']['prompt']['prompt']"
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    # Besides the prompt and its statistics: the step, update counts, learning rate and RNG.
    assert jax.tree_util.keystr(path).endswith(prompt_key) or np.prod(leaf.shape) <= 2, path
  frozen = [x for path, x in flax.traverse_util.flatten_dict(result.params, sep='/').items()
            if path != h.PROMPT_PATH]
  frozen_bytes = sum(x.nbytes for x in frozen)
  checkpoint_bytes = sum(p.stat().st_size for p in
                         (model_dir / f'checkpoint_{h.TRAINED_STEPS}').rglob('*') if p.is_file())
  assert frozen_bytes > 2_000_000
  assert checkpoint_bytes < frozen_bytes / 10, (checkpoint_bytes, frozen_bytes)


def test_a_checkpoints_metadata_names_no_frozen_parameter():
  model_dir, result = h.trained_run()
  metadata = json.loads(
      (model_dir / f'checkpoint_{h.TRAINED_STEPS}' / 'state' / '_METADATA').read_text())
  entries = ['/'.join(ast.literal_eval(key)) for key in metadata['tree_metadata']]
  frozen = [path for path in flax.traverse_util.flatten_dict(result.params, sep='/')
            if path != h.PROMPT_PATH]
  assert frozen and [entry for entry in entries if entry.endswith(h.PROMPT_PATH)]
  assert not [entry for entry in entries if any(path in entry for path in frozen)]


def test_a_checkpoint_restores_the_whole_train_state_and_the_input_position(tmp_path):
  """Step, trained parameters, optimizer state and RNG come back exactly, laid out as asked."""
  params = {'encoder': {'prompt': {'prompt': {'prompt': jnp.arange(8.0).reshape(2, 4)}}},
            'decoder': {'kernel': jnp.ones((4, 4))}}
  labels = optimizer.trainable_labels(params, optimizer.PROMPT_ONLY)
  tx = optimizer.for_trainable(optimizer.adafactor(), labels)
  trainable, _ = optimizer.split(params, labels)
  grads = jax.tree_util.tree_map(jnp.ones_like, trainable)
  _, opt_state = tx.update(grads, tx.init(trainable), trainable)
  saved = TrainState(step=jnp.array(5, jnp.int32), trainable=trainable, opt_state=opt_state,
                     rng=jax.random.key_data(jax.random.key(3)))
  checkpointer = checkpointing.Checkpointer(str(tmp_path), checkpointing.CheckpointConfig(period=5))
  assert checkpointer.save(saved, position=42)
  like = saved.replace(step=jnp.array(0, jnp.int32), rng=jax.random.key_data(jax.random.key(0)),
                       opt_state=tx.init(trainable))
  result = checkpointer.restore(like)
  checkpointer.close()
  restored = result.state
  assert result.position == 42
  assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(saved)
  for got, want in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(saved)):
    np.testing.assert_array_equal(got, want)
  assert 'decoder' not in restored.trainable
