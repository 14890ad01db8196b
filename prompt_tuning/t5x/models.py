"""The prompted T5 as T5X wants it: `params_axes`, integer dummy tokens, `scan_layers`, no
packing, and a prompt bank's `prompt_index`.

A thin adapter: the Flax modules of `prompt_tuning.models` box their logical
axis names inside `params`; T5X reads them from a separate `params_axes`
collection, initialises with float32 dummy tokens, picks the decode cache
layout from `module.scan_layers`, packs examples by default, and calls the
module with tokens only. This module bridges those things and nothing else;
the math is the project's own.
"""

import contextlib
from typing import Any, Iterator, Mapping, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import partitioning as flax_partitioning
from t5x import models as t5x_models

from prompt_tuning.models import prompted
from prompt_tuning.t5x import features

Array = jax.Array


class PromptedT5(prompted.PromptedT5):
  """`prompted.PromptedT5` with the `scan_layers` attribute T5X's decoding reads."""

  @property
  def scan_layers(self) -> bool:
    return self.config.scan_layers


def split_axes(variables: Mapping[str, Any]) -> flax.core.FrozenDict:
  """Unboxes `params` and adds their logical axis names as T5X's `params_axes` collection.

  `params_axes` mirrors `params`, with `<name>_axes: AxisMetadata(names)` per
  parameter (the form `flax.linen.partitioning.param_with_axes` writes).
  """
  boxed = flax.core.unfreeze(variables)
  params = boxed.pop('params')
  flat = flax.traverse_util.flatten_dict(params, is_leaf=lambda _, x: isinstance(x, nn.Partitioned))
  missing = [('/'.join(p)) for p, x in flat.items() if not isinstance(x, nn.Partitioned)]
  if missing:
    raise ValueError(f'Parameter {missing[0]} carries no logical axis names.')
  axes = {p[:-1] + (f'{p[-1]}_axes',): flax_partitioning.AxisMetadata(names=tuple(x.names))
          for p, x in flat.items()}
  return flax.core.freeze({**boxed, 'params': nn.unbox(params),
                           'params_axes': flax.traverse_util.unflatten_dict(axes)})


def _uses_prompt(module: nn.Module) -> bool:
  config = getattr(module, 'prompt_config', None)
  return bool(config and config.length)


@contextlib.contextmanager
def _prompt_index_of(batch: Mapping[str, Any]) -> Iterator[None]:
  """Within the block, the prompted T5's `encode` gets the batch's `prompt_index` [B], if any.

  T5X's model class calls the module's `__call__` and `encode` with the
  tokens alone; this hands them a bank's per-example index without
  rewriting those calls.
  """
  if features.PROMPT_INDEX not in batch:
    yield
    return
  index = batch[features.PROMPT_INDEX]

  def add_index(call, args, kwargs, context):
    if context.method_name == 'encode' and isinstance(context.module, prompted.PromptedT5):
      kwargs = {features.PROMPT_INDEX: index, **kwargs}
    return call(*args, **kwargs)

  with nn.intercept_methods(add_index):
    yield


class PromptEncoderDecoderModel(t5x_models.EncoderDecoderModel):
  """T5X's EncoderDecoderModel around the prompted T5.

  Batches may carry `prompt_index` [B] int32 (kept by `features.PromptFeatureConverter`),
  which selects each example's prompt of a bank (`PromptConfig.num_prompts`) in
  training, scoring and decoding.
  """

  FEATURE_CONVERTER_CLS = features.PromptFeatureConverter

  def get_initial_variables(self, rng: Array, input_shapes: Mapping[str, Any],
                            input_types: Optional[Mapping[str, jnp.dtype]] = None
                            ) -> flax.core.FrozenDict:
    """Params (unboxed) and `params_axes`, from integer dummy tokens; packed inputs are refused."""
    if 'encoder_segment_ids' in input_shapes and _uses_prompt(self.module):
      raise features.PackingError(
          'Packed examples are not supported with a prompt: set '
          'utils.DatasetConfig.pack = False (gin/t5x/runs/prompt_*.gin do).')
    # T5X's eval and infer ask for float32 tokens, which no embedding lookup takes.
    input_types = {**(input_types or {}), 'encoder_input_tokens': jnp.int32,
                   'decoder_input_tokens': jnp.int32}
    # T5X's own init passes tokens only; a bank needs an index of the batch's shape too.
    index = features.PROMPT_INDEX
    dummy = {index: jnp.zeros(input_shapes[index], jnp.int32)} if index in input_shapes else {}
    with _prompt_index_of(dummy):
      return split_axes(super().get_initial_variables(rng, input_shapes, input_types))

  def _compute_logits(self, params: Any, batch: Mapping[str, Array], *args: Any,
                      **kwargs: Any) -> Any:
    """T5X's teacher-forced logits (loss, eval and scoring), with the batch's `prompt_index`."""
    with _prompt_index_of(batch):
      return super()._compute_logits(params, batch, *args, **kwargs)

  def predict_batch_with_aux(self, params: Any, batch: Mapping[str, Array], *args: Any,
                             **kwargs: Any) -> Any:
    """T5X's decoding, with the batch's `prompt_index` given to the encoder."""
    with _prompt_index_of(batch):
      return super().predict_batch_with_aux(params, batch, *args, **kwargs)
