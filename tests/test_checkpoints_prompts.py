"""Prompts as `.npy` files named as in T5X prompt tuning: round trips, released prompts, errors."""

import numpy as np
import pytest

from prompt_tuning import checkpoints


def _one_line_error(call, match: str) -> str:
  with pytest.raises(checkpoints.CheckpointError, match=match) as error:
    call()
  assert '\n' not in str(error.value)
  return str(error.value)


@pytest.mark.parametrize('shape', [(5, 8), (3, 5, 8)])
def test_written_prompt_is_named_by_its_param_path_and_reads_back_exactly(tmp_path, shape):
  prompt = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  path = checkpoints.write_prompt(str(tmp_path / 'checkpoint_10'), prompt)
  assert path == str(tmp_path / 'checkpoint_10' / 'encoder.prompt.prompt.npy')
  # Nothing but the finished file is left behind.
  assert [p.name for p in (tmp_path / 'checkpoint_10').iterdir()] == ['encoder.prompt.prompt.npy']
  np.testing.assert_array_equal(checkpoints.read_prompt(path, expected_shape=shape), prompt)
  np.testing.assert_array_equal(np.load(path), prompt)  # a plain .npy for other tools


def test_rewriting_a_prompt_replaces_it_whole(tmp_path):
  checkpoints.write_prompt(str(tmp_path), np.zeros((100, 8), np.float32))
  path = checkpoints.write_prompt(str(tmp_path), np.ones((2, 8), np.float32))
  np.testing.assert_array_equal(checkpoints.read_prompt(path), np.ones((2, 8)))


def test_prompt_file_name_follows_the_parameter_path():
  assert checkpoints.prompt_file_name() == 'encoder.prompt.prompt.npy'
  assert checkpoints.prompt_file_name('decoder/prompt/prompt') == 'decoder.prompt.prompt.npy'


def test_released_prompt_loads_for_base_and_is_refused_for_small(fixtures_dir):
  path = str(fixtures_dir / 'released_prompts/t5_1_1_lm100k_base/rte.npy')
  prompt = checkpoints.read_prompt(path, expected_shape=(100, 768))
  assert prompt.dtype == np.float32 and np.isfinite(prompt).all()
  message = _one_line_error(lambda: checkpoints.read_prompt(path, expected_shape=(100, 512)),
                            r'\(100, 768\), expected \(100, 512\)')
  assert path in message


def test_prompt_of_the_wrong_shape_states_both_shapes(tmp_path):
  path = checkpoints.write_prompt(str(tmp_path), np.zeros((4, 8), np.float32))
  _one_line_error(lambda: checkpoints.read_prompt(path, expected_shape=(20, 8)),
                  r'has shape \(4, 8\), expected \(20, 8\)')


def test_missing_or_corrupt_prompt_files_are_one_line_errors(tmp_path):
  missing = str(tmp_path / 'encoder.prompt.prompt.npy')
  _one_line_error(lambda: checkpoints.read_prompt(missing), 'not found')
  (tmp_path / 'bad.npy').write_bytes(b'\x93NUMPY garbage')
  _one_line_error(lambda: checkpoints.read_prompt(str(tmp_path / 'bad.npy')), 'not a .npy file')
