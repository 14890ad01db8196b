"""Prompt-only checkpoints in MODEL_DIR, through an orbax `CheckpointManager`, plus `.npy` exports.

Each `checkpoint_<step>` holds what T5X's orbax layout calls `state`, with
`target` = the trainable parameters only and `state` = their optimizer state,
the step and the RNG, and a `run` item (JSON) with the input position, the
run's settings, the shape and a checksum of every saved array. The frozen
model is never written: a Base prompt checkpoint is kilobytes, not gigabytes.
Orbax writes to a temporary folder and renames it on commit, so an
interrupted save leaves the previous checkpoint usable; a checkpoint that
reads back wrong (its checksums differ) or not at all is skipped on resume.

Alongside, fully replicated trainable parameters (the prompt) are exported as
`numpy_checkpoints/checkpoint_<step>/<param path with dots>.npy`, the naming
of T5X prompt tuning's released prompts; each prompt of a trained bank also as
`<its row name>.npy` (a task's name, or `member_<k>`). An export is redone on
resume when a kill left it missing or different from its checkpoint.
"""

import dataclasses
import datetime
import io
import json
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from prompt_tuning import checkpoints
from prompt_tuning import storage
from prompt_tuning.checkpoints.errors import CheckpointError, one_line
from prompt_tuning.errors import UserError
from prompt_tuning.models import prompted
from prompt_tuning.runtime.trainer import TrainState

Params = Any
Settings = Mapping[str, Any]

NUMPY_DIR = 'numpy_checkpoints'
CORRUPT_DIR = 'corrupt_checkpoints'  # where checkpoints that failed verification are set aside


class CorruptCheckpointError(CheckpointError):
  """A checkpoint cannot be read back, or what it reads back fails its checksums."""


class ResumeError(UserError):
  """MODEL_DIR's checkpoints were made with settings that this run cannot continue."""


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  """How often to save, and how many checkpoints to keep (None keeps all)."""
  period: int = 1000
  keep: Optional[int] = None


@dataclasses.dataclass
class Restored:
  """A verified checkpoint: the train state, the input position, and the run's settings."""
  state: TrainState
  position: int
  settings: Dict[str, Any]


def _to_saved(state: TrainState) -> Params:
  return {'target': state.trainable,
          'state': {'step': state.step, 'opt_state': state.opt_state, 'rng': state.rng}}


def _leaf_checksum(x: jax.Array) -> jax.Array:
  """A uint32 digest of an array's bits and their positions; exact under any sharding.

  Each element's bits are mixed with its index by a bijection, and the mixes
  are summed modulo 2**32, so changing any one element changes the digest and
  the order of a sharded reduction does not matter.
  """
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  uint = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
  bits = jax.lax.bitcast_convert_type(x, uint).reshape(-1).astype(jnp.uint32)
  index = jnp.arange(bits.size, dtype=jnp.uint32)
  h = bits * jnp.uint32(0x9E3779B1) + index * jnp.uint32(0x85EBCA77) + jnp.uint32(1)
  h = (h ^ (h >> 15)) * jnp.uint32(0x2C1B3C6D)
  h = h ^ (h >> 12)
  return jnp.sum(h, dtype=jnp.uint32)


_checksums = jax.jit(lambda tree: jax.tree_util.tree_map(_leaf_checksum, tree))


