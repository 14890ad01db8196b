"""Log-likelihoods of target sequences under an encoder-decoder, and rank classification.

Works with any Flax model that has T5X's `encode`/`decode` methods (with
`decoder_segment_ids`). Knows nothing of tasks, vocabularies or label text:
candidates arrive as token ids. Each input is encoded once, and its
candidates are decoded together as one packed sequence over that one encoder
output, so that the cross-attention keys and values are computed once per
input rather than once per candidate.
"""

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Params = Any


def encode_inputs(model: nn.Module, params: Params, encoder_input_tokens: Array,
                  **features: Array) -> Array:
  """[B, T] tokens -> [B, L, H] encoder output, without dropout.

  Extra `features` (e.g. `prompt_index` [B]) go to the encoder, which alone
  uses them. L is T, or P+T for a prompted model.
  """
  return model.apply({'params': params}, encoder_input_tokens, enable_dropout=False,
                     method=model.encode, **features)


def shift_right(targets: Array, start_id: int = 0) -> Array:
  """[..., T] targets -> [..., T] decoder inputs: `start_id`, then the targets but the last."""
  start = jnp.full(targets.shape[:-1] + (1,), start_id, targets.dtype)
  return jnp.concatenate([start, targets[..., :-1]], axis=-1)


def sequence_log_likelihood(logits: Array, targets: Array,
                            weights: Optional[Array] = None) -> Array:
  """Sum over positions of log p(target), in float32.

  Args:
    logits: [..., T, V] teacher-forced logits.
    targets: [..., T] target tokens.
    weights: [..., T] which positions count; by default the non-padding
      targets (`targets > 0`).

  Returns:
    [...] log-likelihoods.
  """
  if weights is None:
    weights = targets > 0
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  token_log_probs = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(token_log_probs * weights, axis=-1)


def score_candidates(model: nn.Module, params: Params, encoder_input_tokens: Array,
                     candidate_tokens: Array, *, decoder_start_id: int = 0,
                     **features: Array) -> Array:
  """Log-likelihood of every candidate target for every input.

  The encoder runs once on the B inputs. The decoder runs once on [B, C*Lc]:
  each input's C candidates packed one after another, each a segment of its own
  (`decoder_segment_ids`), so that a candidate attends only to its own earlier
  tokens and, with every other candidate, to the one encoder output. T5's
  relative position biases depend only on offsets, so a candidate scores as it
  would decoded alone.

  Args:
    model: an encoder-decoder with `encode` and `decode` methods.
    params: its parameters.
    encoder_input_tokens: [B, T] inputs.
    candidate_tokens: [C, Lc] candidates shared by all inputs (e.g. the
      verbalizers of a classification task), or [B, C, Lc] per input (e.g.
      COPA's choices). Each is EOS-terminated and 0-padded; an all-padding
      row is an empty slot and scores -inf.
    decoder_start_id: the token the decoder starts from.
    **features: extra encoder features, e.g. `prompt_index` [B].

  Returns:
    [B, C] float32 log-likelihoods.
  """
  batch = encoder_input_tokens.shape[0]
  if candidate_tokens.ndim == 2:
    candidate_tokens = jnp.broadcast_to(candidate_tokens, (batch,) + candidate_tokens.shape)
  if candidate_tokens.ndim != 3 or candidate_tokens.shape[0] != batch:
    raise ValueError(f'candidate_tokens must be [C, Lc] or [B={batch}, C, Lc], got shape '
                     f'{tuple(candidate_tokens.shape)}.')
  _, num_candidates, length = candidate_tokens.shape
  encoded = encode_inputs(model, params, encoder_input_tokens, **features)
  packed = lambda x: x.reshape((batch, num_candidates * length))
  segments = jnp.broadcast_to(jnp.repeat(jnp.arange(1, num_candidates + 1), length),
                              (batch, num_candidates * length))
  logits = model.apply({'params': params}, encoded, encoder_input_tokens,
                       packed(shift_right(candidate_tokens, decoder_start_id)),
                       packed(candidate_tokens), decoder_segment_ids=segments,
                       enable_dropout=False, method=model.decode)  # [B, C*Lc, V]
  scores = sequence_log_likelihood(logits.reshape((batch, num_candidates, length, -1)),
                                   candidate_tokens)
  return jnp.where(jnp.any(candidate_tokens > 0, axis=-1), scores, -jnp.inf)


def rank_classify(model: nn.Module, params: Params, encoder_input_tokens: Array,
                  candidate_tokens: Array, *, decoder_start_id: int = 0,
                  **features: Array) -> Tuple[Array, Array]:
  """Picks the most likely candidate for each input; it can never be an invalid label.

  Arguments as in `score_candidates`. Returns ([B] index of the best
  candidate, [B, C] log-likelihoods).
  """
  scores = score_candidates(model, params, encoder_input_tokens, candidate_tokens,
                            decoder_start_id=decoder_start_id, **features)
  return jnp.argmax(scores, axis=-1), scores
