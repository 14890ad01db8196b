"""The SentencePiece vocabulary every task tokenizes with, and how to point it at another file.

T5's `cc_all.32000` model with 100 sentinels (`<extra_id_0>` is the last id) is the default. The
model file is looked up on first use, not at import, so that `set_vocabulary_path` or the
`PROMPT_TUNING_VOCAB` environment variable still take effect after the tasks are registered.
This module knows nothing about tasks or data sources.
"""

import os
from typing import Optional

import seqio

from prompt_tuning.data import errors

DEFAULT_VOCAB_PATH = 'gs://t5-data/vocabs/cc_all.32000/sentencepiece.model'
EXTRA_IDS = 100
VOCAB_ENV = 'PROMPT_TUNING_VOCAB'

_override: Optional[str] = None


def vocabulary_path() -> str:
  """The model file in use: `set_vocabulary_path`, else $PROMPT_TUNING_VOCAB, else T5's."""
  return _override or os.environ.get(VOCAB_ENV) or DEFAULT_VOCAB_PATH


class _LazyPathVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePiece vocabulary, reading `vocabulary_path()` when the model first loads.

  seqio loads the model in `_model_context` on first use; the file name is fixed there.
  """

  def __init__(self):
    super().__init__(DEFAULT_VOCAB_PATH, extra_ids=EXTRA_IDS)

  @property
  def loaded(self) -> bool:
    return self._model is not None

  def _model_context(self):
    if self._model is None:
      self._sentencepiece_model_file = vocabulary_path()
    return super()._model_context()

  @property
  def sentencepiece_model_file(self) -> str:
    return self._sentencepiece_model_file if self.loaded else vocabulary_path()


_VOCABULARY = _LazyPathVocabulary()


def get_vocabulary() -> seqio.SentencePieceVocabulary:
  """The vocabulary shared by all tasks (one object, so that mixtures accept them together)."""
  return _VOCABULARY


def set_vocabulary_path(path: Optional[str]) -> None:
  """Use `path` as the SentencePiece model (None: back to the env var or T5's default).

  Raises:
    DataError: the vocabulary was already loaded from another file; datasets built from it
      would silently mix two tokenizations.
  """
  global _override
  wanted = path or os.environ.get(VOCAB_ENV) or DEFAULT_VOCAB_PATH
  if _VOCABULARY.loaded and wanted != _VOCABULARY.sentencepiece_model_file:
    raise errors.DataError(
        f'vocabulary already loaded from {_VOCABULARY.sentencepiece_model_file}; call '
        f'set_vocabulary_path({path!r}) before the first tokenization')
  _override = path


def output_features() -> dict[str, seqio.Feature]:
  """T5's text-to-text features: inputs and targets, both ending in EOS."""
  return {
      'inputs': seqio.Feature(vocabulary=_VOCABULARY, add_eos=True, required=False),
      'targets': seqio.Feature(vocabulary=_VOCABULARY, add_eos=True),
  }
