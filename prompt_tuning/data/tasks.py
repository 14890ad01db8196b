"""Registers every task and mixture of `prompt_tuning.data` (set MIXTURE_OR_TASK_MODULE to it).

Importing `glue`, `glue_transfer`, `qa` or `super_glue` alone registers just that group, as in
the paper's code.
"""

# pylint: disable=unused-import
from prompt_tuning.data import glue
from prompt_tuning.data import glue_transfer
from prompt_tuning.data import qa
from prompt_tuning.data import super_glue
