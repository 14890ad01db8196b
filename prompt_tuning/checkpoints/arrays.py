"""Lazy views of checkpoint arrays, and reading them one at a time into host memory or shardings.

A lazy array has `shape`, `dtype` and `__getitem__(index)` for a full-rank
tuple of slices, returning a numpy array (numpy arrays qualify). Nothing is
read until an index is asked for, so each process reads only the slices its
devices hold. Knows no file format and nothing of training.
"""

import collections
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple

import flax.traverse_util
import jax
import numpy as np

from prompt_tuning.checkpoints.errors import CheckpointError

Index = Tuple[slice, ...]
Shapes = Dict[str, Tuple[Tuple[int, ...], np.dtype]]

# Per-layer parameter paths of T5X checkpoints, e.g. `encoder/layers_3/mlp/wo/kernel`.
_LAYER_PATH = re.compile(r'(encoder|decoder)/layers_(\d+)/(.+)')


class LazyArray(Protocol):
  shape: Tuple[int, ...]
  dtype: Any

  def __getitem__(self, index: Index) -> np.ndarray:
    ...


def full_index(shape: Sequence[int]) -> Index:
  """The index that selects a whole array of `shape`."""
  return (slice(None),) * len(shape)


class Transposed:
  """The transpose of a 2-D lazy array (HF stores kernels as [out, in], T5X as [in, out])."""

  def __init__(self, base: LazyArray):
    self.base = base
    self.shape = tuple(base.shape)[::-1]
    self.dtype = base.dtype

  def __getitem__(self, index: Index) -> np.ndarray:
    return np.asarray(self.base[tuple(index)[::-1]]).T


class Stacked:
  """Lazy arrays of one shape stacked on a new leading axis (per-layer params -> scanned params)."""

  def __init__(self, parts: Sequence[LazyArray]):
    self.parts = list(parts)
    self.shape = (len(self.parts),) + tuple(self.parts[0].shape)
    self.dtype = self.parts[0].dtype

  def __getitem__(self, index: Index) -> np.ndarray:
    rows = range(*index[0].indices(len(self.parts)))
    return np.stack([np.asarray(self.parts[i][tuple(index[1:])]) for i in rows])


def materialize(array: LazyArray, dtype: Any, sharding: Optional[jax.sharding.Sharding] = None):
  """Reads `array` cast to `dtype`: a numpy array, or a jax.Array laid out by `sharding`.

  With a sharding, only the slices of this process's devices are read, each
  distinct slice once.
  """
  if sharding is None:
    return np.asarray(array[full_index(array.shape)]).astype(dtype, copy=False)
  slices = {}

  def read(index: Index) -> np.ndarray:
    key = tuple((s.start, s.stop, s.step) for s in index)
    if key not in slices:
      slices[key] = np.asarray(array[index]).astype(dtype, copy=False)
    return slices[key]

  return jax.make_array_from_callback(tuple(array.shape), sharding, read)


def layer_groups(paths: Sequence[str]) -> Dict[str, List[str]]:
  """Maps each parameter path of a scanned model to the checkpoint paths it is made of.

  `{stack}/layers_{i}/{rest}` for i = 0..n-1 become `{stack}/layers/{rest}`
  (in layer order); every other path maps to itself.
  """
  layers = collections.defaultdict(dict)
  groups = {}
  for path in paths:
    match = _LAYER_PATH.fullmatch(path)
    if match:
      stack, i, rest = match.groups()
      layers[f'{stack}/layers/{rest}'][int(i)] = path
    else:
      groups[path] = [path]
  for scanned, by_index in layers.items():
    stack, rest = scanned.split('/layers/', 1)
    for i in range(max(by_index) + 1):
      if i not in by_index:
        raise CheckpointError(f'The checkpoint has no array {stack}/layers_{i}/{rest}, but has '
                              f'layers up to {max(by_index)}.')
    groups[scanned] = [by_index[i] for i in sorted(by_index)]
  return groups


def stacked_shapes(shapes: Shapes) -> Shapes:
  """The shapes of a scanned model's parameters, from per-layer shapes (see `layer_groups`)."""
  stacked = {}
  for path, parts in layer_groups(list(shapes)).items():
    shape, dtype = shapes[parts[0]]
    for part in parts:
      if shapes[part][0] != shape:
        raise CheckpointError(f'Cannot stack the layers of {path}: {parts[0]} has shape {shape} '
                              f'but {part} has shape {shapes[part][0]}.')
    stacked[path] = (((len(parts),) + shape if path != parts[0] else shape), dtype)
  return stacked


def read_plan(available: Iterable[str], scan_layers: bool, paths: Optional[Iterable[str]],
              source: str) -> Dict[str, List[str]]:
  """{parameter path to read: the checkpoint paths it is made of} for `paths` (default: all)."""
  available = list(available)
  groups = layer_groups(available) if scan_layers else {p: [p] for p in available}
  if paths is None:
    return groups
  for path in paths:
    if path not in groups:
      raise CheckpointError(f'{source} has no array {path}.')
  return {path: groups[path] for path in paths}


def flat_shardings(shardings: Any) -> Dict[str, Optional[jax.sharding.Sharding]]:
  """A nested dict of shardings (or None) keyed by '/'-joined parameter paths."""
  if shardings is None:
    return {}
  return flax.traverse_util.flatten_dict(shardings, sep='/')


def unflatten(flat: Mapping[str, Any]) -> Dict[str, Any]:
  """{'a/b/c': x} -> {'a': {'b': {'c': x}}}."""
  return flax.traverse_util.unflatten_dict(dict(flat), sep='/')


class ArrayCheckpoint:
  """A checkpoint's parameters as lazy arrays keyed by T5X parameter path ('encoder/layers_0/...').

  Subclasses fill `arrays` from their format; nothing is read before `read`.
  """

  def __init__(self, arrays: Mapping[str, LazyArray], source: str):
    self.arrays = dict(arrays)
    self.source = source

  def shapes(self, scan_layers: bool = False) -> Shapes:
    """{param path: (shape, dtype)}, read from metadata only; scanned paths with `scan_layers`."""
    shapes = {p: (tuple(a.shape), np.dtype(a.dtype)) for p, a in self.arrays.items()}
    return stacked_shapes(shapes) if scan_layers else shapes

  def read(self, path: str, dtype: Any = np.float32,
           sharding: Optional[jax.sharding.Sharding] = None):
    """One array, cast to `dtype`: numpy, or a jax.Array laid out by `sharding`."""
    read_plan(self.arrays, False, [path], self.source)
    return materialize(self.arrays[path], dtype, sharding)

  def read_all(self, dtype: Any = np.float32, shardings: Any = None, scan_layers: bool = False,
               paths: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """The nested params dict, one array at a time; `shardings` is a matching tree (or None).

    With `scan_layers`, per-layer arrays are stacked into the `layers`
    subtree of a scanned model, slice by slice as the shardings ask.
    `paths` limits the reading to those parameters (default: all).
    """
    shardings = flat_shardings(shardings)
    params = {}
    for path, parts in read_plan(self.arrays, scan_layers, paths, self.source).items():
      array = self.arrays[path] if parts == [path] else Stacked([self.arrays[p] for p in parts])
      params[path] = materialize(array, dtype, shardings.get(path))
    return unflatten(params)
