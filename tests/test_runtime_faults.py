"""Faults during training lose nothing: kills around exports, damaged checkpoints, NaN, two runs
on one MODEL_DIR, SIGTERM, resumes with other settings.

Most cases start from a copy of the shared trained run (20 steps, saved every 5) and compare
with its straight result; those that need a real process (a signal, a second run) run the CLI.
"""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import runtime_helpers as h
from prompt_tuning.runtime import checkpointing, optimizer, run_lock
from prompt_tuning.runtime.trainer import TrainState

PROMPT_FILE = 'encoder.prompt.prompt.prompt.npy'
NO_EVAL = {'train_script.train.infer_eval_dataset_cfg': 'None'}


def straight_prompt():
  return np.asarray(h.trained_run()[1].params['encoder']['prompt']['prompt']['prompt'])


def copy_of_trained_run(tmp_path):
  model_dir = tmp_path / 'run'
  shutil.copytree(h.trained_run()[0], model_dir)
  return model_dir


def drop_checkpoints_after(model_dir, step):
  for later in range(step + 5, h.TRAINED_STEPS + 1, 5):
    shutil.rmtree(model_dir / f'checkpoint_{later}')
    shutil.rmtree(model_dir / 'numpy_checkpoints' / f'checkpoint_{later}')


def garble(file, count=16):
  """Overwrites `count` bytes in the middle of `file` with their complement."""
  data = bytearray(file.read_bytes())
  middle = len(data) // 2
  data[middle:middle + count] = bytes(255 - b for b in data[middle:middle + count])
  file.write_bytes(bytes(data))


