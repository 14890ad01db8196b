"""`python -m prompt_tuning.train`: train a prompt (or, with model_finetune.gin, the whole model).

As T5X's train.py: `--gin_file`, `--gin.NAME=VALUE`, `--gin_search_paths`,
`--tfds_data_dir`, and `--multiprocess` for multi-host runs.
"""

from prompt_tuning import cli, commands


def main() -> None:
  cli.initialize_distributed()
  if not cli.parse_gin(commands.TRAIN_MACROS):
    return
  result = commands.train()
  for task, metrics in result.eval_metrics.items():
    print(f'final eval {task}: ' + ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()
                                                if isinstance(v, float)))


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
