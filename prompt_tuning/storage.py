"""The one path layer of the project: files and folders on local paths and `gs://` alike.

Whole files are read and written through tensorstore's kvstores; folders are
listed, made, renamed and removed through `etils.epath` (the layer orbax uses,
which reaches `gs://` through TensorFlow's filesystem). Knows nothing of
formats: callers hand it bytes or text. Writes are atomic (the `file` kvstore
writes a temporary file in the same folder and renames it; a GCS object
appears whole), so a reader never sees half a file.

Reads from `gs://` are bounded: they give up after PROMPT_TUNING_REMOTE_TIMEOUT
seconds (default 60), retries included, and raise an UnreachableError, one line
that names the path and how to point at a local copy instead. A missing file
on a bucket that answered is not "unreachable": it keeps its own message.
Writes keep tensorstore's patient retries (they happen mid-run, where giving
up costs more than waiting).
"""

import contextlib
import os
import re
import time
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Tuple

import tensorstore as ts
from etils import epath

from prompt_tuning.checkpoints.errors import CheckpointError, one_line
from prompt_tuning.errors import UserError

# Seconds a remote read may take, retries included, before it counts as unreachable.
TIMEOUT_ENV = 'PROMPT_TUNING_REMOTE_TIMEOUT'
DEFAULT_TIMEOUT_S = 60.0

_GCS = re.compile(r'gs://([^/]+)/?(.*)', re.DOTALL)
# Markers of tensorstore errors that mean "no usable answer from the server": curl's
# connection errors, the status codes of timeouts and outages, and retries exhausted.
_NETWORK_ERRORS = ('CURL error', 'UNAVAILABLE', 'DEADLINE_EXCEEDED', 'retry attempts failed')
_ACCESS_ERRORS = ('PERMISSION_DENIED', 'UNAUTHENTICATED', 'credentials')
# Read by nothing: probing a bucket root needs some key, and a missing one is an answer.
_PROBE_KEY = '.prompt_tuning_reachability_probe'


class UnreachableError(CheckpointError):
  """A remote path gave no answer in time, refused the connection, or refused access.

  Unlike a missing file (which a reachable server reports), it says nothing
  about the path itself: the message suggests pointing at a local copy.
  """


def remote_timeout() -> float:
  """Seconds a remote read may take, from PROMPT_TUNING_REMOTE_TIMEOUT (default 60)."""
  value = os.environ.get(TIMEOUT_ENV, '').strip()
  if not value:
    return DEFAULT_TIMEOUT_S
  try:
    seconds = float(value)
  except ValueError:
    seconds = -1.0
  if not seconds > 0:
    raise UserError(f'{TIMEOUT_ENV}={value!r} is not a number of seconds; expected a positive '
                    f'number such as {DEFAULT_TIMEOUT_S:g}.')
  return seconds


def is_remote(path: str) -> bool:
  """Whether `path` is a `gs://` path (read over the network, with a bound)."""
  return _GCS.fullmatch(path) is not None


def kvstore_spec(directory: str) -> Dict[str, Any]:
  """The tensorstore kvstore spec of a directory: `gcs` for `gs://bucket/dir`, else `file`."""
  match = _GCS.fullmatch(directory)
  if match:
    bucket, path = match.groups()
    return {'driver': 'gcs', 'bucket': bucket, 'path': path.rstrip('/') + '/' if path else ''}
  return {'driver': 'file', 'path': os.path.abspath(os.path.expanduser(directory)) + '/'}


def _locate(path: str) -> Tuple[Dict[str, Any], str]:
  """(kvstore spec, key) of a file: the bucket and its object name, or a directory and a name."""
  match = _GCS.fullmatch(path)
  if match:
    bucket, key = match.groups()
    return kvstore_spec(f'gs://{bucket}'), key.rstrip('/') or _PROBE_KEY
  directory, name = path.rstrip('/').rsplit('/', 1) if '/' in path else ('.', path)
  return kvstore_spec(directory or '/'), name


def _bounded_retries(timeout: float) -> Dict[str, Any]:
  """GCS retries that give up well within `timeout`: ~0.1 s doubling up to timeout/15, 6 times.

  At the default 60 s that is about 6 s of back-off, enough to ride out a
  passing error; tensorstore's own default retries for many minutes.
  """
  return {'gcs_request_retries': {'max_retries': 6, 'initial_delay': '0.1s',
                                  'max_delay': f'{max(timeout / 15, 0.1):.3f}s'}}


