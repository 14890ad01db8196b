"""T5X checkpoint hooks: restore the frozen model strictly and in the model's layer layout,
export the prompt at every save.

`restore_frozen_model` is a T5X restore state transformation: starting a
run from INITIAL_CHECKPOINT_PATH it keeps the checkpoint's parameters (and a
prompt, in the paper's or the older layout), drops its optimizer state and
step, and refuses, in one line naming it, any frozen parameter the
checkpoint lacks; only the prompt may come from T5X's `fallback_to_scratch`
initialisation. Layers stored one by one (`layers_0`, `layers_1`, ...) are
stacked for a `scan_layers=True` model, and scanned layers are split for a
per-layer one; `convert_layers` does only that, for `t5x.eval` and
`t5x.infer`. `export_prompt` is a T5X save transformation that also
writes the prompt as `MODEL_DIR/numpy_checkpoints/checkpoint_<step>/
encoder.prompt.prompt.prompt.npy`, the project's and the paper's export.
They are transformations rather than a checkpoint manager class because
T5X builds the manager that resumes a run in MODEL_DIR with its default
class, and refuses a save manager of another class.
"""

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np
from flax import traverse_util

from prompt_tuning import checkpoints
from prompt_tuning.checkpoints import arrays
from prompt_tuning.checkpoints import t5x as t5x_format
from prompt_tuning.errors import UserError
from prompt_tuning.models import prompted
from prompt_tuning.runtime import checkpointing

PyTree = Any
_PROMPT_KEYS = tuple(prompted.PROMPT_PATH.split('/'))
_LEGACY_PROMPT_KEYS = tuple(prompted.LEGACY_PROMPT_PATH.split('/'))
_LAYER_KEY = re.compile(r'layers_(\d+)')
Path = Tuple[str, ...]


class FrozenParameterMissingError(UserError, ValueError):
  """The initial checkpoint lacks a parameter of the frozen model."""


class LayerConversionError(UserError, ValueError):
  """The checkpoint's layers cannot be read to convert them to the model's layout."""


def _lookup(tree: Mapping[str, Any], keys: Sequence[str]) -> Tuple[bool, Any]:
  """(found, value) of the node at `keys`; checkpoint leaves may themselves be dicts (specs)."""
  for key in keys:
    if not isinstance(tree, Mapping) or key not in tree:
      return False, None
    tree = tree[key]
  return True, tree


def _leaf_paths(target: PyTree) -> List[Tuple[str, ...]]:
  return list(traverse_util.flatten_dict(target, keep_empty_nodes=False))


def _is_tensorstore_spec(leaf: Any) -> bool:
  return isinstance(leaf, Mapping) and {'driver', 'kvstore'} <= set(leaf)


class _CheckpointLeaves:
  """A checkpoint's parameters as T5X hands them to a restore transformation, read on demand.

  Leaves are numpy arrays (stored in the msgpack file) or tensorstore spec
  dicts whose paths are relative to the checkpoint folder, `checkpoint_path`.
  """

  def __init__(self, params: Mapping[str, Any], checkpoint_path: Optional[str]):
    self.flat: Dict[Path, Any] = traverse_util.flatten_dict(
        params, is_leaf=lambda _, leaf: _is_tensorstore_spec(leaf))
    self.checkpoint_path = checkpoint_path
    self._stacks: Dict[Path, np.ndarray] = {}

  def __contains__(self, path: Path) -> bool:
    return path in self.flat

  def row(self, path: Path, index: int) -> np.ndarray:
    """Row `index` of the leaf at `path`; a stack of layers is read once for all its rows."""
    if path not in self._stacks:
      self._stacks[path] = self.read(path)
    return self._stacks[path][index]

  def read(self, path: Path) -> np.ndarray:
    """The leaf at `path`, read whole."""
    leaf, name = self.flat[path], '/'.join(path)
    if isinstance(leaf, np.ndarray):
      return leaf
    if not _is_tensorstore_spec(leaf):
      raise LayerConversionError(
          f'Cannot convert {name} between per-layer and scanned layers: the checkpoint holds '
          f'a {type(leaf).__name__}; only native T5X checkpoints (msgpack + tensorstore) convert.')
    if not self.checkpoint_path:
      raise LayerConversionError(
          f'Converting {name} between per-layer and scanned layers needs the checkpoint folder: '
          'bind checkpoint_path of the restore transformation (gin/t5x/runs/*.gin bind it to '
          'INITIAL_CHECKPOINT_PATH or CHECKPOINT_PATH).')
    array = t5x_format.TensorStoreArray(leaf, self.checkpoint_path, name)
    return arrays.materialize(array, array.dtype)


def _in_other_layout(path: Path, shape: Sequence[int],
                     leaves: _CheckpointLeaves) -> Tuple[Optional[np.ndarray], List[Path]]:
  """A layer parameter of the model built from the checkpoint's other layout, and its sources.

  A scanned `<stack>/layers/<rest>` [L, ...] stacks the checkpoint's
  `<stack>/layers_<i>/<rest>` [...] for i < L; a per-layer
  `<stack>/layers_<i>/<rest>` is row i of the scanned `<stack>/layers/<rest>`.
  (None, []) for other parameters, or where the checkpoint lacks a source.
  """
  for depth, key in enumerate(path):
    match = _LAYER_KEY.fullmatch(key)
    if key != 'layers' and not match:
      continue
    names = ['layers'] if match else [f'layers_{i}' for i in range(shape[0])]
    sources = [path[:depth] + (name,) + path[depth + 1:] for name in names]
    if not all(source in leaves for source in sources):
      return None, []
    if match:
      return leaves.row(sources[0], int(match.group(1))), sources
    return np.stack([leaves.read(source) for source in sources]), sources
  return None, []


