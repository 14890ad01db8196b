"""`python -m prompt_tuning.eval`: evaluate a frozen model with a prompt, from PROMPT_FILE or a run.

Writes metrics (TensorBoard, JSON) and predictions (JSONL) to
MODEL_DIR/inference_eval/. Flags as T5X's eval.py: `--gin_file` (in order),
`--gin.NAME=VALUE` for a macro or a parameter (e.g. --gin.EVAL_STEPS=10),
`--gin_search_paths`, `--tfds_data_dir`, `--multiprocess`; `--dry_run` checks
the configuration and prints it. A wrong setting, file or flag ends in one
line `error: ...` (exit status 2) that names it; `--verbosity=1` also logs the
traceback.
"""

from prompt_tuning import cli


def main() -> None:
  from prompt_tuning import commands  # pylint: disable=g-import-not-at-top (after the flags)
  cli.initialize_distributed()
  if not cli.parse_gin(commands.EVAL_MACROS, commands.check_eval_settings):
    return
  for task, metrics in commands.evaluate().items():
    print(f'{task}: ' + ', '.join(f'{k} {v:.2f}' for k, v in metrics.items()
                                  if isinstance(v, float)))


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
