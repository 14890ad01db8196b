"""The starting parameters: the frozen model from INITIAL_CHECKPOINT_PATH, the prompt from its initializer.

Checkpoint arrays are read straight into their shardings, so no host holds a
whole large model. Whatever the checkpoint lacks (the prompt) is initialised
by a jitted init that returns only those leaves; XLA prunes the rest of the
init, so the frozen weights are never materialised twice.
"""

from typing import Any, Dict, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning import checkpoints
from prompt_tuning.errors import UserError
from prompt_tuning.runtime.model import EncoderDecoderModel

Params = Any


class InitialCheckpointError(UserError, ValueError):
  """INITIAL_CHECKPOINT_PATH cannot serve the configured model."""


def _flat(tree: Params) -> Dict[str, Any]:
  return flax.traverse_util.flatten_dict(tree, sep='/')


def _unflat(flat: Dict[str, Any]) -> Params:
  return flax.traverse_util.unflatten_dict(flat, sep='/')


def initial_params(model: EncoderDecoderModel, input_shapes: Dict[str, tuple], shardings: Params,
                   labels: Params, initial_checkpoint_path: Optional[str], frozen_dtype: Any,
                   seed: int) -> Params:
  """The full parameter tree, every leaf placed by `shardings`.

  Args:
    model: the model to start.
    input_shapes: model feature shapes, for initialisation.
    shardings: a NamedSharding per parameter.
    labels: 'trainable'/'frozen' per parameter.
    initial_checkpoint_path: a T5X or Hugging Face checkpoint of the bare
      model; None initialises everything at random (tests, the demo's own
      pre-training).
    frozen_dtype: dtype of frozen parameters (bfloat16 saves memory on
      accelerators); trainable ones stay float32.
    seed: for the initializers.
  """
  flat_shardings, flat_labels = _flat(shardings), _flat(labels)
  loaded: Dict[str, Any] = {}
  if initial_checkpoint_path:
    config = model.module.config
    bare_paths = set(checkpoints.model_shapes(config))
    any_trainable = any(flat_labels[p] == 'trainable' for p in bare_paths)
    read_dtype = jnp.float32 if any_trainable else frozen_dtype
    try:
      loaded = _flat(checkpoints.load_t5(
          initial_checkpoint_path, config=config, dtype=read_dtype,
          shardings=_unflat({p: flat_shardings[p] for p in bare_paths})))
    except checkpoints.CheckpointError as e:
      raise InitialCheckpointError(f'INITIAL_CHECKPOINT_PATH: {e}') from None

  missing = sorted(set(flat_shardings) - set(loaded))
  if missing:

    def init_missing(rng):
      params = _flat(nn.unbox(model.init_params(rng, input_shapes)))
      return {p: params[p] for p in missing}

    initialised = jax.jit(init_missing, out_shardings={p: flat_shardings[p] for p in missing})(
        jax.random.key(seed))
    loaded.update(initialised)

  cast = {p: (x.astype(frozen_dtype) if flat_labels[p] == 'frozen' else x.astype(jnp.float32))
          for p, x in loaded.items()}
  return _unflat(cast)
