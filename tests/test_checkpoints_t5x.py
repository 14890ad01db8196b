"""T5X checkpoints written by T5X: native (msgpack + zarr) and orbax layouts, lazy and sharded."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import flax.serialization
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorstore

from prompt_tuning import checkpoints
from prompt_tuning.checkpoints import t5x
from prompt_tuning.models import t5

# The fixtures' README states both models.
TINY_CONFIG = t5.T5Config(vocab_size=32128, emb_dim=4, num_heads=2, head_dim=2, mlp_dim=8,
                          num_encoder_layers=2, num_decoder_layers=2,
                          relative_attention_num_buckets=4, relative_attention_max_distance=8)
COPY_CONFIG = t5.T5Config(vocab_size=128, emb_dim=8, num_heads=4, head_dim=3, mlp_dim=16,
                          num_encoder_layers=2, num_decoder_layers=2,
                          relative_attention_num_buckets=32, relative_attention_max_distance=128)
FIXTURES = {  # name -> (path under the fixtures folder, config)
    'native_tiny': ('t5x_t5_1_1_tiny/checkpoint_3', TINY_CONFIG),
    'copy_native': ('t5x_tiny_copy/legacy/checkpoint_20', COPY_CONFIG),
    'copy_orbax': ('t5x_tiny_copy/orbax/checkpoint_20', COPY_CONFIG),
}


def flat(params):
  return flax.traverse_util.flatten_dict(params, sep='/')


@pytest.fixture(scope='module')
def loaded(fixtures_dir):
  """Every fixture loaded once, as host numpy params."""
  return {name: checkpoints.load_t5(str(fixtures_dir / path), config=config)
          for name, (path, config) in FIXTURES.items()}


@pytest.mark.parametrize('name', sorted(FIXTURES))
def test_each_fixture_loads_with_exactly_the_model_parameters(loaded, name):
  config = FIXTURES[name][1]
  shapes = {p: a.shape for p, a in flat(loaded[name]).items()}
  assert shapes == checkpoints.model_shapes(config)
  assert all(a.dtype == np.float32 for a in flat(loaded[name]).values())


def test_native_and_orbax_layouts_hold_identical_parameters(loaded):
  native, orbax = flat(loaded['copy_native']), flat(loaded['copy_orbax'])
  assert native.keys() == orbax.keys()
  for path in native:
    np.testing.assert_array_equal(native[path], orbax[path], err_msg=path)


def test_every_parameter_equals_what_tensorstore_and_flax_read_directly(loaded, fixtures_dir):
  directory = fixtures_dir / 't5x_t5_1_1_tiny/checkpoint_3'
  params = flat(loaded['native_tiny'])
  embedding = np.load(fixtures_dir / 't5x_t5_1_1_tiny/tiny_embeddings_32128x4.npy')
  np.testing.assert_array_equal(params['token_embedder/embedding'], embedding)
  # Arrays inlined in the msgpack file, decoded by flax on its own.
  target = flat(flax.serialization.msgpack_restore((directory / 'checkpoint').read_bytes())
                ['optimizer']['target'])
  zarr_folders = 0
  for path, value in params.items():
    folder = directory / ('target.' + path.replace('/', '.'))
    if folder.is_dir():
      zarr_folders += 1
      spec = {'driver': 'zarr', 'kvstore': {'driver': 'file', 'path': str(folder)}}
      expected = tensorstore.open(spec).result().read().result()
    else:
      expected = target[path]
    np.testing.assert_array_equal(value, expected, err_msg=path)
  assert 0 < zarr_folders < len(params)  # both storages are exercised


def test_forward_pass_on_the_real_checkpoint_gives_finite_logits(loaded):
  inputs = np.array([[37, 5, 900, 1, 0], [12, 1, 0, 0, 0]], np.int32)
  targets = np.array([[8, 31000, 1], [5, 1, 0]], np.int32)
  decoder_inputs = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  logits = t5.Transformer(TINY_CONFIG).apply({'params': loaded['native_tiny']}, inputs,
                                             decoder_inputs, targets, enable_dropout=False)
  assert logits.shape == (2, 3, 32128)
  assert np.isfinite(np.asarray(logits)).all()


def record_tensorstore_opens(monkeypatch) -> list:
  """The JSON specs of every tensorstore array opened from now on."""
  opened = []
  real_open = tensorstore.open

  def recording_open(spec, *args, **kwargs):
    opened.append(json.dumps(spec.to_json() if isinstance(spec, tensorstore.Spec) else spec))
    return real_open(spec, *args, **kwargs)

  monkeypatch.setattr(tensorstore, 'open', recording_open)
  return opened


def test_native_reader_never_opens_the_optimizer_state(fixtures_dir, monkeypatch):
  opened = record_tensorstore_opens(monkeypatch)
  checkpoints.load_t5(str(fixtures_dir / FIXTURES['copy_native'][0]), config=COPY_CONFIG)
  assert len(opened) == len(checkpoints.model_shapes(COPY_CONFIG))
  assert all('target.' in spec and 'param_states' not in spec for spec in opened)


def test_orbax_reader_restores_no_optimizer_state(fixtures_dir, monkeypatch):
  # Orbax's metadata call opens every array's header (shape, dtype), optimizer state
  # included; the restore that reads the data must touch `target` alone.
  checkpoint = checkpoints.OrbaxT5XCheckpoint(str(fixtures_dir / FIXTURES['copy_orbax'][0]))
  opened = record_tensorstore_opens(monkeypatch)
  checkpoint.read_all()
  assert opened
  assert not [spec for spec in opened if 'param_states' in spec]
  assert any('"target.' in spec for spec in opened)


def test_native_checkpoint_loads_without_its_optimizer_state_folders(fixtures_dir, tmp_path,
                                                                     loaded):
  copy = tmp_path / 'checkpoint_20'
  shutil.copytree(fixtures_dir / FIXTURES['copy_native'][0], copy)
  removed = [p for p in copy.iterdir() if p.name.startswith('state.')]
  for folder in removed:
    shutil.rmtree(folder)
  assert removed
  params = flat(checkpoints.load_t5(str(copy), config=COPY_CONFIG))
  for path, value in flat(loaded['copy_native']).items():
    np.testing.assert_array_equal(params[path], value)


def test_reading_is_lazy_and_casts_to_the_requested_dtype(fixtures_dir):
  checkpoint = checkpoints.T5XCheckpoint(str(fixtures_dir / FIXTURES['native_tiny'][0]))
  # Shapes come from the msgpack file alone: no zarr array is opened yet.
  assert all(a._store is None for a in checkpoint.arrays.values()
             if isinstance(a, t5x.TensorStoreArray))
  assert checkpoint.shapes()['decoder/logits_dense/kernel'] == ((4, 32128), np.float32)
  kernel = checkpoint.read('decoder/logits_dense/kernel', jnp.bfloat16)
  assert kernel.dtype == jnp.bfloat16 and kernel.shape == (4, 32128)
  opened = [p for p, a in checkpoint.arrays.items()
            if isinstance(a, t5x.TensorStoreArray) and a._store is not None]
  assert opened == ['decoder/logits_dense/kernel']


@pytest.mark.parametrize('name', ['native_tiny', 'copy_orbax'])
def test_scanned_models_get_the_layers_stacked(fixtures_dir, loaded, name):
  path, config = FIXTURES[name]
  config = dataclasses.replace(config, scan_layers=True)
  scanned = flat(checkpoints.load_t5(str(fixtures_dir / path), config=config))
  assert {p: a.shape for p, a in scanned.items()} == checkpoints.model_shapes(config)
  per_layer = flat(loaded[name])
  for i in range(config.num_decoder_layers):
    np.testing.assert_array_equal(scanned['decoder/layers/mlp/wo/kernel'][i],
                                  per_layer[f'decoder/layers_{i}/mlp/wo/kernel'])


def _named_shardings(config, mesh):
  """{param path: sharding}: kernels split on their last axis over 'model', the rest replicated."""
  def spec(shape):
    if len(shape) < 2:
      return jax.sharding.PartitionSpec()
    return jax.sharding.PartitionSpec(*[None] * (len(shape) - 1), 'model')

  return {p: jax.sharding.NamedSharding(mesh, spec(s))
          for p, s in checkpoints.model_shapes(config).items()}


@pytest.mark.parametrize('scan_layers', [False, True])
@pytest.mark.parametrize('name', ['native_tiny', 'copy_orbax'])
def test_reading_into_named_shardings_gives_the_same_values(fixtures_dir, name, scan_layers):
  path, config = FIXTURES[name]
  config = dataclasses.replace(config, scan_layers=scan_layers)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ('data', 'model'))
  shardings = _named_shardings(config, mesh)
  on_host = flat(checkpoints.load_t5(str(fixtures_dir / path), config=config))
  tree = flax.traverse_util.unflatten_dict(shardings, sep='/')
  sharded = flat(checkpoints.load_t5(str(fixtures_dir / path), config=config, dtype=jnp.bfloat16,
                                     shardings=tree))
  for path, value in on_host.items():
    assert isinstance(sharded[path], jax.Array) and sharded[path].dtype == jnp.bfloat16
    assert sharded[path].sharding == shardings[path]
    np.testing.assert_array_equal(np.asarray(sharded[path]), value.astype(jnp.bfloat16))


_EIGHT_DEVICES = textwrap.dedent('''
    import json, sys
    import flax.traverse_util, jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from prompt_tuning import checkpoints
    from prompt_tuning.checkpoints import t5x
    from prompt_tuning.models import t5

    path, orbax_path = sys.argv[1:]
    config = t5.T5Config(vocab_size=32128, emb_dim=4, num_heads=2, head_dim=2, mlp_dim=8,
                         num_encoder_layers=2, num_decoder_layers=2,
                         relative_attention_num_buckets=4, relative_attention_max_distance=8)
    mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ('data', 'model'))
    sharding = NamedSharding(mesh, P('model', None))  # embedding rows split in 4
    requested = []
    read = t5x.TensorStoreArray.__getitem__
    t5x.TensorStoreArray.__getitem__ = lambda self, index: (
        requested.append((self.name, [(s.start, s.stop) for s in index])) or read(self, index))
    checkpoint = checkpoints.T5XCheckpoint(path)
    embedding = checkpoint.read('token_embedder/embedding', sharding=sharding)
    whole = checkpoint.read('token_embedder/embedding')
    orbax = checkpoints.OrbaxT5XCheckpoint(orbax_path).read(
        'decoder/logits_dense/kernel', sharding=NamedSharding(mesh, P(None, 'model')))
    print(json.dumps({
        'devices': len(jax.devices()),
        'requested': requested[:-1],
        'shards_match': all(np.array_equal(s.data, whole[s.index])
                            for s in embedding.addressable_shards),
        'shard_rows': sorted({s.data.shape[0] for s in embedding.addressable_shards}),
        'orbax_shard_shapes': sorted({s.data.shape for s in orbax.addressable_shards}),
    }))
''')


def test_each_of_eight_devices_reads_only_its_slice(fixtures_dir):
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
         'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run(
      [sys.executable, '-c', _EIGHT_DEVICES, str(fixtures_dir / FIXTURES['native_tiny'][0]),
       str(fixtures_dir / FIXTURES['copy_orbax'][0])],
      env=env, capture_output=True, text=True, timeout=120, check=True)
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report['devices'] == 8
  quarter = 32128 // 4
  # Each distinct quarter of the rows is read once (the 'data' replicas share it), never the whole.
  assert sorted(report['requested']) == [
      ['token_embedder/embedding', [[i * quarter, (i + 1) * quarter], [None, None]]]
      for i in range(4)]
  assert report['shards_match'] and report['shard_rows'] == [quarter]
  assert report['orbax_shard_shapes'] == [[8, 32]]


def _one_line_error(call) -> str:
  with pytest.raises(checkpoints.CheckpointError) as error:
    call()
  message = str(error.value)
  assert '\n' not in message
  return message


def test_missing_checkpoint_path_is_a_one_line_error(tmp_path):
  missing = tmp_path / 'no_such_checkpoint'
  message = _one_line_error(lambda: checkpoints.load_t5(str(missing), 'small'))
  assert str(missing) in message


def test_checkpoint_of_the_wrong_size_names_an_array_and_both_shapes(fixtures_dir):
  path = str(fixtures_dir / FIXTURES['native_tiny'][0])
  message = _one_line_error(lambda: checkpoints.load_t5(path, 'small'))
  match = re.search(r'array (\S+) has shape (\(.*?\)), expected (\(.*?\))', message)
  assert match, message
  array, found, expected = match.groups()
  assert found == str(checkpoints.T5XCheckpoint(path).shapes()[array][0])
  assert expected == str(checkpoints.model_shapes(t5.config_for_size('small'))[array])


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_corrupt_msgpack_file_is_a_one_line_error(fixtures_dir, tmp_path, damage):
  real = (fixtures_dir / FIXTURES['native_tiny'][0] / 'checkpoint').read_bytes()
  (tmp_path / 'checkpoint').write_bytes(b'not msgpack \xc1\xff' if damage == 'garbage'
                                        else real[:len(real) // 2])
  message = _one_line_error(lambda: checkpoints.load_t5(str(tmp_path), config=TINY_CONFIG))
  assert str(tmp_path / 'checkpoint') in message and 'msgpack' in message
