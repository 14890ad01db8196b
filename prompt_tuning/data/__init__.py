"""SeqIO tasks, data sources, postprocessors and metrics for the paper's benchmarks.

Importing the package registers all tasks (see `tasks`). The public API:

  with reading_from(source='tfds'|'files', data_dir=None):  where examples are read from
  set_vocabulary_path(path), get_vocabulary()               the SentencePiece vocabulary
  task_names()                                              every task registered here
  get_label_strings(task), get_label_token_ids(task)        verbalizers, for rank classification
  super_glue_average(results)                               the SuperGLUE score
  truncation_stats(), log_truncation_summary()              examples cut by the feature lengths
  DataError                                                 bad data or data settings

The data layer holds no model code.
"""

from prompt_tuning.data import tasks  # pylint: disable=unused-import
from prompt_tuning.data.errors import DataError
from prompt_tuning.data.metrics import super_glue_average
from prompt_tuning.data.registry import get_label_strings
from prompt_tuning.data.registry import get_label_token_ids
from prompt_tuning.data.registry import task_names
from prompt_tuning.data.sources import current_sources
from prompt_tuning.data.sources import reading_from
from prompt_tuning.data.truncation import log_truncation_summary
from prompt_tuning.data.truncation import reset_truncation_stats
from prompt_tuning.data.truncation import truncation_stats
from prompt_tuning.data.vocab import get_vocabulary
from prompt_tuning.data.vocab import set_vocabulary_path
