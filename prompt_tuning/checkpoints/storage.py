"""Whole-file reads and writes on local paths and `gs://` buckets, through tensorstore's kvstores.

Knows nothing of formats: callers hand it bytes. Writes are atomic (the
`file` kvstore writes a temporary file and renames it; a GCS object appears
whole), so a reader never sees half a file.
"""

import os
import re
from typing import Any, Dict, Tuple

import tensorstore as ts

from prompt_tuning.checkpoints.errors import CheckpointError, one_line

_GCS = re.compile(r'gs://([^/]+)/?(.*)', re.DOTALL)


def kvstore_spec(directory: str) -> Dict[str, Any]:
  """The tensorstore kvstore spec of a directory: `gcs` for `gs://bucket/dir`, else `file`."""
  match = _GCS.fullmatch(directory)
  if match:
    bucket, path = match.groups()
    return {'driver': 'gcs', 'bucket': bucket, 'path': path.rstrip('/') + '/' if path else ''}
  return {'driver': 'file', 'path': os.path.abspath(os.path.expanduser(directory)) + '/'}


def _split(path: str) -> Tuple[Any, str]:
  directory, name = path.rstrip('/').rsplit('/', 1) if '/' in path else ('.', path)
  return ts.KvStore.open(kvstore_spec(directory or '/')).result(), name


def exists(path: str) -> bool:
  """Whether the file `path` exists (directories do not count)."""
  store, name = _split(path)
  return store.read(name).result().state == 'value'


def read_bytes(path: str) -> bytes:
  """The whole content of the file `path`; CheckpointError when it is missing or unreadable."""
  try:
    store, name = _split(path)
    result = store.read(name).result()
  except Exception as e:  # tensorstore raises ValueError or OSError by failure kind
    raise CheckpointError(f'Cannot read {path}: {one_line(e)}') from None
  if result.state != 'value':
    raise CheckpointError(f'File not found: {path}')
  return result.value


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to the file `path` atomically, creating missing directories."""
  try:
    store, name = _split(path)
    store.write(name, data).result()
  except Exception as e:  # tensorstore raises ValueError or OSError by failure kind
    raise CheckpointError(f'Cannot write {path}: {one_line(e)}') from None
