"""Bad input to the three commands ends in one stderr line that names the culprit, and writes nothing.

Every case of `CASES` runs the real command line (`python -m prompt_tuning.<command> ...`)
and must:
- exit with status 2;
- print no Python traceback;
- print one stderr line, `error: ...`, that names the file, macro or flag at
  fault (each of the case's `expect` substrings is in it);
- leave MODEL_DIR byte for byte as it was: absent when it was absent, the same
  files with the same contents when it held an earlier run.

How the cases run: importing the CLI's libraries (TensorFlow, JAX, seqio)
costs more than most cases, so most run one after another in one child
process (`runtime_helpers.serve_cli_commands`), which runs each command's
module as `__main__` as `python -m` does, with fresh gin and flags, and
captures its stdout and stderr at the file-descriptor level (native code's
output included) and its exit status. The cases marked `alone` run as
`python -m` processes of their own, beside it: those that hold a lock or need
their own device count, and one per command that goes as far as building the
model, which sees what a fresh process prints while the libraries load.

Library log noise: none is filtered here. The CLI itself holds back what
TensorFlow's native code writes while it loads (`cli._NATIVE_NOISE`), and
sets TensorFlow's C++ log level, so stderr must be the error line alone.
`HARMLESS_NOISE` is where a line that a library writes and the CLI cannot
silence would be listed; it is empty.

To add a case, append a `Case` to `CASES` (it joins the table and the runs by
itself).
"""

import dataclasses
import functools
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import pytest

import runtime_helpers as h
from prompt_tuning import checkpoints, cli
from prompt_tuning.runtime import run_lock
from prompt_tuning.errors import UserError

# Lines a library writes that the CLI cannot silence (none today); see the module docstring.
HARMLESS_NOISE: Tuple[re.Pattern, ...] = ()
# Child processes at a time: the one shared by most cases, and two run alone beside it.
PARALLEL = 3

DEFAULT_GIN = {'train': h.TRAIN_GIN, 'eval': h.EVAL_GIN, 'infer': h.INFER_GIN}
SIZE_GIN = h.MODEL_GIN[1]
FROM_FILE = 'gin/prompts/from_file.gin'
TRAIN_FROM_FILE_GIN = (h.MODEL_GIN[0], FROM_FILE, SIZE_GIN, 'gin/runs/prompt_finetune.gin')
INFER_FROM_FILE_GIN = (h.MODEL_GIN[0], FROM_FILE, SIZE_GIN, 'gin/runs/prompt_infer.gin')
INFER_BANK_GIN = (h.MODEL_GIN[0], 'gin/prompts/from_files.gin', SIZE_GIN,
                  'gin/runs/prompt_infer.gin')
EVAL_BANK_GIN = (h.MODEL_GIN[0], 'gin/prompts/from_files.gin', SIZE_GIN, 'gin/runs/prompt_eval.gin')
TRAIN_BANK_GIN = (h.MODEL_GIN[0], 'gin/prompts/from_files.gin', SIZE_GIN,
                  'gin/runs/prompt_finetune.gin')
SAMPLED_VOCAB_TRAIN_GIN = (h.MODEL_GIN[0], 'gin/prompts/sampled_vocab.gin', SIZE_GIN,
                           'gin/runs/prompt_finetune.gin')
