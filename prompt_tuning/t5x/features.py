"""Batches for a prompt bank under T5X: SeqIO's encoder-decoder features plus `prompt_index`.

T5X's `seqio.EncDecFeatureConverter` keeps only the features it knows, so a
task's `prompt_index` (which prompt of a `[K, P, H]` bank each example uses)
would never reach the model. This converter keeps it; tasks without it
convert exactly as before. It knows nothing of models.
"""

import copy
from typing import Mapping

import seqio
import tensorflow as tf

from prompt_tuning.errors import UserError

PROMPT_INDEX = 'prompt_index'
# One int32 per example ([B] once batched); rank 0, so SeqIO checks no length.
_PROMPT_INDEX_SPEC = seqio.FeatureConverter.FeatureSpec(dtype=tf.int32, rank=0)


class PackingError(UserError, ValueError):
  """Packed examples reach a prompted model."""


class PromptFeatureConverter(seqio.EncDecFeatureConverter):
  """`seqio.EncDecFeatureConverter` that also keeps a task's `prompt_index` (int32 per example).

  Output: `encoder_input_tokens` [T_in], `decoder_*` [T], and `prompt_index`
  [] when the task provides it (any integer dtype, cast to int32).
  """

  def __call__(self, ds: tf.data.Dataset,
               task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    if PROMPT_INDEX not in ds.element_spec:
      return super().__call__(ds, task_feature_lengths)
    if self.pack:
      raise PackingError('Packed examples cannot each keep their prompt_index: set '
                         'utils.DatasetConfig.pack = False (gin/t5x/runs/prompt_*.gin do).')
    # SeqIO checks the output against MODEL_FEATURES; only datasets with an index list it.
    indexed = copy.copy(self)
    indexed.MODEL_FEATURES = {**self.MODEL_FEATURES, PROMPT_INDEX: _PROMPT_INDEX_SPEC}
    return super(PromptFeatureConverter, indexed).__call__(ds, task_feature_lengths)

  def _convert_example(self, features: Mapping[str, tf.Tensor]) -> Mapping[str, tf.Tensor]:
    example = dict(super()._convert_example(features))
    if PROMPT_INDEX in features:
      example[PROMPT_INDEX] = tf.cast(features[PROMPT_INDEX], tf.int32)
    return example

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]
                                ) -> Mapping[str, int]:
    lengths = dict(super().get_model_feature_lengths(task_feature_lengths))
    if PROMPT_INDEX in self.MODEL_FEATURES:
      lengths[PROMPT_INDEX] = 1  # unchecked: the feature has rank 0
    return lengths
