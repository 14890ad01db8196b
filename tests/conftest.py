"""Shared test fixtures: the reference files in ../shared/fixtures, and small helpers."""

import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
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
  run as child processes, find it there as a user's second run would.
  """
  cache = tmp_path_factory.mktemp('prompt_tuning_cache')
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv('PROMPT_TUNING_CACHE', str(cache))
    from prompt_tuning.demo import frozen_model  # pylint: disable=g-import-not-at-top
    assert frozen_model.frozen_model_checkpoint().startswith(str(cache))
    yield cache
