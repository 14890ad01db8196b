"""`python -m prompt_tuning.infer`: predictions for a task split or a file of raw inputs, as JSONL.

One line per input: {"inputs": ..., "prediction": ..., "score": ...}.
"""

import os
from typing import Any, Optional, Sequence

import gin
import jax.numpy as jnp

from prompt_tuning import cli
from prompt_tuning.runtime import inference, inputs, partitioning
from prompt_tuning.runtime import optimizer as optim
from prompt_tuning.runtime.model import EncoderDecoderModel

REQUIRED_MACROS = ('MODEL_DIR', 'MIXTURE_OR_TASK_NAME', 'TASK_FEATURE_LENGTHS')


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


def main() -> None:
  cli.initialize_distributed()
  if not cli.parse_gin(REQUIRED_MACROS):
    return
  infer()


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
