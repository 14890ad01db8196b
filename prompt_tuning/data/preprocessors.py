"""T5's text-to-text formats for GLUE, SuperGLUE and SQuAD/MRQA, and the token preprocessors.

The text preprocessors reproduce `t5.data.preprocessors` (`glue`, `stsb`, `record`,
`wsc_simple`, `squad`) string for string, on the TFDS feature structure (see `datasets`):

  glue:   '<benchmark> <key>: <value> <key>: <value>' over the text features in sorted order
          (or a fixed order), target = the label's name, '<unk>' for label -1;
  drop_task_name: removes that leading benchmark name (the paper's "taskless" tasks).

They know nothing about where examples come from, or about models.
"""

from typing import Mapping, Optional, Sequence

import seqio
import tensorflow as tf

# The two WSC texts whose pronoun is not at `span2_index`; T5 masks them by hand.
_WSC_SPECIAL_INPUTS = {
    'The boy continued to whip the pony , and eventually the pony threw him over. John laughed '
    'out quite loud. "Good for him," he said. ':
        'The boy continued to whip the pony , and eventually the pony threw him over. John '
        'laughed out quite loud. "Good for X ," he said.',
    'When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the magic '
    'pebble in an iron safe . Some day they might want to use it , but really for now, what '
    'more could they wish for?':
        'When they had eventually calmed down a bit , and had gotten home, Mr. Farley put the '
        'magic pebble in an iron safe . Some day they might want to use X , but really for now, '
        'what more could they wish for?',
}


def pad_punctuation(text: tf.Tensor) -> tf.Tensor:
  """Spaces around each ASCII punctuation mark, then runs of whitespace made one space."""
  text = tf.strings.regex_replace(text, r'([[:punct:]])', r' \1 ')
  return tf.strings.regex_replace(text, r'\s+', ' ')


def string_join(parts: Sequence[tf.Tensor]) -> tf.Tensor:
  """Joins with spaces, then makes runs of whitespace one space."""
  return tf.strings.regex_replace(tf.strings.join(parts, separator=' '), r'\s+', ' ')


def _label_name(label: tf.Tensor, label_names: Sequence[str]) -> tf.Tensor:
  """The class name of `label`, '<unk>' for -1 (unlabelled test examples)."""
  return tf.gather(tf.constant(('<unk>',) + tuple(label_names)), tf.cast(label, tf.int32) + 1)


@seqio.map_over_dataset
def glue(x: Mapping[str, tf.Tensor], benchmark_name: str, label_names: Sequence[str],
         feature_names: Optional[Sequence[str]] = None) -> dict[str, tf.Tensor]:
  """T5's GLUE format; MultiRC loses its HTML and keeps its three-part index."""
  keys = feature_names or sorted(set(x) - {'idx', 'label'})
  parts = [benchmark_name]
  for key in keys:
    parts += [f'{key}:', x[key]]
  inputs = tf.strings.join(parts, separator=' ')
  ex = {}
  if benchmark_name == 'multirc':
    inputs = tf.strings.regex_replace(inputs, '<br>', ' ')
    inputs = tf.strings.regex_replace(inputs, '<(/)?b>', '')
    for part in ('paragraph', 'question', 'answer'):
      ex[f'idx/{part}'] = x['idx'][part]
  else:
    ex['idx'] = x['idx']
  ex['inputs'] = inputs
  ex['targets'] = _label_name(x['label'], label_names)
  return ex


