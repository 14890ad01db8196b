"""The CLI's surface: `--gin.NAME=VALUE` flags, and user errors in one line that touch nothing.

Every error case runs the real command in a child process (side by side, to
save time) and must exit with status 2, print a last stderr line starting
with 'error:' and no Python traceback, and leave MODEL_DIR exactly as it was:
absent when it was absent, with the same files when it held some.
"""

import re

import numpy as np
import pytest
from absl import app

import runtime_helpers as h
from prompt_tuning import checkpoints, cli


def test_dotted_gin_flags_become_gin_bindings():
  argv = ['train.py', '--gin_file=a.gin', "--gin.MODEL_DIR='/tmp/x'", '--gin.t5.T5Config.emb_dim=8',
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 4}"]
  assert cli.rewrite_gin_args(argv) == [
      'train.py', '--gin_file=a.gin', "--gin_bindings=MODEL_DIR = '/tmp/x'",
      '--gin_bindings=t5.T5Config.emb_dim = 8',
      "--gin_bindings=TASK_FEATURE_LENGTHS = {'inputs': 4}"]


def test_a_dotted_gin_flag_without_a_value_is_a_usage_error():
  with pytest.raises(app.UsageError, match='--gin.TRAIN_STEPS'):
    cli.rewrite_gin_args(['train.py', '--gin.TRAIN_STEPS'])


TINY_T5X_CHECKPOINT = 't5x_t5_1_1_tiny/checkpoint_3'


def error_cases(tmp_path, fixtures_dir):
  """name -> (script, gin files, macros, simulated devices, MODEL_DIR exists beforehand).

  The wrong-size checkpoint is a real T5X one, from the reference fixtures (when present).
  """
  wrong_shape = tmp_path / 'prompt_3x64.npy'
  np.save(wrong_shape, np.zeros((3, 64), np.float32))
  steps = h.train_macros(tmp_path / 'missing_macro', 5)
  del steps['TRAIN_STEPS']
  cases = {
      'missing_macro': ('train', h.TRAIN_GIN, steps, 1, False),
      'unknown_task': ('train', h.TRAIN_GIN, h.train_macros(
          tmp_path / 'unknown_task', 5, MIXTURE_OR_TASK_NAME="'toy_parityy'"), 1, True),
      'prompt_file_shape': ('eval', h.PROMPT_FILE_EVAL_GIN, h.toy_macros(
          tmp_path / 'prompt_file_shape', PROMPT_FILE=repr(str(wrong_shape))), 1, True),
      'regex_matches_nothing': ('train', h.TRAIN_GIN, h.train_macros(
          tmp_path / 'regex_matches_nothing', 5, TRAINABLE_REGEXES="['encoder/promt']"), 1, False),
      'batch_not_divisible': ('train', h.TRAIN_GIN, h.train_macros(
          tmp_path / 'batch_not_divisible', 5, BATCH_SIZE='6'), 8, False),
  }
  if fixtures_dir:
    cases['checkpoint_size'] = ('train', h.TRAIN_GIN, h.train_macros(
        tmp_path / 'checkpoint_size', 5,
        INITIAL_CHECKPOINT_PATH=repr(str(fixtures_dir / TINY_T5X_CHECKPOINT))), 1, True)
  return cases


@pytest.fixture(scope='module')
def errors(tmp_path_factory, request):
  """name -> (completed process, MODEL_DIR snapshot before, snapshot after)."""
  try:
    fixtures_dir = request.getfixturevalue('fixtures_dir')
  except pytest.skip.Exception:  # the other cases still run
    fixtures_dir = None
  tmp_path = tmp_path_factory.mktemp('errors')
  cases = error_cases(tmp_path, fixtures_dir)
  before = {}
  for name, (_, _, macros, _, exists) in cases.items():
    model_dir = tmp_path / name
    if exists:  # a run folder from before, which the failed command must leave alone
      (model_dir / 'checkpoint_5').mkdir(parents=True)
      (model_dir / 'config.gin').write_text('# an earlier run\n')
      (model_dir / 'checkpoint_5' / 'commit_success.txt').write_text('done')
    before[name] = h.snapshot(model_dir)
  processes = {name: h.start(h.cli_command(script, gin_files, macros), devices=devices)
               for name, (script, gin_files, macros, devices, _) in cases.items()}
  return {name: (h.finish(p), before[name], h.snapshot(tmp_path / name))
          for name, p in processes.items()}


def error_line(errors, name):
  result, before, after = errors[name]
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert after == before, f'MODEL_DIR changed: {before} -> {after}'
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('error: '), result.stderr[-3000:]
  return last


def test_a_missing_required_macro_names_it(errors):
  assert 'TRAIN_STEPS' in error_line(errors, 'missing_macro')


def test_an_unknown_task_is_named_with_a_suggestion(errors):
  line = error_line(errors, 'unknown_task')
  assert "'toy_parityy'" in line and "'toy_parity'" in line


def test_an_initial_checkpoint_of_the_wrong_size_names_an_array_and_both_shapes(errors,
                                                                                  fixtures_dir):
  line = error_line(errors, 'checkpoint_size')
  assert 'INITIAL_CHECKPOINT_PATH' in line
  match = re.search(r'array (\S+) has shape (\(.*?\)), expected (\(.*?\))', line)
  assert match, line
  array, found, expected = match.groups()
  checkpoint = checkpoints.T5XCheckpoint(str(fixtures_dir / TINY_T5X_CHECKPOINT))
  found_in_file = checkpoint.shapes()[array][0]
  assert found == str(tuple(found_in_file)) and found != expected


def test_a_prompt_file_of_the_wrong_shape_names_the_file_and_both_shapes(errors):
  line = error_line(errors, 'prompt_file_shape')
  assert 'prompt_3x64.npy' in line and '(3, 64)' in line and '(4, 64)' in line


def test_a_trainable_regex_that_matches_nothing_is_named(errors):
  assert "'encoder/promt'" in error_line(errors, 'regex_matches_nothing')


def test_a_batch_that_does_not_split_over_the_data_axis_is_refused(errors):
  line = error_line(errors, 'batch_not_divisible')
  assert 'BATCH_SIZE=6' in line and '(8)' in line