TINY_T5X_CHECKPOINT = 't5x_t5_1_1_tiny/checkpoint_3'
# The toy model's prompt: PROMPT_LENGTH 4 of width 64 (see runtime_helpers.toy_macros).
PROMPT_SHAPE = (4, h.TOY_MODEL['emb_dim'])


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad command line and what its error line must name.

  Attributes:
    name: the test id.
    command: 'train', 'eval' or 'infer'.
    expect: substrings of the error line.
    macros: changes to the toy run's macros (`h.train_macros(MODEL_DIR, 5)` for
      train, `h.toy_macros(MODEL_DIR)` otherwise); None removes one.
    gin_files: the command's toy gin files unless given.
    flags: more command-line arguments.
    setup: writes the files the case needs into its folder (given as argument).
    earlier_run: MODEL_DIR holds an earlier run's files, which must stay as they
      are; otherwise it does not exist and must not appear.
    devices: simulated CPU devices.
    needs_fixtures: the case reads ../shared/fixtures (`{fixtures}`); skipped without them.
    alone: runs as a `python -m` process of its own, not in the shared one (see the
      module docstring); so does every case with more than one device.

  In `expect`, `macros`, `gin_files` and `flags`, `{dir}` stands for the case's
  folder; MODEL_DIR is `{dir}/model`.
  """
  name: str
  command: str
  expect: Sequence[str]
  macros: Mapping[str, Optional[str]] = dataclasses.field(default_factory=dict)
  gin_files: Optional[Sequence[str]] = None
  flags: Sequence[str] = ()
  setup: Optional[Callable[[pathlib.Path], None]] = None
  earlier_run: bool = False
  devices: int = 1
  needs_fixtures: bool = False
  alone: bool = False


def _npy(name: str, array: np.ndarray) -> Callable[[pathlib.Path], None]:
  def setup(folder: pathlib.Path) -> None:
    with open(folder / name, 'wb') as f:  # a file object: np.save adds no suffix
      np.save(f, array)
  return setup


def _npz(name: str, array: np.ndarray) -> Callable[[pathlib.Path], None]:
  def setup(folder: pathlib.Path) -> None:
    with open(folder / name, 'wb') as f:
      np.savez(f, prompt=array)
  return setup


def _bytes(name: str, data: bytes) -> Callable[[pathlib.Path], None]:
  def setup(folder: pathlib.Path) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
  return setup


def _files(*setups: Callable[[pathlib.Path], None]) -> Callable[[pathlib.Path], None]:
  def setup(folder: pathlib.Path) -> None:
    for one in setups:
      one(folder)
  return setup


def _boolq_with_a_bad_byte(folder: pathlib.Path) -> None:
  """The BoolQ release files, with a byte that is not UTF-8 on line 2 of val.jsonl."""
  shutil.copytree(h.TESTS_DIR / 'testdata' / 'super_glue' / 'BoolQ', folder / 'data' / 'BoolQ')
  path = folder / 'data' / 'BoolQ' / 'val.jsonl'
  lines = path.read_bytes().split(b'\n')
  lines[1] = lines[1].replace(b'"question": "', b'"question": "\xff', 1)
  path.write_bytes(b'\n'.join(lines))


def _prompt(dtype=np.float32) -> np.ndarray:
  return np.random.default_rng(0).normal(size=PROMPT_SHAPE).astype(dtype)


NON_FINITE_AT = [(1, 3), (2, 0)]
# A bank of two prompts, 'a' and 'b', serving the requests of {dir}/requests.jsonl.
BANK_OF_TWO = {'PROMPT_FILES': "{'a': '{dir}/a.npy', 'b': '{dir}/b.npy'}",
               'INPUT_FILE': "'{dir}/requests.jsonl'"}
NAN_PROMPT = _prompt()
NAN_PROMPT[NON_FINITE_AT[0]] = np.nan
NAN_PROMPT[NON_FINITE_AT[1]] = np.inf
INT_PROMPT = np.zeros(PROMPT_SHAPE, np.int64)
STRING_PROMPT = np.array(['a prompt', 'in words'])
FILE_PROMPT = {'PROMPT_FILE': "'{dir}/prompt.npy'"}
# The task's own vocabulary: T5's SentencePiece model, found through PROMPT_TUNING_VOCAB (see `runs`).
BOOLQ_FROM_FILES = {'MIXTURE_OR_TASK_NAME': "'taskless_super_glue_boolq_v102'",
                    'MIXTURE_OR_TASK_MODULE': "'prompt_tuning.data'",
                    'VOCABULARY': '@inputs.task_vocabulary()',
                    'DATA_SOURCE': "'files'", 'DATA_DIR': "'{dir}/data'"}


CASES = [
    # Model-building cases first: they take longest, so the cheap ones fill the gaps.
    Case('prompt_file_shape', 'eval',
         ['{dir}/prompt.npy', f'(3, {PROMPT_SHAPE[1]})', str(PROMPT_SHAPE)], FILE_PROMPT, h.PROMPT_FILE_EVAL_GIN,
         setup=_npy('prompt.npy', np.zeros((3, PROMPT_SHAPE[1]), np.float32)),
         earlier_run=True, alone=True),
    Case('regex_matches_nothing', 'train', ["'encoder/promt'"],
         {'TRAINABLE_REGEXES': "['encoder/promt']"}),
    Case('batch_not_divisible', 'train', ['BATCH_SIZE=6', '(8)'], {'BATCH_SIZE': '6'},
         devices=8),
    Case('checkpoint_size', 'train', ['INITIAL_CHECKPOINT_PATH', TINY_T5X_CHECKPOINT],
         {'INITIAL_CHECKPOINT_PATH': f"'{{fixtures}}/{TINY_T5X_CHECKPOINT}'"}, earlier_run=True,
         needs_fixtures=True),
    Case('unknown_task', 'train', ["'toy_parityy'", "'toy_parity'"],
         {'MIXTURE_OR_TASK_NAME': "'toy_parityy'"}, earlier_run=True),
    Case('missing_required_macro', 'train', ['TRAIN_STEPS'], {'TRAIN_STEPS': None}),
    # Prompt files (PROMPT_FILE, gin/prompts/from_file.gin).
    Case('prompt_file_empty', 'eval', ['{dir}/prompt.npy', 'empty'], FILE_PROMPT,
         h.PROMPT_FILE_EVAL_GIN, setup=_bytes('prompt.npy', b'')),
    Case('prompt_file_is_an_npz', 'eval', ['{dir}/prompt.npy', '.npz archive'], FILE_PROMPT,
         h.PROMPT_FILE_EVAL_GIN, setup=_npz('prompt.npy', _prompt())),
    Case('prompt_file_is_text', 'infer', ['{dir}/prompt.npy', 'not a .npy file'], FILE_PROMPT,
         INFER_FROM_FILE_GIN, setup=_bytes('prompt.npy', b'0.1 0.2 0.3\n0.4 0.5 0.6\n'),
         alone=True),
    Case('prompt_file_of_strings', 'eval', ['{dir}/prompt.npy', str(STRING_PROMPT.dtype)],
         FILE_PROMPT, h.PROMPT_FILE_EVAL_GIN, setup=_npy('prompt.npy', STRING_PROMPT)),
    Case('prompt_file_of_integers', 'train', ['{dir}/prompt.npy', str(INT_PROMPT.dtype)],
         FILE_PROMPT, TRAIN_FROM_FILE_GIN, setup=_npy('prompt.npy', INT_PROMPT),
         earlier_run=True),
    Case('prompt_file_with_nan_and_inf', 'eval',
         ['{dir}/prompt.npy', f'{len(NON_FINITE_AT)} non-finite', f'index {NON_FINITE_AT[0]}'],
         FILE_PROMPT, h.PROMPT_FILE_EVAL_GIN, setup=_npy('prompt.npy', NAN_PROMPT),
         earlier_run=True),
    Case('prompt_file_missing', 'eval', ['{dir}/prompt.npy'], FILE_PROMPT,
         h.PROMPT_FILE_EVAL_GIN),
    Case('embedding_file_empty', 'train', ['EMBEDDING_FILE', '{dir}/embedding.npy'],
         {'EMBEDDING_FILE': "'{dir}/embedding.npy'"}, SAMPLED_VOCAB_TRAIN_GIN,
         setup=_bytes('embedding.npy', b'')),
    # Values checked before anything is built (commands.check_*_settings).
    Case('batch_size_zero', 'train', ['BATCH_SIZE=0', 'positive integer'], {'BATCH_SIZE': '0'}),
    Case('batch_size_negative', 'eval', ['BATCH_SIZE=-4', 'positive integer'],
         {'BATCH_SIZE': '-4'}, earlier_run=True),
    Case('batch_size_bound_as_a_parameter', 'train', ['train/utils.DatasetConfig.batch_size=0'],
         {'train/utils.DatasetConfig.batch_size': '0'}),
    Case('saving_period_zero', 'train', ['SAVING_PERIOD=0'], {'SAVING_PERIOD': '0'},
         earlier_run=True),
    Case('log_every_zero', 'train', ['LOG_EVERY=0'], {'LOG_EVERY': '0'}),
    Case('train_steps_negative', 'train', ['TRAIN_STEPS=-5'], {'TRAIN_STEPS': '-5'},
         earlier_run=True),
    Case('prompt_length_not_a_number', 'train', ["PROMPT_LENGTH='ten'"],
         {'PROMPT_LENGTH': "'ten'"}),
    Case('prompt_length_negative', 'infer', ['PROMPT_LENGTH=-2'], {'PROMPT_LENGTH': '-2'}),
    Case('prompt_length_zero_with_only_the_prompt_trainable', 'train',
         ['PROMPT_LENGTH=0', 'TRAINABLE_REGEXES'], {'PROMPT_LENGTH': '0'}),
    Case('eval_period_negative', 'train', ['EVAL_PERIOD=-1'],
         {'EVAL_PERIOD': '-1', 'train_script.train.infer_eval_dataset_cfg': None}),
    Case('eval_steps_zero', 'eval', ['EVAL_STEPS=0'], {'EVAL_STEPS': '0'}),
    Case('checkpoints_to_keep_zero', 'train', ['CHECKPOINTS_TO_KEEP=0'],
         {'CHECKPOINTS_TO_KEEP': '0'}),
    Case('task_feature_lengths_zero', 'infer', ['TASK_FEATURE_LENGTHS', "'inputs': 0"],
         {'TASK_FEATURE_LENGTHS': "{'inputs': 0, 'targets': 4}"}),
    Case('loss_normalizing_factor_unknown', 'train', ["LOSS_NORMALIZING_FACTOR='NUM_TOKENS'"],
         {'LOSS_NORMALIZING_FACTOR': "'NUM_TOKENS'"}),
    Case('decoding_method_unknown', 'infer', ["'beam'", "'beam_search'"],
         {'decoding.DecodingMethod.name': "'beam'"}),
    Case('remat_policy_unknown', 'train', ["REMAT_POLICY='dots'", "'none', 'full', 'minimal'"],
         {'REMAT_POLICY': "'dots'"}),
    Case('dry_run_checks_the_settings_too', 'train', ['BATCH_SIZE=0'], {'BATCH_SIZE': '0'},
         flags=['--dry_run']),
    # Gin files, bindings and flags.
    Case('misspelled_macro', 'train', ['--gin.TRAIN_STPES', 'did you mean TRAIN_STEPS?'],
         {'TRAIN_STPES': '5'}, earlier_run=True),
    Case('macro_that_the_command_does_not_use', 'eval', ['--gin.SAVING_PERIOD', 'no gin file'],
         {'SAVING_PERIOD': '5'}),
    Case('gin_flag_without_a_value', 'train', ['--gin.MODEL_DIR', 'NAME=VALUE'],
         flags=['--gin.MODEL_DIR'], earlier_run=True),
    Case('misspelled_include', 'train', ['{dir}/recipe.gin', 'line 2', 'tinyy.gin'],
         gin_files=(h.MODEL_GIN[0], '{dir}/recipe.gin', 'gin/runs/prompt_finetune.gin'),
         setup=_bytes('recipe.gin', b"# the size\ninclude 'gin/models/sizes/tinyy.gin'\n")),
    Case('missing_gin_file', 'train', ['--gin_file=gin/runs/prompt_finetun.gin'],
         gin_files=(*h.MODEL_GIN, 'gin/runs/prompt_finetun.gin')),
    Case('gin_syntax_error', 'eval', ['{dir}/broken.gin', 'line 2'],
         gin_files=(*h.EVAL_GIN, '{dir}/broken.gin'),
         setup=_bytes('broken.gin', b'EVAL_STEPS = 2\nBATCH_SIZE = = 3\n')),
    Case('unexpected_argument', 'eval', ["'extra'"], flags=['extra']),
    Case('unknown_flag', 'train', ['dry_runn'], flags=['--dry_runn']),
    # Input files.
    Case('infer_input_file_missing', 'infer', ['INPUT_FILE', '{dir}/inputs.txt'],
         {'INPUT_FILE': "'{dir}/inputs.txt'"}, earlier_run=True),
    Case('infer_input_file_not_utf8', 'infer', ['{dir}/inputs.txt:2', 'UTF-8'],
         {'INPUT_FILE': "'{dir}/inputs.txt'"}, setup=_bytes('inputs.txt', b'good\nb\xffd\n')),
    Case('infer_request_of_an_unknown_task', 'infer',
         ['{dir}/requests.jsonl:2', "task 'c'", "('a', 'b')"], BANK_OF_TWO, INFER_BANK_GIN,
         setup=_files(_npy('a.npy', _prompt()), _npy('b.npy', _prompt()), _bytes(
             'requests.jsonl', b'{"task": "a", "inputs": "x"}\n{"task": "c", "inputs": "y"}\n'))),
    Case('prompt_files_of_two_shapes', 'infer',
         ["PROMPT_FILES['b']", '{dir}/b.npy', f'(3, {PROMPT_SHAPE[1]})', str(PROMPT_SHAPE)],
         BANK_OF_TWO, INFER_BANK_GIN,
         setup=_files(_npy('a.npy', _prompt()), _npy('b.npy', _prompt()[:3]), _bytes(
             'requests.jsonl', b'{"task": "a", "inputs": "x"}\n'))),
    Case('bank_of_prompts_not_named_after_the_task', 'eval',
         ['bank of 2 prompts', 'named after task toy_parity', 'ENSEMBLE=True'],
         {'PROMPT_FILES': BANK_OF_TWO['PROMPT_FILES']}, EVAL_BANK_GIN,
         setup=_files(_npy('a.npy', _prompt()), _npy('b.npy', _prompt()))),
    Case('bank_trained_without_saying_what_its_prompts_are', 'train',
         ['bank of 2 prompts', 'train_script.train.prompt_bank is None', 'ensemble.gin'],
         {'PROMPT_FILES': BANK_OF_TWO['PROMPT_FILES']}, TRAIN_BANK_GIN,
         setup=_files(_npy('a.npy', _prompt()), _npy('b.npy', _prompt()))),
    Case('jsonl_data_file_not_utf8', 'eval', ['{dir}/data/BoolQ/val.jsonl:2', 'UTF-8'],
         BOOLQ_FROM_FILES, setup=_boolq_with_a_bad_byte, needs_fixtures=True),
    Case('checkpoint_path_not_a_checkpoint', 'eval', ['CHECKPOINT_PATH', '{dir}/model'],
         {'CHECKPOINT_PATH': "'{dir}/model'"}, earlier_run=True),
]


# Resumes and checkpoints: MODEL_DIR holds a real run of the toy (5 steps, one checkpoint),
# trained once in this process; the cases change its settings or damage its only checkpoint.
@functools.lru_cache(maxsize=None)
def _trained_toy_run() -> pathlib.Path:
  model_dir = h.scratch_dir('cli_errors_run') / 'model'
  h.train_in_process(h.train_macros(model_dir, 5))
  return model_dir


def _earlier_training(change: Optional[Callable[[pathlib.Path], None]] = None
                      ) -> Callable[[pathlib.Path], None]:
  """Copies the trained toy run to `{dir}/model`, then applies `change` to that copy."""
  def setup(folder: pathlib.Path) -> None:
    shutil.copytree(_trained_toy_run(), folder / 'model')
    if change:
      change(folder / 'model')
  return setup


def _largest_data_file(model_dir: pathlib.Path) -> pathlib.Path:
  return max((p for p in (model_dir / 'checkpoint_5' / 'state').rglob('*') if p.is_file()),
             key=lambda p: p.stat().st_size)


def _truncate(relative_path: Optional[str] = None) -> Callable[[pathlib.Path], None]:
  def change(model_dir: pathlib.Path) -> None:
    path = model_dir / relative_path if relative_path else _largest_data_file(model_dir)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
  return change


def _garble(relative_path: Optional[str] = None) -> Callable[[pathlib.Path], None]:
  """Complements 16 bytes in the middle of a file of the checkpoint."""
  def change(model_dir: pathlib.Path) -> None:
    path = model_dir / relative_path if relative_path else _largest_data_file(model_dir)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(255 - b for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))
  return change


def _saved_position(position: int) -> Callable[[pathlib.Path], None]:
  def change(model_dir: pathlib.Path) -> None:
    path = model_dir / 'checkpoint_5' / 'run' / 'metadata'
    record = json.loads(path.read_text())
    record['position'] = position
    path.write_text(json.dumps(record))
  return change


def _held_by_this_process(model_dir: pathlib.Path) -> None:
  """A lock file naming the test process itself: a live run on this host."""
  (model_dir / run_lock.LOCK_FILE).write_text(json.dumps(
      {'host': socket.gethostname(), 'pid': os.getpid(), 'started': 'earlier'}))


NO_CHECKPOINT_LEFT = 'No checkpoint in MODEL_DIR={dir}/model can be restored'
CHECKPOINT_5 = '{dir}/model/checkpoint_5'
EVAL_CHECKPOINT_5 = {'CHECKPOINT_PATH': f"'{CHECKPOINT_5}'"}

CASES += [
    Case('resume_with_another_batch_size', 'train',
         ['MODEL_DIR={dir}/model', 'checkpoint_5', 'BATCH_SIZE changed from 8 to 4'],
         {'BATCH_SIZE': '4'}, setup=_earlier_training()),
    Case('resume_with_another_prompt_length', 'train', ['PROMPT_LENGTH changed from 4 to 6'],
         {'PROMPT_LENGTH': '6'}, setup=_earlier_training()),
    Case('resume_with_other_feature_lengths', 'train', ['TASK_FEATURE_LENGTHS changed from'],
         {'TASK_FEATURE_LENGTHS': "{'inputs': 10, 'targets': 4}"}, setup=_earlier_training()),
    Case('resume_with_another_task_and_seed', 'train',
         ["MIXTURE_OR_TASK_NAME changed from 'toy_parity' to 'toy_reverse'",
          'RANDOM_SEED changed from 0 to 3'],
         # Its vocabulary too, or the vocabulary check would speak first.
         {'MIXTURE_OR_TASK_NAME': "'toy_reverse'", 'RANDOM_SEED': '3',
          'VOCABULARY': '@seqio.ByteVocabulary()'}, setup=_earlier_training()),
    Case('resume_with_shuffling_turned_on', 'train',
         ['SHUFFLE_TRAIN_EXAMPLES changed from False to True'],
         {'SHUFFLE_TRAIN_EXAMPLES': 'True'}, setup=_earlier_training()),
    Case('model_dir_in_use_by_a_live_run', 'train',
         ['MODEL_DIR={dir}/model is in use by another run', f'pid {os.getpid()}'],
         {'TRAIN_STEPS': '10'}, setup=_earlier_training(_held_by_this_process), alone=True),
    Case('only_checkpoint_with_truncated_metadata', 'train',
         [NO_CHECKPOINT_LEFT, f'{CHECKPOINT_5}/state cannot be read'], {'TRAIN_STEPS': '10'},
         setup=_earlier_training(_truncate('checkpoint_5/state/_METADATA'))),
    Case('only_checkpoint_with_a_truncated_data_file', 'train',
         [NO_CHECKPOINT_LEFT, f'{CHECKPOINT_5}/state'], {'TRAIN_STEPS': '10'},
         setup=_earlier_training(_truncate())),
    Case('only_checkpoint_with_a_garbled_data_file', 'train',
         [NO_CHECKPOINT_LEFT, f'{CHECKPOINT_5}/state'], {'TRAIN_STEPS': '10'},
         setup=_earlier_training(_garble())),
    Case('only_checkpoint_with_a_garbled_run_record', 'train',
         [NO_CHECKPOINT_LEFT, f'{CHECKPOINT_5}/run cannot be read'], {'TRAIN_STEPS': '10'},
         setup=_earlier_training(_garble('checkpoint_5/run/metadata'))),
    Case('saved_input_position_far_out_of_range', 'train',
         [f'{CHECKPOINT_5}/run fails its checksum', 'input position 1000000000000'],
         {'TRAIN_STEPS': '10'}, setup=_earlier_training(_saved_position(10**12))),
    Case('saved_input_position_negative', 'train',
         [f'{CHECKPOINT_5}/run fails its checksum', 'input position -1'],
         {'TRAIN_STEPS': '10'}, setup=_earlier_training(_saved_position(-1))),
    Case('eval_of_a_garbled_checkpoint', 'eval', [f'{CHECKPOINT_5}/state'], EVAL_CHECKPOINT_5,
         setup=_earlier_training(_garble())),
    Case('eval_of_a_checkpoint_with_another_prompt_length', 'eval',
         [CHECKPOINT_5, '[4, 64]', '[6, 64]'], {**EVAL_CHECKPOINT_5, 'PROMPT_LENGTH': '6'},
         setup=_earlier_training()),
]


def _fill(text: str, folder: pathlib.Path, fixtures: Optional[pathlib.Path]) -> str:
  text = text.replace('{dir}', str(folder))
  return text.replace('{fixtures}', str(fixtures)) if fixtures else text


def _write_earlier_run(model_dir: pathlib.Path) -> None:
  """Files as a finished run leaves them: what a failed command must not touch."""
  (model_dir / 'checkpoint_5' / 'state').mkdir(parents=True)
  (model_dir / 'checkpoint_5' / 'state' / 'data').write_bytes(bytes(range(256)))
  (model_dir / 'checkpoint_5' / 'commit_success.txt').write_text('done')
  (model_dir / 'config.gin').write_text('# an earlier run\nTRAIN_STEPS = 5\n')
  prompt_dir = model_dir / 'numpy_checkpoints' / 'checkpoint_5'
  checkpoints.write_prompt(str(prompt_dir), _prompt())
  (model_dir / 'train').mkdir()
  (model_dir / 'train' / 'events.out.tfevents.1.host').write_bytes(b'\x00earlier events')


def _command(case: Case, folder: pathlib.Path, fixtures: Optional[pathlib.Path]):
  model_dir = folder / 'model'
  base = (h.train_macros(model_dir, 5) if case.command == 'train' else h.toy_macros(model_dir))
  for name, value in case.macros.items():
    if value is None:
      base.pop(name, None)
    else:
      base[name] = _fill(value, folder, fixtures)
  gin_files = [_fill(f, folder, fixtures) for f in (case.gin_files or DEFAULT_GIN[case.command])]
  flags = [_fill(f, folder, fixtures) for f in case.flags]
  return h.cli_command(case.command, gin_files, base, *flags)


def _run_side_by_side(commands_by_name: Dict[str, Tuple[Sequence[str], int]], parallel: int,
                      timeout: float = 300) -> Dict[str, subprocess.CompletedProcess]:
  """Runs the commands, `parallel` at a time, in the given order; returns each one's result."""
  waiting = list(commands_by_name.items())
  running: Dict[str, Tuple[h.Child, float]] = {}
  results = {}
  while waiting or running:
    while waiting and len(running) < parallel:
      name, (command, devices) = waiting.pop(0)
      running[name] = (h.start(command, devices=devices), time.monotonic())
    for name, (child, started) in list(running.items()):
      if child.process.poll() is not None or time.monotonic() - started > timeout:
        results[name] = h.finish(child, timeout=0)
        del running[name]
    time.sleep(0.05)
  return results


