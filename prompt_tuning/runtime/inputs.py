"""From a SeqIO task or mixture to batches: each host reads its own shard, then global arrays.

Mirrors T5X's `DatasetConfig`, plus where the examples are read (DATA_SOURCE,
DATA_DIR). The encoder-decoder features come from SeqIO's
`EncDecFeatureConverter` (no packing). The task's output vocabulary is the
run's vocabulary: a model configured with another one is refused. Training
data is shuffled with a fixed seed, so the input position saved in a
checkpoint (batches consumed) is enough to resume exactly where a run stopped.
"""

import contextlib
import dataclasses
import difflib
import importlib
from typing import ContextManager, Dict, Iterator, List, Mapping, Optional

import jax
import numpy as np
import seqio
import tensorflow as tf

from prompt_tuning.errors import UserError

Batch = Dict[str, np.ndarray]


class DatasetError(UserError, ValueError):
  """The task, mixture or split cannot be used as configured."""


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """Which data, in which shape (T5X `utils.DatasetConfig`), and where it is read.

  `data_source` and `data_dir` are DATA_SOURCE and DATA_DIR: TFDS (in `data_dir`,
  or TFDS's default) or the official release files under `data_dir`. They apply
  to the tasks of `prompt_tuning.data`; other tasks read what their sources say.
  """
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  split: str = 'train'
  batch_size: int = 32
  shuffle: bool = True
  seed: Optional[int] = 0
  use_cached: bool = False
  module: Optional[str] = None  # MIXTURE_OR_TASK_MODULE: imported first, to register tasks
  data_source: str = 'tfds'
  data_dir: Optional[str] = None


def import_task_module(module: Optional[str]) -> None:
  """Imports the module that registers the tasks (`MIXTURE_OR_TASK_MODULE`)."""
  if not module:
    return
  try:
    importlib.import_module(module)
  except ImportError as e:
    raise DatasetError(f'MIXTURE_OR_TASK_MODULE={module!r} cannot be imported: {e}') from None


def get_mixture_or_task(name: str) -> seqio.Task:
  """The registered task or mixture, or a one-line error that suggests close names."""
  registered = list(seqio.TaskRegistry.names()) + list(seqio.MixtureRegistry.names())
  if name not in registered:
    close = difflib.get_close_matches(name, registered, n=3)
    hint = f'; did you mean {close}?' if close else '; is MIXTURE_OR_TASK_MODULE set?'
    raise DatasetError(f'Unknown task or mixture MIXTURE_OR_TASK_NAME={name!r}{hint}')
  return seqio.get_mixture_or_task(name)


def task_names(mixture_or_task_name: str, module: Optional[str] = None) -> List[str]:
  """The names of a mixture's tasks, sorted (seqio's order), or the task's own name."""
  import_task_module(module)
  mixture_or_task = get_mixture_or_task(mixture_or_task_name)
  return [task.name for task in getattr(mixture_or_task, 'tasks', [mixture_or_task])]


def task_count(mixture_or_task_name: str, module: Optional[str] = None) -> int:
  """How many tasks the mixture has (1 for a task): a bank's size in gin/prompts/multi_task.gin."""
  return len(task_names(mixture_or_task_name, module))


def task_vocabulary(mixture_or_task_name: str, module: Optional[str] = None) -> seqio.Vocabulary:
  """The output ('targets') vocabulary of the task or mixture: the one its model must use."""
  import_task_module(module)
  return get_mixture_or_task(mixture_or_task_name).output_features['targets'].vocabulary


def _describe(vocabulary: seqio.Vocabulary) -> str:
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    return f'SentencePieceVocabulary({vocabulary.sentencepiece_model_file})'
  return f'{type(vocabulary).__name__}(size {vocabulary.vocab_size})'


def check_vocabulary(config: DatasetConfig, vocabulary: seqio.Vocabulary) -> None:
  """The model's vocabulary is the task's, for inputs and targets (T5X's `verify_matching_vocabs`).

  Raises:
    DatasetError: one line naming both vocabularies.
  """
  import_task_module(config.module)
  features = get_mixture_or_task(config.mixture_or_task_name).output_features
  for name in ('inputs', 'targets'):
    theirs = features[name].vocabulary if name in features else vocabulary
    if theirs is not vocabulary and theirs != vocabulary:
      raise DatasetError(f'VOCABULARY is {_describe(vocabulary)} but the {name} of '
                         f'MIXTURE_OR_TASK_NAME={config.mixture_or_task_name!r} use '
                         f'{_describe(theirs)}; the model must use its task\'s vocabulary.')


