"""`python -m prompt_tuning.eval`: evaluate a frozen model with a prompt, from PROMPT_FILE or a run.

Writes metrics (TensorBoard, JSON) and predictions (JSONL) to
MODEL_DIR/inference_eval/.
"""

from typing import Any, Dict, Optional, Sequence

import gin
import jax.numpy as jnp

from prompt_tuning import cli
from prompt_tuning.runtime import evaluation, inference, inputs, partitioning
from prompt_tuning.runtime import optimizer as optim
from prompt_tuning.runtime.model import EncoderDecoderModel

REQUIRED_MACROS = ('MODEL_DIR', 'MIXTURE_OR_TASK_NAME', 'TASK_FEATURE_LENGTHS')


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


def main() -> None:
  cli.initialize_distributed()
  if not cli.parse_gin(REQUIRED_MACROS):
    return
  for task, metrics in evaluate().items():
    print(f'{task}: ' + ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()
                                  if isinstance(v, float)))


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