def _report(request, text: str) -> None:
  """Writes a line to the terminal, past pytest's capture."""
  reporter = request.config.pluginmanager.get_plugin('terminalreporter')
  capture = request.config.pluginmanager.get_plugin('capturemanager')
  if reporter and capture:
    with capture.global_and_fixture_disabled():
      reporter.write_line(f'\ntest_cli_errors: {text}')


@pytest.fixture(scope='module', autouse=True)
def _report_wall_time(request):
  started = time.monotonic()
  yield
  _report(request, f'the module took {time.monotonic() - started:.0f}s')


# Runs beside the table's: a bug in a command's main (a KeyError), through `cli.run`; and a
# table case with --verbosity=1, which also logs the traceback of its user error.
_RAISE_IN_CLI_RUN = """
import sys
from prompt_tuning import cli
sys.argv = ['prog']
cli.run(lambda: {}['a key that is missing'])
"""
VERBOSE_CASE = 'batch_size_zero'


@dataclasses.dataclass
class Runs:
  """What the module's child processes did.

  cases: name -> (case folder, completed process, MODEL_DIR before, MODEL_DIR after).
  bug, verbose: the runs beside the table's (see `_RAISE_IN_CLI_RUN`, `VERBOSE_CASE`).
  """
  cases: Dict[str, Tuple[pathlib.Path, subprocess.CompletedProcess, Optional[dict],
                         Optional[dict]]]
  bug: subprocess.CompletedProcess
  verbose: subprocess.CompletedProcess


