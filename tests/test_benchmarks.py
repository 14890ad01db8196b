"""The benchmarks run end to end on tiny models; the train step's FLOP formula is exact."""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'train_step.py'
# One core keeps torch's OpenMP threads from stalling on a busy machine; one step per round.
TINY = ['--config=tiny', '--batch_size=2', '--inputs_length=6', '--prompt_length=3',
        '--targets_length=4', '--warmup_steps=1', '--rounds=1', '--steps_per_round=1',
        '--matmul_size=64', '--matmul_reps=1', '--threads=1']
ROWS = ('step time, median (ms)', 'achieved GFLOP/s', 'fraction of the jnp float32 matmul rate',
        'ru_maxrss', 'peak RSS during timed steps', 'XLA memory analysis', 'speed-up (peer / ours)',
        'float32 matmul', 'model: 2 x forward', "dot_general in the step's jaxpr",
        'XLA cost_analysis')


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  path = tmp_path_factory.mktemp('benchmark') / 'results.json'
  done = subprocess.run([sys.executable, str(SCRIPT), *TINY, f'--json={path}'],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stdout, json.loads(path.read_text())


def test_the_table_shows_every_figure(tiny_run):
  table, _ = tiny_run
  missing = [row for row in ROWS if row not in table]
  assert not missing, f'rows missing from the table: {missing}\n{table}'


def test_every_measured_figure_is_a_positive_number(tiny_run):
  _, results = tiny_run
  figures = {'speed_up': results['median']['speed_up'],
             'jnp matmul rate': results['matmul']['jnp']['flop_per_s'],
             'torch matmul rate': results['matmul']['torch']['flop_per_s']}
  for name in ('ours', 'peer'):
    for key in ('median_step_s', 'best_step_s', 'model_flop_per_s', 'fraction_of_matmul_rate_best',
                'ru_maxrss_mib', 'rss_ready_mib'):
      figures[f'{name}.{key}'] = results[name][key]
  figures['ours.xla temp'] = results['ours']['xla_memory_mib']['temp']
  figures['peer.saved activations'] = results['peer']['saved_activations_mib']
  bad = {k: v for k, v in figures.items()
         if not (isinstance(v, float) and math.isfinite(v) and v > 0)}
  assert not bad, bad


def test_the_flop_formula_counts_exactly_the_matmuls_jax_traces(tiny_run):
  _, results = tiny_run
  flops = results['flops']
  assert flops['exact'] == flops['jaxpr_matmuls']


def test_xla_counts_at_least_the_matmuls(tiny_run):
  _, results = tiny_run
  assert results['flops']['xla_cost_analysis'] >= results['flops']['exact']


def test_more_cores_than_allowed_is_a_one_line_error():
  done = subprocess.run([sys.executable, str(SCRIPT), '--threads=4096'], capture_output=True,
                        text=True, timeout=60)
  assert done.returncode != 0
  assert done.stderr.strip().splitlines() == [
      f'--threads=4096, but this process may use only {len(os.sched_getaffinity(0))} cores.']


def load_benchmark(name):
  """A script of benchmarks/ as a module, to run its `main` in this process."""
  if str(SCRIPT.parent) not in sys.path:  # as when run: its folder first, for what it shares
    sys.path.insert(0, str(SCRIPT.parent))
  spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def assert_timed_in_turns(results, ways, rounds):
  """Each way timed once per round, at a finite positive rate; their ratio likewise."""
  for way in ways:
    assert len(results[way]['seconds']) == rounds
    assert math.isfinite(results[way]['examples_per_s']) and results[way]['examples_per_s'] > 0
  assert math.isfinite(results['speed_up']) and results['speed_up'] > 0


def test_mixed_task_serving_times_both_ways_of_batching_the_same_requests(capsys):
  serving = load_benchmark('mixed_task_serving')
  flags = ['--config=tiny', '--tasks=3', '--requests=10', '--batch_size=4', '--inputs_length=8',
           '--prompt_length=2', '--targets_length=2', '--rounds=2']
  results = serving.main(flags)
  assert 'speed-up (mixed / one task at a time)' in capsys.readouterr().out
  # Batches of 4 mixing the tasks, against each task's requests in batches of their own.
  requests = serving.make_requests(serving.parse_args(flags))
  per_task = [sum(r['task'] == f'task_{k}' for r in requests) for k in range(3)]
  assert results['mixed']['passes'] == 3
  assert results['one_task_at_a_time']['passes'] == sum(-(-n // 4) for n in per_task) > 3
  assert_timed_in_turns(results, ('mixed', 'one_task_at_a_time'), rounds=2)


# The decoding and scoring benchmarks on a tiny model: 5 examples in 3 batches of 2, 2 rounds.
TINY_TWO_WAYS = {'config': 'tiny', 'examples': 5, 'batch_size': 2, 'inputs_length': 6,
                 'prompt_length': 2, 'rounds': 2}


def run_benchmark(name, **flags):
  """(module, results) of benchmarks/<name>.py run in this process on TINY_TWO_WAYS and `flags`."""
  module = load_benchmark(name)
  settings = {**TINY_TWO_WAYS, **flags}
  return module, module.main([f'--{flag}={value}' for flag, value in settings.items()])


def test_ensemble_eval_times_one_batched_pass_against_the_members_one_after_another(capsys):
  _, results = run_benchmark('ensemble_eval', members=3, targets_length=2)
  assert 'speed-up (together / one after another)' in capsys.readouterr().out
  # 5 examples in 3 batches of 2: one pass each together, one per batch and member apart.
  assert results['together']['passes'] == 3
  assert results['one_after_another']['passes'] == 9
  assert_timed_in_turns(results, ('together', 'one_after_another'), rounds=2)


def test_rank_scoring_times_ours_against_an_encoder_once_torch_scorer_on_the_same_weights(capsys):
  ranking, results = run_benchmark('rank_scoring', labels=3, targets_length=3)
  assert 'speed-up (ours / torch encoder once)' in capsys.readouterr().out
  # The same weights both ways: the log-likelihoods agree (the script stops otherwise).
  assert 0 <= results['max_difference'] <= ranking.TOLERANCE
  assert results['ours']['passes'] == results['torch_encoder_once']['passes'] == 3
  assert_timed_in_turns(results, ('ours', 'torch_encoder_once'), rounds=2)


@pytest.mark.parametrize('num_beams', [1, 3])
def test_decoding_times_ours_against_hugging_face_generate_on_the_same_weights(capsys, num_beams):
  decoding, results = run_benchmark('decoding', num_beams=num_beams, targets_length=4)
  assert 'speed-up (ours / torch generate)' in capsys.readouterr().out
  # The same weights both ways: the outputs agree (the script stops otherwise).
  assert decoding.LEAST_AGREEMENT <= results['agreement'] <= 1
  assert results['ours']['passes'] == results['torch_generate']['passes'] == 3
  assert_timed_in_turns(results, ('ours', 'torch_generate'), rounds=2)