def largest_file(folder):
  return max((p for p in folder.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)


def test_a_finished_run_whose_final_export_was_lost_exports_it_on_rerun(tmp_path, capsys):
  """A kill between the final save and its export: the rerun exports and says it is done."""
  model_dir = copy_of_trained_run(tmp_path)
  final_export = model_dir / 'numpy_checkpoints' / f'checkpoint_{h.TRAINED_STEPS}'
  shutil.rmtree(final_export)
  result = h.train_in_process(h.trained_macros(model_dir))
  assert result.losses == []
  assert f'already trained to step {h.TRAINED_STEPS}' in capsys.readouterr().out
  np.testing.assert_array_equal(np.load(final_export / PROMPT_FILE), straight_prompt())


def test_fewer_train_steps_than_trained_say_so_and_change_nothing(tmp_path, capsys):
  model_dir = copy_of_trained_run(tmp_path)
  before = h.file_contents(model_dir)
  result = h.train_in_process(h.trained_macros(model_dir, TRAIN_STEPS='12'))
  assert result.losses == [] and int(result.state.step) == h.TRAINED_STEPS
  assert f'already trained to step {h.TRAINED_STEPS} (TRAIN_STEPS=12)' in capsys.readouterr().out
  assert h.file_contents(model_dir) == before


def test_a_run_killed_during_an_export_redoes_it_and_leaves_no_lock_file(tmp_path):
  """Killed while exporting checkpoint_10: no .npy, only tensorstore's lock file beside it."""
  model_dir = copy_of_trained_run(tmp_path)
  drop_checkpoints_after(model_dir, 10)
  export = model_dir / 'numpy_checkpoints' / 'checkpoint_10' / PROMPT_FILE
  exported_before = np.load(export)
  export.unlink()
  stale_lock = export.with_name(PROMPT_FILE + '.__lock')
  stale_lock.write_bytes(b'')
  result = h.train_in_process({**h.trained_macros(model_dir), **NO_EVAL})
  assert len(result.losses) == h.TRAINED_STEPS - 10
  np.testing.assert_array_equal(np.load(export), exported_before)
  assert not stale_lock.exists()
  np.testing.assert_array_equal(
      np.load(model_dir / 'numpy_checkpoints' / f'checkpoint_{h.TRAINED_STEPS}' / PROMPT_FILE),
      straight_prompt())


def test_a_damaged_latest_checkpoint_is_skipped_and_the_run_resumes_from_the_one_before(
    tmp_path, caplog):
  model_dir = copy_of_trained_run(tmp_path)
  garble(largest_file(model_dir / f'checkpoint_{h.TRAINED_STEPS}' / 'state'))
  with caplog.at_level(logging.WARNING):
    result = h.train_in_process({**h.trained_macros(model_dir), **NO_EVAL})
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any(f'checkpoint_{h.TRAINED_STEPS}/state' in w for w in warnings), warnings
  assert len(result.losses) == 5  # from checkpoint_15
  np.testing.assert_array_equal(result.params['encoder']['prompt']['prompt']['prompt'],
                                straight_prompt())
  (aside,) = (model_dir / checkpointing.CORRUPT_DIR).iterdir()
  assert aside.name.startswith(f'checkpoint_{h.TRAINED_STEPS}-')
  # The step was trained and saved again, whole.
  np.testing.assert_array_equal(
      np.load(model_dir / 'numpy_checkpoints' / f'checkpoint_{h.TRAINED_STEPS}' / PROMPT_FILE),
      straight_prompt())


def _small_state(prompt):
  params = {'encoder': {'prompt': {'prompt': {'prompt': prompt}}},
            'decoder': {'kernel': jnp.ones((4, 4))}}
  labels = optimizer.trainable_labels(params, optimizer.PROMPT_ONLY)
  tx = optimizer.for_trainable(optimizer.adafactor(), labels)
  trainable, _ = optimizer.split(params, labels)
  return TrainState(step=jnp.array(5, jnp.int32), trainable=trainable,
                    opt_state=tx.init(trainable), rng=jax.random.key_data(jax.random.key(3)))


def test_a_checkpoint_whose_arrays_were_changed_after_the_save_fails_its_checksum(tmp_path):
  saved = _small_state(jnp.arange(8.0).reshape(2, 4))
  checkpointer = checkpointing.Checkpointer(str(tmp_path), checkpointing.CheckpointConfig(period=5))
  assert checkpointer.save(saved, position=5)
  # The same structure and shapes, one value changed: only the checksum can tell.
  changed = checkpointing._to_saved(_small_state(jnp.arange(8.0).reshape(2, 4).at[1, 2].set(7.5)))
  with ocp.StandardCheckpointer() as rewriter:
    rewriter.save(tmp_path / 'checkpoint_5' / 'state', changed, force=True)
  with pytest.raises(checkpointing.CorruptCheckpointError,
                     match=r"checkpoint_5/state fails its checksum .*\['target'\]"):
    checkpointer.restore(saved)
  checkpointer.close()


def test_a_checkpoint_whose_run_record_was_edited_fails_its_checksum(tmp_path):
  saved = _small_state(jnp.arange(8.0).reshape(2, 4))
  checkpointer = checkpointing.Checkpointer(str(tmp_path), checkpointing.CheckpointConfig(period=5))
  assert checkpointer.save(saved, position=5)
  record_file = tmp_path / 'checkpoint_5' / 'run' / 'metadata'
  record = json.loads(record_file.read_text())
  record['position'] = 10**12
  record_file.write_text(json.dumps(record))
  with pytest.raises(checkpointing.CorruptCheckpointError, match=r'checkpoint_5/run fails'):
    checkpointer.restore(saved)
  checkpointer.close()


def test_more_train_steps_on_resume_train_on_and_keep_the_earlier_config(tmp_path, caplog):
  model_dir = copy_of_trained_run(tmp_path)
  with caplog.at_level(logging.WARNING):
    result = h.train_in_process({**h.trained_macros(model_dir, TRAIN_STEPS='25'), **NO_EVAL})
  assert len(result.losses) == 5 and int(result.state.step) == 25
  assert any('TRAIN_STEPS changed from 20 to 25' in r.getMessage() for r in caplog.records)
  assert 'TRAIN_STEPS = 25' in (model_dir / 'config.gin').read_text()
  (earlier,) = model_dir.glob('config-*.gin')
  assert f'TRAIN_STEPS = {h.TRAINED_STEPS}' in earlier.read_text()


def last_line(result):
  return result.stderr.strip().splitlines()[-1]


def test_a_diverging_run_stops_at_the_first_non_finite_step_and_saves_nothing_after(tmp_path):
  model_dir = copy_of_trained_run(tmp_path)
  # A learning rate past float32's range: the first update makes the prompt infinite.
  macros = {**h.trained_macros(model_dir, TRAIN_STEPS='40', LEARNING_RATE='1e39'), **NO_EVAL}
  result = h.finish(h.start(h.cli_command('train', h.TRAIN_GIN, macros)))
  assert result.returncode == 2, result.stderr[-3000:]
  line = last_line(result)
  assert line.startswith('error: ') and 'NaN or infinite at step 21;' in line, line
  assert f'latest checkpoint: checkpoint_{h.TRAINED_STEPS}' in line, line
  assert 'Traceback' not in result.stderr
  # The resumed run trains with the learning rate it is given, not the one saved.
  assert "learning_rate changed from 1.0 to inf" in result.stderr
  assert h.committed_steps(model_dir) == [5, 10, 15, 20]
  for export in (model_dir / 'numpy_checkpoints').rglob('*.npy'):
    assert np.isfinite(np.load(export)).all(), export


def _wait_for(path, child, timeout=240):
  deadline = time.monotonic() + timeout
  while not path.exists() and child.process.poll() is None and time.monotonic() < deadline:
    time.sleep(0.05)
  assert path.exists(), h.finish(child).stderr[-3000:]


def test_a_second_run_on_the_same_model_dir_fails_at_once_and_a_dead_runs_lock_is_taken_over(
    tmp_path):
  model_dir = tmp_path / 'shared'
  endless = {**h.train_macros(model_dir, 10**6), 'SAVING_PERIOD': '10000000'}
  first = h.start(h.cli_command('train', h.TRAIN_GIN, endless))
  lock = model_dir / run_lock.LOCK_FILE
  _wait_for(lock, first)
  # Still alive and holding the lock, but stopped: its endless steps take no core meanwhile.
  first.process.send_signal(signal.SIGSTOP)
  second = h.finish(h.start(h.cli_command('train', h.TRAIN_GIN, h.train_macros(model_dir, 3))))
  assert second.returncode == 2, second.stderr[-3000:]
  line = last_line(second)
  assert 'in use by another run' in line and f'pid {first.process.pid}' in line, line
  assert first.process.poll() is None  # the first run goes on
  first.process.kill()
  h.finish(first)
  assert lock.exists()  # left behind by the killed run
  third = h.check(h.finish(h.start(h.cli_command('train', h.TRAIN_GIN,
                                                 h.train_macros(model_dir, 3)))))
  assert 'stale lock' in third.stderr and str(first.process.pid) in third.stderr
  assert h.committed_steps(model_dir) == [3]
  assert not lock.exists()


def test_sigterm_saves_at_the_next_step_and_the_resumed_run_ends_bit_identical(tmp_path):
  model_dir = tmp_path / 'preempted'
  macros = h.trained_macros(model_dir)
  child = h.start(h.cli_command('train', h.TRAIN_GIN, macros))
  signaller = h.signal_when_present(model_dir / 'checkpoint_10', child.process.pid,
                                    signal.SIGTERM)
  preempted = h.finish(child)
  signaller.wait()
  assert preempted.returncode == 143, preempted.stderr[-3000:]
  line = last_line(preempted)
  assert line.startswith('Preempted (SIGTERM) at step '), line
  step = int(line.split('at step ')[1].split(':')[0])
  assert 10 < step < h.TRAINED_STEPS, line  # saved past the periodic checkpoint_10
  assert step in h.committed_steps(model_dir) and not (model_dir / run_lock.LOCK_FILE).exists()
  resumed = h.train_in_process({**macros, **NO_EVAL})
  assert len(resumed.losses) == h.TRAINED_STEPS - step
  np.testing.assert_array_equal(resumed.params['encoder']['prompt']['prompt']['prompt'],
                                straight_prompt())
  assert resumed.losses == h.trained_run()[1].losses[step:]


@pytest.fixture
def small_disk(tmp_path):
  """mount(options) -> a tmpfs at tmp_path/disk, unmounted after the test (needs root)."""
  target = tmp_path / 'disk'
  mounted = []

  def mount(options):
    target.mkdir(exist_ok=True)
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(target)],
                            capture_output=True, text=True, check=False)
    if result.returncode:
      pytest.skip(f'cannot mount a tmpfs here (needs root): {result.stderr.strip()}')
    mounted.append(target)
    return target

  yield mount
  for path in mounted:
    subprocess.run(['umount', str(path)], check=False)


