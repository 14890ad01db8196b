"""`python -m prompt_tuning.train`: train a prompt (or, with model_finetune.gin, the whole model).

As T5X's train.py: `--gin_file` (in order), `--gin.NAME=VALUE` for a macro or
a parameter (e.g. --gin.TRAIN_STEPS=1000), `--gin_search_paths`,
`--tfds_data_dir`, and `--multiprocess` for multi-host runs; `--dry_run`
checks the configuration and prints it. A wrong setting, file or flag ends in
one line `error: ...` (exit status 2) that names it; `--verbosity=1` also logs
the traceback.
"""

from prompt_tuning import cli


def main() -> None:
  from prompt_tuning import commands  # pylint: disable=g-import-not-at-top (after the flags)
  cli.initialize_distributed()
  if not cli.parse_gin(commands.TRAIN_MACROS, commands.check_train_settings):
    return
  result = commands.train()
  for task, metrics in result.eval_metrics.items():
    print(f'final eval {task}: ' + ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()
                                                if isinstance(v, float)))


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
