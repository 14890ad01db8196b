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
import json
import statistics
import time
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from prompt_tuning import prompts
from prompt_tuning.models import prompted, t5
from prompt_tuning.runtime import model, serving


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='small',
                      help='T5 1.1 size, one of prompt_tuning.models.t5.SIZES.')
  parser.add_argument('--tasks', type=int, default=4, help='Prompts in the bank.')
  parser.add_argument('--requests', type=int, default=64)
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--inputs_length', type=int, default=64)
  parser.add_argument('--targets_length', type=int, default=4, help='Tokens decoded.')
  parser.add_argument('--prompt_length', type=int, default=20)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--json', default=None, help='Also write every figure to this file.')
  args = parser.parse_args(argv)
  for name in ('tasks', 'requests', 'batch_size', 'inputs_length', 'targets_length',
               'prompt_length', 'rounds'):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be at least 1, got {getattr(args, name)}.')
  return args


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


def timed(fn: Callable[[], Any]) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def run(args: argparse.Namespace) -> Dict[str, Any]:
  server = make_server(args)
  requests = make_requests(args)
  ways = {'mixed': lambda: server.predict(requests),
          'one_task_at_a_time': lambda: one_task_at_a_time(server, requests)}
  answers = {name: way() for name, way in ways.items()}  # compiles (one batch shape for both)
  if [a['prediction'] for a in answers['mixed']] != [
      a['prediction'] for a in answers['one_task_at_a_time']]:
    raise SystemExit('The two ways of batching gave different answers.')
  seconds = {name: [] for name in ways}
  for round_ in range(args.rounds):
    for name in (list(ways) if round_ % 2 == 0 else list(ways)[::-1]):
      seconds[name].append(timed(ways[name]))
  batches_per_task = [-(-sum(r['task'] == n for r in requests) // args.batch_size)
                      for n in server.names]
  results = {name: {'median_s': statistics.median(times), 'seconds': times,
                    'examples_per_s': len(requests) / statistics.median(times)}
             for name, times in seconds.items()}
  results['mixed']['batches'] = -(-len(requests) // args.batch_size)
  results['one_task_at_a_time']['batches'] = sum(batches_per_task)
  results['speed_up'] = (results['mixed']['examples_per_s']
                         / results['one_task_at_a_time']['examples_per_s'])
  results['settings'] = vars(args)
  return results


def table(results: Dict[str, Any]) -> str:
  settings = results['settings']
  lines = [f"{settings['config']}: {settings['requests']} requests of {settings['tasks']} tasks in "
           f"random order, batch {settings['batch_size']}, {settings['inputs_length']} input "
           f"tokens + {settings['prompt_length']} prompt, {settings['targets_length']} decoded",
           f"{'':22}{'batches':>9}{'median s':>11}{'examples/s':>12}"]
  for name in ('mixed', 'one_task_at_a_time'):
    row = results[name]
    lines.append(f"{name:22}{row['batches']:>9}{row['median_s']:>11.3f}"
                 f"{row['examples_per_s']:>12.1f}")
  lines.append(f"speed-up (mixed / one task at a time): {results['speed_up']:.2f}")
  return '\n'.join(lines)


def main(argv: Sequence[str] = ()) -> Dict[str, Any]:
  args = parse_args(argv)
  results = run(args)
  print(table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  return results


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top
  main(sys.argv[1:])
