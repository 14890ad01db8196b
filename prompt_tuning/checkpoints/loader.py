"""Loads a frozen T5 1.1 from any supported checkpoint, checked against the model's own shapes.

Detects the format (native T5X, T5X orbax, Hugging Face directory or hub
id), checks every array's shape before reading anything, then reads the
arrays one at a time into host memory or straight into their shardings.
Knows the model only through `jax.eval_shape` of its init; no training logic.
"""

import re
from typing import Any, Dict, Optional, Tuple, Union

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp

from prompt_tuning import storage
from prompt_tuning.checkpoints import hf, t5x
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.models import t5

Checkpoint = Union[t5x.T5XCheckpoint, t5x.OrbaxT5XCheckpoint, hf.HFCheckpoint]

# `org/name`: what may be a Hugging Face Hub model id rather than a path.
_HUB_ID = re.compile(r'[\w.-]+/[\w.-]+')
# Fields of the model that no array shape reveals; a Hugging Face config.json records them.
_UNSEEN_FIELDS = ('relative_attention_max_distance', 'layer_norm_epsilon')


def open_checkpoint(path_or_id: str) -> Checkpoint:
  """The lazy reader of whatever checkpoint `path_or_id` holds (local, `gs://`, or a hub id)."""
  path = path_or_id.rstrip('/')
  if storage.exists(f'{path}/{t5x.MSGPACK_FILE}', t5x.SETTING):
    return t5x.T5XCheckpoint(path)
  if (storage.exists(f'{path}/{t5x.ORBAX_ITEM}/{t5x.ORBAX_METADATA}', t5x.SETTING) or
      storage.exists(f'{path}/{t5x.ORBAX_METADATA}', t5x.SETTING)):
    return t5x.OrbaxT5XCheckpoint(path)
  is_hub_id = (_HUB_ID.fullmatch(path) and not storage.is_dir(path) and
               not storage.exists(path) and not path.startswith(('.', '~')))
  if storage.exists(f'{path}/{hf.CONFIG_FILE}', t5x.SETTING) or is_hub_id:
    return hf.HFCheckpoint(path)
  raise CheckpointError(
      f'No checkpoint at {path_or_id}: expected a T5X checkpoint directory (with a '
      f'`{t5x.MSGPACK_FILE}` file or an orbax `{t5x.ORBAX_ITEM}/` item) or a Hugging Face model '
      f'directory (with {hf.CONFIG_FILE}).')


def model_shapes(config: t5.T5Config) -> Dict[str, Tuple[int, ...]]:
  """{param path: shape} of `t5.Transformer(config)`, computed without allocating anything."""
  tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  init = lambda t: t5.Transformer(config).init(jax.random.key(0), t, t, t, enable_dropout=False)
  params = nn.unbox(jax.eval_shape(init, tokens)['params'])
  return {p: tuple(x.shape) for p, x in flax.traverse_util.flatten_dict(params, sep='/').items()}


def check_shapes(found: Dict[str, Tuple[int, ...]], expected: Dict[str, Tuple[int, ...]],
                 source: str, model: str) -> None:
  """Raises one CheckpointError naming the first shape mismatch or missing array, with a count.

  Arrays the model does not have (e.g. a T5X prompt) are allowed: they are not read.
  """
  problems = [f'array {p} has shape {found[p]}, expected {shape}'
              for p, shape in expected.items() if p in found and found[p] != shape]
  problems += [f'array {p} {shape} is missing' for p, shape in expected.items() if p not in found]
  if problems:
    more = f' (and {len(problems) - 1} more problems)' if len(problems) > 1 else ''
    raise CheckpointError(f'{source} does not fit {model}: {problems[0]}{more}.')


def load_t5(path_or_id: str, size: Optional[str] = None, *, config: Optional[t5.T5Config] = None,
            dtype: Any = jnp.float32, shardings: Any = None) -> Dict[str, Any]:
  """The params of a T5 1.1, ready for `t5.Transformer(config).apply({'params': params}, ...)`.

  Args:
    path_or_id: a native T5X checkpoint directory, a T5X orbax checkpoint
      directory (local or `gs://`), a Hugging Face model directory, or a hub
      id such as 'google/t5-base-lm-adapt' (downloaded once, outside tests).
    size: a preset of `t5.SIZES` ('small', 'base', ...); or give `config`.
      Hugging Face checkpoints may leave both out: their config.json is used.
    config: the model's T5Config; with `scan_layers` the per-layer arrays
      are stacked into the scanned `layers` subtree.
    dtype: the dtype of the returned arrays (e.g. jnp.bfloat16 on accelerators).
    shardings: None for host numpy arrays, or a tree matching the params with
      a `jax.sharding.Sharding` (or None) per array: each process then reads
      only the slices its devices hold.

  Raises:
    CheckpointError: no checkpoint there, a corrupt one, or one that does
      not fit the model (the message names the array and both shapes).
  """
  if size is not None and config is not None:
    raise CheckpointError('Pass either size or config to load_t5, not both.')
  checkpoint = open_checkpoint(path_or_id)
  if size is not None:
    config = t5.config_for_size(size)
  elif config is None:
    if not isinstance(checkpoint, hf.HFCheckpoint):
      raise CheckpointError(f'{checkpoint.source} does not record its model: pass size= or '
                            'config= to load_t5.')
    config = checkpoint.t5_config()
  model = f"T5 1.1 '{size}'" if size else 'the configured T5 1.1 model'
  expected = model_shapes(config)
  found = {p: shape for p, (shape, _) in checkpoint.shapes(config.scan_layers).items()}
  check_shapes(found, expected, checkpoint.source, model)
  if isinstance(checkpoint, hf.HFCheckpoint):
    recorded = checkpoint.t5_config()
    for field in _UNSEEN_FIELDS:
      if getattr(config, field) != getattr(recorded, field):
        raise CheckpointError(f'{checkpoint.source} records {field}={getattr(recorded, field)}, '
                              f'but {model} has {getattr(config, field)}.')
  return checkpoint.read_all(dtype, shardings, config.scan_layers, paths=list(expected))