def unreachable_error(path: str, error: BaseException, what: Optional[str] = None,
                      elapsed: Optional[float] = None) -> Optional[UnreachableError]:
  """The UnreachableError for an `error` of a network or access kind on `gs://`; else None.

  Args:
    path: the file or directory that was being read.
    error: what tensorstore raised (a ValueError whose text carries the status).
    what: the setting that names `path` (a gin macro or binding, e.g.
      'INITIAL_CHECKPOINT_PATH'), for the hint of how to point at a local copy.
    elapsed: seconds spent before giving up, for the message.
  """
  if not is_remote(path):
    return None
  message = one_line(error)
  after = f' after {elapsed:.1f} s' if elapsed is not None else ''
  if any(marker in message for marker in _ACCESS_ERRORS):
    return UnreachableError(f'Cannot read {path}: access denied ({message}). '
                            f'{_local_copy_hint(what)}')
  if any(marker in message for marker in _NETWORK_ERRORS):
    return UnreachableError(f'Cannot reach {path}: gave up{after} ({message}). '
                            f'{_local_copy_hint(what)}')
  return None


def _timed_out(path: str, timeout: float, what: Optional[str]) -> UnreachableError:
  return UnreachableError(f'Cannot reach {path}: no answer within {timeout:g} s (set {TIMEOUT_ENV} '
                          f'to wait longer). {_local_copy_hint(what)}')


def _local_copy_hint(what: Optional[str]) -> str:
  example = what or 'INITIAL_CHECKPOINT_PATH'
  setting = what or 'the setting that names it'
  return (f'Without network or Google Cloud credentials, point {setting} at a local copy, e.g. '
          f'--gin.{example}="\'/path/to/local/copy\'".')


def _read(path: str, what: Optional[str]) -> Any:
  """tensorstore's ReadResult of the file `path`; bounded in time when `path` is remote."""
  spec, key = _locate(path)
  timeout, deadline = None, None
  if is_remote(path):
    timeout = remote_timeout()
    deadline = time.time() + timeout  # tensorstore's deadlines are in seconds since the epoch
    spec = {**spec, 'context': _bounded_retries(timeout)}
  started = time.monotonic()
  future = None
  try:
    store = ts.KvStore.open(spec).result(deadline=deadline)
    future = store.read(key)
    return future.result(deadline=deadline)
  except TimeoutError:  # tensorstore's, once the deadline has passed
    if future is not None:
      future.cancel()
    raise _timed_out(path, timeout, what) from None
  except Exception as e:  # tensorstore raises ValueError or OSError by failure kind
    raise (unreachable_error(path, e, what, time.monotonic() - started) or
           CheckpointError(f'Cannot read {path}: {one_line(e)}')) from None


def exists(path: str, what: Optional[str] = None) -> bool:
  """Whether the file `path` exists (directories do not count).

  Raises:
    UnreachableError: `path` is on `gs://` and the bucket gave no answer
      within PROMPT_TUNING_REMOTE_TIMEOUT seconds; `what` names the setting
      to point at a local copy instead.
  """
  return _read(path, what).state == 'value'


def read_bytes(path: str, what: Optional[str] = None) -> bytes:
  """The whole content of the file `path`; CheckpointError when it is missing or unreadable.

  An UnreachableError (a CheckpointError) when `path` is on `gs://` and the
  bucket gave no answer within PROMPT_TUNING_REMOTE_TIMEOUT seconds.
  """
  result = _read(path, what)
  if result.state != 'value':
    raise CheckpointError(f'File not found: {path}')
  return result.value


