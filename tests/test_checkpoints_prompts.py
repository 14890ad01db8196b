"""Prompts as `.npy` files named as in T5X prompt tuning: round trips, released prompts, errors."""

import numpy as np
import orbax.checkpoint as ocp
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
  assert path == str(tmp_path / 'checkpoint_10' / 'encoder.prompt.prompt.prompt.npy')
  # Nothing but the finished file is left behind.
  names = [p.name for p in (tmp_path / 'checkpoint_10').iterdir()]
  assert names == ['encoder.prompt.prompt.prompt.npy']
  np.testing.assert_array_equal(checkpoints.read_prompt(path, expected_shape=shape), prompt)
  np.testing.assert_array_equal(np.load(path), prompt)  # a plain .npy for other tools


def test_rewriting_a_prompt_replaces_it_whole(tmp_path):
  checkpoints.write_prompt(str(tmp_path), np.zeros((100, 8), np.float32))
  path = checkpoints.write_prompt(str(tmp_path), np.ones((2, 8), np.float32))
  np.testing.assert_array_equal(checkpoints.read_prompt(path), np.ones((2, 8)))


def test_prompt_file_name_follows_the_parameter_path():
  assert checkpoints.prompt_file_name() == 'encoder.prompt.prompt.prompt.npy'
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
  missing = str(tmp_path / 'encoder.prompt.prompt.prompt.npy')
  _one_line_error(lambda: checkpoints.read_prompt(missing), 'not found')
  (tmp_path / 'bad.npy').write_bytes(b'\x93NUMPY garbage')
  _one_line_error(lambda: checkpoints.read_prompt(str(tmp_path / 'bad.npy')), 'not a .npy file')


def _save(path, array, allow_pickle=False):
  with open(path, 'wb') as f:  # a file object: np.save adds no suffix
    np.save(f, array, allow_pickle=allow_pickle)
  return str(path)


@pytest.mark.parametrize('array', [np.zeros((2, 8), np.int64), np.zeros((2, 8), bool),
                                   np.zeros((2, 8), np.complex64), np.array(['a', 'b'])],
                         ids=['int', 'bool', 'complex', 'string'])
def test_a_prompt_file_that_does_not_hold_floats_is_refused_not_cast(tmp_path, array):
  path = _save(tmp_path / 'prompt.npy', array)
  message = _one_line_error(lambda: checkpoints.read_prompt(path), 'expected floating point')
  assert path in message and str(array.dtype) in message


def test_a_prompt_file_of_python_objects_is_refused_without_unpickling(tmp_path):
  path = _save(tmp_path / 'prompt.npy', np.array([{'a': 1}, None], dtype=object), True)
  message = _one_line_error(lambda: checkpoints.read_prompt(path), 'Python objects')
  assert path in message and 'allow_pickle' not in message


@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_a_prompt_file_with_non_finite_values_names_their_count_and_the_first(tmp_path, value):
  prompt = np.ones((3, 8), np.float32)
  prompt[2, 5] = prompt[1, 4] = value
  path = _save(tmp_path / 'prompt.npy', prompt)
  message = _one_line_error(lambda: checkpoints.read_prompt(path), 'non-finite')
  assert path in message and '2 non-finite' in message and 'index (1, 4)' in message


@pytest.mark.parametrize('dtype', [np.float16, np.float32, np.float64])
def test_float_prompt_files_of_any_precision_read_as_float32(tmp_path, dtype):
  prompt = np.random.default_rng(0).normal(size=(3, 8)).astype(dtype)
  read = checkpoints.read_prompt(_save(tmp_path / 'prompt.npy', prompt))
  assert read.dtype == np.float32
  np.testing.assert_array_equal(read, prompt.astype(np.float32))


def test_empty_npz_text_and_truncated_prompt_files_name_the_file(tmp_path):
  cases = {'empty.npy': (b'', 'is empty'), 'text.npy': (b'0.1 0.2\n', 'not a .npy file')}
  for name, (data, match) in cases.items():
    (tmp_path / name).write_bytes(data)
    assert str(tmp_path / name) in _one_line_error(
        lambda: checkpoints.read_prompt(str(tmp_path / name)), match)
  with open(tmp_path / 'archive.npy', 'wb') as f:
    np.savez(f, prompt=np.zeros((2, 8)))
  _one_line_error(lambda: checkpoints.read_prompt(str(tmp_path / 'archive.npy')), '.npz archive')
  whole = _save(tmp_path / 'whole.npy', np.zeros((4, 8)))
  (tmp_path / 'truncated.npy').write_bytes(open(whole, 'rb').read()[:-10])
  _one_line_error(lambda: checkpoints.read_prompt(str(tmp_path / 'truncated.npy')),
                  'not a .npy file')


def test_a_bank_stacks_its_files_in_the_order_of_their_names(tmp_path):
  prompts = {name: np.random.default_rng(seed).normal(size=(3, 8)) for seed, name in
             enumerate(['rte', 'boolq', 'cb'])}  # float64 files, read as float32
  paths = {}
  for name, prompt in prompts.items():
    paths[name] = str(tmp_path / f'{name}.npy')
    np.save(paths[name], prompt)
  bank = checkpoints.read_prompt_bank(paths)
  assert bank.dtype == np.float32 and checkpoints.prompt_bank_size(paths) == 3
  np.testing.assert_array_equal(bank, np.stack(list(prompts.values())).astype(np.float32))


def test_a_bank_of_no_files_or_of_a_bank_file_is_one_line(tmp_path):
  _one_line_error(lambda: checkpoints.read_prompt_bank({}), r'^PROMPT_FILES=\{\}: must be a non-empty')
  _one_line_error(lambda: checkpoints.prompt_bank_size(['a.npy']), r'^PROMPT_FILES=\[.*dict')
  np.save(tmp_path / 'bank.npy', np.zeros((2, 3, 8)))
  _one_line_error(lambda: checkpoints.read_prompt_bank({'a': str(tmp_path / 'bank.npy')}),
                  r"^PROMPT_FILES\['a'\] .*bank.npy has shape \(2, 3, 8\); expected one prompt")


def test_a_bank_takes_the_prompt_of_a_checkpoint_beside_prompt_files(tmp_path):
  # A training checkpoint's layout (T5X's, through orbax): the prompt under `target`.
  prompt = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
  ocp.PyTreeCheckpointer().save(tmp_path / 'checkpoint_10' / 'state', {'target': {
      'encoder': {'prompt': {'prompt': {'prompt': prompt}}}}})
  np.save(tmp_path / 'b.npy', np.ones((3, 8), np.float32))
  bank = checkpoints.read_prompt_bank({'a': str(tmp_path / 'checkpoint_10'),
                                       'b': str(tmp_path / 'b.npy')})
  np.testing.assert_array_equal(bank, np.stack([prompt, np.ones((3, 8), np.float32)]))
  _one_line_error(lambda: checkpoints.read_prompt_bank({'c': str(tmp_path / 'nowhere')}),
                  r"^PROMPT_FILES\['c'\]: No checkpoint at .*nowhere")
