"""The prompt parameter: `[P, H]`, or a bank `[K, P, H]` indexed per example.

Kept in float32 whatever the model computes in, and cast at use.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning.prompts import initializers

Array = jax.Array


class Prompt(nn.Module):
  """A trainable soft prompt, the parameter `prompt` (logical axes `prompt`, `prompt_embed`).

  Attributes:
    length: P, the number of prompt vectors.
    embed_dim: H, the model's embedding width.
    num_prompts: K for a bank of prompts selected per example, or None for one prompt.
    init: initializer of the `[P, H]` (or `[K, P, H]`) parameter.
    dtype: the dtype the prompt is cast to when used.
  """
  length: int
  embed_dim: int
  num_prompts: Optional[int] = None
  init: initializers.Initializer = initializers.random_uniform()
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, batch_size: int, prompt_index: Optional[Array] = None) -> Array:
    """Returns [B, P, H]: the prompt, or for a bank each example's `prompt_index` [B] entry."""
    names = ('prompt', 'prompt_embed')
    shape = (self.length, self.embed_dim)
    if self.num_prompts is not None:
      names, shape = ('prompt_bank',) + names, (self.num_prompts,) + shape
    prompt = self.param('prompt', nn.with_logical_partitioning(self.init, names), shape, jnp.float32)
    prompt = prompt.astype(self.dtype)
    if self.num_prompts is None:
      if prompt_index is not None:
        raise ValueError('prompt_index was given but the model has a single prompt, not a bank.')
      return jnp.broadcast_to(prompt, (batch_size,) + shape)
    if prompt_index is None:
      raise ValueError(f'The model has a bank of {self.num_prompts} prompts; each example needs a '
                       '`prompt_index` feature.')
    return jnp.take(prompt, prompt_index, axis=0)
