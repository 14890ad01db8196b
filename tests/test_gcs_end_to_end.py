"""The offline demo with everything on gs:// (fake-gcs-server), run through the CLI as a user would.

MODEL_DIR, the frozen checkpoint, the prompt file, eval's CHECKPOINT_PATH,
infer's input and output files all live on the emulated bucket. Training is
killed (SIGKILL) once its half-way checkpoint is committed and exported, then
resumed, and ends bit-identical to an uninterrupted run on a local MODEL_DIR.
The children run in an empty folder, which must stay empty: no path may fall
back to a local `./gs:/...`.
"""

import io
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import numpy as np

import runtime_helpers as h
from prompt_tuning import checkpoints, storage
from test_storage import emulated_bucket  # pylint: disable=unused-import  # a fixture

STEPS, SAVING_PERIOD = 40, 20
PROMPT_NPY = checkpoints.prompt_file_name()  # the prompt's export, as T5X names it
TRAIN_GIN = ('configs/demo/prompt_tuning_demo.gin',)
EVAL_GIN = ('configs/demo/prompt_tuning_demo_eval.gin',)
INFER_GIN = ('configs/demo/prompt_tuning_demo_infer.gin',)
INPUT_LINES = ['a wonderful film', 'a dull and tedious film', 'the plot is great']
# What the CLI prints every LOG_EVERY steps.
_LOSS_LINE = re.compile(r'^step (\d+)/\d+  loss (\S+)', re.MULTILINE)
# The demo's learning rate cools down over its last 100 steps; here over the last SAVING_PERIOD.
SCHEDULE = {'optax.linear_schedule.transition_begin': str(STEPS - SAVING_PERIOD),
            'optax.linear_schedule.transition_steps': str(SAVING_PERIOD)}


def train_macros(model_dir: str, frozen: str) -> dict:
  """The demo, short."""
  return {'MODEL_DIR': repr(model_dir), 'INITIAL_CHECKPOINT_PATH': repr(frozen),
          'TRAIN_STEPS': str(STEPS), 'SAVING_PERIOD': str(SAVING_PERIOD),
          'EVAL_PERIOD': str(SAVING_PERIOD), 'EVAL_STEPS': '1', 'LOG_EVERY': '10', **SCHEDULE}


def copy_to(local_dir: str, remote_dir: str) -> None:
  """Copies every file under the local `local_dir` to the same place under `remote_dir`."""
  for root, _, files in os.walk(local_dir):
    for name in files:
      file = os.path.join(root, name)
      with open(file, 'rb') as f:
        storage.write_bytes(f'{remote_dir}/{os.path.relpath(file, local_dir)}', f.read())


def read_npy(path: str) -> np.ndarray:
  return np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)


def losses_printed(stdout: str) -> dict:
  return {int(step): loss for step, loss in _LOSS_LINE.findall(stdout)}


def metrics_of(log_dir: str) -> list:
  """The rows of every `<task>-metrics.jsonl` seqio wrote to `log_dir`."""
  files = storage.glob(log_dir, '*-metrics.jsonl')
  assert files, f'no metrics in {log_dir}'
  return [json.loads(line) for file in files
          for line in storage.read_text(file).splitlines() if line.strip()]


