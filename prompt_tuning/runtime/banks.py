"""What the prompts of a bank trained in one run are: an ensemble's members, or one per task.

`train_script.train.prompt_bank` says which:
- 'ensemble' (gin/prompts/ensemble.gin): ENSEMBLE_SIZE prompts for one task, each
  initialised from its own key. Every example of a batch trains every member: it
  becomes K rows, one per member (`ensembles.expand_for_members`), through one copy
  of the frozen model. Evaluation is the ensemble's (`evaluation.EvalConfig.ensemble`).
- 'tasks' (gin/prompts/multi_task.gin): one prompt per task of the mixture
  MIXTURE_OR_TASK_NAME, in the order of its sorted task names. Each example trains
  its own task's prompt: `inputs.host_dataset` adds the task's row as `prompt_index`
  before the tasks are mixed. Evaluation gives each task its own prompt.

Either way each prompt has an optimizer of its own and a loss normalised over its
own rows (`optimizer.per_row`, `losses.weighted_loss`), so that a prompt trains as it
would alone, and each is exported as `<row name>.npy`.
"""

import dataclasses
from typing import Dict, Optional, Tuple

from prompt_tuning.errors import UserError
from prompt_tuning.runtime import inputs
from prompt_tuning.runtime.model import EncoderDecoderModel

KINDS = ('ensemble', 'tasks')


class PromptBankError(UserError, ValueError):
  """The kind of bank to train and the model's bank (or the mixture's tasks) do not match."""


@dataclasses.dataclass(frozen=True)
class BankRows:
  """The rows of a trained bank.

  Attributes:
    kind: 'ensemble' or 'tasks'.
    names: one per row: 'member_<k>', or the task names.
  """
  kind: str
  names: Tuple[str, ...]

  @property
  def ensemble_size(self) -> Optional[int]:
    """K for an ensemble, whose batches are expanded to K rows per example; else None."""
    return len(self.names) if self.kind == 'ensemble' else None

  @property
  def task_rows(self) -> Optional[Dict[str, int]]:
    """Task name -> row, for a bank of task prompts; else None."""
    return {name: row for row, name in enumerate(self.names)} if self.kind == 'tasks' else None


def bank_rows(kind: Optional[str], model: EncoderDecoderModel,
              dataset_config: inputs.DatasetConfig) -> Optional[BankRows]:
  """The rows of the bank that a training run of `model` on `dataset_config` trains.

  Raises:
    PromptBankError: one line naming the setting at fault.
  """
  size = model.prompt_bank_size
  if kind is None:
    if size:
      raise PromptBankError(
          f'The model has a bank of {size} prompts (PromptConfig.num_prompts) but '
          'train_script.train.prompt_bank is None: train an ensemble with gin/prompts/ensemble.gin, or one prompt per task of a '
          'mixture with gin/prompts/multi_task.gin.')
    return None
  if kind not in KINDS:
    raise PromptBankError(f'train_script.train.prompt_bank={kind!r}: must be one of {", ".join(map(repr, KINDS))} '
                          'or None.')
  if not size:
    raise PromptBankError(f'train_script.train.prompt_bank={kind!r} trains a bank of prompts, but the model has a '
                          'single prompt: PromptConfig.num_prompts is None.')
  if kind == 'ensemble':
    return BankRows(kind, tuple(f'member_{k}' for k in range(size)))
  names = tuple(inputs.task_names(dataset_config.mixture_or_task_name, dataset_config.module))
  if len(names) != size:
    raise PromptBankError(
        f'PromptConfig.num_prompts={size} but MIXTURE_OR_TASK_NAME='
        f'{dataset_config.mixture_or_task_name!r} has {len(names)} tasks; a bank of task prompts has one per task '
        'trains one prompt per task (gin/prompts/multi_task.gin counts them).')
  return BankRows(kind, names)