# The lines of the traceback that tensorstore's native code prints for a callback into a closed
# asyncio loop. Another writer to the same stderr (the CLI's own error line) may land between them.
CLOSED_LOOP_CALLBACK_LINES = [re.compile(line) for line in (
    r'Traceback \(most recent call last\):$',
    r'  File "[^"]*asyncio/base_events\.py", line \d+, in call_soon_threadsafe$',
    r'    self\._check_closed\(\)$',
    r'  File "[^"]*asyncio/base_events\.py", line \d+, in _check_closed$',
    r"    raise RuntimeError\('Event loop is closed'\)$",
    r'RuntimeError: Event loop is closed$')]


def without_closed_loop_callbacks(stderr: str) -> str:
  """`stderr` without those tracebacks' lines; fails if any other traceback is there."""
  lines = stderr.splitlines()
  headers = sum(line.startswith('Traceback') for line in lines)
  closed = sum(line == 'RuntimeError: Event loop is closed' for line in lines)
  assert headers == closed, stderr[-3000:]  # each traceback ends in that error
  kept = [line for line in lines if not any(p.match(line) for p in CLOSED_LOOP_CALLBACK_LINES)]
  assert not any(line.startswith('  File "') or 'Traceback' in line for line in kept), (
      stderr[-3000:])
  return '\n'.join(kept)


