"""Synthetic tasks of the offline demo and their vocabulary, registered with SeqIO on import.

Movie-review-like sentences are generated from word lists, so nothing is
downloaded. The frozen model is pre-trained on *instructed* tasks
("sentiment: <review>" -> positive/negative, "noun: ...", "adjective: ...")
and on the bare review -> its adjective, its default answer; the prompt is
then tuned on the sentiment task *without* its instruction, and has to take
its place. The vocabulary is a word-level SentencePiece model trained on
these sentences, once, into the cache folder.
"""

import functools
import os
import shutil
import tempfile
from typing import Dict, Iterator, List

import numpy as np
import seqio
import sentencepiece
import tensorflow as tf

POSITIVE = ('great', 'wonderful', 'superb', 'delightful', 'brilliant', 'charming', 'lovely',
            'excellent', 'pleasant', 'fantastic', 'moving', 'gripping')
NEGATIVE = ('awful', 'terrible', 'boring', 'dreadful', 'dull', 'poor', 'horrible', 'bland',
            'clumsy', 'tedious', 'messy', 'weak')
NOUNS = ('movie', 'film', 'plot', 'acting', 'soundtrack', 'ending', 'story', 'cast', 'script',
         'scenery', 'dialogue', 'camera')
TEMPLATES = ('the {noun} was {adj}', 'i found the {noun} {adj}', 'what a {adj} {noun}',
             'honestly the {noun} is {adj}', 'the {noun} felt {adj} to me',
             'such a {adj} {noun} really')
LABELS = ('positive', 'negative')
INSTRUCTIONS = {'sentiment': 'sentiment:', 'noun': 'noun:', 'adjective': 'adjective:'}
SPLITS = {'train': 4096, 'validation': 200}
VOCAB_SIZE = 128


def cache_dir() -> str:
  """Where the demo keeps what it makes: $PROMPT_TUNING_CACHE or ~/.cache/prompt_tuning/demo."""
  default = os.path.join(os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
                         'prompt_tuning')
  return os.path.join(os.environ.get('PROMPT_TUNING_CACHE', default), 'demo')


def _reviews(split: str) -> Iterator[Dict[str, str]]:
  """Sentences with their label, noun and adjective; validation has its own random draws."""
  rng = np.random.default_rng({'train': 0, 'validation': 1}[split])
  for _ in range(SPLITS[split]):
    label = int(rng.integers(2))
    adjective = str(rng.choice(POSITIVE if label == 0 else NEGATIVE))
    noun = str(rng.choice(NOUNS))
    sentence = str(rng.choice(TEMPLATES)).format(noun=noun, adj=adjective)
    yield {'sentence': sentence, 'sentiment': LABELS[label], 'noun': noun, 'adjective': adjective}


def _vocabulary_corpus() -> List[str]:
  # Targets and instructions as sentences of their own, often enough to be kept whole.
  words = [*LABELS, *INSTRUCTIONS.values()] * 100
  return [r['sentence'] for r in _reviews('train')] + words


def vocabulary_file() -> str:
  """The demo's word-level SentencePiece model (pad 0, EOS 1, unk 2, as T5's); made once."""
  path = os.path.join(cache_dir(), 'sentencepiece.model')
  if os.path.exists(path):
    return path
  os.makedirs(cache_dir(), exist_ok=True)
  staging = tempfile.mkdtemp(prefix='.spm.', dir=cache_dir())
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(_vocabulary_corpus()), model_prefix=os.path.join(staging, 'spm'),
      model_type='word', vocab_size=VOCAB_SIZE, hard_vocab_limit=False, pad_id=0, eos_id=1,
      unk_id=2, bos_id=-1, num_threads=1, minloglevel=2)
  os.replace(os.path.join(staging, 'spm.model'), path)
  shutil.rmtree(staging)
  return path


VOCABULARY = seqio.SentencePieceVocabulary(vocabulary_file(), extra_ids=0)
FEATURES = {'inputs': seqio.Feature(VOCABULARY, add_eos=True),
            'targets': seqio.Feature(VOCABULARY, add_eos=True)}


def _examples(split: str, shuffle_files: bool = False, seed=None, *, instruction: str,
              target: str) -> tf.data.Dataset:
  """Text-to-text examples: `instruction` + sentence -> the review's `target` field."""
  del shuffle_files, seed
  rows = list(_reviews(split))
  prefix = f'{instruction} ' if instruction else ''
  return tf.data.Dataset.from_tensor_slices({
      'inputs': [prefix + r['sentence'] for r in rows], 'targets': [r[target] for r in rows]})


def accuracy(targets, predictions) -> Dict[str, float]:
  """Percent of predictions equal to their target."""
  return {'accuracy': 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


def _register(name: str, instruction: str, target: str) -> None:
  if name in seqio.TaskRegistry.names():
    return
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          functools.partial(_examples, instruction=instruction, target=target),
          splits=list(SPLITS), num_input_examples=SPLITS),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features=FEATURES, metric_fns=[accuracy])


# What the frozen model learns before any prompt exists: each instructed task, and the
# bare review -> its adjective, so that without an instruction it answers with the adjective.
for _field, _instruction in INSTRUCTIONS.items():
  _register(f'demo_instructed_{_field}', _instruction, _field)
_register('demo_adjective', '', 'adjective')
PRETRAINING_TASKS = (*[f'demo_instructed_{f}' for f in INSTRUCTIONS], 'demo_adjective')
if 'demo_pretraining' not in seqio.MixtureRegistry.names():
  seqio.MixtureRegistry.add('demo_pretraining', list(PRETRAINING_TASKS), default_rate=1.0)
# What the prompt learns: the same reviews, with no instruction.
_register('demo_sentiment', '', 'sentiment')
# For a bank of task prompts (gin/prompts/multi_task.gin): the same bare reviews, one prompt
# answering with the sentiment and one with the noun.
_register('demo_noun', '', 'noun')
if 'demo_sentiment_and_noun' not in seqio.MixtureRegistry.names():
  seqio.MixtureRegistry.add('demo_sentiment_and_noun', ['demo_sentiment', 'demo_noun'],
                            default_rate=1.0)
