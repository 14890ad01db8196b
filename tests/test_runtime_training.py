"""Training updates exactly what the trainable regexes match: the prompt by default, all with `.*`.

Runs the train script's gin path in this process, on the toy model whose
random frozen weights come from a checkpoint (INITIAL_CHECKPOINT_PATH).
"""

import flax
import jax
import numpy as np
import pytest

import runtime_helpers as h
from prompt_tuning import checkpoints

MODEL_TUNING_STEPS = 15


def flat(params):
  return flax.traverse_util.flatten_dict(params, sep='/')


def array_leaves(tree):
  """(path, array) of every array in `tree`, paths as text."""
  return [(jax.tree_util.keystr(path), leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree) if hasattr(leaf, 'shape')]


@pytest.fixture(scope='module')
def initial(tmp_path_factory):
  """The parameters every toy run starts from: the frozen checkpoint's, and the initial prompt
  (that of a run of 0 steps)."""
  frozen = checkpoints.open_checkpoint(h.frozen_checkpoint(**h.TOY_MODEL)).read_all()
  start = h.train_in_process(h.train_macros(tmp_path_factory.mktemp('start'), 0))
  prompt = start.params['encoder']['prompt']['prompt']['prompt']
  return {**flat(frozen), h.PROMPT_PATH: np.asarray(prompt)}


@pytest.fixture(scope='module')
def model_tuning(tmp_path_factory):
  """The toy run with every parameter trainable (the paper's model-tuning baseline)."""
  macros = h.train_macros(tmp_path_factory.mktemp('model_tuning'), MODEL_TUNING_STEPS,
                          TRAINABLE_REGEXES="['.*']", LEARNING_RATE='0.03')
  return h.train_in_process(macros)


def test_prompt_tuning_drives_the_loss_down():
  losses = h.reference_run()[1].losses
  assert len(losses) == h.REFERENCE_STEPS
  assert np.mean(losses[-5:]) < losses[0] - 1.5, losses


def test_prompt_tuning_changes_the_prompt_and_nothing_else(initial):
  trained = flat(h.reference_run()[1].params)
  assert sorted(trained) == sorted(initial)
  assert not np.array_equal(trained[h.PROMPT_PATH], initial[h.PROMPT_PATH])
  for path, before in initial.items():
    if path != h.PROMPT_PATH:
      after = trained[path]
      assert after.dtype == before.dtype and np.array_equal(after, before), path


def test_the_optimizer_keeps_statistics_of_the_prompt_only():
  state = h.reference_run()[1].state
  prompt = h.reference_run()[1].params['encoder']['prompt']['prompt']['prompt']
  leaves = array_leaves(state.opt_state)
  # Adafactor's second moment of the [P, H] prompt (unfactored: it is small); the rest are scalars
  # (step counts, the learning rate) and the [1] placeholders of the unused factored moments.
  statistics = [(path, x) for path, x in leaves if x.size > 1]
  assert [x.shape for _, x in statistics] == [prompt.shape]
  assert all("['encoder']['prompt']['prompt']['prompt']" in path for path, _ in statistics)
  assert sum(x.nbytes for _, x in leaves) < 2 * prompt.nbytes
  assert list(flat(state.trainable)) == [h.PROMPT_PATH]


def test_model_tuning_changes_every_parameter(initial, model_tuning):
  trained = flat(model_tuning.params)
  unchanged = [path for path, before in initial.items() if np.array_equal(trained[path], before)]
  assert not unchanged


def test_model_tuning_drives_the_loss_down(model_tuning):
  losses = model_tuning.losses
  assert len(losses) == MODEL_TUNING_STEPS
  assert np.mean(losses[-5:]) < losses[0] - 1.5, losses


def test_model_tuning_keeps_statistics_of_every_parameter(initial, model_tuning):
  # One second moment per parameter: whole for small or 1-d ones, as row and column
  # factors for matrices of at least 128 rows and columns (none in this model).
  moments = [x for path, x in array_leaves(model_tuning.state.opt_state) if '.v[' in path]
  assert sorted(x.shape for x in moments) == sorted(x.shape for x in initial.values())