def train_killed_after_half_way(command, workdir: str, export: str) -> subprocess.CompletedProcess:
  """Runs `command` and SIGKILLs it once `export` (the half-way prompt) is on the bucket.

  The run saves, exports, then evaluates at half-way: the kill lands during that evaluation.
  """
  with tempfile.TemporaryFile('w+') as stdout, tempfile.TemporaryFile('w+') as stderr:
    child = subprocess.Popen(command, cwd=workdir, env=h.subprocess_env(), text=True,
                             stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + 300
    while child.poll() is None and time.monotonic() < deadline and not storage.exists(export):
      time.sleep(0.05)
    if child.poll() is None:
      child.send_signal(signal.SIGKILL)
    child.wait()
    stdout.seek(0)
    stderr.seek(0)
    return subprocess.CompletedProcess(command, child.returncode, stdout.read(), stderr.read())


def serve(commands: dict, workdir: str, scratch: str) -> dict:
  """Runs the named CLI commands one after another in one child; name -> its result."""
  done = h.start_serving(commands, scratch, cwd=workdir)(timeout=900)
  for name, result in done.items():
    h.check(result)
  return done


def test_the_demo_trains_resumes_evaluates_and_infers_with_everything_on_gs(
    emulated_bucket, demo_cache, tmp_path):
  from prompt_tuning.demo import frozen_model  # pylint: disable=g-import-not-at-top
  workdir, scratch = tmp_path / 'cwd', tmp_path / 'scratch'
  workdir.mkdir()
  scratch.mkdir()
  local_frozen = frozen_model.frozen_model_checkpoint()
  assert local_frozen.startswith(str(demo_cache))
  frozen = f'{emulated_bucket}/frozen/{os.path.basename(local_frozen)}'
  copy_to(local_frozen, frozen)
  model_dir, reference_dir = f'{emulated_bucket}/run', str(tmp_path / 'reference')
  half_way, final = (f'{model_dir}/numpy_checkpoints/checkpoint_{step}/{PROMPT_NPY}'
                     for step in (SAVING_PERIOD, STEPS))
  input_file, output_file = f'{emulated_bucket}/in/reviews.txt', f'{emulated_bucket}/out/p.jsonl'
  storage.write_text(input_file, '\n'.join(INPUT_LINES) + '\n')
  train = h.cli_command('train', TRAIN_GIN, train_macros(model_dir, frozen))

  killed = train_killed_after_half_way(train, str(workdir), half_way)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
  assert storage.exists(f'{model_dir}/checkpoint_{SAVING_PERIOD}/commit_success.txt')
  assert not storage.exists(final)

  prompt_file = lambda file: {'MODEL_DIR': repr(f'{emulated_bucket}/eval'),
                              'INITIAL_CHECKPOINT_PATH': repr(frozen), 'EVAL_STEPS': '1',
                              'PROMPT_FILE': repr(file)}
  done = serve({
      'reference': h.cli_command('train', TRAIN_GIN, train_macros(reference_dir, frozen)),
      'resume': train,
      'eval_npy': h.cli_command('eval', EVAL_GIN, prompt_file(final)),
      # The half-way prompt initialises the model; the checkpoint's replaces it. Eval has no
      # optimizer: the training's learning-rate schedule need not be repeated.
      'eval_checkpoint': h.cli_command(
          'eval', EVAL_GIN, {**prompt_file(half_way),
                             'MODEL_DIR': repr(f'{emulated_bucket}/eval_checkpoint'),
                             'CHECKPOINT_PATH': repr(f'{model_dir}/checkpoint_{STEPS}')}),
      'infer': h.cli_command('infer', INFER_GIN, {
          'MODEL_DIR': repr(f'{emulated_bucket}/infer'), 'INITIAL_CHECKPOINT_PATH': repr(frozen),
          'PROMPT_FILE': repr(final), 'INPUT_FILE': repr(input_file),
          'INFER_OUTPUT_FILE': repr(output_file)}),
  }, str(workdir), str(scratch))

  # The resumed run ends where the uninterrupted one does, step by step.
  np.testing.assert_array_equal(
      read_npy(final),
      read_npy(f'{reference_dir}/numpy_checkpoints/checkpoint_{STEPS}/{PROMPT_NPY}'))
  printed = {**losses_printed(killed.stdout), **losses_printed(done['resume'].stdout)}
  assert printed == losses_printed(done['reference'].stdout)
  assert sorted(printed) == [10, 20, 30, 40]
  logged, reference_logged = (h.tensorboard(f'{d}/train') for d in (model_dir, reference_dir))
  assert {30, 40} <= set(logged['loss'])  # what the kill left unflushed may be missing
  assert logged['loss'] == {step: reference_logged['loss'][step] for step in logged['loss']}
  assert 'config' in logged and storage.exists(f'{model_dir}/config.gin')
  assert metrics_of(f'{model_dir}/inference_eval')

  # A checkpoint on gs:// is evaluated like the prompt it exported.
  from_npy, from_checkpoint = (metrics_of(f'{emulated_bucket}/{name}/inference_eval')
                               for name in ('eval', 'eval_checkpoint'))
  assert [{**row, 'step': None} for row in from_npy] == [
      {**row, 'step': None} for row in from_checkpoint]

  predictions = [json.loads(line) for line in storage.read_text(output_file).splitlines()]
  assert [row['inputs'] for row in predictions] == INPUT_LINES
  assert f'wrote {len(INPUT_LINES)} predictions to {output_file}' in done['infer'].stdout

  assert not os.listdir(workdir)  # nothing fell back to a local path such as ./gs:/...
