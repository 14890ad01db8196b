"""Unreachable `gs://` and hub paths fail fast, in one line that says how to use a local copy.

Every server here is on 127.0.0.1: a closed port (connection refused), a
port that accepts connections and never answers, a tiny HTTP server that
answers with one status code, and fake-gcs-server for real reads
(../shared/testing/gcs_emulator; skipped where it is not installed).
"""

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import flax.traverse_util
import numpy as np
import pytest

from prompt_tuning import checkpoints
from prompt_tuning import storage
from prompt_tuning.checkpoints import loader, numpy_prompts, t5x
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.errors import UserError
from prompt_tuning.models import t5
from test_storage import emulated_bucket  # pylint: disable=unused-import  # a fixture

TIMEOUT_S = 3  # PROMPT_TUNING_REMOTE_TIMEOUT in these tests
SLACK_S = 3  # for the process's own work around the bounded wait
VOCAB = 'seqio.SentencePieceVocabulary.sentencepiece_model_file'
# The model of the fixture t5x_t5_1_1_tiny, as its README states.
TINY_CONFIG = t5.T5Config(vocab_size=32128, emb_dim=4, num_heads=2, head_dim=2, mlp_dim=8,
                          num_encoder_layers=2, num_decoder_layers=2,
                          relative_attention_num_buckets=4, relative_attention_max_distance=8)
_PROXIES = ('http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY')


@contextlib.contextmanager
def closed_port():
  """A loopback port that nobody listens on: connections are refused."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  yield port


@contextlib.contextmanager
def silent_port():
  """A loopback port that accepts connections (the kernel's backlog) and never answers."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    s.listen(64)
    yield s.getsockname()[1]


@contextlib.contextmanager
def answering(status: int):
  """A loopback HTTP server that answers every request with `status` and an empty JSON body."""

  class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):  # pylint: disable=invalid-name
      self.send_response(status)
      self.send_header('Content-Length', '2')
      self.end_headers()
      self.wfile.write(b'{}')

    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield server.server_address[1]
  finally:
    server.shutdown()
    server.server_close()


PORTS = {'refused': closed_port, 'silent': silent_port}


@pytest.fixture
def gcs_at(monkeypatch):
  """Points tensorstore's GCS client at 127.0.0.1:<port>, without credentials lookups."""
  for name in _PROXIES:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv('NO_PROXY', '127.0.0.1,localhost')
  monkeypatch.setenv('GOOGLE_AUTH_TOKEN_FOR_TESTING', 'fake-token')
  monkeypatch.setenv('NO_GCE_CHECK', 'true')
  monkeypatch.setenv(storage.TIMEOUT_ENV, str(TIMEOUT_S))
  return lambda port: monkeypatch.setenv('TENSORSTORE_GCS_HTTP_URL', f'http://127.0.0.1:{port}')


def failure(call):
  """(the message of the UnreachableError that `call()` raised, seconds it took).

  The call runs in a thread, so that one that hangs fails the test instead of
  hanging it.
  """
  outcome = {}

  def run():
    started = time.monotonic()
    try:
      call()
    except Exception as e:  # pylint: disable=broad-except
      outcome['error'] = e
    outcome['elapsed'] = time.monotonic() - started

  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  thread.join(3 * TIMEOUT_S + SLACK_S)
  if thread.is_alive():
    pytest.fail(f'still waiting after {3 * TIMEOUT_S + SLACK_S} s: the read is not bounded')
  assert isinstance(outcome.get('error'), storage.UnreachableError), outcome
  return str(outcome['error']), outcome['elapsed']


def assert_one_line_pointing_at_local_copy(message: str, path: str, setting: str = '') -> None:
  assert '\n' not in message
  assert path in message
  assert 'local copy' in message and f'--gin.{setting}' in message


# name -> (call on an unreachable bucket, the path its message names, its setting);
# load_t5 first asks storage.exists, as the command line does.
READERS = {
    'read_bytes': (lambda: storage.read_bytes('gs://t5-data/prompts/rte.npy'),
                   'gs://t5-data/prompts/rte.npy', ''),
    'native_t5x': (lambda: t5x.T5XCheckpoint('gs://t5-data/t5x/checkpoint_100'),
                   'gs://t5-data/t5x/checkpoint_100/checkpoint', 'INITIAL_CHECKPOINT_PATH='),
    'orbax_t5x': (lambda: t5x.OrbaxT5XCheckpoint('gs://t5-data/t5x/checkpoint_100'),
                  'gs://t5-data/t5x/checkpoint_100/_METADATA', 'INITIAL_CHECKPOINT_PATH='),
    'read_prompt': (lambda: numpy_prompts.read_prompt('gs://t5-data/prompts/rte.npy'),
                    'gs://t5-data/prompts/rte.npy', ''),
    'load_t5': (lambda: checkpoints.load_t5('gs://t5-data/t5x/checkpoint_100', 'small'),
                'gs://t5-data/t5x/checkpoint_100/checkpoint', ''),
    'check_reachable': (lambda: storage.check_reachable('gs://t5-data/vocabs/spm.model', VOCAB),
                        'gs://t5-data/vocabs/spm.model', VOCAB + '='),
    'is_dir': (lambda: storage.is_dir('gs://t5-data/run/checkpoint_100', 'CHECKPOINT_PATH'),
               'gs://t5-data/run/checkpoint_100', 'CHECKPOINT_PATH='),
}


