"""One random T5 1.1 and prompt on both sides: made by transformers, read back by our HF reader.

What the benchmarks against a PyTorch peer share, so that both sides compute
with the same numbers.
"""

import argparse
from typing import Any, List, Tuple

import numpy as np

from prompt_tuning import checkpoints, prompts
from prompt_tuning.models import prompted, t5


def input_batches(args: argparse.Namespace, vocab_size: int,
                  rng: np.random.Generator) -> List[np.ndarray]:
  """`args.examples` random inputs (rounded up to whole batches), ending in EOS: [B, T] each."""
  count = -(-args.examples // args.batch_size) * args.batch_size
  tokens = rng.integers(2, vocab_size, (count, args.inputs_length)).astype(np.int32)
  tokens[:, -1] = 1
  return np.split(tokens, count // args.batch_size)


def torch_t5(args: argparse.Namespace, directory: str) -> Tuple[Any, Any]:
  """(transformers `T5ForConditionalGeneration` in eval mode, [P, H] torch prompt), saved to `directory`.

  `args` has `config` (a T5 1.1 size), `prompt_length` and `seed`.
  """
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(args.seed)
  c = t5.config_for_size(args.config)
  config = transformers.T5Config(
      vocab_size=c.vocab_size, d_model=c.emb_dim, d_kv=c.head_dim, d_ff=c.mlp_dim,
      num_layers=c.num_encoder_layers, num_decoder_layers=c.num_decoder_layers,
      num_heads=c.num_heads, relative_attention_num_buckets=c.relative_attention_num_buckets,
      relative_attention_max_distance=c.relative_attention_max_distance,
      layer_norm_epsilon=c.layer_norm_epsilon, dropout_rate=0.0,
      feed_forward_proj='gated-gelu', tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
      decoder_start_token_id=0)
  model = transformers.T5ForConditionalGeneration(config).eval()
  # T5 1.1's output layer is its own; transformers 5 ties it to the embedding on creation.
  model.config.tie_word_embeddings = False
  model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight) * c.emb_dim**-0.5)
  model.save_pretrained(directory)
  prompt = torch.empty(args.prompt_length, c.emb_dim).uniform_(-0.5, 0.5)
  return model, prompt


def ours(args: argparse.Namespace, directory: str, prompt: np.ndarray) -> Tuple[Any, Any]:
  """(`PromptedT5` module, its parameters on the default device): the weights in `directory`."""
  import jax  # pylint: disable=g-import-not-at-top (after prompt_tuning, which keeps JAX off an absent TPU)
  module = prompted.PromptedT5(t5.config_for_size(args.config, dropout_rate=0.0),
                               prompt_config=prompted.PromptConfig(
                                   length=args.prompt_length, init=prompts.random_uniform()))
  params = checkpoints.load_t5(directory)
  params['encoder']['prompt'] = {'prompt': {'prompt': prompt}}
  return module, jax.device_put(params)


def attention(model: Any) -> str:
  """The attention implementation transformers picked (`sdpa` by default)."""
  return model.config._attn_implementation  # pylint: disable=protected-access
