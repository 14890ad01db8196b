"""Token cross-entropy as T5X computes it: z-loss, label smoothing, padding ignored, normalised.

Normalisation follows T5X's `loss_normalizing_factor`: None sums over real
target tokens, a number divides that sum by it (T5X's fine-tuning default is
233472), and 'NUM_REAL_TARGET_TOKENS' averages over real target tokens.
"""

from typing import Dict, Optional, Tuple, Union

import jax
import jax.numpy as jnp

from prompt_tuning.errors import UserError

Array = jax.Array
NormalizingFactor = Optional[Union[float, int, str]]


class LossConfigError(UserError, ValueError):
  """LOSS_NORMALIZING_FACTOR (or another loss setting) is not valid."""


def cross_entropy_with_logits(logits: Array, targets: Array, z_loss: float,
                              label_smoothing: float = 0.0) -> Tuple[Array, Array]:
  """Per-token loss and z-loss for [B, T, V] logits and [B, T] integer targets.

  The z-loss `z_loss * logsumexp(logits)**2` keeps the softmax normaliser near
  1, as in T5X. With label smoothing the loss is shifted by the entropy of the
  smoothed targets, so a perfect model still scores 0.
  """
  vocab = logits.shape[-1]
  logits = logits.astype(jnp.float32)
  confidence = 1.0 - label_smoothing
  low = label_smoothing / (vocab - 1)
  soft_targets = jax.nn.one_hot(targets, vocab) * (confidence - low) + low
  log_z = jax.nn.logsumexp(logits, axis=-1)
  log_softmax = logits - log_z[..., None]
  loss = -jnp.sum(soft_targets * log_softmax, axis=-1)
  if label_smoothing:
    loss -= -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low + 1e-20))
  total_z_loss = z_loss * jnp.square(log_z)
  return loss + total_z_loss, total_z_loss


def _normalised(total: Array, num_tokens: Array, loss_normalizing_factor: NormalizingFactor) -> Array:
  """A summed token loss divided as LOSS_NORMALIZING_FACTOR says."""
  if loss_normalizing_factor == 'NUM_REAL_TARGET_TOKENS':
    return total / jnp.maximum(num_tokens, 1.0)
  if isinstance(loss_normalizing_factor, str):
    raise LossConfigError(f'Unknown LOSS_NORMALIZING_FACTOR {loss_normalizing_factor!r}; use a '
                          "number, None or 'NUM_REAL_TARGET_TOKENS'.")
  if loss_normalizing_factor is not None:
    return total / loss_normalizing_factor
  return total


def weighted_loss(logits: Array, targets: Array, weights: Array, *, z_loss: float = 1e-4,
                  label_smoothing: float = 0.0,
                  loss_normalizing_factor: NormalizingFactor = None,
                  prompt_index: Optional[Array] = None,
                  num_prompts: Optional[int] = None) -> Tuple[Array, Dict[str, Array]]:
  """The training objective and its metrics for a batch.

  Args:
    logits: [B, T, V].
    targets: [B, T] target tokens.
    weights: [B, T] 1 for real target tokens, 0 for padding.
    prompt_index: [B], each row's prompt of a bank of `num_prompts` K. Each prompt's
      rows are then normalised on their own and the loss is the sum over prompts, so
      that every prompt of the bank trains as it would alone.

  Returns:
    The scalar loss and metrics (sums, so they add across batches and hosts). With a
    bank, also `[K]` per-prompt sums: 'prompt_cross_ent_loss_sum', 'prompt_target_tokens'.
  """
  weights = weights.astype(jnp.float32)
  token_loss, token_z_loss = cross_entropy_with_logits(logits, targets, z_loss, label_smoothing)
  num_tokens = jnp.sum(weights)
  metrics = {}
  if prompt_index is None:
    loss = _normalised(jnp.sum(token_loss * weights), num_tokens, loss_normalizing_factor)
  else:
    by_prompt = lambda per_row: jax.ops.segment_sum(per_row, prompt_index, num_prompts)
    prompt_tokens = by_prompt(jnp.sum(weights, axis=-1))
    loss = jnp.sum(_normalised(by_prompt(jnp.sum(token_loss * weights, axis=-1)), prompt_tokens,
                               loss_normalizing_factor))
    metrics['prompt_cross_ent_loss_sum'] = by_prompt(
        jnp.sum((token_loss - token_z_loss) * weights, axis=-1))
    metrics['prompt_target_tokens'] = prompt_tokens
  correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32) * weights
  metrics.update({
      'loss': loss,
      'cross_ent_loss_sum': jnp.sum((token_loss - token_z_loss) * weights),
      'z_loss_sum': jnp.sum(token_z_loss * weights),
      'correct_tokens': jnp.sum(correct),
      'target_tokens': num_tokens,
      'examples': jnp.sum(jnp.any(weights > 0, axis=-1).astype(jnp.float32)),
  })
  return loss, metrics
