"""The three commands as gin-configurable functions, the edge between gin and the library.

`train_script.train`, `eval_script.evaluate` and `infer_script.infer`, named as
in T5X's gin files. They live here rather than in the `python -m` modules so
that they are registered once, whichever command runs.
"""

import os
from typing import Any, Dict, Optional, Sequence

import gin
import jax.numpy as jnp

from prompt_tuning.runtime import (checkpointing, evaluation, inference, inputs, partitioning,
                                   train_loop)
from prompt_tuning.runtime import optimizer as optim
from prompt_tuning.runtime.model import EncoderDecoderModel

TRAIN_MACROS = ('MODEL_DIR', 'MIXTURE_OR_TASK_NAME', 'TASK_FEATURE_LENGTHS', 'TRAIN_STEPS',
                'BATCH_SIZE')
EVAL_MACROS = ('MODEL_DIR', 'MIXTURE_OR_TASK_NAME', 'TASK_FEATURE_LENGTHS')
INFER_MACROS = EVAL_MACROS


@gin.configurable('train', module='train_script')
def train(*, model: EncoderDecoderModel, train_dataset_cfg: inputs.DatasetConfig, model_dir: str,
          total_steps: int, infer_eval_dataset_cfg: Optional[inputs.DatasetConfig] = None,
          eval_mode: str = 'generate', eval_period: int = 0, eval_steps: Optional[int] = None,
          checkpoint_cfg: checkpointing.CheckpointConfig = checkpointing.CheckpointConfig(),
          partitioner: partitioning.Partitioner = partitioning.Partitioner(),
          trainable_regexes: Sequence[str] = optim.PROMPT_ONLY,
          initial_checkpoint_path: Optional[str] = None, frozen_dtype: Any = jnp.float32,
          random_seed: int = 0, log_every: int = 100) -> train_loop.TrainResult:
  """Trains, evaluating `infer_eval_dataset_cfg` every `eval_period` steps and at the end.

  `eval_steps` batches are evaluated each time (all of the split when None).
  """
  eval_config = None
  if infer_eval_dataset_cfg is not None:
    num_examples = eval_steps * infer_eval_dataset_cfg.batch_size if eval_steps else None
    eval_config = evaluation.EvalConfig(infer_eval_dataset_cfg, eval_mode, num_examples)
  return train_loop.train(
      model=model, train_dataset_config=train_dataset_cfg, model_dir=model_dir,
      total_steps=total_steps, partitioner=partitioner, checkpoint_config=checkpoint_cfg,
      trainable_regexes=trainable_regexes, initial_checkpoint_path=initial_checkpoint_path,
      frozen_dtype=frozen_dtype, random_seed=random_seed, eval_period=eval_period,
      eval_config=eval_config, log_every=log_every, config_text=gin.config_str())


@gin.configurable('evaluate', module='eval_script')
def evaluate(*, model: EncoderDecoderModel, dataset_cfg: inputs.DatasetConfig, output_dir: str,
             eval_mode: str = 'generate', eval_steps: Optional[int] = None,
             partitioner: partitioning.Partitioner = partitioning.Partitioner(),
             trainable_regexes: Sequence[str] = optim.PROMPT_ONLY,
             initial_checkpoint_path: Optional[str] = None, checkpoint_path: Optional[str] = None,
             frozen_dtype: Any = jnp.float32, random_seed: int = 0) -> Dict[str, Dict[str, Any]]:
  """Evaluates every task of `dataset_cfg`; `eval_steps` batches only, when set."""
  num_examples = eval_steps * dataset_cfg.batch_size if eval_steps else None
  return inference.evaluate(
      model=model, eval_config=evaluation.EvalConfig(dataset_cfg, eval_mode, num_examples),
      output_dir=output_dir, partitioner=partitioner, trainable_regexes=trainable_regexes,
      initial_checkpoint_path=initial_checkpoint_path, frozen_dtype=frozen_dtype,
      checkpoint_path=checkpoint_path, seed=random_seed)


@gin.configurable('infer', module='infer_script')
def infer(*, model: EncoderDecoderModel, dataset_cfg: inputs.DatasetConfig, model_dir: str,
          output_file: Optional[str] = None, input_file: Optional[str] = None,
          partitioner: partitioning.Partitioner = partitioning.Partitioner(),
          trainable_regexes: Sequence[str] = optim.PROMPT_ONLY,
          initial_checkpoint_path: Optional[str] = None, checkpoint_path: Optional[str] = None,
          frozen_dtype: Any = jnp.float32, random_seed: int = 0) -> int:
  """Predicts every example of `dataset_cfg`'s split, or every line of `input_file`.

  Writes `output_file`, by default MODEL_DIR/inference/predictions.jsonl.
  """
  output_file = output_file or os.path.join(model_dir, 'inference', 'predictions.jsonl')
  count = inference.infer(
      model=model, dataset_config=dataset_cfg, output_file=output_file, partitioner=partitioner,
      trainable_regexes=trainable_regexes, initial_checkpoint_path=initial_checkpoint_path,
      frozen_dtype=frozen_dtype, checkpoint_path=checkpoint_path, input_file=input_file,
      seed=random_seed)
  print(f'wrote {count} predictions to {output_file}')
  return count
