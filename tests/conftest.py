"""Shared test fixtures: the reference files in ../shared/fixtures, and small helpers."""

import atexit
import os
import pathlib
import shutil
import tempfile

import filelock
import gin
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# Every process of the run (pytest-xdist workers, and the CLI runs they start, which inherit the
# environment) shares one JAX compilation cache: the many runs of the same toy configurations
# compile each program once. Made by the first process to load this file, removed at its exit.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='prompt_tuning_jax_cache.')
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '-1'
  atexit.register(shutil.rmtree, os.environ['JAX_COMPILATION_CACHE_DIR'], ignore_errors=True)

# The suite runs on the CPU. The test extra installs libtpu (for the planner's TPU compiles),
# with which JAX would otherwise start the TPU runtime in every process. The README's commands
# run without this (tests/test_readme.py): the CLI keeps JAX on the CPU by itself there.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# Written by other tools (T5X, SentencePiece, the paper's release); never copied into the repo.
FIXTURES = pathlib.Path(os.environ.get('PROMPT_TUNING_FIXTURES', REPO_ROOT.parent / 'shared' / 'fixtures'))


@pytest.fixture(scope='session')
def fixtures_dir() -> pathlib.Path:
  """The shared reference fixtures; tests that need them skip, saying why, when absent."""
  if not FIXTURES.is_dir():
    pytest.skip(f'reference fixtures not found at {FIXTURES} (set PROMPT_TUNING_FIXTURES, or '
                'check out ../shared beside the repository)')
  return FIXTURES


@pytest.fixture(scope='session')
def demo_cache(tmp_path_factory) -> pathlib.Path:
  """An empty PROMPT_TUNING_CACHE, set for the session, in which the demo's frozen model is made.

  Made once: test_demo trains prompts on it in this process, and the README's demo commands,
  run as child processes, find it there as a user's second run would. The suite's
  pytest-xdist workers share it: the first to need it makes the model while the others wait.
  """
  session_temp = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    session_temp = session_temp.parent  # every worker's base folder lies in the run's
  cache = session_temp / 'prompt_tuning_cache'
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('PROMPT_TUNING_CACHE', str(cache))
    # The demo registers gin configurables on import; an earlier test may have locked gin.
    with gin.unlock_config():
      from prompt_tuning.demo import frozen_model  # pylint: disable=g-import-not-at-top
    with filelock.FileLock(f'{cache}.lock'):
      assert frozen_model.frozen_model_checkpoint().startswith(str(cache))
    yield cache


# The slowest files, slowest first: pytest-xdist hands files to workers in collection order, so
# these start first and the quick ones fill in at the end, when a long file last in line would
# leave the other worker idle. test_readme makes the demo's frozen model (a minute or two) while
# the other worker runs T5X; test_demo and test_gcs_end_to_end, which need it too, come later.
SLOWEST_FIRST = ('test_readme.py', 'test_t5x_integration.py', 'test_runtime_faults.py',
                 'test_plan.py', 'test_cli_errors.py', 'test_decoding.py',
                 'test_checkpoints_hf.py', 'test_t5.py', 'test_runtime_distributed.py')


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep order
