"""The shared vocabulary: T5's by default, overridable until the first tokenization."""

import pytest

from prompt_tuning import data
from prompt_tuning.data import vocab


def test_the_path_comes_from_the_setter_then_the_environment_then_t5(monkeypatch):
  monkeypatch.setattr(vocab, '_override', None)
  monkeypatch.delenv(vocab.VOCAB_ENV, raising=False)
  assert vocab.vocabulary_path() == 'gs://t5-data/vocabs/cc_all.32000/sentencepiece.model'
  monkeypatch.setenv(vocab.VOCAB_ENV, '/env/spm.model')
  assert vocab.vocabulary_path() == '/env/spm.model'
  monkeypatch.setattr(vocab, '_override', '/set/spm.model')
  assert vocab.vocabulary_path() == '/set/spm.model'


def test_the_model_file_is_read_at_first_use_not_at_creation(fixtures_dir, monkeypatch):
  fresh = vocab._LazyPathVocabulary()  # pylint: disable=protected-access
  path = str(fixtures_dir / 't5_vocab' / 'sentencepiece.model')
  monkeypatch.setattr(vocab, '_override', path)  # Set after the vocabulary exists.
  assert not fresh.loaded
  assert fresh.encode('True') == [10998]
  assert fresh.sentencepiece_model_file == path
  assert fresh.vocab_size == 32100  # 32000 pieces and 100 sentinels.
  assert fresh.decode([fresh.vocab_size - 1]) == '<extra_id_0>'


def test_the_vocabulary_cannot_change_once_it_has_tokenized(fixtures_dir, monkeypatch):
  path = str(fixtures_dir / 't5_vocab' / 'sentencepiece.model')
  monkeypatch.setattr(vocab, '_override', vocab._override)  # Restored afterwards.
  data.set_vocabulary_path(path)
  assert data.get_vocabulary().encode('True') == [10998]
  data.set_vocabulary_path(path)  # The same file is fine.
  with pytest.raises(data.DataError, match='vocabulary already loaded from .*; call '
                     r"set_vocabulary_path\('/other/spm.model'\) before the first tokenization"):
    data.set_vocabulary_path('/other/spm.model')
