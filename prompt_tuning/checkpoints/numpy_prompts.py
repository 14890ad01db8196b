"""Prompts as `.npy` files, named as T5X prompt tuning names them (`encoder.prompt.prompt.npy`).

The paper's released prompts and tools use this naming, so prompts move
between the two. Local paths and `gs://`; writes are atomic. Knows nothing
of models or training.
"""

import io
from typing import Any, Optional, Sequence

import numpy as np

from prompt_tuning.checkpoints import storage
from prompt_tuning.checkpoints.errors import CheckpointError, one_line

# Where the prompted model keeps its prompt.
PROMPT_PARAM_PATH = 'encoder/prompt/prompt'


def prompt_file_name(param_path: str = PROMPT_PARAM_PATH) -> str:
  """'encoder/prompt/prompt' -> 'encoder.prompt.prompt.npy'."""
  return param_path.replace('/', '.') + '.npy'


def write_prompt(directory: str, prompt: Any, param_path: str = PROMPT_PARAM_PATH) -> str:
  """Writes `prompt` ([P, H] or a bank [K, P, H]) as `<directory>/<param path with dots>.npy`.

  The file appears whole or not at all. Returns its path.
  """
  buffer = io.BytesIO()
  np.save(buffer, np.asarray(prompt), allow_pickle=False)
  path = f'{directory.rstrip("/")}/{prompt_file_name(param_path)}'
  storage.write_bytes(path, buffer.getvalue())
  return path


def read_prompt(path: str, expected_shape: Optional[Sequence[int]] = None,
                dtype: Any = np.float32) -> np.ndarray:
  """The prompt in the `.npy` file `path`, cast to `dtype`, checked against `expected_shape`."""
  try:
    prompt = np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)
  except ValueError as e:  # np.load's error for bytes that are not a .npy file
    raise CheckpointError(f'{path} is not a .npy file: {one_line(e)}') from None
  check_shape(prompt, expected_shape, f'Prompt file {path}')
  return prompt.astype(dtype)


def check_shape(prompt: np.ndarray, expected_shape: Optional[Sequence[int]], what: str) -> None:
  """Raises a CheckpointError stating both shapes when `prompt` does not have `expected_shape`."""
  if expected_shape is not None and prompt.shape != tuple(expected_shape):
    raise CheckpointError(f'{what} has shape {prompt.shape}, expected {tuple(expected_shape)}.')
