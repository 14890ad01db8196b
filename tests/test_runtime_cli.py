"""The CLI's `--gin.NAME=VALUE` flags. Bad command lines and their one-line errors are tested in
test_cli_errors.py."""

import pytest

from prompt_tuning import cli
from prompt_tuning.errors import UserError


def test_dotted_gin_flags_become_gin_bindings():
  argv = ['train.py', '--gin_file=a.gin', "--gin.MODEL_DIR='/tmp/x'", '--gin.t5.T5Config.emb_dim=8',
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 4}"]
  assert cli.rewrite_gin_args(argv) == [
      'train.py', '--gin_file=a.gin', "--gin_bindings=MODEL_DIR = '/tmp/x'",
      '--gin_bindings=t5.T5Config.emb_dim = 8',
      "--gin_bindings=TASK_FEATURE_LENGTHS = {'inputs': 4}"]


@pytest.mark.parametrize('arg', ['--gin.TRAIN_STEPS', '--gin.=5'])
def test_a_dotted_gin_flag_without_a_name_or_value_is_a_user_error(arg):
  with pytest.raises(cli.CommandLineError, match=f'{arg}: expected --gin.NAME=VALUE') as error:
    cli.rewrite_gin_args(['train.py', arg])
  assert isinstance(error.value, UserError)
