"""`python -m prompt_tuning.train`: train a prompt (or, with model_finetune.gin, the whole model).

As T5X's train.py: `--gin_file`, `--gin.NAME=VALUE`, `--gin_search_paths`,
`--tfds_data_dir`, and `--multiprocess` for multi-host runs.
"""

from typing import Any, Optional, Sequence

import gin
import jax.numpy as jnp

from prompt_tuning import cli
from prompt_tuning.runtime import checkpointing, evaluation, inputs, partitioning, train_loop
from prompt_tuning.runtime import optimizer as optim
from prompt_tuning.runtime.model import EncoderDecoderModel

REQUIRED_MACROS = ('MODEL_DIR', 'MIXTURE_OR_TASK_NAME', 'TASK_FEATURE_LENGTHS', 'TRAIN_STEPS',
                   'BATCH_SIZE')


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


def main() -> None:
  cli.initialize_distributed()
  if not cli.parse_gin(REQUIRED_MACROS):
    return
  result = train()
  for task, metrics in result.eval_metrics.items():
    print(f'final eval {task}: ' + ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()
                                                if isinstance(v, float)))


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
