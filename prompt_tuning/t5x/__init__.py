"""Prompt tuning inside Google's T5X: the model, optimizer, partitioning and checkpoint hooks.

Used from T5X gin files (`gin/t5x/`) run by `python -m t5x.train`,
`t5x.eval` and `t5x.infer`. Needs T5X itself, which is published on GitHub
only; without it, importing this package fails with one line saying how to
install it. Nothing else in the project imports this package.
"""

try:
  import t5x  # pylint: disable=unused-import
except ImportError:
  raise ImportError('prompt_tuning.t5x needs T5X: pip install '
                    'git+https://github.com/google-research/t5x') from None
