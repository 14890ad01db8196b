"""Two ways of doing the same work, timed in turns: what the serving and ensemble benchmarks share.

Each round times each way once, the order alternating between rounds, so that
load from other programs falls on both alike; figures are medians over the rounds.
"""

import argparse
import json
import statistics
import time
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

# The decoding benchmarks' shared flags besides the two given by each: (name, default, help).
_FLAGS = (('batch_size', 8, 'Examples per batch.'), ('inputs_length', 64, None),
          ('targets_length', 4, 'Tokens decoded.'), ('prompt_length', 20, None),
          ('rounds', 3, 'Timed turns of each way.'))


def parse_args(description: str, counts: Sequence[Tuple[str, int, str]],
               argv: Sequence[str]) -> argparse.Namespace:
  """--config, the `counts` flags (name, default, help), the shared ones, --seed and --json.

  Every count must be at least 1.
  """
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument('--config', default='small',
                      help='T5 1.1 size, one of prompt_tuning.models.t5.SIZES.')
  for name, default, text in (*counts, *_FLAGS):
    parser.add_argument(f'--{name}', type=int, default=default, help=text)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--json', default=None, help='Also write every figure to this file.')
  args = parser.parse_args(argv)
  for name, _, _ in (*counts, *_FLAGS):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be at least 1, got {getattr(args, name)}.')
  return args


def compare(ways: Mapping[str, Callable[[], Any]], rounds: int, examples: int,
            passes: Mapping[str, int]) -> Dict[str, Any]:
  """Times the two `ways` (each handling `examples` examples in `passes` model passes).

  Returns {way: {'median_s', 'seconds', 'examples_per_s', 'passes'}} and
  'speed_up': the first way's examples/s over the second's.
  """
  names = list(ways)
  seconds = {name: [] for name in names}
  for round_ in range(rounds):
    for name in (names if round_ % 2 == 0 else names[::-1]):
      start = time.perf_counter()
      ways[name]()
      seconds[name].append(time.perf_counter() - start)
  results: Dict[str, Any] = {
      name: {'median_s': statistics.median(times), 'seconds': times,
             'examples_per_s': examples / statistics.median(times), 'passes': passes[name]}
      for name, times in seconds.items()}
  results['speed_up'] = results[names[0]]['examples_per_s'] / results[names[1]]['examples_per_s']
  return results


def time_over_batches(ways: Mapping[str, Callable[[Any], Any]], batches: Sequence[Any],
                      args: argparse.Namespace,
                      check: Callable[[Dict[str, List[Any]]], Dict[str, Any]]) -> Dict[str, Any]:
  """Times two ways that each take every batch in one pass, after checking their outputs.

  Each way runs over all batches once untimed (it compiles and warms up);
  `check({way: [output per batch]})` returns the figures to report with the
  times, the 'title' among them, or stops the script. Then `compare`, with
  `args.rounds` rounds; the settings are `args`.
  """
  runs = {name: (lambda way=way: [way(batch) for batch in batches]) for name, way in ways.items()}
  figures = check({name: run() for name, run in runs.items()})
  passes = {name: len(batches) for name in ways}
  return {**compare(runs, args.rounds, len(batches) * args.batch_size, passes), **figures,
          'settings': vars(args)}


def report(results: Dict[str, Any], json_path: str = '') -> Dict[str, Any]:
  """Prints `results` as a table under its 'title'; also writes them to `json_path`, if given."""
  names = [name for name in results if isinstance(results[name], dict) and 'passes' in
           results[name]]
  lines = [results['title'], f"{'':22}{'passes':>8}{'median s':>11}{'examples/s':>12}"]
  for name in names:
    row = results[name]
    lines.append(f"{name:22}{row['passes']:>8}{row['median_s']:>11.3f}"
                 f"{row['examples_per_s']:>12.1f}")
  first, second = (name.replace('_', ' ') for name in names)
  lines.append(f"speed-up ({first} / {second}): {results['speed_up']:.2f}")
  print('\n'.join(lines))
  if json_path:
    with open(json_path, 'w') as f:
      json.dump(results, f, indent=2)
  return results


def main(parse: Callable[[Sequence[str]], argparse.Namespace],
         run: Callable[[argparse.Namespace], Dict[str, Any]], argv: Sequence[str]) -> Dict[str, Any]:
  """A benchmark script's `main`: parses `argv`, runs, prints the table (and the JSON)."""
  args = parse(argv)
  return report(run(args), args.json)
