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

import two_ways
from prompt_tuning import checkpoints, prompts, scoring
from prompt_tuning.models import prompted, t5

TOLERANCE = 1e-3  # nats, on log-likelihoods of a few tokens in float32


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  counts = (('labels', 3, 'Candidate targets per input (C).'), ('examples', 64, None))
  return two_ways.parse_args(__doc__.split('\n\n')[0], counts, argv)


def make_data(args: argparse.Namespace, vocab_size: int):
  """Inputs [N, T] ending in EOS, and [C, Lc] EOS-terminated candidates of 1..Lc-1 tokens."""
  rng = np.random.default_rng(args.seed)
  count = -(-args.examples // args.batch_size) * args.batch_size
  tokens = rng.integers(2, vocab_size, (count, args.inputs_length)).astype(np.int32)
  tokens[:, -1] = 1
  candidates = np.zeros((args.labels, args.targets_length), np.int32)
  for row in candidates:
    length = rng.integers(1, args.targets_length)
    row[:length] = rng.integers(2, vocab_size, length)
    row[length] = 1
  return np.split(tokens, count // args.batch_size), candidates


class Torch:
  """The encoder-once scorer in PyTorch, on a random transformers T5 1.1 and prompt."""

  def __init__(self, args: argparse.Namespace, directory: str):
    import torch  # pylint: disable=g-import-not-at-top
    import transformers  # pylint: disable=g-import-not-at-top
    self.torch = torch
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
    self.model = transformers.T5ForConditionalGeneration(config).eval()
    # T5 1.1's output layer is its own; transformers 5 ties it to the embedding on creation.
    self.model.config.tie_word_embeddings = False
    self.model.lm_head.weight = torch.nn.Parameter(
        torch.randn_like(self.model.shared.weight) * c.emb_dim**-0.5)
    self.model.save_pretrained(directory)
    self.prompt = torch.empty(args.prompt_length, c.emb_dim).uniform_(-0.5, 0.5)
    self.attention = self.model.config._attn_implementation  # pylint: disable=protected-access

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
    self.jax = jax
    module = prompted.PromptedT5(t5.config_for_size(args.config, dropout_rate=0.0),
                                 prompt_config=prompted.PromptConfig(
                                     length=args.prompt_length, init=prompts.random_uniform()))
    self.params = checkpoints.load_t5(directory)
    self.params['encoder']['prompt'] = {'prompt': {'prompt': prompt}}
    self.params = jax.device_put(self.params)
    self.classify = jax.jit(lambda params, tokens, candidates: scoring.rank_classify(
        module, params, tokens, candidates)[1])

  def score(self, tokens: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    return np.asarray(self.classify(self.params, tokens, candidates))


def run(args: argparse.Namespace) -> Dict[str, Any]:
  with tempfile.TemporaryDirectory() as directory:
    torch_scorer = Torch(args, directory)
    ours = Ours(args, directory, torch_scorer.prompt.numpy())
  batches, candidates = make_data(args, t5.config_for_size(args.config).vocab_size)
  scorers = {'ours': ours, 'torch_encoder_once': torch_scorer}
  ways = {name: (lambda s=scorer: [s.score(tokens, candidates) for tokens in batches])
          for name, scorer in scorers.items()}
  scores = {name: np.concatenate(way()) for name, way in ways.items()}  # compiles; warms up
  difference = float(np.abs(scores['ours'] - scores['torch_encoder_once']).max())
  if difference > TOLERANCE:
    raise SystemExit(f'The two scorers disagree by {difference:.2e} nats.')
  passes = {name: len(batches) for name in ways}
  title = (f'{args.config}: rank classification of {args.examples} examples in batches of '
           f'{args.batch_size}, {args.inputs_length} input tokens + {args.prompt_length} prompt, '
           f'{args.labels} candidates of up to {args.targets_length} tokens; torch attention '
           f'{torch_scorer.attention!r}; scores agree to {difference:.1e} nats')
  return {**two_ways.compare(ways, args.rounds, len(batches) * args.batch_size, passes),
          'title': title, 'max_difference': difference, 'torch_attention': torch_scorer.attention,
          'settings': vars(args)}


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
  return two_ways.main(parse_args, run, argv)


if __name__ == '__main__':
  main(sys.argv[1:])