@pytest.mark.parametrize('reader', sorted(READERS))
def test_a_refused_connection_fails_at_once_with_the_reason(gcs_at, reader):
  call, path, setting = READERS[reader]
  with closed_port() as port:
    gcs_at(port)
    message, elapsed = failure(call)
  assert elapsed < TIMEOUT_S  # bounded retries, not a wait for the deadline
  assert message.startswith(f'Cannot reach {path}: gave up after ')
  assert 'Could not connect' in message
  assert_one_line_pointing_at_local_copy(message, path, setting)


@pytest.mark.parametrize('reader', ['read_bytes', 'native_t5x', 'check_reachable'])
def test_a_server_that_never_answers_fails_within_the_timeout(gcs_at, reader):
  call, path, setting = READERS[reader]
  with silent_port() as port:
    gcs_at(port)
    message, elapsed = failure(call)
  assert TIMEOUT_S - 0.5 < elapsed < TIMEOUT_S + SLACK_S
  assert message.startswith(f'Cannot reach {path}: no answer within {TIMEOUT_S} s')
  assert storage.TIMEOUT_ENV in message
  assert_one_line_pointing_at_local_copy(message, path, setting)


def test_refused_access_is_unreachable_too_and_says_so(gcs_at):
  with answering(403) as port:
    gcs_at(port)
    message, elapsed = failure(lambda: storage.read_bytes('gs://t5-data/prompts/rte.npy'))
  assert elapsed < TIMEOUT_S
  assert message.startswith('Cannot read gs://t5-data/prompts/rte.npy: access denied (')
  assert "http_response_code='403'" in message
  assert_one_line_pointing_at_local_copy(message, 'gs://t5-data/prompts/rte.npy')


def test_a_missing_file_on_a_server_that_answered_is_not_found_not_unreachable(gcs_at):
  with answering(404) as port:
    gcs_at(port)
    with pytest.raises(CheckpointError) as error:
      storage.read_bytes('gs://t5-data/prompts/rte.npy')
    assert not isinstance(error.value, storage.UnreachableError)
    assert str(error.value) == 'File not found: gs://t5-data/prompts/rte.npy'
    assert not storage.exists('gs://t5-data/prompts/rte.npy')
    storage.check_reachable('gs://t5-data/vocabs/spm.model', VOCAB)  # an answer: reachable
    with pytest.raises(CheckpointError, match=r'^No checkpoint at gs://t5-data/t5x/ckpt: expected'):
      loader.open_checkpoint('gs://t5-data/t5x/ckpt')


def test_local_paths_are_not_probed(gcs_at, tmp_path):
  with closed_port() as port:
    gcs_at(port)
    storage.check_reachable(str(tmp_path / 'missing.model'), VOCAB)
    with pytest.raises(CheckpointError, match='^File not found: '):
      storage.read_bytes(str(tmp_path / 'missing.npy'))


@pytest.mark.parametrize('value', ['soon', '0', '-5'])
def test_a_timeout_that_is_not_a_positive_number_is_named(monkeypatch, value):
  monkeypatch.setenv(storage.TIMEOUT_ENV, value)
  with pytest.raises(UserError, match=f"^{storage.TIMEOUT_ENV}='{value}' is not a number of "):
    storage.read_bytes('gs://t5-data/prompts/rte.npy')


# The hub client reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when imported, so each
# case runs in its own interpreter, as a user's run would.
_OPEN_IN_CHILD = textwrap.dedent('''
    import json, sys, time
    from prompt_tuning.checkpoints import loader
    started = time.monotonic()
    try:
      outcome = {'opened': type(loader.open_checkpoint(sys.argv[1])).__name__}
    except Exception as e:
      outcome = {'error': type(e).__name__, 'message': str(e)}
    outcome['elapsed'] = time.monotonic() - started
    print(json.dumps(outcome))
''')
HUB_ID = 'google/t5-small-lm-adapt'


