"""Reads the frozen model's token embedding `[V, H]`, for the vocabulary-based prompt initializers.

A reader only: it knows file formats, not prompts or gin.
"""

import functools
from typing import Optional

import numpy as np

from prompt_tuning.checkpoints import loader, numpy_prompts
from prompt_tuning.checkpoints.errors import CheckpointError


@functools.lru_cache(maxsize=2)
def read_embedding(checkpoint_path: Optional[str] = None,
                   embedding_file: Optional[str] = None) -> np.ndarray:
  """The token embedding `[V, H]` from EMBEDDING_FILE (a `.npy`), else from the checkpoint.

  From the checkpoint, only the array `token_embedder/embedding` is read.
  Cached: a prompt initializer and its fallback both ask for it, and it can
  be large and remote.
  """
  if embedding_file:
    embedding = numpy_prompts.read_array(embedding_file, 'EMBEDDING_FILE')
    if embedding.ndim != 2:
      raise CheckpointError(f'EMBEDDING_FILE {embedding_file} has shape {embedding.shape}; '
                            'expected a [vocabulary, embedding] table.')
    return embedding
  if not checkpoint_path:
    raise CheckpointError('A vocabulary-based prompt initializer needs INITIAL_CHECKPOINT_PATH or '
                          'EMBEDDING_FILE.')
  return np.asarray(loader.open_checkpoint(checkpoint_path).read('token_embedder/embedding'))