def reading(config: DatasetConfig) -> ContextManager:
  """The datasets built in the block read from the config's DATA_SOURCE and DATA_DIR.

  The choice reaches the tasks of `prompt_tuning.data` (see `data.sources`),
  which are imported only when it is not the default.
  """
  if (config.data_source, config.data_dir) == ('tfds', None):
    return contextlib.nullcontext()
  from prompt_tuning.data import sources  # pylint: disable=g-import-not-at-top
  return sources.reading_from(config.data_source, config.data_dir)


def feature_converter() -> seqio.FeatureConverter:
  return seqio.EncDecFeatureConverter(pack=False)


def model_feature_shapes(config: DatasetConfig, batch_size: Optional[int] = None) -> Dict[str, tuple]:
  """Global [B, length] shapes of the model features, e.g. for initialisation."""
  return feature_shapes(config.task_feature_lengths,
                        config.batch_size if batch_size is None else batch_size)


def feature_shapes(task_feature_lengths: Mapping[str, int], batch_size: int) -> Dict[str, tuple]:
  """Global [B, length] shapes of the model features of TASK_FEATURE_LENGTHS."""
  lengths = feature_converter().get_model_feature_lengths(task_feature_lengths)
  return {name: (batch_size, length) for name, length in lengths.items()}


def host_dataset(config: DatasetConfig, num_epochs: Optional[int] = None,
                 task_rows: Optional[Mapping[str, int]] = None) -> tf.data.Dataset:
  """This process's shard of the dataset, as unbatched model features.

  With `task_rows` (task name -> row of a prompt bank), each example also gets
  its task's row as `prompt_index`: the mixture's tasks are read one by one,
  given the feature, and then mixed at the mixture's rates, as seqio's
  `Mixture.get_dataset` mixes them.
  """
  import_task_module(config.module)
  task = get_mixture_or_task(config.mixture_or_task_name)
  if config.split not in task.splits:
    raise DatasetError(f'{config.mixture_or_task_name} has no split {config.split!r}; it has '
                       f'{sorted(task.splits)}.')
  shard = seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())

  def converted(task_or_mixture) -> tf.data.Dataset:
    dataset = task_or_mixture.get_dataset(
        config.task_feature_lengths, split=config.split, use_cached=config.use_cached,
        shuffle=config.shuffle, seed=config.seed, shard_info=shard, num_epochs=num_epochs)
    return feature_converter()(dataset, config.task_feature_lengths)

  with reading(config):
    if task_rows is None:
      return converted(task)
    datasets, rates = [], []
    for subtask in getattr(task, 'tasks', [task]):
      if config.split not in subtask.splits:  # as seqio's Mixture skips it
        continue
      row = tf.constant(task_rows[subtask.name], tf.int32)
      datasets.append(converted(subtask).map(lambda ex, row=row: {**ex, 'prompt_index': row}))
      rates.append(float(task.get_rate(subtask)) if hasattr(task, 'get_rate') else 1.0)
  seed = config.seed if config.seed is not None else (None if config.shuffle else 42)  # seqio's
  return tf.data.Dataset.sample_from_datasets(datasets, rates, seed=seed,
                                              stop_on_empty_dataset=True)


def train_batches(config: DatasetConfig, skip_batches: int = 0,
                  task_rows: Optional[Mapping[str, int]] = None) -> Iterator[Batch]:
  """Endless local batches of this host's rows, resumed after `skip_batches`.

  With `task_rows`, each row carries its task's `prompt_index` (see `host_dataset`).
  """
  local_batch_size = config.batch_size // jax.process_count()
  dataset = host_dataset(config, num_epochs=None, task_rows=task_rows)
  dataset = dataset.batch(local_batch_size, drop_remainder=True).skip(skip_batches)
  # tf.data prepares batches on background threads while the device computes.
  return dataset.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
