"""Prompts as `.npy` files, named the T5X prompt tuning way (`encoder.prompt.prompt.prompt.npy`).

The paper's released prompts and tools use this naming, so prompts move
between the two. Local paths and `gs://`; writes are atomic. Knows of the
model only its prompt's path; nothing of training.
"""

import io
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from prompt_tuning import storage
from prompt_tuning.checkpoints.errors import CheckpointError, one_line
from prompt_tuning.models import prompted

# Where the prompted model keeps its prompt.
PROMPT_PARAM_PATH = prompted.PROMPT_PATH


def prompt_file_name(param_path: str = PROMPT_PARAM_PATH) -> str:
  """'encoder/prompt/prompt/prompt' -> 'encoder.prompt.prompt.prompt.npy'."""
  return param_path.replace('/', '.') + '.npy'


def write_prompt(directory: str, prompt: Any, param_path: str = PROMPT_PARAM_PATH,
                 file_name: Optional[str] = None) -> str:
  """Writes `prompt` ([P, H] or a bank [K, P, H]) as `<directory>/<param path with dots>.npy`.

  Or as `<directory>/<file_name>` when given (a bank's row, named after its task).
  The file appears whole or not at all. Returns its path.
  """
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(prompt), allow_pickle=False)
  path = f'{directory.rstrip("/")}/{file_name or prompt_file_name(param_path)}'
  storage.write_bytes(path, buffer.getvalue())
  return path


_NPY_MAGIC = b'\x93NUMPY'
_ZIP_MAGIC = b'PK\x03\x04'
_KINDS = {'b': 'boolean', 'i': 'integer', 'u': 'unsigned integer', 'c': 'complex', 'U': 'string',
          'S': 'bytes', 'V': 'raw (void)', 'M': 'datetime', 'm': 'timedelta'}


def read_array(path: str, what: str = 'prompt file') -> np.ndarray:
  """The floating-point array in the `.npy` file `path`, every value finite.

  Anything else (an empty file, a `.npz` archive, text, a pickle, integers,
  strings, NaN or Inf) is a one-line CheckpointError naming `what` and `path`.
  Nothing is unpickled.
  """
  try:
    data = storage.read_bytes(path)
  except storage.UnreachableError:  # its message already says what to do
    raise
  except CheckpointError as e:  # missing or unreadable
    raise CheckpointError(f'{what}: {e}') from None
  if not data:
    raise CheckpointError(f'{what} {path} is empty; expected a .npy array (numpy.save).')
  if not data.startswith(_NPY_MAGIC):
    kind = 'a .npz archive' if data.startswith(_ZIP_MAGIC) else f'starts with {data[:8]!r}'
    raise CheckpointError(f'{what} {path} is not a .npy file ({kind}); expected a .npy array '
                          '(numpy.save).')
  try:
    array = np.load(io.BytesIO(data), allow_pickle=False)
  except ValueError as e:
    if 'allow_pickle' in str(e):  # an object array, stored as a pickle
      raise CheckpointError(f'{what} {path} holds Python objects; expected floating point '
                            'values (float16, float32 or float64).') from None
    raise CheckpointError(f'{what} {path} is not a .npy file numpy can read: {one_line(e)}'
                          ) from None
  except (EOFError, OSError) as e:  # truncated data
    raise CheckpointError(f'{what} {path} is not a .npy file numpy can read: {one_line(e)}'
                          ) from None
  if array.dtype.kind != 'f':
    kind = _KINDS.get(array.dtype.kind, 'non-float')
    raise CheckpointError(f'{what} {path} holds {kind} values ({array.dtype}); expected floating '
                          'point (float16, float32 or float64).')
  finite = np.isfinite(array)
  if not finite.all():
    bad = np.argwhere(~finite)
    raise CheckpointError(f'{what} {path} holds {len(bad)} non-finite values (NaN or Inf), the '
                          f'first at index {tuple(int(i) for i in bad[0])}.')
  return array


def read_prompt(path: str, expected_shape: Optional[Sequence[int]] = None,
                dtype: Any = np.float32) -> np.ndarray:
  """The prompt in the `.npy` file `path`, cast to `dtype`, checked against `expected_shape`.

  The file must hold finite floating-point values (see `read_array`).
  """
  prompt = read_array(path)
  check_shape(prompt, expected_shape, f'Prompt file {path}')
  return prompt.astype(dtype)


def prompt_bank_size(paths: Mapping[str, str]) -> int:
  """K, the number of prompts in the bank PROMPT_FILES ({name: `.npy` prompt or checkpoint})."""
  if not isinstance(paths, Mapping) or not paths:
    raise CheckpointError(f'PROMPT_FILES={paths!r}: must be a non-empty dict '
                          "{name: path of a .npy prompt}, e.g. {'rte': 'rte.npy'}.")
  return len(paths)


def read_prompt_bank(paths: Mapping[str, str], dtype: Any = np.float32) -> np.ndarray:
  """The prompts of PROMPT_FILES, in its order, as one bank [K, P, H] cast to `dtype`.

  Row k is the prompt of the k-th name: a `.npy` file (see `read_array` for what it
  must hold), or else a checkpoint that holds a prompt (a training run's
  `checkpoint_<step>`, or T5X's). Every prompt must be [P, H], of one shape.
  """
  prompt_bank_size(paths)
  prompts = []
  for name, path in paths.items():
    prompt = _read_member(path, f'PROMPT_FILES[{name!r}]')
    if prompt.ndim != 2:
      raise CheckpointError(f'PROMPT_FILES[{name!r}] {path} has shape {prompt.shape}; expected '
                            'one prompt [PROMPT_LENGTH, embed].')
    if prompts and prompt.shape != prompts[0].shape:
      first = next(iter(paths))
      raise CheckpointError(f'PROMPT_FILES[{name!r}] {path} has shape {prompt.shape}, but '
                            f'PROMPT_FILES[{first!r}] has {prompts[0].shape}; a bank\'s prompts '
                            'share one shape.')
    prompts.append(prompt)
  return np.stack(prompts).astype(dtype)


def _read_member(path: str, what: str) -> np.ndarray:
  """The prompt of a `.npy` file, or of the checkpoint at `path`."""
  if path.endswith('.npy'):
    return read_array(path, what)
  from prompt_tuning.checkpoints import loader  # pylint: disable=g-import-not-at-top  # imports us
  try:
    return loader.open_checkpoint(path).read(PROMPT_PARAM_PATH)
  except CheckpointError as e:
    raise CheckpointError(f'{what}: {e}') from None


def check_shape(prompt: np.ndarray, expected_shape: Optional[Sequence[int]], what: str) -> None:
  """Raises a CheckpointError stating both shapes when `prompt` does not have `expected_shape`."""
  if expected_shape is not None and prompt.shape != tuple(expected_shape):
    raise CheckpointError(f'{what} has shape {prompt.shape}, expected {tuple(expected_shape)}.')
