"""Readers of T5X checkpoints: the native format (msgpack + tensorstore zarr) and the orbax layout.

Only the model parameters (`target`) are read, never the optimizer state,
one array at a time, straight into the requested shardings. Paths may be
local or `gs://`; an unreachable bucket fails at the first (bounded) read, see
storage.py. Knows nothing of models or training.
"""

import copy
from typing import Any, Dict, Iterable, Iterator, Mapping, Optional, Tuple

import flax.serialization
import flax.traverse_util
import jax
import jax.numpy as jnp
import msgpack
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts

from prompt_tuning import storage
from prompt_tuning.checkpoints import arrays
from prompt_tuning.checkpoints.errors import CheckpointError, one_line

# The file that makes a directory a native T5X checkpoint (format version 3).
MSGPACK_FILE = 'checkpoint'
# The orbax item of today's T5X checkpoints, holding `target` and `state`.
ORBAX_ITEM = 'state'
ORBAX_METADATA = '_METADATA'
# The gin macro that names these checkpoints: where an unreachable one's message points.
SETTING = 'INITIAL_CHECKPOINT_PATH'


class TensorStoreArray:
  """One zarr array of a native checkpoint, opened on first read."""

  def __init__(self, spec: Mapping[str, Any], directory: str, name: str):
    self.name = name
    self.spec = _absolute_spec(spec, directory)
    metadata = spec.get('metadata', {})
    self.shape = tuple(metadata['shape'])
    self.dtype = jnp.dtype(spec.get('dtype') or metadata['dtype'])
    self._store = None

  def __getitem__(self, index: arrays.Index) -> np.ndarray:
    try:
      if self._store is None:
        self._store = ts.open(self.spec, read=True).result()
      return self._store[index].read().result()
    except Exception as e:  # tensorstore raises ValueError or OSError by failure kind
      path = self.spec['kvstore']['path']
      if self.spec['kvstore']['driver'] == 'gcs':
        path = f'gs://{self.spec["kvstore"]["bucket"]}/{path}'
      raise (storage.unreachable_error(path, e, SETTING) or
             CheckpointError(f'Cannot read array {self.name} from {path}: {one_line(e)}')) from None


def _absolute_spec(spec: Mapping[str, Any], directory: str) -> Dict[str, Any]:
  """The spec with its relative kvstore path resolved against the checkpoint directory.

  T5X writes `gfile`, `file` or `gcs` (with a placeholder bucket) and a path
  relative to the checkpoint; where the checkpoint lives now decides the driver.
  """
  spec = copy.deepcopy(dict(spec))
  kvstore = spec['kvstore']
  if kvstore.get('driver') not in ('file', 'gfile', 'gcs'):
    raise CheckpointError(f'Unsupported tensorstore kvstore driver {kvstore.get("driver")!r} in '
                          f'{directory}/{MSGPACK_FILE}; expected file, gfile or gcs.')
  # tensorstore < 0.1.14 kept the path beside the kvstore rather than in it.
  relative = kvstore.get('path', spec.pop('path', ''))
  base = storage.kvstore_spec(directory)
  spec['kvstore'] = {**base, 'path': base['path'] + relative}
  return spec


def _is_tensorstore_spec(value: Any) -> bool:
  return isinstance(value, dict) and {'driver', 'kvstore'} <= set(value)


def _is_chunked_array(value: Any) -> bool:
  return isinstance(value, dict) and '__msgpack_chunked_array__' in value


def _leaves(tree: Mapping[str, Any], prefix: str = '') -> Iterator[Tuple[str, Any]]:
  """('encoder/layers_0/...', leaf) pairs of the msgpack tree, leaves left undecoded."""
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, dict) and not (_is_tensorstore_spec(value) or _is_chunked_array(value)):
      yield from _leaves(value, path + '/')
    else:
      yield path, value


def _inline_array(leaf: Any) -> np.ndarray:
  """A small array stored in the msgpack file itself (flax's ext-type numpy encoding)."""
  # Re-packing one leaf lets flax's own decoder handle every encoding it writes.
  return np.asarray(flax.serialization.msgpack_restore(msgpack.packb(leaf)))


class T5XCheckpoint(arrays.ArrayCheckpoint):
  """A native T5X checkpoint directory (`checkpoint` msgpack file + `target.*` zarr folders).

  Only the msgpack file is read up front; optimizer-state leaves are never
  decoded and their zarr folders never opened.

  >>> ckpt = T5XCheckpoint('gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/'
  ...                      'checkpoint_1100000')
  >>> ckpt.shapes()['token_embedder/embedding']
  ((32128, 768), dtype('float32'))
  """

  def __init__(self, path: str):
    self.directory = path.rstrip('/')
    file = f'{self.directory}/{MSGPACK_FILE}'
    raw = storage.read_bytes(file, SETTING)
    try:
      contents = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as e:
      raise CheckpointError(f'{file} is not a T5X checkpoint: corrupt msgpack ({one_line(e)}).'
                            ) from None
    # Version >= 2 nests the train state under 'optimizer'; plain flax checkpoints do not.
    state = contents.get('optimizer', contents) if isinstance(contents, dict) else None
    target = state.get('target') if isinstance(state, dict) else None
    if not isinstance(target, dict):
      keys = sorted(contents) if isinstance(contents, dict) else type(contents).__name__
      raise CheckpointError(f'{file} holds no `target` parameters (found {keys}).')
    lazy = {}
    for name, leaf in _leaves(target):
      lazy[name] = (TensorStoreArray(leaf, self.directory, name) if _is_tensorstore_spec(leaf)
                    else _inline_array(leaf))
    super().__init__(lazy, f'T5X checkpoint {self.directory}')


