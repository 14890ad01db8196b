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
