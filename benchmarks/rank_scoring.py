"""Examples/s of rank classification: this runtime against a PyTorch scorer that encodes once.

  python benchmarks/rank_scoring.py [--config=small] [--labels=3] [--batch_size=32] [--json=PATH]

One random T5 1.1 (float32, no dropout) and one random prompt, the same weights on
both sides: made by transformers, saved, and read back by this project's Hugging
Face reader. Each of `--examples` inputs (`--inputs_length` random tokens after the
`--prompt_length` prompt) is scored against `--labels` candidate targets of
`--targets_length` tokens, in batches of `--batch_size`, two ways in this process:
- ours: `scoring.rank_classify`, jitted: the encoder once, then one decoder pass over
  each input's candidates packed into one sequence over its one encoder output;
- torch: `T5ForConditionalGeneration` (transformers' default attention, named in the
  table; inference mode): the encoder once on the prompt and input embeddings, then the decoder on
  the B x C candidates with the encoder output repeated for each, as a PyTorch
  scorer that encodes once is written.
Both rank every input's candidates alike (the script checks the log-likelihoods
agree to 1e-3). The two take turns, round by round; times are medians over the
rounds. Both use every core this process may use. Nothing is downloaded; a
temporary folder holds the weights while they are read.
"""

import argparse
import sys
import tempfile
from typing import Any, Dict, Sequence

import numpy as np

import same_weights
import two_ways
from prompt_tuning import scoring
from prompt_tuning.models import t5

TOLERANCE = 1e-3  # nats, on log-likelihoods of a few tokens in float32


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  counts = (('labels', 3, 'Candidate targets per input (C).'), ('examples', 64, None))
  return two_ways.parse_args(__doc__.split('\n\n')[0], counts, argv)


def make_data(args: argparse.Namespace, vocab_size: int):
  """Batches of inputs [B, T] ending in EOS, and [C, Lc] EOS-terminated candidates of 1..Lc-1 tokens."""
  rng = np.random.default_rng(args.seed)
  batches = same_weights.input_batches(args, vocab_size, rng)
  candidates = np.zeros((args.labels, args.targets_length), np.int32)
  for row in candidates:
    length = rng.integers(1, args.targets_length)
    row[:length] = rng.integers(2, vocab_size, length)
    row[length] = 1
  return batches, candidates


class Torch:
  """The encoder-once scorer in PyTorch, on a random transformers T5 1.1 and prompt."""

  def __init__(self, args: argparse.Namespace, directory: str):
    import torch  # pylint: disable=g-import-not-at-top
    self.torch = torch
    self.model, self.prompt = same_weights.torch_t5(args, directory)
    self.attention = same_weights.attention(self.model)

  def score(self, tokens: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """[B, C] log-likelihoods."""
    torch = self.torch
    with torch.inference_mode():
      inputs = torch.from_numpy(tokens).long()
      batch, num_candidates = inputs.shape[0], candidates.shape[0]
      embedded = torch.cat([self.prompt.expand(batch, -1, -1), self.model.shared(inputs)], dim=1)
      mask = torch.cat([torch.ones(batch, self.prompt.shape[0], dtype=torch.long),
                        (inputs > 0).long()], dim=1)
      encoded = self.model.encoder(inputs_embeds=embedded, attention_mask=mask).last_hidden_state
      targets = torch.from_numpy(candidates).long().repeat(batch, 1)  # [B*C, Lc]
      decoder_inputs = torch.cat([torch.zeros_like(targets[:, :1]), targets[:, :-1]], dim=1)
      logits = self.model(encoder_outputs=(encoded.repeat_interleave(num_candidates, 0),),
                          attention_mask=mask.repeat_interleave(num_candidates, 0),
                          decoder_input_ids=decoder_inputs).logits
      token_scores = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None])[..., 0]
      scores = (token_scores * (targets > 0)).sum(-1)
    return scores.reshape(batch, num_candidates).numpy()


class Ours:
  """`scoring.rank_classify` jitted, on the same weights (read by the project's HF reader)."""

  def __init__(self, args: argparse.Namespace, directory: str, prompt: np.ndarray):
    import jax  # pylint: disable=g-import-not-at-top (after prompt_tuning, which keeps JAX off an absent TPU)
    module, self.params = same_weights.ours(args, directory, prompt)
    self.classify = jax.jit(lambda params, tokens, candidates: scoring.rank_classify(
        module, params, tokens, candidates)[1])

  def score(self, tokens: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    return np.asarray(self.classify(self.params, tokens, candidates))


def run(args: argparse.Namespace) -> Dict[str, Any]:
  with tempfile.TemporaryDirectory() as directory:
    torch_scorer = Torch(args, directory)
    ours = Ours(args, directory, torch_scorer.prompt.numpy())
  batches, candidates = make_data(args, t5.config_for_size(args.config).vocab_size)

  def check(scores):
    ours_scores, torch_scores = (np.concatenate(scores[name])
                                 for name in ('ours', 'torch_encoder_once'))
    difference = float(np.abs(ours_scores - torch_scores).max())
    if difference > TOLERANCE:
      raise SystemExit(f'The two scorers disagree by {difference:.2e} nats.')
    title = (f'{args.config}: rank classification of {args.examples} examples in batches of '
             f'{args.batch_size}, {args.inputs_length} input tokens + {args.prompt_length} '
             f'prompt, {args.labels} candidates of up to {args.targets_length} tokens; torch '
             f'attention {torch_scorer.attention!r}; scores agree to {difference:.1e} nats')
    return {'title': title, 'max_difference': difference,
            'torch_attention': torch_scorer.attention}

  return two_ways.time_over_batches(
      {'ours': lambda tokens: ours.score(tokens, candidates),
       'torch_encoder_once': lambda tokens: torch_scorer.score(tokens, candidates)},
      batches, args, check)


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
  return two_ways.main(parse_args, run, argv)


if __name__ == '__main__':
  main(sys.argv[1:])
