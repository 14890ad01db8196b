"""Distributed training gives the losses of one device: on a 2x4 mesh, and over two processes.

Both run in child processes, side by side with the one-device reference run
in this process: a mesh of simulated CPUs, since jax fixes its host devices
when it starts; and two CLI processes joined by `jax.distributed` on
127.0.0.1 (gloo collectives), each reading its own shard of the toy data
(SeqIO `ShardInfo`) and holding half of every batch. Without shuffling or
dropout, step s covers the same examples in every layout. Each run ends with
an evaluation, whose greedy predictions must not depend on the layout either.
"""

import json
import sys

import numpy as np
import pytest

import runtime_helpers as h

DATA, MODEL = 2, 4
EMBED = h.TOY_MODEL['emb_dim']
MLP = 16  # the tiny preset's
JOINED_KV = h.TOY_MODEL['num_heads'] * h.TOY_MODEL['head_dim']


@pytest.fixture(scope='module')
def children(tmp_path_factory):
  """The mesh run and both processes of the two-process run, started together."""
  mesh_dir = tmp_path_factory.mktemp('mesh')
  mesh_macros = h.reference_macros(
      mesh_dir, **{'partitioning.Partitioner.mesh_shape': f'({DATA}, {MODEL})'})
  mesh = h.start([sys.executable, str(h.TESTS_DIR / 'runtime_sharded_train.py'),
                  json.dumps(mesh_macros)], devices=DATA * MODEL)
  model_dir = tmp_path_factory.mktemp('two_processes')
  macros = h.reference_macros(model_dir)
  coordinator = f'127.0.0.1:{h.free_port()}'
  processes = [h.start(h.cli_command('train', h.TRAIN_GIN, macros, '--multiprocess',
                                     f'--coordinator_address={coordinator}', '--process_count=2',
                                     f'--process_index={i}'))
               for i in range(2)]
  try:
    h.reference_run()  # the one-device run, meanwhile
    yield (mesh, mesh_dir), (processes, model_dir)
  finally:  # children left running by a failure
    for child in (mesh, *processes):
      if child.process.poll() is None:
        child.process.kill()


@pytest.fixture(scope='module')
def mesh_run(children):
  """(MODEL_DIR, the child's report)."""
  mesh, mesh_dir = children[0]
  report = h.last_json_line(h.check(h.finish(mesh)).stdout)
  assert report['devices'] == DATA * MODEL
  return mesh_dir, report


@pytest.fixture(scope='module')
def two_processes(children):
  """(MODEL_DIR, results of process 0 and 1)."""
  processes, model_dir = children[1]
  results = h.finish_all(processes)
  for result in results:
    h.check(result)
  return model_dir, results


def eval_predictions(model_dir):
  """The final evaluation's predictions, in the split's order."""
  path = model_dir / 'inference_eval' / f'{h.TASK}-{h.REFERENCE_STEPS:06}.jsonl'
  return [row['prediction'] for row in h.read_jsonl(path)]


def test_a_2x4_mesh_gives_the_losses_of_one_device(mesh_run):
  _, report = mesh_run
  np.testing.assert_allclose(report['losses'], h.reference_run()[1].losses, rtol=1e-4, atol=1e-5)


def test_a_2x4_mesh_decodes_the_predictions_of_one_device(mesh_run):
  mesh_dir, _ = mesh_run
  assert eval_predictions(mesh_dir) == eval_predictions(h.reference_run()[0])


@pytest.mark.parametrize('path, width', [
    ('encoder/layers_0/mlp/wi_0/kernel', MLP),  # ('embed', 'mlp')
    ('decoder/layers_1/mlp/wi_1/kernel', MLP),
    ('encoder/layers_1/attention/query/kernel', JOINED_KV),  # ('embed', 'joined_kv')
    ('decoder/layers_0/encoder_decoder_attention/value/kernel', JOINED_KV),
])
def test_mlp_and_attention_kernels_are_split_over_the_model_axis(mesh_run, path, width):
  _, report = mesh_run
  assert report['specs'][path] == [None, 'model']
  assert report['shard_shapes'][path] == [EMBED, width // MODEL]
  assert not report['replicated'][path]


def test_the_vocabulary_is_split_over_the_model_axis(mesh_run):
  _, report = mesh_run
  assert report['specs']['token_embedder/embedding'] == ['model', None]
  assert report['specs']['decoder/logits_dense/kernel'] == [None, 'model']


def test_the_prompt_is_replicated_on_every_device(mesh_run):
  _, report = mesh_run
  assert all(axis is None for axis in report['specs'][h.PROMPT_PATH])
  assert report['replicated'][h.PROMPT_PATH]
  assert report['shard_shapes'][h.PROMPT_PATH] == [4, EMBED]


def test_two_processes_give_the_losses_of_one(two_processes):
  model_dir, _ = two_processes
  logged = h.tensorboard(model_dir / 'train')['loss']
  assert sorted(logged) == list(range(1, h.REFERENCE_STEPS + 1))
  np.testing.assert_allclose([logged[step] for step in sorted(logged)],
                             h.reference_run()[1].losses, rtol=1e-4, atol=1e-5)


def test_two_processes_decode_the_predictions_of_one(two_processes):
  model_dir, _ = two_processes
  assert eval_predictions(model_dir) == eval_predictions(h.reference_run()[0])


def test_two_processes_end_with_the_prompt_of_one(two_processes):
  model_dir, _ = two_processes
  exported = np.load(model_dir / 'numpy_checkpoints' / f'checkpoint_{h.REFERENCE_STEPS}' /
                     'encoder.prompt.prompt.prompt.npy')
  expected = h.reference_run()[1].params['encoder']['prompt']['prompt']['prompt']
  # Adafactor's normalised updates carry the rounding of a different summation order along.
  np.testing.assert_allclose(exported, expected, rtol=1e-3, atol=1e-3)


def test_only_process_zero_reports_progress(two_processes):
  _, (first, second) = two_processes
  assert f'step {h.REFERENCE_STEPS}/{h.REFERENCE_STEPS}' in first.stdout
  assert 'step ' not in second.stdout
