"""Examples/s of an ensemble evaluated in one batched pass against its members one after another.

  python benchmarks/ensemble_eval.py [--config=small] [--members=5] [--examples=64] [--json=PATH]

One frozen model with a bank of `--members` random prompts (random weights)
decodes the same examples two ways, as `runtime/evaluation.py` can: every
batch of B examples expanded to B x K rows, one per member, in one pass (what
ENSEMBLE=True does), and each member's own pass over all the batches, one
member after another. The two ways take turns, round by round, so that load
from other programs falls on both alike; times are medians over the rounds.
Both ways give the same outputs (the script checks). Reads nothing from disk,
downloads nothing, writes only the optional JSON.
"""

import argparse
import sys
from typing import Any, Dict, List, Sequence

import numpy as np

import two_ways
from prompt_tuning import ensembles, prompts
from prompt_tuning.models import prompted, t5
from prompt_tuning.runtime import evaluation, inputs, model, partitioning, run_setup


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  counts = (('members', 5, 'Prompts in the ensemble (K).'), ('examples', 64, None))
  return two_ways.parse_args(__doc__.split('\n\n')[0], counts, argv)


class Ensemble:
  """A bank of random prompts on a random frozen T5 1.1, and its decode step per batch shape."""

  def __init__(self, args: argparse.Namespace):
    import seqio  # pylint: disable=g-import-not-at-top (after prompt_tuning, which keeps JAX off an absent TPU)
    config = t5.config_for_size(args.config, dropout_rate=0.0)
    module = prompted.PromptedT5(config, prompt_config=prompted.PromptConfig(
        length=args.prompt_length, num_prompts=args.members, init=prompts.random_uniform()))
    self.model = model.EncoderDecoderModel(module, seqio.PassThroughVocabulary(config.vocab_size))
    lengths = {'inputs': args.inputs_length, 'targets': args.targets_length}
    run = run_setup.set_up(self.model, run_setup.RunConfig(),
                           input_shapes=inputs.feature_shapes(lengths, args.batch_size))
    self.params, self.mesh = run.params(), run.mesh
    self.predict = evaluation.jit_predict(self.model, args.targets_length, run.shardings, run.mesh)
    self.members = args.members

  def decode(self, features: Dict[str, np.ndarray]) -> np.ndarray:
    import jax  # pylint: disable=g-import-not-at-top (after prompt_tuning, which keeps JAX off an absent TPU)
    batch = partitioning.replicated_batch(features, self.mesh)
    with jax.set_mesh(self.mesh):
      tokens, _ = self.predict(self.params, batch, jax.random.key(0))
    return np.asarray(tokens)

  def together(self, batches: List[np.ndarray]) -> np.ndarray:
    """[N, K, L]: each batch expanded to B x K rows, one pass per batch."""
    return np.concatenate([ensembles.by_member(self.decode(ensembles.expand_for_members(
        {'encoder_input_tokens': tokens}, self.members)), self.members) for tokens in batches])

  def one_after_another(self, batches: List[np.ndarray]) -> np.ndarray:
    """[N, K, L]: every batch of member 0, then of member 1, ..."""
    by_member = []
    for k in range(self.members):
      by_member.append(np.concatenate([self.decode({
          'encoder_input_tokens': tokens,
          'prompt_index': np.full((tokens.shape[0],), k, np.int32)}) for tokens in batches]))
    return np.stack(by_member, axis=1)


def make_batches(args: argparse.Namespace, vocab_size: int) -> List[np.ndarray]:
  """`--examples` random token sequences ending in EOS (1), in batches of `--batch_size`."""
  rng = np.random.default_rng(args.seed)
  count = -(-args.examples // args.batch_size) * args.batch_size
  tokens = rng.integers(2, vocab_size, (count, args.inputs_length)).astype(np.int32)
  tokens[:, -1] = 1
  return np.split(tokens, count // args.batch_size)


def run(args: argparse.Namespace) -> Dict[str, Any]:
  ensemble = Ensemble(args)
  batches = make_batches(args, ensemble.model.module.config.vocab_size)
  ways = {'together': lambda: ensemble.together(batches),
          'one_after_another': lambda: ensemble.one_after_another(batches)}
  outputs = {name: way() for name, way in ways.items()}  # compiles each batch shape
  if not np.array_equal(outputs['together'], outputs['one_after_another']):
    raise SystemExit('The two ways gave different outputs.')
  passes = {'together': len(batches), 'one_after_another': len(batches) * args.members}
  title = (f'{args.config}: {args.members} members, {args.examples} examples in batches of '
           f'{args.batch_size}, {args.inputs_length} input tokens + {args.prompt_length} prompt, '
           f'{args.targets_length} decoded')
  return {**two_ways.compare(ways, args.rounds, len(batches) * args.batch_size, passes),
          'title': title, 'settings': vars(args)}


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
  return two_ways.main(parse_args, run, argv)


if __name__ == '__main__':
  main(sys.argv[1:])
