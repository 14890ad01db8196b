"""From a SeqIO task or mixture to batches: each host reads its own shard, then global arrays.

Mirrors T5X's `DatasetConfig`. The encoder-decoder features come from SeqIO's
`EncDecFeatureConverter` (no packing). Training data is shuffled with a fixed
seed, so the input position saved in a checkpoint (batches consumed) is
enough to resume exactly where a run stopped.
"""

import dataclasses
import difflib
import importlib
from typing import Dict, Iterator, Mapping, Optional

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
  """Which data, in which shape (T5X `utils.DatasetConfig`)."""
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  split: str = 'train'
  batch_size: int = 32
  shuffle: bool = True
  seed: Optional[int] = 0
  use_cached: bool = False
  module: Optional[str] = None  # MIXTURE_OR_TASK_MODULE: imported first, to register tasks


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


def feature_converter() -> seqio.FeatureConverter:
  return seqio.EncDecFeatureConverter(pack=False)


def model_feature_shapes(config: DatasetConfig, batch_size: Optional[int] = None) -> Dict[str, tuple]:
  """Global [B, length] shapes of the model features, e.g. for initialisation."""
  lengths = feature_converter().get_model_feature_lengths(config.task_feature_lengths)
  batch = config.batch_size if batch_size is None else batch_size
  return {name: (batch, length) for name, length in lengths.items()}


def host_dataset(config: DatasetConfig, num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """This process's shard of the dataset, as unbatched model features."""
  import_task_module(config.module)
  task = get_mixture_or_task(config.mixture_or_task_name)
  if config.split not in task.splits:
    raise DatasetError(f'{config.mixture_or_task_name} has no split {config.split!r}; it has '
                       f'{sorted(task.splits)}.')
  shard = seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())
  dataset = task.get_dataset(config.task_feature_lengths, split=config.split,
                             use_cached=config.use_cached, shuffle=config.shuffle,
                             seed=config.seed, shard_info=shard, num_epochs=num_epochs)
  return feature_converter()(dataset, config.task_feature_lengths)


def train_batches(config: DatasetConfig, skip_batches: int = 0) -> Iterator[Batch]:
  """Endless local batches of this host's rows, resumed after `skip_batches`."""
  local_batch_size = config.batch_size // jax.process_count()
  dataset = host_dataset(config, num_epochs=None)
  dataset = dataset.batch(local_batch_size, drop_remainder=True).skip(skip_batches)
  # tf.data prepares batches on background threads while the device computes.
  return dataset.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
