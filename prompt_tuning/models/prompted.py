"""T5 1.1 with a soft prompt injected between the token embedding and the encoder stack.

The prompt parameter lives at `PROMPT_PATH` (`encoder/prompt/prompt/prompt`),
the path of the paper's T5X prompt tuning code, so its checkpoints and
exported prompts (`encoder.prompt.prompt.prompt.npy`) move between the two.
Every other parameter is the bare model's, unchanged.
"""

import dataclasses
from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning import prompts
from prompt_tuning.models import t5

Array = jax.Array

# The prompt parameter's '/'-joined path: encoder / InputPrompt / Prompt / parameter.
PROMPT_PATH = 'encoder/prompt/prompt/prompt'
# Where releases before the paper's layout kept it; readers still accept it.
LEGACY_PROMPT_PATH = 'encoder/prompt/prompt'


@dataclasses.dataclass(frozen=True)
class PromptConfig:
  """How many prompt vectors, how they are initialised, and where they go.

  Attributes:
    length: P. With 0 the model is exactly the bare T5 model.
    num_prompts: K for a bank of prompts selected per example by `prompt_index`
      (mixed-task batches, ensembles), or None for a single prompt.
    combine: 'prefix' (the paper), 'after_bos', or 'suffix' (before EOS).
    init: flax initializer of the `[P, H]` prompt (see `prompts.initializers`).
  """
  length: int = 100
  num_prompts: Optional[int] = None
  combine: str = 'prefix'
  init: prompts.initializers.Initializer = prompts.random_uniform()

  def __post_init__(self):
    if self.length < 0:
      raise ValueError(f'Prompt length must be >= 0, got {self.length}.')
    if self.combine not in prompts.COMBINE_MODES:
      raise ValueError(f'Unknown prompt combination {self.combine!r}; expected one of '
                       f'{prompts.COMBINE_MODES}.')


class InputPrompt(nn.Module):
  """The prompt (submodule `prompt`) and where it joins the embedded input."""
  prompt_config: PromptConfig
  embed_dim: int
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    c = self.prompt_config
    self.prompt = prompts.Prompt(c.length, self.embed_dim, c.num_prompts, c.init, self.dtype)

  def __call__(self, embedded: Array, visible: Array,
               prompt_index: Optional[Array] = None) -> Tuple[Array, Array]:
    """[B, T, H] embedded input, [B, T] visibility -> [B, P+T, H] and [B, P+T]."""
    prompt = self.prompt(embedded.shape[0], prompt_index)
    return prompts.combine_with_inputs(prompt, embedded, visible, self.prompt_config.combine)


class PromptedEncoder(t5.Encoder):
  """The T5 encoder with the prompt joined to its embedded input."""
  prompt_config: PromptConfig = PromptConfig()

  def setup(self):
    super().setup()
    self.prompt = InputPrompt(self.prompt_config, self.config.emb_dim, self.config.dtype)

  def embed_inputs(self, encoder_input_tokens: Array, prompt_index: Optional[Array] = None):
    """[B, T] tokens -> ([B, P+T, H] embedded prompt and input, [B, P+T] visible positions)."""
    embedded, visible = super().embed_inputs(encoder_input_tokens)
    return self.prompt(embedded, visible, prompt_index)

  def visible_positions(self, encoder_input_tokens: Array) -> Array:
    """[B, T] tokens -> [B, P+T]: prompt positions and non-padding inputs."""
    return prompts.combined_visibility(encoder_input_tokens > 0, self.prompt_config.length,
                                       self.prompt_config.combine)


class PromptedT5(t5.Transformer):
  """A frozen T5 1.1 plus a trainable prompt; same methods, plus a `prompt_index` [B] feature.

  Packed inputs (segment ids) are not supported with a prompt.
  """
  prompt_config: PromptConfig = PromptConfig()

  def make_encoder(self) -> t5.Encoder:
    if self.prompt_config.length == 0:
      return super().make_encoder()
    return PromptedEncoder(self.config, self.token_embedder, prompt_config=self.prompt_config)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Optional[Array] = None,
             enable_dropout: bool = True, **features: Array) -> Array:
    """[B, T] tokens (and `prompt_index` [B] for a bank) -> [B, P+T, H]."""
    if encoder_segment_ids is not None and self.prompt_config.length:
      raise ValueError('Packed examples (encoder_segment_ids) are not supported with a prompt.')
    return super().encode(encoder_input_tokens, None, enable_dropout, **features)