def _layer_sharding(sharding: Optional[jax.sharding.Sharding]) -> Optional[jax.sharding.Sharding]:
  """The sharding of one layer's slice of a scanned parameter laid out by `sharding`."""
  if sharding is None or isinstance(sharding, jax.sharding.SingleDeviceSharding):
    return sharding
  if isinstance(sharding, jax.sharding.NamedSharding):
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*sharding.spec[1:]))
  raise CheckpointError(f'Cannot split {sharding} into per-layer shardings; use a NamedSharding.')


class OrbaxT5XCheckpoint:
  """Today's T5X layout: an orbax checkpoint whose `state` item holds `target` and `state`.

  Reads go through orbax with a partial restore of `target`, so no data of
  the optimizer state is read (orbax's metadata call does read every array's
  header: shape and dtype); each array lands directly in its sharding.
  """

  def __init__(self, path: str):
    path = path.rstrip('/')
    self.item = (path if storage.exists(f'{path}/{ORBAX_METADATA}', SETTING) else
                 f'{path}/{ORBAX_ITEM}')
    self.source = f'T5X orbax checkpoint {path}'
    self._checkpointer = ocp.PyTreeCheckpointer()
    try:
      tree = self._checkpointer.metadata(self.item).item_metadata.tree
    except Exception as e:  # orbax raises several types for unreadable metadata
      raise (storage.unreachable_error(path, e, SETTING) or
             CheckpointError(f'Cannot read {self.source}: {one_line(e)}')) from None
    if not isinstance(tree, dict) or 'target' not in tree:
      raise CheckpointError(f'{self.source} holds no `target` parameters.')
    self._metadata = flax.traverse_util.flatten_dict(tree['target'], sep='/')

  def shapes(self, scan_layers: bool = False) -> arrays.Shapes:
    """{param path: (shape, dtype)}, from orbax metadata only; scanned paths with `scan_layers`."""
    shapes = {p: (tuple(m.shape), np.dtype(m.dtype)) for p, m in self._metadata.items()}
    return arrays.stacked_shapes(shapes) if scan_layers else shapes

  def read(self, path: str, dtype: Any = np.float32,
           sharding: Optional[jax.sharding.Sharding] = None):
    """One array, cast to `dtype`: numpy, or a jax.Array laid out by `sharding`."""
    arrays.read_plan(self._metadata, False, [path], self.source)
    return self._restore({path: sharding}, dtype)[path]

  def read_all(self, dtype: Any = np.float32, shardings: Any = None, scan_layers: bool = False,
               paths: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """The nested params dict; `shardings` is a matching tree (or None) of target shardings.

    With `scan_layers`, each scanned parameter's layers are restored into
    per-layer shardings and stacked on device, one parameter at a time.
    `paths` limits the reading to those parameters (default: all).
    """
    shardings = arrays.flat_shardings(shardings)
    plan = arrays.read_plan(self._metadata, scan_layers, paths, self.source)
    unstacked = {p: shardings.get(p) for p, parts in plan.items() if parts == [p]}
    params = self._restore(unstacked, dtype)
    for path, parts in plan.items():
      if parts == [path]:
        continue
      sharding = shardings.get(path)
      layers = self._restore({p: _layer_sharding(sharding) for p in parts}, dtype)
      layers = [layers[p] for p in parts]
      params[path] = (np.stack(layers) if sharding is None else
                      jax.jit(lambda *xs: jnp.stack(xs), out_shardings=sharding)(*layers))
    return arrays.unflatten(params)

  def _restore(self, shardings: Mapping[str, Optional[jax.sharding.Sharding]],
               dtype: Any) -> Dict[str, Any]:
    """Restores the given target paths (only those) as numpy, or into their shardings."""
    if not shardings:
      return {}
    item, restore_args = {}, {}
    for path, sharding in shardings.items():
      item[path] = jax.ShapeDtypeStruct(tuple(self._metadata[path].shape), dtype)
      restore_args[path] = (ocp.ArrayRestoreArgs(sharding=sharding, dtype=dtype) if sharding
                            else ocp.RestoreArgs(restore_type=np.ndarray, dtype=dtype))
    args = ocp.args.PyTreeRestore(item={'target': arrays.unflatten(item)},
                                  restore_args={'target': arrays.unflatten(restore_args)},
                                  partial_restore=True)
    try:
      restored = self._checkpointer.restore(self.item, args=args)
    except Exception as e:  # orbax and tensorstore raise several types
      raise (storage.unreachable_error(self.item, e, SETTING) or
             CheckpointError(f'Cannot restore from {self.source}: {one_line(e)}')) from None
    return flax.traverse_util.flatten_dict(restored['target'], sep='/')
