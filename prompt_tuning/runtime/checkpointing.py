"""Prompt-only checkpoints in MODEL_DIR, through an orbax `CheckpointManager`, plus `.npy` exports.

Each `checkpoint_<step>` holds what T5X's orbax layout calls `state`, with
`target` = the trainable parameters only and `state` = their optimizer state,
the step and the RNG, and a `dataset` item with the input position. The
frozen model is never written: a Base prompt checkpoint is kilobytes, not
gigabytes. Orbax writes to a temporary folder and renames it on commit, so an
interrupted save leaves the previous checkpoint usable.

Alongside, fully replicated trainable parameters (the prompt) are exported as
`numpy_checkpoints/checkpoint_<step>/<param path with dots>.npy`, the naming
of T5X prompt tuning's released prompts.
"""

import dataclasses
import os
from typing import Any, Optional, Tuple

import flax
import jax
import numpy as np
import orbax.checkpoint as ocp

from prompt_tuning import checkpoints
from prompt_tuning.runtime.trainer import TrainState

Params = Any


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """How often to save, and how many checkpoints to keep (None keeps all)."""
  period: int = 1000
  keep: Optional[int] = None


def prune(tree: Params) -> Params:
  """Drops the None leaves (frozen slots) of a parameter view."""
  flat = flax.traverse_util.flatten_dict(tree)
  return flax.traverse_util.unflatten_dict({k: v for k, v in flat.items() if v is not None})


def _unprune(pruned: Params, like: Params) -> Params:
  """Puts pruned leaves back into the full structure of `like` (None where `like` has None)."""
  flat = flax.traverse_util.flatten_dict(pruned)
  full = flax.traverse_util.flatten_dict(like)
  return flax.traverse_util.unflatten_dict(
      {k: (flat[k] if v is not None else None) for k, v in full.items()})


def _to_saved(state: TrainState, position: int):
  saved = {'target': prune(state.trainable),
           'state': {'step': state.step, 'opt_state': state.opt_state, 'rng': state.rng}}
  return saved, {'position': int(position)}


class Checkpointer:
  """Saves and restores the training state of one run in MODEL_DIR."""

  def __init__(self, model_dir: str, config: CheckpointConfig = CheckpointConfig()):
    self.model_dir = model_dir
    self.period = config.period
    # The period is applied here, so that orbax does not also save the first step it sees.
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=1, max_to_keep=config.keep, step_prefix='checkpoint', create=True,
        enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(os.path.abspath(model_dir), options=options,
                                          item_names=('state', 'dataset'))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, state: TrainState, position: int, force: bool = False) -> bool:
    """Saves at the configured period (or when forced); returns whether it saved."""
    step = int(state.step)
    if (step % self.period and not force) or step in self._manager.all_steps():
      return False
    saved, dataset = _to_saved(state, position)
    did_save = self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(saved),
                                      dataset=ocp.args.JsonSave(dataset)), force=force)
    if did_save:
      self._manager.wait_until_finished()
      export_numpy(state.trainable, os.path.join(self.model_dir, 'numpy_checkpoints',
                                                 f'checkpoint_{step}'))
    return did_save

  def restore(self, like: TrainState, step: Optional[int] = None) -> Tuple[TrainState, int]:
    """The state saved at `step` (default: the latest), laid out like `like`, and its input position."""
    step = self.latest_step() if step is None else step
    target, _ = _to_saved(like, 0)
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                      dataset=ocp.args.JsonRestore()))
    saved = restored['state']
    state = TrainState(step=saved['state']['step'],
                       trainable=_unprune(saved['target'], like.trainable),
                       opt_state=saved['state']['opt_state'], rng=saved['state']['rng'])
    return state, int(restored['dataset']['position'])

  def close(self) -> None:
    self._manager.close()


def export_numpy(trainable: Params, directory: str) -> None:
  """Writes each fully replicated trainable array as `<directory>/<path with dots>.npy`.

  Only process 0 writes; every process holds a whole replica, so no gather.
  Each file appears whole or not at all.
  """
  if jax.process_index() != 0:
    return
  for path, x in flax.traverse_util.flatten_dict(prune(trainable), sep='/').items():
    if x.is_fully_replicated:
      checkpoints.write_prompt(directory, np.asarray(x.addressable_data(0)), param_path=path)
