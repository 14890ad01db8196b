"""`python -m prompt_tuning.infer`: predictions for a task split or a file of raw inputs, as JSONL.

One line per input: {"inputs": ..., "prediction": ..., "score": ...}. Flags as
T5X's infer.py: `--gin_file` (in order), `--gin.NAME=VALUE` for a macro or a
parameter (e.g. --gin.INPUT_FILE="'inputs.txt'"), `--gin_search_paths`,
`--tfds_data_dir`, `--multiprocess`; `--dry_run` checks the configuration and
prints it. A wrong setting, file or flag ends in one line `error: ...` (exit
status 2) that names it; `--verbosity=1` also logs the traceback.
"""

from prompt_tuning import cli


def main() -> None:
  from prompt_tuning import commands  # pylint: disable=g-import-not-at-top (after the flags)
  cli.initialize_distributed()
  if not cli.parse_gin(commands.INFER_MACROS, commands.check_infer_settings):
    return
  commands.infer()


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
