"""Examples/s of mixed-task batches against one-task-at-a-time batches, on one frozen model.

  python benchmarks/mixed_task_serving.py [--config=small] [--tasks=4] [--requests=64] [--json=PATH]

One `MixedTaskServer` (a bank of one random prompt per task, random frozen
weights) answers the same requests, whose tasks come in random order, twice
per round: all together, in batches that mix tasks, and task by task, as a
server without a bank must batch them (each task's last batch padded). The two
ways take turns, round by round, so that load from other programs falls on
both alike; times are medians over the rounds. Both ways give the same answers.
Reads nothing from disk, downloads nothing, writes only the optional JSON.
"""

import argparse
import sys
from typing import Any, Dict, List, Sequence

import numpy as np

import two_ways
from prompt_tuning import prompts
from prompt_tuning.models import prompted, t5
from prompt_tuning.runtime import model, serving


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  counts = (('tasks', 4, 'Prompts in the bank.'), ('requests', 64, None))
  return two_ways.parse_args(__doc__.split('\n\n')[0], counts, argv)


def make_server(args: argparse.Namespace) -> serving.MixedTaskServer:
  """A bank of `--tasks` random prompts on a randomly initialised frozen T5 1.1."""
  import seqio  # pylint: disable=g-import-not-at-top (after prompt_tuning, which keeps JAX off an absent TPU)
  vocabulary = seqio.ByteVocabulary()
  config = t5.config_for_size(args.config, dropout_rate=0.0)
  module = prompted.PromptedT5(config, prompt_config=prompted.PromptConfig(
      length=args.prompt_length, num_prompts=args.tasks, init=prompts.random_uniform()))
  return serving.MixedTaskServer(
      model=model.EncoderDecoderModel(module, vocabulary),
      prompt_names=[f'task_{k}' for k in range(args.tasks)],
      task_feature_lengths={'inputs': args.inputs_length, 'targets': args.targets_length},
      batch_size=args.batch_size)


def make_requests(args: argparse.Namespace) -> List[Dict[str, str]]:
  """`--requests` random lowercase texts filling the inputs, each of a task drawn at random."""
  rng = np.random.default_rng(args.seed)
  letters = np.array(list('abcdefghijklmnopqrstuvwxyz '))
  return [{'task': f'task_{rng.integers(args.tasks)}',
           'inputs': ''.join(rng.choice(letters, args.inputs_length - 1))}
          for _ in range(args.requests)]


def one_task_at_a_time(server: serving.MixedTaskServer,
                       requests: Sequence[Dict[str, str]]) -> List[Dict[str, Any]]:
  """Each task's requests in batches of their own; the answers put back in request order."""
  answers: List[Any] = [None] * len(requests)
  for name in server.names:
    positions = [i for i, r in enumerate(requests) if r['task'] == name]
    for i, answer in zip(positions, server.predict([requests[i] for i in positions])):
      answers[i] = answer
  return answers


def run(args: argparse.Namespace) -> Dict[str, Any]:
  server = make_server(args)
  requests = make_requests(args)
  ways = {'mixed': lambda: server.predict(requests),
          'one_task_at_a_time': lambda: one_task_at_a_time(server, requests)}
  answers = {name: way() for name, way in ways.items()}  # compiles (one batch shape for both)
  if [a['prediction'] for a in answers['mixed']] != [
      a['prediction'] for a in answers['one_task_at_a_time']]:
    raise SystemExit('The two ways of batching gave different answers.')
  batches = lambda count: -(-count // args.batch_size)
  passes = {'mixed': batches(len(requests)),
            'one_task_at_a_time': sum(batches(sum(r['task'] == n for r in requests))
                                      for n in server.names)}
  title = (f'{args.config}: {args.requests} requests of {args.tasks} tasks in random order, '
           f'batch {args.batch_size}, {args.inputs_length} input tokens + {args.prompt_length} '
           f'prompt, {args.targets_length} decoded')
  return {**two_ways.compare(ways, args.rounds, len(requests), passes), 'title': title,
          'settings': vars(args)}


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
  return two_ways.main(parse_args, run, argv)


if __name__ == '__main__':
  main(sys.argv[1:])
