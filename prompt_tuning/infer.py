"""`python -m prompt_tuning.infer`: predictions for a task split or a file of raw inputs, as JSONL.

One line per input: {"inputs": ..., "prediction": ..., "score": ...}.
"""

from prompt_tuning import cli, commands


def main() -> None:
  cli.initialize_distributed()
  if not cli.parse_gin(commands.INFER_MACROS):
    return
  commands.infer()


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