@pytest.fixture(scope='module')
def runs(tmp_path_factory, request) -> Runs:
  """Runs the table's cases and the runs beside it: most cases in one shared child process, the
  others alone beside it, `PARALLEL` processes at a time."""
  try:
    fixtures = request.getfixturevalue('fixtures_dir')
  except pytest.skip.Exception:  # the cases that need them skip; the others still run
    fixtures = None
  root = tmp_path_factory.mktemp('cli_errors')
  environment = pytest.MonkeyPatch()  # inherited by every child
  if fixtures:
    environment.setenv('PROMPT_TUNING_VOCAB', str(fixtures / 't5_vocab' / 'sentencepiece.model'))
  started = time.monotonic()
  together, alone, folders, before = {}, {}, {}, {}
  for case in CASES:
    if case.needs_fixtures and not fixtures:
      continue
    folder = folders[case.name] = root / case.name
    folder.mkdir()
    if case.setup:
      case.setup(folder)
    if case.earlier_run:
      _write_earlier_run(folder / 'model')
    before[case.name] = h.file_contents(folder / 'model')
    command = _command(case, folder, fixtures)
    if case.alone or case.devices != 1:
      alone[case.name] = (command, case.devices)
    else:
      together[case.name] = command
  (verbose_case,) = [case for case in CASES if case.name == VERBOSE_CASE]
  verbose_folder = root / 'verbose'
  verbose_folder.mkdir()
  alone['(verbose)'] = ([*_command(verbose_case, verbose_folder, fixtures), '--verbosity=1'], 1)
  alone['(bug)'] = ([sys.executable, '-c', _RAISE_IN_CLI_RUN], 1)
  finish_together = h.start_serving(together, root)
  results = _run_side_by_side(alone, PARALLEL - 1)
  results.update(finish_together())
  environment.undo()
  _report(request, f'{len(together)} command lines ran in one process, {len(alone)} in processes '
                   f'of their own beside it, in {time.monotonic() - started:.0f}s')
  cases = {name: (folders[name], results[name], before[name],
                  h.file_contents(folders[name] / 'model')) for name in folders}
  return Runs(cases, results['(bug)'], results['(verbose)'])