def _resume_on(model_dir, steps):
  macros = {**h.trained_macros(model_dir, TRAIN_STEPS=str(steps)), **NO_EVAL}
  return h.finish(h.start(h.cli_command('train', h.TRAIN_GIN, macros)))


def test_a_read_only_model_dir_is_one_line_and_stays_as_it_was(small_disk):
  disk = small_disk('size=8m')
  model_dir = disk / 'run'
  shutil.copytree(h.trained_run()[0], model_dir)
  subprocess.run(['mount', '-o', 'remount,ro', str(disk)], check=True)
  before = h.file_contents(model_dir)
  result = _resume_on(model_dir, 25)
  assert result.returncode == 2, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  line = last_line(result)
  assert line.startswith(f'error: Cannot write to MODEL_DIR={model_dir}') and 'Read-only' in line
  assert h.file_contents(model_dir) == before


def test_a_full_disk_stops_the_run_in_one_line_and_the_earlier_checkpoints_stay_good(
    small_disk):
  disk = small_disk('size=8m')
  model_dir = disk / 'run'
  shutil.copytree(h.trained_run()[0], model_dir)
  # Room for the config and the summaries, not for a checkpoint.
  free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
  (disk / 'filler').write_bytes(b'\0' * (free - 64 * 1024))
  result = _resume_on(model_dir, 25)
  assert result.returncode == 2, result.stderr[-3000:]
  # The one print that Python cannot hold back: tensorstore writes still in flight after the
  # failed save call back into orbax's event loop, closed by then, and tensorstore's native
  # code prints that RuntimeError itself, sometimes. Nothing else may have a traceback.
  stderr = without_closed_loop_callbacks(result.stderr)
  errors = [line for line in stderr.splitlines() if line.startswith(('error', 'E'))]
  assert errors == [f'error: Cannot write to MODEL_DIR={model_dir}: No space left on device; '
                    'what was saved before is intact.'], result.stderr[-3000:]
  (disk / 'filler').unlink()
  checkpointer = checkpointing.Checkpointer(str(model_dir))
  like = h.trained_run()[1].state
  trainable = checkpointer.restore(like, h.TRAINED_STEPS).state.trainable
  np.testing.assert_array_equal(trainable['encoder']['prompt']['prompt']['prompt'],
                                straight_prompt())
  checkpointer.close()
