"""Examples/s of decoding: this runtime's jitted decoder against Hugging Face `generate`.

  python benchmarks/decoding.py [--config=small] [--num_beams=1] [--batch_size=32] [--json=PATH]

One random T5 1.1 (float32, no dropout) and one random prompt, the same weights on
both sides: made by transformers, saved, and read back by this project's Hugging
Face reader. Each of `--examples` inputs (`--inputs_length` random tokens after the
`--prompt_length` prompt) is decoded for `--targets_length` tokens, in batches of
`--batch_size`, two ways in this process:
- ours: `decoding.greedy_decode` (or `decoding.beam_search` with `--num_beams` > 1,
  alpha 0), jitted: the encoder once, then one compiled loop over the cached decoder;
- torch: `T5ForConditionalGeneration.generate` on the prompt and input embeddings
  (transformers' default attention, named in the table; inference mode), greedy or
  beam search with the same beams and no length penalty.
Both stop at EOS or after `--targets_length` tokens. The script reports how many
outputs are the same both ways, and stops if fewer than 90% are (float32 sums
in another order may break a near tie). The two take turns, round by round; times
are medians over the rounds. Nothing is downloaded; a temporary folder holds the
weights while they are read.
"""

import argparse
import sys
import tempfile
from typing import Any, Dict, Sequence

import numpy as np

import same_weights
import two_ways
from prompt_tuning import decoding
from prompt_tuning.models import t5

LEAST_AGREEMENT = 0.9


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  counts = (('num_beams', 1, 'Beams (1: greedy decoding).'), ('examples', 64, None))
  return two_ways.parse_args(__doc__.split('\n\n')[0], counts, argv)


class Torch:
  """`generate` on a random transformers T5 1.1, with the prompt prepended to the input embeddings."""

  def __init__(self, args: argparse.Namespace, directory: str):
    import torch  # pylint: disable=g-import-not-at-top
    self.torch = torch
    self.model, self.prompt = same_weights.torch_t5(args, directory)
    self.attention = same_weights.attention(self.model)
    self.length, self.beams = args.targets_length, args.num_beams

  def decode(self, tokens: np.ndarray) -> np.ndarray:
    """[B, L] tokens, 0 after EOS."""
    torch = self.torch
    with torch.inference_mode():
      inputs = torch.from_numpy(tokens).long()
      batch = inputs.shape[0]
      embedded = torch.cat([self.prompt.expand(batch, -1, -1), self.model.shared(inputs)], dim=1)
      mask = torch.cat([torch.ones(batch, self.prompt.shape[0], dtype=torch.long),
                        (inputs > 0).long()], dim=1)
      beams = {'num_beams': self.beams, 'length_penalty': 0.0} if self.beams > 1 else {}
      out = self.model.generate(inputs_embeds=embedded, attention_mask=mask,
                                max_new_tokens=self.length, min_new_tokens=0, do_sample=False,
                                **beams)
    decoded = np.zeros((batch, self.length), np.int32)
    decoded[:, :out.shape[1] - 1] = out[:, 1:].numpy()  # without the start token
    return decoded


class Ours:
  """Greedy decoding or beam search, jitted, on the same weights (read by the project's HF reader)."""

  def __init__(self, args: argparse.Namespace, directory: str, prompt: np.ndarray):
    import jax  # pylint: disable=g-import-not-at-top (after prompt_tuning, which keeps JAX off an absent TPU)
    module, self.params = same_weights.ours(args, directory, prompt)
    length = args.targets_length
    if args.num_beams == 1:
      decode = lambda params, tokens: decoding.greedy_decode(module, params, tokens, length,
                                                             eos_id=1)[0]
    else:
      decode = lambda params, tokens: decoding.beam_search(
          module, params, tokens, length, num_beams=args.num_beams, alpha=0.0, eos_id=1)[0]
    self.decode_jitted = jax.jit(decode)

  def decode(self, tokens: np.ndarray) -> np.ndarray:
    return np.asarray(self.decode_jitted(self.params, tokens))


def run(args: argparse.Namespace) -> Dict[str, Any]:
  with tempfile.TemporaryDirectory() as directory:
    torch_decoder = Torch(args, directory)
    ours = Ours(args, directory, torch_decoder.prompt.numpy())
  batches = same_weights.input_batches(args, t5.config_for_size(args.config).vocab_size,
                                       np.random.default_rng(args.seed))

  def check(outputs):
    both = [np.concatenate(outputs[name]) for name in ('ours', 'torch_generate')]
    agreement = float(np.mean(np.all(both[0] == both[1], axis=-1)))
    if agreement < LEAST_AGREEMENT:
      raise SystemExit(f'Only {agreement:.0%} of the outputs are the same both ways.')
    method = 'greedy' if args.num_beams == 1 else f'beam search of {args.num_beams}'
    title = (f'{args.config}: {method} decoding of {args.examples} examples in batches of '
             f'{args.batch_size}, {args.inputs_length} input tokens + {args.prompt_length} '
             f'prompt, {args.targets_length} tokens; torch attention '
             f'{torch_decoder.attention!r}; {agreement:.0%} of the outputs the same')
    return {'title': title, 'agreement': agreement, 'torch_attention': torch_decoder.attention}

  return two_ways.time_over_batches({'ours': ours.decode, 'torch_generate': torch_decoder.decode},
                                    batches, args, check)


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
  return two_ways.main(parse_args, run, argv)


if __name__ == '__main__':
  main(sys.argv[1:])
