"""`python -m prompt_tuning.eval`: evaluate a frozen model with a prompt, from PROMPT_FILE or a run.

Writes metrics (TensorBoard, JSON) and predictions (JSONL) to
MODEL_DIR/inference_eval/.
"""

from prompt_tuning import cli, commands


def main() -> None:
  cli.initialize_distributed()
  if not cli.parse_gin(commands.EVAL_MACROS):
    return
  for task, metrics in commands.evaluate().items():
    print(f'{task}: ' + ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()
                                  if isinstance(v, float)))


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