@seqio.map_over_dataset
def stsb(x: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """STS-B: the score rounded to the nearest 0.2 and written with one decimal ('3.8')."""
  inputs = tf.strings.join(['stsb sentence1:', x['sentence1'], 'sentence2:', x['sentence2']],
                           separator=' ')
  targets = tf.strings.as_string(tf.round(x['label'] * 5) / 5, precision=1)
  return {'inputs': inputs, 'targets': targets, 'idx': x['idx']}


def _wsc_masked_text(x: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """The WSC text with the word at `span2_index` (the pronoun) replaced by 'X'."""
  words = tf.strings.split(x['text'], sep=' ')
  index = x['span2_index']
  checks = [
      tf.debugging.assert_greater(index, 0, message='WSC: span2_index must not be the first word'),
      tf.debugging.assert_less(index, tf.size(words, out_type=index.dtype),
                               message='WSC: span2_index is past the last word'),
  ]

  def mask():
    with tf.control_dependencies([tf.debugging.assert_equal(
        words[index], x['span2_text'], message='WSC: the word at span2_index is not span2_text')]):
      return tf.strings.join([tf.strings.reduce_join(words[:index], separator=' '), 'X',
                              tf.strings.reduce_join(words[index + 1:], separator=' ')],
                             separator=' ')

  with tf.control_dependencies(checks):
    special = [(tf.equal(x['text'], text), lambda masked=masked: tf.constant(masked))
               for text, masked in _WSC_SPECIAL_INPUTS.items()]
    return tf.case(special, default=mask)


def wsc_simple(dataset: tf.data.Dataset, correct_referent_only: bool) -> tf.data.Dataset:
  """T5's simple WSC: 'wsc: ... *pronoun* ...' -> the candidate referent (span1_text).

  Train uses the correct referents only (`correct_referent_only`); eval keeps every
  candidate, and the `wsc_simple` postprocessor checks the predicted referent against it.
  """
  if correct_referent_only:
    dataset = dataset.filter(lambda x: tf.cast(x['label'], tf.bool))

  def fn(x):
    pronoun = tf.strings.join([' *', x['span2_text'], '* '])
    text = tf.strings.regex_replace(_wsc_masked_text(x), r' X ', pronoun)
    return {'inputs': tf.strings.join(['wsc:', text], separator=' '),
            'targets': tf.reshape(x['span1_text'], []), 'label': x['label'], 'idx': x['idx']}

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def record(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """T5's ReCoRD: one example per answer ('<unk>' when none), each keeping all the answers."""

  def fn(x):
    passage = tf.strings.regex_replace(x['passage'], r'(\.|\?|\!|\"|\')\n@highlight\n', r'\1 ')
    passage = tf.strings.regex_replace(passage, r'\n@highlight\n', '. ')
    inputs = tf.strings.join(
        ['record query:', x['query'], 'entities:',
         tf.strings.reduce_join(x['entities'], separator=', '), 'passage:', passage],
        separator=' ')
    answers = x['answers']
    targets = tf.cond(tf.size(answers) > 0, lambda: answers, lambda: tf.constant(['<unk>']))
    n = tf.size(targets)
    return {'idx/passage': tf.fill([n], x['idx']['passage']),
            'idx/query': tf.fill([n], x['idx']['query']),
            'inputs': tf.fill([n], inputs),
            'targets': targets,
            'answers': tf.broadcast_to(answers, [n, tf.size(answers)])}

  return dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


@seqio.map_over_dataset
def squad(x: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """T5's SQuAD format on MRQA examples: 'question: <q> context: <c>' -> the first answer.

  All answers are kept (punctuation padded, as T5 does) for the metrics.
  """
  answers = pad_punctuation(x['answers'])
  question = pad_punctuation(x['question'])
  context = pad_punctuation(x['context'])
  return {'inputs': string_join(['question:', question, 'context:', context]),
          'targets': answers[0], 'id': x['qid'], 'context': context, 'question': question,
          'answers': answers}


@seqio.map_over_dataset
def drop_task_name(x: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
  """Removes the first word of `inputs` and its space: 'rte premise: ...' -> 'premise: ...'."""
  x = dict(x)
  x['inputs'] = tf.strings.regex_replace(x['inputs'], r'^[^ ]* ', '', replace_global=False)
  return x


def add_sentinel_to_targets(dataset: tf.data.Dataset,
                            output_features: Mapping[str, seqio.Feature]) -> tf.data.Dataset:
  """Prepends `<extra_id_0>` (the last vocabulary id) to the tokenized targets.

  The paper's "span corruption + sentinel" setting: the target then looks like the span
  corruption targets the model was pre-trained on.
  """
  sentinel = output_features['targets'].vocabulary.vocab_size - 1

  @seqio.map_over_dataset
  def fn(x):
    x = dict(x)
    x['targets'] = tf.concat([tf.constant([sentinel], x['targets'].dtype), x['targets']], 0)
    return x

  return fn(dataset)