def _significant_lines(stderr: str):
  return [line for line in stderr.splitlines()
          if line.strip() and not any(p.search(line) for p in HARMLESS_NOISE)]


def _changes(before, after) -> str:
  if before is None or after is None:
    return f'MODEL_DIR existed before: {before is not None}, after: {after is not None}'
  changed = sorted(p for p in set(before) | set(after) if before.get(p, b'?') != after.get(p, b'?'))
  return f'MODEL_DIR changed at {changed}'


@pytest.mark.parametrize('case', CASES, ids=[c.name for c in CASES])
def test_bad_input_ends_in_one_line_that_names_it_and_touches_nothing(case, runs):
  if case.name not in runs.cases:
    pytest.skip('needs the reference fixtures (../shared/fixtures)')
  folder, result, before, after = runs.cases[case.name]
  stderr = result.stderr
  assert result.returncode == 2, f'exit {result.returncode}:\n{stderr[-4000:]}'
  assert 'Traceback' not in stderr, stderr[-4000:]
  lines = _significant_lines(stderr)
  assert len(lines) == 1 and lines[0].startswith('error: '), stderr[-4000:]
  for part in case.expect:
    assert _fill(part, folder, None) in lines[0], lines[0]
  assert after == before, _changes(before, after)


def test_a_wrong_size_checkpoint_names_an_array_and_both_its_shapes(runs, fixtures_dir):
  _, result, _, _ = runs.cases['checkpoint_size']
  line = result.stderr.strip().splitlines()[-1]
  match = re.search(r'array (\S+) has shape (\(.*?\)), expected (\(.*?\))', line)
  assert match, line
  array, found, expected = match.groups()
  checkpoint = checkpoints.T5XCheckpoint(str(fixtures_dir / TINY_T5X_CHECKPOINT))
  assert found == str(tuple(checkpoint.shapes()[array][0])) and found != expected