def check_reachable(path: str, what: Optional[str]) -> None:
  """Raises an UnreachableError naming `what` when the `gs://` path gives no answer in time.

  For paths that other libraries read later (e.g. TensorFlow reads the
  VOCABULARY's sentencepiece file), so that a run fails at start-up, in one
  line, within PROMPT_TUNING_REMOTE_TIMEOUT seconds, instead of hanging
  there. Only reachability is checked: a file or directory that does not
  exist on a bucket that answered passes, and local paths are not looked at.

  Args:
    path: a local path, or a `gs://` file or directory.
    what: the setting that names it, as a `--gin.` flag would spell it
      (e.g. 'seqio.SentencePieceVocabulary.sentencepiece_model_file'); None
      leaves it out of the hint.
  """
  if is_remote(path):
    _read(path, what)


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to the file `path` atomically, creating missing directories."""
  started = time.monotonic()
  try:
    spec, key = _locate(path)
    store = ts.KvStore.open(spec).result()
    store.write(key, data).result()
  except Exception as e:  # tensorstore raises ValueError or OSError by failure kind
    raise (unreachable_error(path, e, elapsed=time.monotonic() - started) or
           CheckpointError(f'Cannot write {path}: {one_line(e)}')) from None


def write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to the file `path` atomically, creating missing directories."""
  write_bytes(path, text.encode('utf-8'))


def read_text(path: str, what: Optional[str] = None) -> str:
  """The whole content of the UTF-8 file `path`; errors as read_bytes, or not UTF-8."""
  data = read_bytes(path, what)
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise CheckpointError(f'{path} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset '
                          f'{e.start}.') from None


def append_text(path: str, text: str) -> None:
  """Adds `text` at the end of the file `path` (made if missing) by rewriting it whole.

  `gs://` objects cannot grow in place; for the small logs this serves, a
  rewrite keeps the file whole at every moment.
  """
  result = _read(path, None)
  write_bytes(path, (result.value if result.state == 'value' else b'') + text.encode('utf-8'))


@contextlib.contextmanager
def _reported(action: str, path: str) -> Iterator[None]:
  """Turns a failure of epath (OSError, or TensorFlow's errors on `gs://`) into one line."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  # each filesystem has its own types
    raise CheckpointError(f'Cannot {action} {path}: {one_line(e)}') from e


def is_dir(path: str, what: Optional[str] = None) -> bool:
  """Whether the folder `path` exists (on `gs://`: whether anything lies under it).

  On `gs://` an unreachable bucket fails as in `exists` (bounded, naming
  `what`), and TensorFlow may answer from its cache for a few seconds
  (GCS_STAT_CACHE_MAX_AGE); list_dir of the parent is never cached.
  """
  check_reachable(path, what)
  with _reported('read', path):
    return epath.Path(path).is_dir()


def is_file(path: str) -> bool:
  """Whether the file `path` exists, from its metadata (nothing is read)."""
  with _reported('read', path):
    return epath.Path(path).is_file()


@contextlib.contextmanager
def open_binary(path: str) -> Iterator[BinaryIO]:
  """The file `path` opened for streamed reading, for files too large to read whole."""
  with _reported('open', path):
    stream = epath.Path(path).open('rb')
  with stream:
    yield stream


def list_dir(path: str) -> List[str]:
  """The names of what lies in the folder `path`, sorted; [] when it does not exist."""
  folder = epath.Path(path)
  with _reported('list', path):
    return sorted(child.name for child in folder.iterdir()) if folder.is_dir() else []


def glob(directory: str, pattern: str) -> List[str]:
  """The paths under `directory` that match `pattern` (one level per `/`; no `**`), sorted."""
  with _reported('list', directory):
    return sorted(str(match) for match in epath.Path(directory).glob(pattern))


def make_dirs(path: str) -> None:
  """Makes the folder `path` and its missing parents."""
  with _reported('make the folder', path):
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def remove(path: str) -> None:
  """Removes the file `path`; nothing happens when it is missing."""
  with _reported('remove', path):
    epath.Path(path).unlink(missing_ok=True)


def remove_dir(path: str) -> None:
  """Removes the folder `path` when it is empty (on `gs://`: its marker, if any)."""
  folder = epath.Path(path)
  with _reported('remove', path):
    if folder.is_dir() and not any(folder.iterdir()):
      folder.rmdir()


def rename(source: str, destination: str) -> None:
  """Moves the file or folder `source` to `destination` (whose parent must exist)."""
  with _reported(f'move {destination} from', source):
    epath.Path(source).rename(destination)


def modified_time(path: str) -> float:
  """Seconds since the epoch at which the file `path` was last written."""
  with _reported('read', path):
    return epath.Path(path).stat().mtime
