"""Counts the examples that the task feature lengths truncate, and warns once per task.

seqio's `append_eos_after_trim` cuts `inputs` and `targets` to the feature lengths without a
word. `count_truncations`, a token preprocessor placed just before it, counts how many examples
lose tokens (the first one per task and feature is logged) so that users see when their
TASK_FEATURE_LENGTHS are too short. Counts live in this process, over every pass made over a
task's data. It knows nothing of models or data sources.
"""

import dataclasses
import threading
from typing import Mapping, Optional, Sequence

from absl import logging
import numpy as np
import seqio
import tensorflow as tf


@dataclasses.dataclass
class TruncationStats:
  """What one task's examples looked like against the feature lengths."""
  seen: int = 0
  truncated: dict[str, int] = dataclasses.field(default_factory=dict)
  longest: dict[str, int] = dataclasses.field(default_factory=dict)

  def __str__(self) -> str:
    parts = ', '.join(f'{key}: {n} (longest {self.longest[key]} tokens)'
                      for key, n in sorted(self.truncated.items()))
    return f'{sum(self.truncated.values())} truncations in {self.seen} examples ({parts})'


_STATS: dict[str, TruncationStats] = {}
_LOCK = threading.Lock()


def _record(task_name: str, keys: Sequence[str], limits: Mapping[str, int],
            lengths: Sequence[int]) -> None:
  with _LOCK:
    stats = _STATS.setdefault(task_name, TruncationStats())
    stats.seen += 1
    for key, length in zip(keys, lengths):
      stats.longest[key] = max(stats.longest.get(key, 0), int(length))
      if length <= limits[key]:
        continue
      if key not in stats.truncated:
        logging.warning(
            'task %s: an example\'s %s has %d tokens but the feature length allows %d; it is '
            'truncated (later truncations are only counted: see truncation_stats())',
            task_name, key, length, limits[key])
      stats.truncated[key] = stats.truncated.get(key, 0) + 1


def count_truncations(dataset: tf.data.Dataset,
                      output_features: Mapping[str, seqio.Feature],
                      sequence_length: Optional[Mapping[str, Optional[int]]],
                      task_name: str) -> tf.data.Dataset:
  """Counts, per feature, the tokenized examples longer than `sequence_length` allows.

  A feature that gets EOS appended is truncated when it has more than `length - 1` tokens.
  Examples pass through unchanged.
  """
  if not sequence_length:
    return dataset
  limits = {key: length - int(output_features[key].add_eos)
            for key, length in sequence_length.items()
            if key in output_features and length is not None}

  def count(ex):
    keys = sorted(key for key in limits if key in ex)
    if not keys:
      return ex
    lengths = [tf.shape(ex[key])[-1] for key in keys]
    done = tf.numpy_function(
        lambda *n: _record(task_name, keys, limits, n) or np.bool_(True), lengths, tf.bool)
    ex = dict(ex)
    with tf.control_dependencies([done]):  # Keeps the counting op in the graph.
      ex[keys[0]] = tf.identity(ex[keys[0]])
    return ex

  return dataset.map(count, num_parallel_calls=tf.data.AUTOTUNE)


def truncation_stats() -> dict[str, TruncationStats]:
  """A copy of the counts so far, by task name."""
  with _LOCK:
    return {name: dataclasses.replace(stats, truncated=dict(stats.truncated),
                                      longest=dict(stats.longest))
            for name, stats in _STATS.items()}


def reset_truncation_stats() -> None:
  """Forgets all counts (the next truncation of each task is logged again)."""
  with _LOCK:
    _STATS.clear()


def log_truncation_summary() -> None:
  """Logs one line per task that had truncations."""
  for name, stats in sorted(truncation_stats().items()):
    if stats.truncated:
      logging.warning('task %s: %s', name, stats)