@pytest.mark.parametrize('command', ['train', 'eval', 'infer'])
def test_help_lists_the_flags_and_explains_gin_bindings(command):
  result = subprocess.run([sys.executable, '-m', f'prompt_tuning.{command}', '--help'],
                          cwd=h.REPO_ROOT, env=h.subprocess_env(), capture_output=True, text=True,
                          timeout=120)
  for flag in ('--gin_file', '--gin_bindings', '--gin_search_paths', '--tfds_data_dir',
               '--dry_run', '--multiprocess', '--verbosity'):
    assert flag in result.stdout, result.stdout
  assert '--gin.NAME=VALUE' in result.stdout, result.stdout


def test_a_bug_inside_cli_run_keeps_its_traceback(runs):
  assert runs.bug.returncode == 1, runs.bug.stderr[-3000:]
  assert 'Traceback' in runs.bug.stderr, runs.bug.stderr[-3000:]
  assert "KeyError: 'a key that is missing'" in runs.bug.stderr
  assert 'error:' not in runs.bug.stderr


def test_verbosity_1_also_logs_the_traceback_of_a_user_error(runs):
  stderr = runs.verbose.stderr
  assert runs.verbose.returncode == 2, stderr[-3000:]
  assert 'Traceback' in stderr and 'SettingError' in stderr, stderr[-3000:]
  (case,) = [case for case in CASES if case.name == VERBOSE_CASE]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and all(part in last for part in case.expect), last


