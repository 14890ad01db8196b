"""A model that does not fit its task (vocabulary) or its frozen checkpoint (size) stops at
start-up with one line naming both sides, in the library and through the CLI."""

import json
import sys

import pytest
import seqio

from prompt_tuning.models import prompted, t5
from prompt_tuning.runtime import inputs, initial_params, run_setup
from prompt_tuning.runtime.model import EncoderDecoderModel
import runtime_helpers as h
import toy_tasks

LENGTHS = {'inputs': 12, 'targets': 4}
DATASET = inputs.DatasetConfig(h.TASK, LENGTHS, batch_size=8, module='toy_tasks')


def _run_cli_in_process(tmp_path, capsys, script, macros):
  """(exit status, stderr) of `python -m prompt_tuning.<script>`, run in this process.

  What the command prints through Python is in `capsys` (pytest holds sys.stderr), what native
  code writes to file descriptor 2 in the result.
  """
  requests, results = tmp_path / 'requests.json', tmp_path / 'results.jsonl'
  requests.write_text(json.dumps([{'name': script,
                                   'command': h.cli_command(script, h.TRAIN_GIN, macros)}]))
  argv = sys.argv
  try:
    h.serve_cli_commands(str(requests), str(results))
  finally:
    sys.argv = argv
    from absl import flags  # pylint: disable=g-import-not-at-top
    flags.FLAGS.unparse_flags()
  result = json.loads(results.read_text())
  return result['returncode'], result['stderr'] + capsys.readouterr().err


def _error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith('error: ')]


def test_a_model_vocabulary_other_than_the_tasks_is_refused_in_one_line():
  inputs.check_vocabulary(DATASET, seqio.PassThroughVocabulary(toy_tasks.VOCAB_SIZE, eos_id=1))
  with pytest.raises(inputs.DatasetError) as error:
    inputs.check_vocabulary(DATASET, seqio.ByteVocabulary())
  message = str(error.value)
  assert '\n' not in message
  assert message.startswith('VOCABULARY is ByteVocabulary(size 259) but the inputs of '
                            "MIXTURE_OR_TASK_NAME='toy_parity' use PassThroughVocabulary(size 128)")


def test_the_cli_stops_on_a_vocabulary_mismatch_before_writing(tmp_path, capsys):
  model_dir = tmp_path / 'run'
  status, stderr = _run_cli_in_process(
      tmp_path, capsys, 'train', h.train_macros(model_dir, 1, VOCABULARY='@seqio.ByteVocabulary()'))
  assert status == 2, stderr[-3000:]
  [line] = _error_lines(stderr)
  assert 'VOCABULARY is ByteVocabulary' in line and 'PassThroughVocabulary(size 128)' in line
  assert not model_dir.exists()


def test_a_checkpoint_of_another_size_is_refused_naming_both_shapes():
  config = t5.config_for_size('tiny', emb_dim=32)  # the checkpoint is the tiny preset's, 8 wide
  model = EncoderDecoderModel(prompted.PromptedT5(config, prompted.PromptConfig(length=4)),
                              seqio.PassThroughVocabulary(toy_tasks.VOCAB_SIZE, eos_id=1))
  with pytest.raises(initial_params.InitialCheckpointError) as error:
    run_setup.set_up(model, run_setup.RunConfig(initial_checkpoint_path=h.frozen_checkpoint()),
                     DATASET)
  message = str(error.value)
  assert '\n' not in message and message.startswith('INITIAL_CHECKPOINT_PATH: ')
  assert 'has shape (8,), expected (32,)' in message


def test_the_cli_stops_on_a_size_mismatch_before_writing(tmp_path, capsys):
  model_dir = tmp_path / 'run'
  macros = h.train_macros(model_dir, 1, **{'MODEL_SIZE': "'small'"})
  status, stderr = _run_cli_in_process(tmp_path, capsys, 'train', macros)
  assert status == 2, stderr[-3000:]
  [line] = _error_lines(stderr)
  assert 'INITIAL_CHECKPOINT_PATH' in line and 'expected' in line and 'has shape' in line
  assert not model_dir.exists()
