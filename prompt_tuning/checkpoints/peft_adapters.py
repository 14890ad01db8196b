"""Prompts as Hugging Face PEFT prompt-tuning adapters (`adapter_config.json` + safetensors).

A prompt trained here loads with `peft.PeftModel.from_pretrained` on the
matching HF T5, and a PEFT prompt loads here. The adapter holds an
encoder-only prompt, as in Lester et al. (`num_transformer_submodules=1`).
Knows nothing of models or training; peft itself is not needed.
"""

import json
import os
from typing import Any, Optional, Sequence

import numpy as np

from prompt_tuning import storage
from prompt_tuning.checkpoints import numpy_prompts
from prompt_tuning.checkpoints.errors import CheckpointError, one_line

CONFIG_FILE = 'adapter_config.json'
WEIGHTS_FILE = 'adapter_model.safetensors'
# The tensor PEFT saves a prompt-tuning adapter's prompt under.
PROMPT_KEY = 'prompt_embeddings'


def write_peft_adapter(directory: str, prompt: Any,
                       base_model_name_or_path: Optional[str] = None) -> None:
  """Writes the [P, H] `prompt` as a PEFT prompt-tuning adapter for a seq2seq LM.

  PEFT fills in the model fields left out here (layers, heads) from the base
  model when it loads the adapter.
  """
  from safetensors.numpy import save  # pylint: disable=g-import-not-at-top
  prompt = np.ascontiguousarray(prompt, np.float32)
  if prompt.ndim != 2:
    raise CheckpointError(f'A PEFT adapter holds one [P, H] prompt, got shape {prompt.shape}.')
  config = {
      'peft_type': 'PROMPT_TUNING',
      'task_type': 'SEQ_2_SEQ_LM',
      'num_virtual_tokens': prompt.shape[0],
      'token_dim': prompt.shape[1],
      # PEFT's seq2seq default, 2, adds a decoder-side block that prompt tuning never uses.
      'num_transformer_submodules': 1,
      'prompt_tuning_init': 'RANDOM',
      'base_model_name_or_path': base_model_name_or_path,
      'inference_mode': True,
  }
  # Each file appears whole; the config, written last, marks a complete adapter.
  weights_file, config_file = (os.path.join(directory, f) for f in (WEIGHTS_FILE, CONFIG_FILE))
  storage.write_bytes(weights_file, save({PROMPT_KEY: prompt}))
  storage.write_text(config_file, json.dumps(config, indent=2))


def read_peft_adapter(directory: str, expected_shape: Optional[Sequence[int]] = None) -> np.ndarray:
  """The [P, H] encoder prompt of a PEFT prompt-tuning adapter, checked against `expected_shape`."""
  from safetensors import SafetensorError  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import load  # pylint: disable=g-import-not-at-top
  config_file, weights_file = (os.path.join(directory, f) for f in (CONFIG_FILE, WEIGHTS_FILE))
  try:
    config = json.loads(storage.read_text(config_file))
    prompt = load(storage.read_bytes(weights_file))[PROMPT_KEY]
  except storage.UnreachableError:  # its message already says what to do
    raise
  except (CheckpointError, ValueError, KeyError, SafetensorError) as e:  # missing or bad, no prompt
    raise CheckpointError(f'Cannot read the PEFT adapter in {directory}: {one_line(e)}') from None
  if config.get('peft_type') != 'PROMPT_TUNING':
    raise CheckpointError(f'{config_file}: peft_type is {config.get("peft_type")!r}, expected '
                          'PROMPT_TUNING.')
  # With num_transformer_submodules=2 the rows after P belong to a decoder block that
  # prompt tuning leaves unused; the encoder prompt is the first P rows.
  prompt = prompt[:config.get('num_virtual_tokens', len(prompt))]
  numpy_prompts.check_shape(prompt, expected_shape, f'The PEFT prompt in {directory}')
  return prompt