def test_user_errors_become_one_line_and_exit_2_other_exceptions_pass(capsys):
  def wrong_setting():
    raise UserError('bad macro X\nmore detail')

  with pytest.raises(SystemExit) as exit_:
    cli.report_user_errors(wrong_setting)
  assert exit_.value.code == 2
  assert capsys.readouterr().err == 'error: bad macro X\n'
  with pytest.raises(KeyError):
    cli.report_user_errors(lambda: {}['missing'])


def test_a_long_input_line_is_truncated_with_one_warning_naming_file_lines_and_lengths(
    tmp_path, caplog):
  import seqio  # pylint: disable=g-import-not-at-top
  from types import SimpleNamespace  # pylint: disable=g-import-not-at-top
  from prompt_tuning.runtime import inference, inputs  # pylint: disable=g-import-not-at-top
  vocabulary = seqio.ByteVocabulary()
  texts = ['short', 'a line far longer than the inputs allow', 'ok', 'another long line here']
  path = tmp_path / 'inputs.txt'
  path.write_text('\n'.join(texts) + '\n')
  dataset = inputs.DatasetConfig('toy', {'inputs': 8, 'targets': 4}, batch_size=2)
  batches = inference._text_batches(str(path), SimpleNamespace(vocabulary=vocabulary), dataset)
  assert [text for batch_texts, _, _ in batches for text in batch_texts] == texts
  room = dataset.task_feature_lengths['inputs'] - 1  # before EOS
  lengths = [len(vocabulary.encode(text)) for text in texts]
  long_lines = [(number, n) for number, n in enumerate(lengths, start=1) if n > room]
  assert long_lines  # the test would prove nothing without
  tokens = np.concatenate([features['encoder_input_tokens'] for _, features, _ in batches])
  assert [int((row > 0).sum()) for row in tokens] == [min(n, room) + 1 for n in lengths]
  warnings = [r.getMessage() for r in caplog.records if 'truncated' in r.getMessage()]
  assert len(warnings) == 1, warnings
  assert str(path) in warnings[0]
  for number, length in long_lines:
    assert f'line {number} ({length} tokens)' in warnings[0]


def test_only_unindented_names_without_dots_count_as_macros_bound_on_the_command_line():
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning import gin_config  # pylint: disable=g-import-not-at-top
  h.parse_gin(h.TRAIN_GIN, h.train_macros('/nonexistent', 5))
  try:
    gin_config.check_bound_macros_are_used([  # a block, a parameter and a used macro pass
        'train_script.train:\n  log_every = 2', 't5.T5Config.emb_dim = 64', 'TRAIN_STEPS = 5'])
    with pytest.raises(gin_config.GinConfigError,
                       match=r'^--gin.TRAIN_STPES: .* did you mean TRAIN_STEPS\?$'):
      gin_config.check_bound_macros_are_used(['LOG_EVERY = 2\nTRAIN_STPES = 5'])
  finally:
    gin.clear_config()
