"""Small SeqIO tasks for runtime tests, with no vocabulary files: pre-tokenized ids, and bytes."""

import numpy as np
import seqio
import tensorflow as tf

VOCAB_SIZE = 128
LABELS = (10, 11)  # the two target tokens of the parity task


def _parity_examples(num_examples: int, seed: int, flipped: bool = False):
  """Inputs are random tokens; the target is LABELS[first token's parity] (the other label
  when `flipped`)."""
  rng = np.random.default_rng(seed)
  for i in range(num_examples):
    length = rng.integers(4, 9)
    tokens = rng.integers(20, VOCAB_SIZE, size=length).astype(np.int32)
    label = LABELS[(tokens[0] + flipped) % 2]
    yield {'inputs': tokens, 'targets': np.array([label], np.int32), 'idx': i}


def register_parity_task(name: str = 'toy_parity', num_train: int = 512, num_validation: int = 32,
                         flipped: bool = False):
  """Registers (once) a task with 'train' and 'validation' splits of the parity problem.

  `flipped` swaps the labels: the same inputs, the opposite answers, so that one prompt
  cannot serve both tasks.
  """
  if name in seqio.TaskRegistry.names():
    return seqio.get_mixture_or_task(name)
  sizes = {'train': num_train, 'validation': num_validation}

  def dataset_fn(split, shuffle_files, seed=None):
    del shuffle_files, seed
    # From tensors rather than a Python generator, so that T5X can checkpoint the iterator:
    # inputs padded to one length, then cut back to their own.
    examples = list(_parity_examples(sizes[split], 0 if split == 'train' else 1, flipped))
    lengths = [len(e['inputs']) for e in examples]
    padded = np.zeros((len(examples), max(lengths)), np.int32)
    for row, e in zip(padded, examples):
      row[:len(e['inputs'])] = e['inputs']
    columns = {'inputs': padded, 'length': np.array(lengths, np.int32),
               'targets': np.stack([e['targets'] for e in examples]),
               'idx': np.array([e['idx'] for e in examples], np.int32)}
    return tf.data.Dataset.from_tensor_slices(columns).map(
        lambda ex: {'inputs': ex['inputs'][:ex['length']], 'targets': ex['targets'],
                    'idx': ex['idx']})

  vocabulary = seqio.PassThroughVocabulary(VOCAB_SIZE, eos_id=1)
  features = {'inputs': seqio.Feature(vocabulary, add_eos=True, dtype=tf.int32),
              'targets': seqio.Feature(vocabulary, add_eos=True, dtype=tf.int32)}

  def exact_match(targets, predictions):
    matches = [list(t) == list(p) for t, p in zip(targets, predictions)]
    return {'accuracy': 100 * float(np.mean(matches))}

  return seqio.TaskRegistry.add(
      name, source=seqio.FunctionDataSource(dataset_fn, splits=list(sizes),
                                            num_input_examples=sizes),
      preprocessors=[seqio.preprocessors.append_eos_after_trim], output_features=features,
      metric_fns=[exact_match])


def register_reverse_task(name: str = 'toy_reverse'):
  """Registers (once) a text task over bytes (`seqio.ByteVocabulary`): reverse a short word.

  For what needs raw text, such as inference on a file of input lines.
  """
  if name in seqio.TaskRegistry.names():
    return seqio.get_mixture_or_task(name)
  words = {'train': ['prompt', 'tuning', 'frozen', 'model'], 'validation': ['soft', 'token']}

  def dataset_fn(split, shuffle_files, seed=None):
    del shuffle_files, seed
    return tf.data.Dataset.from_tensor_slices({'inputs': words[split],
                                               'targets': [w[::-1] for w in words[split]]})

  vocabulary = seqio.ByteVocabulary()
  features = {'inputs': seqio.Feature(vocabulary), 'targets': seqio.Feature(vocabulary)}
  return seqio.TaskRegistry.add(
      name, source=seqio.FunctionDataSource(dataset_fn, splits=list(words)),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features=features)


def register_parity_mixture(name: str = 'toy_parity_mix'):
  """Registers (once) the parity task and its flipped twin as one mixture, at equal rates."""
  if name in seqio.MixtureRegistry.names():
    return seqio.get_mixture_or_task(name)
  register_parity_task('toy_parity_flipped', flipped=True)
  return seqio.MixtureRegistry.add(name, ['toy_parity', 'toy_parity_flipped'], default_rate=1.0)


# Importing this module (MIXTURE_OR_TASK_MODULE) registers the tasks.
register_parity_task()
register_reverse_task()
register_parity_mixture()