def _by_path(tree: Params) -> Dict[str, Any]:
  return {jax.tree_util.keystr(path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def checksums(tree: Params) -> Dict[str, int]:
  """Path -> uint32 digest of every array in `tree` (global arrays of any sharding)."""
  return {path: int(np.asarray(digest.addressable_data(0)))
          for path, digest in _by_path(_checksums(tree)).items()}


def shapes(tree: Params) -> Dict[str, List[int]]:
  """Path -> shape of every array in `tree`."""
  return {path: list(np.shape(x)) for path, x in _by_path(tree).items()}


def _record_digest(record: Mapping[str, Any]) -> int:
  """CRC-32 of a checkpoint's `run` record (position, settings, shapes, array checksums)."""
  return zlib.crc32(json.dumps(record, sort_keys=True).encode())


def _configured_hyperparams(restored: Params, configured: Params, step: int) -> Params:
  """`restored` optimizer state with the hyperparameters (learning rate) configured now.

  `optax.inject_hyperparams` keeps a constant learning rate in the state; a
  resumed run that sets another LEARNING_RATE must train with it, and says so.
  """

  def pick(path, saved, current):
    if not any(getattr(key, 'name', None) == 'hyperparams' for key in path):
      return saved
    if not np.array_equal(np.asarray(saved), np.asarray(current)):
      logging.warning('The optimizer\'s %s changed from %s to %s since checkpoint_%d: training on '
                      'with the new value.', jax.tree_util.keystr(path[-1:]).strip("[]'"),
                      np.asarray(saved), np.asarray(current), step)
    return current

  return jax.tree_util.tree_map_with_path(pick, restored, configured)


def changed_settings(saved: Settings, current: Settings) -> Dict[str, Tuple[Any, Any]]:
  """name -> (saved value, current value) of every setting that differs (or is on one side only)."""
  return {name: (saved.get(name), current.get(name))
          for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)}


class Checkpointer:
  """Saves, verifies and restores the training state of one run in MODEL_DIR."""

  def __init__(self, model_dir: str, config: CheckpointConfig = CheckpointConfig(),
               bank_names: Sequence[str] = ()):
    """`bank_names` name the rows of a trained prompt bank, each also exported on its own."""
    self.model_dir = model_dir
    self.period = config.period
    self.bank_names = tuple(bank_names)
    self.corrupt: Dict[int, str] = {}  # step -> why it was skipped
    # The period is applied here, so that orbax does not also save the first step it sees.
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=1, max_to_keep=config.keep, step_prefix='checkpoint', create=False,
        enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(epath.Path(model_dir), options=options,
                                          item_handlers={'state': ocp.StandardCheckpointHandler(),
                                                         'run': ocp.JsonCheckpointHandler()})

  def checkpoint_dir(self, step: int) -> str:
    return f'{self.model_dir.rstrip("/")}/checkpoint_{step}'

  def all_steps(self) -> Sequence[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, state: TrainState, position: int, settings: Settings = None,
           force: bool = False) -> bool:
    """Saves at the configured period (or when forced), then exports; returns whether it saved.

    `settings` are the run's settings that a resume must match.
    """
    step = int(state.step)
    if (step % self.period and not force) or step in self._manager.all_steps():
      return False
    saved = _to_saved(state)
    record = {'position': int(position), 'settings': dict(settings or {}),
              'shapes': shapes(saved), 'checksums': checksums(saved)}
    record['digest'] = _record_digest(record)
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(saved),
                                                     run=ocp.args.JsonSave(record)), force=True)
    self._manager.wait_until_finished()
    export_numpy(state.trainable, self.numpy_dir(step), self.bank_names)
    return True

  def numpy_dir(self, step: int) -> str:
    return f'{self.model_dir.rstrip("/")}/{NUMPY_DIR}/checkpoint_{step}'

  def read_record(self, step: int) -> Dict[str, Any]:
    """The `run` item of checkpoint `step`; CorruptCheckpointError when it cannot be read."""
    try:
      record = self._manager.restore(step, args=ocp.args.Composite(run=ocp.args.JsonRestore()))['run']
      digest = record.pop('digest')
    except Exception as e:  # pylint: disable=broad-except  # a damaged file fails in many ways
      raise CorruptCheckpointError(f'{self.checkpoint_dir(step)}/run cannot be read: '
                                   f'{one_line(e)}') from None
    if digest != _record_digest(record):
      raise CorruptCheckpointError(f'{self.checkpoint_dir(step)}/run fails its checksum (input '
                                   f'position {record.get("position")!r}): the file was changed '
                                   'or damaged after the save.')
    return record

  def restore(self, like: TrainState, step: Optional[int] = None) -> Restored:
    """The verified state saved at `step` (default: the latest), laid out like `like`.

    Raises CorruptCheckpointError (naming the file and the failed check) when
    it cannot be read or fails its checksums, and CheckpointError when its
    arrays do not have the shapes of `like`.
    """
    step, record, saved = self._verified(_to_saved(like), step)
    state = TrainState(step=saved['state']['step'],
                       trainable=saved['target'],
                       opt_state=_configured_hyperparams(saved['state']['opt_state'],
                                                         like.opt_state, step),
                       rng=saved['state']['rng'])
    return Restored(state, int(record['position']), dict(record['settings']))

  def restore_trainable(self, like: Params, step: Optional[int] = None) -> Params:
    """The verified trainable parameters saved at `step` (default: the latest), laid out like `like`.

    For evaluation, which has no optimizer: the rest of the state is read as
    it was saved, replicated, and dropped; only the parameters are verified.
    """
    step = self._step_or_latest(step)
    try:
      saved_state = self._manager.item_metadata(step)['state']['state']
    except Exception as e:  # pylint: disable=broad-except  # a damaged file fails in many ways
      raise CorruptCheckpointError(f'{self.checkpoint_dir(step)}/state cannot be read: '
                                   f'{one_line(e)}') from None
    mesh = jax.tree_util.tree_leaves(like)[0].sharding.mesh
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    as_saved = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=replicated), saved_state)
    _, _, saved = self._verified({'target': like, 'state': as_saved}, step, verify="['target']")
    return saved['target']

  def _step_or_latest(self, step: Optional[int]) -> int:
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointError(f'{self.model_dir} holds no checkpoint.')
    return step

  def _verified(self, target: Params, step: Optional[int], verify: str = ''
                ) -> Tuple[int, Dict[str, Any], Params]:
    """(step, run record, saved tree) of checkpoint `step`, read in the layout of `target`.

    The shapes and checksums of the arrays whose paths start with `verify` are
    checked against the run record. Raises as `restore` does.
    """
    step = self._step_or_latest(step)
    record = self.read_record(step)
    covered = lambda by_path: {p: v for p, v in by_path.items() if p.startswith(verify)}
    expected, recorded = covered(shapes(target)), covered(record['shapes'])
    if recorded != expected:
      changed = sorted(p for p in set(expected) | set(recorded)
                       if recorded.get(p) != expected.get(p))
      raise CheckpointError(
          f'{self.checkpoint_dir(step)} holds {changed[0]} with shape '
          f'{recorded.get(changed[0])}, the model expects {expected.get(changed[0])}.')
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
    try:
      saved = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))['state']
    except Exception as e:  # pylint: disable=broad-except  # a damaged file fails in many ways
      raise CorruptCheckpointError(f'{self.checkpoint_dir(step)}/state cannot be read: '
                                   f'{one_line(e)}') from None
    bad = sorted(path for path, digest in covered(checksums(saved)).items()
                 if record['checksums'].get(path) != digest)
    if bad:
      raise CorruptCheckpointError(f'{self.checkpoint_dir(step)}/state fails its checksum for '
                                   f'{len(bad)} array(s), first {bad[0]}: the files were changed '
                                   'or damaged after the save.')
    return step, record, saved

  def restore_latest(self, like: TrainState, settings: Settings,
                     may_change: Sequence[str] = ()) -> Optional[Restored]:
    """The newest checkpoint that verifies, or None when MODEL_DIR holds none.

    Checkpoints that fail verification are skipped with a warning and listed
    in `self.corrupt` (see `set_aside_corrupt`). Raises ResumeError when the
    checkpoint's settings differ from `settings` in more than `may_change`,
    and CorruptCheckpointError when no checkpoint is left.
    """
    for step in reversed(self.all_steps()):
      try:
        record = self.read_record(step)
        changes = changed_settings(record['settings'], settings)
        refused = [f'{name} changed from {old!r} to {new!r}'
                   for name, (old, new) in changes.items() if name not in may_change]
        if refused:
          raise ResumeError(f'Cannot resume MODEL_DIR={self.model_dir} from checkpoint_{step}: '
                            f'{"; ".join(refused)}. Set them back, or use a new MODEL_DIR.')
        restored = self.restore(like, step)
      except CorruptCheckpointError as e:
        self.corrupt[step] = str(e)
        continue
      for damaged in self.corrupt.values():
        logging.warning('Skipping a damaged checkpoint: %s', damaged)
      return restored
    if self.corrupt:
      newest = max(self.corrupt)
      raise CorruptCheckpointError(
          f'No checkpoint in MODEL_DIR={self.model_dir} can be restored; newest: '
          f'{self.corrupt[newest]} Move the checkpoint_* folders away to start over.')
    return None

  def set_aside_corrupt(self) -> None:
    """Moves the checkpoints that failed verification to MODEL_DIR/corrupt_checkpoints/."""
    if not self.corrupt:
      return
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    aside = f'{self.model_dir.rstrip("/")}/{CORRUPT_DIR}'
    storage.make_dirs(aside)
    for step in sorted(self.corrupt):
      destination = f'{aside}/checkpoint_{step}-{stamp}'
      storage.rename(self.checkpoint_dir(step), destination)
      logging.warning('Moved the damaged checkpoint_%d to %s.', step, destination)
    self.corrupt.clear()
    self._manager.reload()

  def ensure_exported(self, state: TrainState) -> None:
    """Redoes the `.npy` export of `state`'s step when a kill left it missing or different.

    Also removes the lock files that a killed export leaves beside them. Call
    it only while holding MODEL_DIR (no other writer).
    """
    directory = self.numpy_dir(int(state.step))
    if not storage.is_remote(directory):  # tensorstore's file driver's stale write locks
      for stale in storage.glob(f'{self.model_dir.rstrip("/")}/{NUMPY_DIR}', '*/*.__lock'):
        storage.remove(stale)
    if jax.process_index() != 0:
      return
    for name, x in _exported(state.trainable, self.bank_names).items():
      file = f'{directory}/{name}'
      try:
        exported = np.load(io.BytesIO(storage.read_bytes(file)), allow_pickle=False)
        if np.array_equal(exported, x, equal_nan=False) and exported.dtype == x.dtype:
          continue
      except (CheckpointError, ValueError, EOFError):
        pass
      logging.warning('Redoing the export %s (missing or different from its checkpoint).', file)
      checkpoints.write_prompt(directory, x, file_name=name)

  def close(self) -> None:
    self._manager.close()


def _exported(trainable: Params, bank_names: Sequence[str] = ()) -> Dict[str, np.ndarray]:
  """The fully replicated trainable arrays by file name, as numpy (no gather needed).

  '<param path with dots>.npy' for each; with `bank_names`, also '<name>.npy' for each
  row of the prompt bank.
  """
  exported = {}
  for path, x in flax.traverse_util.flatten_dict(trainable, sep='/').items():
    if not x.is_fully_replicated:
      continue
    value = np.asarray(x.addressable_data(0))
    exported[checkpoints.prompt_file_name(path)] = value
    if bank_names and path == prompted.PROMPT_PATH:
      exported.update({f'{name}.npy': row for name, row in zip(bank_names, value)})
  return exported


def export_numpy(trainable: Params, directory: str, bank_names: Sequence[str] = ()) -> None:
  """Writes each fully replicated trainable array as `<directory>/<path with dots>.npy`.

  With `bank_names`, each row of the prompt bank also as `<directory>/<name>.npy`.
  Only process 0 writes; every process holds a whole replica, so no gather.
  Each file appears whole or not at all.
  """
  if jax.process_index() != 0:
    return
  for name, x in _exported(trainable, bank_names).items():
    checkpoints.write_prompt(directory, x, file_name=name)
