"""Where the prompt joins the embedded input: before it, after its first token, or before EOS.

All three are one operation: insert the P prompt rows at a per-example
offset. Prompt positions are always visible; padding stays invisible.
"""

from typing import Tuple

import jax
import jax.numpy as jnp

Array = jax.Array

COMBINE_MODES = ('prefix', 'after_bos', 'suffix')


def _insert_offsets(visible: Array, mode: str) -> Array:
  """[B, T] visibility -> [B] index at which the prompt is inserted."""
  batch = visible.shape[0]
  if mode == 'prefix':
    return jnp.zeros((batch,), jnp.int32)
  if mode == 'after_bos':
    return jnp.ones((batch,), jnp.int32)
  if mode == 'suffix':
    # Before the last visible token, which is EOS in T5 inputs.
    return jnp.maximum(jnp.sum(visible > 0, axis=1).astype(jnp.int32) - 1, 0)
  raise ValueError(f'Unknown prompt combination {mode!r}; expected one of {COMBINE_MODES}.')


def _gather_plan(visible: Array, prompt_length: int, mode: str):
  """For each of the P+T output positions: is it a prompt row, and which row or token it takes."""
  length = visible.shape[1]
  offsets = _insert_offsets(visible, mode)[:, None]  # [B, 1]
  positions = jnp.arange(prompt_length + length)[None, :]  # [1, P+T]
  is_prompt = (positions >= offsets) & (positions < offsets + prompt_length)  # [B, P+T]
  token_index = jnp.where(positions < offsets, positions, positions - prompt_length)
  token_index = jnp.clip(token_index, 0, length - 1)
  prompt_row = jnp.clip(positions - offsets, 0, prompt_length - 1)
  return is_prompt, token_index, prompt_row


def combined_visibility(visible: Array, prompt_length: int, mode: str) -> Array:
  """[B, T] input visibility -> [B, P+T] visibility of the combined sequence."""
  is_prompt, token_index, _ = _gather_plan(visible, prompt_length, mode)
  return is_prompt | (jnp.take_along_axis(visible, token_index, axis=1) > 0)


def combine_with_inputs(prompt: Array, embedded: Array, visible: Array,
                        mode: str = 'prefix') -> Tuple[Array, Array]:
  """Inserts the prompt into the embedded input.

  Args:
    prompt: [B, P, H] one prompt per example.
    embedded: [B, T, H] embedded input tokens.
    visible: [B, T] non-padding positions of the input.
    mode: 'prefix', 'after_bos' or 'suffix' (before EOS).

  Returns:
    [B, P+T, H] combined embeddings and their [B, P+T] visibility.
  """
  prompt_length = prompt.shape[1]
  is_prompt, token_index, prompt_row = _gather_plan(visible, prompt_length, mode)
  tokens = jnp.take_along_axis(embedded, token_index[..., None], axis=1)
  prompts = jnp.take_along_axis(prompt, prompt_row[..., None], axis=1)
  combined = jnp.where(is_prompt[..., None], prompts.astype(embedded.dtype), tokens)
  return combined, combined_visibility(visible, prompt_length, mode)
