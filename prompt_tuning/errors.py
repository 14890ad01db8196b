"""The root of the project's user-facing errors: a wrong setting, file or input, told in one line.

Each layer raises its own subclass where it checks what the user gave it. The
command line reports these in one line that names the culprit; any other
exception is a bug and keeps its traceback.
"""

import contextlib
import errno
import os
from typing import Iterator, Optional

# Faults of the user's storage, by errno and by the words libraries that wrap them use.
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)
_STORAGE_WORDS = tuple(os.strerror(code) for code in _STORAGE_ERRNOS)


class UserError(Exception):
  """A configuration, flag, file or input is wrong; the message is one line that names it."""


class Preempted(Exception):
  """Training stopped early on SIGTERM, after saving a checkpoint; rerunning resumes it."""

  exit_code = 143  # 128 + SIGTERM: the job did not finish, so schedulers may restart it


class StorageError(UserError):
  """Where outputs go is full, read-only or forbidden."""


def storage_problem(error: BaseException) -> Optional[str]:
  """'No space left on device' and the like when `error` comes from the user's storage, else None.

  Looks through the chain of causes: TensorFlow and tensorstore report such
  faults in their own exception types, with the system's words.
  """
  while error is not None:
    if isinstance(error, OSError) and error.errno in _STORAGE_ERRNOS:
      return os.strerror(error.errno)
    for words in _STORAGE_WORDS:
      if words.lower() in str(error).lower():
        return words
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def storage_faults_reported(where: str) -> Iterator[None]:
  """Turns a storage fault inside the block into a StorageError naming `where` (e.g. MODEL_DIR=...)."""
  try:
    yield
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # any library's wrapper of the fault
    problem = storage_problem(e)
    if problem is None:
      raise
    raise StorageError(f'Cannot write to {where}: {problem}; what was saved before is '
                       'intact.') from e
