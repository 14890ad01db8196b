"""The model as the runtime sees it: a Flax module plus its loss, decoding and vocabulary.

Mirrors T5X's `models.EncoderDecoderModel`, so gin files read the same way
(`MODEL = @models.EncoderDecoderModel()`), except that the optimizer is not
the model's: the train command is given it. Batches are dicts of the features
that SeqIO's `EncDecFeatureConverter` makes, plus an optional `prompt_index`.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import seqio

from prompt_tuning import decoding, scoring
from prompt_tuning.runtime import losses

Array = jax.Array
Params = Any
Batch = Mapping[str, Array]

# Batch features handed to the encoder besides the tokens (a prompt bank's index).
ENCODER_FEATURES = ('prompt_index',)


def encoder_features(batch: Batch) -> Dict[str, Array]:
  return {k: batch[k] for k in ENCODER_FEATURES if k in batch}


@dataclasses.dataclass(frozen=True, eq=False)
class EncoderDecoderModel:
  """A T5 encoder-decoder (bare or prompted) with what training and evaluation need.

  Attributes:
    module: `t5.Transformer` or `prompted.PromptedT5`.
    vocabulary: the input and output vocabulary, which must be the task's (its EOS ends
      decoding).
    decoding_method: how `predict_batch` decodes.
    z_loss, label_smoothing, loss_normalizing_factor: as in T5X.
  """
  module: nn.Module
  vocabulary: seqio.Vocabulary
  decoding_method: decoding.DecodingMethod = decoding.DecodingMethod()
  z_loss: float = 1e-4
  label_smoothing: float = 0.0
  loss_normalizing_factor: losses.NormalizingFactor = None

  @property
  def prompt_bank_size(self) -> Optional[int]:
    """K when the prompt is a bank of K prompts (each example picks one by `prompt_index`)."""
    prompt_config = getattr(self.module, 'prompt_config', None)
    return prompt_config.num_prompts if prompt_config is not None else None

  def abstract_variables(self, input_shapes: Mapping[str, Tuple[int, ...]]) -> Any:
    """Shapes, dtypes and logical axes of every parameter, computed without allocating them."""
    return jax.eval_shape(lambda rng: self._init(rng, dict(input_shapes)), jax.random.key(0))

  def init_params(self, rng: Array, input_shapes: Mapping[str, Tuple[int, ...]]) -> Params:
    """Freshly initialised parameters (logically boxed)."""
    return self._init(rng, dict(input_shapes))['params']

  def _init(self, rng: Array, input_shapes: Dict[str, Tuple[int, ...]]) -> Any:
    batch = {k: jnp.zeros(v, jnp.int32) for k, v in input_shapes.items()}
    if self.prompt_bank_size and 'prompt_index' not in batch:
      batch['prompt_index'] = jnp.zeros(input_shapes['encoder_input_tokens'][:1], jnp.int32)
    return self.module.init(rng, batch['encoder_input_tokens'], batch['decoder_input_tokens'],
                            batch['decoder_target_tokens'], enable_dropout=False,
                            **encoder_features(batch))

  def logits(self, params: Params, batch: Batch, dropout_rng: Optional[Array] = None) -> Array:
    """Teacher-forced [B, T, V] logits; dropout is on when an rng is given."""
    rngs = None if dropout_rng is None else {'dropout': dropout_rng}
    return self.module.apply({'params': params}, batch['encoder_input_tokens'],
                             batch['decoder_input_tokens'], batch['decoder_target_tokens'],
                             enable_dropout=dropout_rng is not None, rngs=rngs,
                             **encoder_features(batch))

  def loss_fn(self, params: Params, batch: Batch,
              dropout_rng: Optional[Array]) -> Tuple[Array, Dict[str, Array]]:
    """The training objective and summed metrics of a batch.

    With a prompt bank, each prompt's loss is normalised over its own rows and
    the objective is their sum (`losses.weighted_loss`).
    """
    weights = batch.get('decoder_loss_weights', batch['decoder_target_tokens'] > 0)
    bank = {'prompt_index': batch['prompt_index'], 'num_prompts': self.prompt_bank_size} \
        if self.prompt_bank_size else {}
    return losses.weighted_loss(
        self.logits(params, batch, dropout_rng), batch['decoder_target_tokens'], weights,
        z_loss=self.z_loss, label_smoothing=self.label_smoothing,
        loss_normalizing_factor=self.loss_normalizing_factor, **bank)

  def predict_batch(self, params: Params, batch: Batch, max_decode_length: int,
                    rng: Optional[Array] = None) -> Tuple[Array, Array]:
    """Decoded [B, L] tokens, each ending at the vocabulary's EOS, and their [B] scores."""
    return self.decoding_method(self.module, params, batch['encoder_input_tokens'],
                                max_decode_length, rng=rng, eos_id=self.vocabulary.eos_id,
                                **encoder_features(batch))

  def rank_classify(self, params: Params, batch: Batch, candidates: Array) -> Tuple[Array, Array]:
    """The best of [C, Lc] candidate targets per example ([B]) and all [B, C] log-likelihoods."""
    return scoring.rank_classify(self.module, params, batch['encoder_input_tokens'], candidates,
                                 **encoder_features(batch))
