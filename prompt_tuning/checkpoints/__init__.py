"""Checkpoint formats, as readers and writers: T5X (native and orbax), Hugging Face T5, prompts.

Formats only: no training logic. `load_t5` is the usual entry point.
"""

from prompt_tuning.checkpoints.embedding import read_embedding
from prompt_tuning.checkpoints.errors import CheckpointError
from prompt_tuning.checkpoints.hf import HFCheckpoint, t5_config_from_hf
from prompt_tuning.checkpoints.loader import load_t5, model_shapes, open_checkpoint
from prompt_tuning.checkpoints.numpy_prompts import (prompt_bank_size, prompt_file_name,
                                                     read_prompt, read_prompt_bank, write_prompt)
from prompt_tuning.checkpoints.peft_adapters import read_peft_adapter, write_peft_adapter
from prompt_tuning.checkpoints.t5x import OrbaxT5XCheckpoint, T5XCheckpoint
