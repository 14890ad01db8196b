"""One run per MODEL_DIR: a lock file, created atomically, that names the run holding it.

The lock is `MODEL_DIR/.prompt_tuning.lock`, written with a conditional
("only if absent") tensorstore write, which is atomic on local disks and on
`gs://` alike (GCS's if-generation-match). It records the holder's host, pid
and start time. A lock left by a dead process on this host is stale and taken
over; one held from another host cannot be checked from here, so its message
says which file to delete once that run is known to be dead. In a multi-host
run only process 0 takes the lock.
"""

import datetime
import json
import os
import socket
from typing import Any, Dict, Optional

import jax
import tensorstore as ts
from absl import logging

from prompt_tuning import storage
from prompt_tuning.checkpoints.errors import CheckpointError, one_line
from prompt_tuning.errors import UserError

LOCK_FILE = '.prompt_tuning.lock'
_ABSENT = b'\x02'  # tensorstore's generation of a key that does not exist


class RunLockError(UserError):
  """MODEL_DIR is held by another run, or cannot be written."""


def _alive_here(holder: Dict[str, Any]) -> bool:
  """Whether the holder is a live process; holders on other hosts are assumed alive."""
  if holder.get('host') != socket.gethostname():
    return True
  try:
    os.kill(int(holder['pid']), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, KeyError, ValueError, TypeError):
    return True
  return True


class RunLock:
  """Holds MODEL_DIR for this run while in its `with` block.

  Attributes:
    model_dir: the MODEL_DIR it guards.
  """

  def __init__(self, model_dir: str):
    self.model_dir = model_dir
    self._store: Optional[ts.KvStore] = None
    self._created_dir = False

  @property
  def path(self) -> str:
    return f'{self.model_dir.rstrip("/")}/{LOCK_FILE}'

  def __enter__(self) -> 'RunLock':
    if jax.process_index() == 0:
      self._acquire()
    return self

  def __exit__(self, *exc_info) -> None:
    if self._store is None:
      return
    try:
      self._store.write(LOCK_FILE, None).result()
      if self._created_dir:
        storage.remove_dir(self.model_dir)  # a run that wrote nothing leaves no trace
    except (OSError, CheckpointError) as e:  # tensorstore's OSError, or storage's
      logging.warning('Could not release %s: %s', self.path, one_line(e))

  def _acquire(self) -> None:
    local = not storage.is_remote(self.model_dir)
    if not local:
      storage.check_reachable(self.model_dir, 'MODEL_DIR')  # fails in bounded time, in one line
    try:
      if local and not storage.is_dir(self.model_dir):
        storage.make_dirs(self.model_dir)
        self._created_dir = True
      store = ts.KvStore.open(storage.kvstore_spec(self.model_dir)).result()
      me = json.dumps({'host': socket.gethostname(), 'pid': os.getpid(),
                       'started': datetime.datetime.now().isoformat(timespec='seconds')})
      for _ in range(2):  # a second try after taking over a stale lock
        current = store.read(LOCK_FILE).result()
        if current.state == 'value':
          try:
            holder = json.loads(current.value)
          except ValueError:  # a garbled lock file still means "held"
            holder = {}
          if _alive_here(holder):
            raise RunLockError(
                f'MODEL_DIR={self.model_dir} is in use by another run (pid {holder.get("pid")} on '
                f'{holder.get("host")}, started {holder.get("started")}); wait for it, use another '
                f'MODEL_DIR, or delete {self.path} if that run is dead.')
          logging.warning('Taking over the stale lock of dead process %s: %s', holder.get('pid'),
                          self.path)
          store.write(LOCK_FILE, None, if_equal=current.stamp.generation).result()
          continue
        written = store.write(LOCK_FILE, me.encode(), if_equal=_ABSENT).result()
        if written.generation:  # empty when another run created the lock first
          self._store = store
          return
      raise RunLockError(f'MODEL_DIR={self.model_dir} was locked by another run just now '
                         f'({self.path}).')
    except RunLockError:
      raise
    except (OSError, ValueError) as e:  # tensorstore reports I/O failures as ValueError
      if self._created_dir:
        storage.remove_dir(self.model_dir)
      raise RunLockError(f'Cannot write to MODEL_DIR={self.model_dir}: {one_line(e)}') from None