def open_hub_id(hf_home, port, **env):
  """What `open_checkpoint(HUB_ID)` did in a fresh interpreter with the hub at 127.0.0.1:port."""
  child_env = {k: v for k, v in os.environ.items() if k not in _PROXIES}
  child_env.update(HF_ENDPOINT=f'http://127.0.0.1:{port}', HF_HOME=str(hf_home),
                   NO_PROXY='127.0.0.1,localhost', **{storage.TIMEOUT_ENV: str(TIMEOUT_S)}, **env)
  child = subprocess.run([sys.executable, '-c', _OPEN_IN_CHILD, HUB_ID], env=child_env,
                         capture_output=True, text=True, timeout=60, check=True)
  return json.loads(child.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('kind', sorted(PORTS))
def test_an_unreachable_hub_fails_within_the_timeout_naming_local_choices(tmp_path, kind):
  with PORTS[kind]() as port:
    outcome = open_hub_id(tmp_path, port)
  assert outcome.get('error') == 'UnreachableError', outcome
  message = outcome['message']
  # huggingface_hub's own best-effort registry look-up may take 3 s before ours.
  assert outcome['elapsed'] < TIMEOUT_S + 3 + SLACK_S
  assert message.startswith(f'Cannot reach the Hugging Face Hub at http://127.0.0.1:{port} for '
                            f'{HUB_ID}: ')
  expected = f'no answer within {TIMEOUT_S} s' if kind == 'silent' else 'Connection refused'
  assert expected in message
  assert '\n' not in message
  assert 'not in the local Hugging Face cache' in message
  assert '--gin.INITIAL_CHECKPOINT_PATH=' in message and 'HF_HUB_OFFLINE=1' in message


def test_a_hub_that_answers_no_such_model_is_not_called_unreachable(tmp_path):
  with answering(404) as port:
    outcome = open_hub_id(tmp_path, port)
  assert outcome.get('error') == 'CheckpointError', outcome
  assert outcome['message'].startswith(f'{HUB_ID} is not a local directory, and downloading it '
                                       'from the Hugging Face Hub failed: ')
  assert '404' in outcome['message'] and '\n' not in outcome['message']


def test_offline_mode_without_a_cached_copy_says_how_to_get_one(tmp_path):
  with closed_port() as port:
    outcome = open_hub_id(tmp_path, port, HF_HUB_OFFLINE='1')
  assert outcome.get('error') == 'UnreachableError', outcome
  assert outcome['elapsed'] < SLACK_S
  assert outcome['message'] == (
      f'{HUB_ID} is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set: download it '
      f'once where there is network (hf download {HUB_ID}), or point INITIAL_CHECKPOINT_PATH at a '
      'local model directory (config.json and model.safetensors), e.g. '
      '--gin.INITIAL_CHECKPOINT_PATH="\'/path/to/model_dir\'".')


def test_an_unreachable_hub_falls_back_to_the_cached_copy(tmp_path):
  safetensors_numpy = pytest.importorskip('safetensors.numpy')
  commit = 'a' * 40
  repo = tmp_path / 'hub' / f'models--{HUB_ID.replace("/", "--")}'
  snapshot = repo / 'snapshots' / commit
  snapshot.mkdir(parents=True)
  (repo / 'refs').mkdir()
  (repo / 'refs' / 'main').write_text(commit)
  (snapshot / 'config.json').write_text(json.dumps({'model_type': 't5'}))
  safetensors_numpy.save_file({'shared.weight': np.zeros((8, 4), np.float32)},
                              str(snapshot / 'model.safetensors'))
  with closed_port() as port:
    outcome = open_hub_id(tmp_path, port)
  assert outcome == {'opened': 'HFCheckpoint', 'elapsed': outcome['elapsed']}
  assert outcome['elapsed'] < SLACK_S


def test_a_reachable_bucket_still_reads_a_whole_checkpoint_under_the_bound(
    emulated_bucket, fixtures_dir, monkeypatch):
  monkeypatch.setenv(storage.TIMEOUT_ENV, str(TIMEOUT_S))
  local = fixtures_dir / 't5x_t5_1_1_tiny' / 'checkpoint_3'
  remote = f'{emulated_bucket}/t5x/checkpoint_3'
  for file in sorted(p for p in local.rglob('*') if p.is_file()):
    storage.write_bytes(f'{remote}/{file.relative_to(local)}', file.read_bytes())
  storage.check_reachable(remote, 'INITIAL_CHECKPOINT_PATH')
  from_bucket = flax.traverse_util.flatten_dict(checkpoints.load_t5(remote, config=TINY_CONFIG))
  from_disk = flax.traverse_util.flatten_dict(checkpoints.load_t5(str(local), config=TINY_CONFIG))
  assert from_bucket.keys() == from_disk.keys()
  for path, array in from_disk.items():
    np.testing.assert_array_equal(from_bucket[path], array, err_msg='/'.join(path))


def test_a_missing_file_on_a_reachable_bucket_is_not_found(emulated_bucket):
  with pytest.raises(CheckpointError) as error:
    storage.read_bytes(f'{emulated_bucket}/nothing/here.npy')
  assert not isinstance(error.value, storage.UnreachableError)
  assert str(error.value) == f'File not found: {emulated_bucket}/nothing/here.npy'