def _to_model_layout(params: Mapping[str, Any], target: Mapping[str, Any],
                     checkpoint_path: Optional[str]) -> Dict[str, Any]:
  """The checkpoint's params with layers in the model's layout (scanned or per layer).

  Only model parameters the checkpoint lacks are built, from the other
  layout's arrays, which are read whole on every host (numpy arrays, which
  T5X then places as it would a checkpoint's own); the arrays they came
  from are dropped. Other entries pass unchanged, unread.
  """
  leaves = _CheckpointLeaves(params, checkpoint_path)
  converted, used = {}, set()
  for path, leaf in traverse_util.flatten_dict(target).items():
    if path not in leaves:
      value, sources = _in_other_layout(path, leaf.shape, leaves)
      if value is not None:
        converted[path] = value
        used.update(sources)
  if not converted:
    return dict(params)
  kept = {p: leaf for p, leaf in leaves.flat.items() if p not in used}
  return traverse_util.unflatten_dict({**kept, **converted})


def _with_paper_prompt_path(params: Dict[str, Any]) -> Dict[str, Any]:
  """Moves a prompt stored at the older `encoder/prompt/prompt` to the paper's path."""
  found, node = _lookup(params, _LEGACY_PROMPT_KEYS)
  if not found or (isinstance(node, Mapping) and 'prompt' in node):
    return params
  encoder = dict(params['encoder'])
  encoder['prompt'] = {'prompt': {'prompt': node}}
  return {**params, 'encoder': encoder}


def restore_frozen_model(state_dict: PyTree, target_state_dict: PyTree, *,
                         is_resuming: bool = False, keep_checkpoint_prompt: bool = True,
                         checkpoint_path: Optional[str] = None) -> PyTree:
  """The checkpoint's parameters for a new prompt-tuning run; resumed runs pass through.

  With `keep_checkpoint_prompt=False` a prompt in the checkpoint is dropped,
  so that the model's prompt initialiser (e.g. a prompt file) provides it.
  Layers are converted to the model's layout as `convert_layers` does;
  `checkpoint_path` is the checkpoint folder that T5X restores from
  (utils.RestoreCheckpointConfig.path).

  Raises:
    FrozenParameterMissingError: a parameter of the model, other than the
      prompt, is not in the checkpoint, in either layer layout (named in the
      one-line message).
    LayerConversionError: layers to convert cannot be read.
  """
  if is_resuming:  # MODEL_DIR's own checkpoint: prompt, optimizer state and step
    return state_dict
  params = _with_paper_prompt_path(dict(state_dict['target']))
  if not keep_checkpoint_prompt and _lookup(params, _PROMPT_KEYS)[0]:
    params = {**params, 'encoder': {k: v for k, v in params['encoder'].items() if k != 'prompt'}}
  params = _to_model_layout(params, target_state_dict['target'], checkpoint_path)
  expected = _leaf_paths(target_state_dict['target'])
  missing = ['/'.join(p) for p in expected
             if p[:len(_PROMPT_KEYS)] != _PROMPT_KEYS and not _lookup(params, p)[0]]
  if missing:
    more = f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''
    raise FrozenParameterMissingError(
        f'The initial checkpoint (utils.RestoreCheckpointConfig.path) lacks the frozen parameter '
        f'{missing[0]}{more}; only the prompt may be initialised.')
  # The optimizer state and step of the frozen model's own training do not carry over.
  return {'target': params}


def convert_layers(state_dict: PyTree, target_state_dict: PyTree, *, is_resuming: bool = False,
                   checkpoint_path: Optional[str] = None) -> PyTree:
  """A T5X restore transformation: the checkpoint with its layers in the model's layout.

  Layers stored one by one (`encoder/layers_0/...`, `layers_1`, ...) are
  stacked on a new leading axis for a `scan_layers=True` model (the layout
  of its `nn.scan`), and scanned layers (`encoder/layers/...`) are split for
  a per-layer model. The converted layers are read whole on every host, from
  `checkpoint_path`, the checkpoint folder that T5X restores from
  (utils.RestoreCheckpointConfig.path, in mode 'specific' as the run files
  restore); everything else passes unchanged.

  Raises:
    LayerConversionError: layers to convert cannot be read (no
      `checkpoint_path`, or an orbax checkpoint).
  """
  if is_resuming:  # MODEL_DIR's own checkpoint, written by this model
    return state_dict
  params = _to_model_layout(state_dict['target'], target_state_dict['target'], checkpoint_path)
  return {**state_dict, 'target': params}


def export_prompt(state_dict: PyTree, parameter_infos: PyTree, *,
                  model_dir: str) -> Tuple[PyTree, PyTree]:
  """A T5X save transformation that writes the prompt's `.npy` export; the state passes unchanged.

  Called by T5X at every checkpoint save (utils.SaveCheckpointConfig.state_transformation_fns),
  it writes `model_dir/numpy_checkpoints/checkpoint_<step>/encoder.prompt.prompt.prompt.npy`.
  """
  found, prompt = _lookup(state_dict['target'], _PROMPT_KEYS)
  if found and jax.process_index() == 0:
    # The prompt is replicated (prompt axes rules), so any local shard holds all of it.
    value = prompt.addressable_data(0) if isinstance(prompt, jax.Array) else prompt
    step = int(np.asarray(jax.device_get(state_dict['state']['step'])))
    directory = f'{model_dir.rstrip("/")}/{checkpointing.NUMPY_DIR}/checkpoint_{step}'
    checkpoints.write_prompt(directory, np.asarray(value))
  return state_dict, parameter_infos
