"""The three commands as gin-configurable functions, the edge between gin and the library.

`train_script.train`, `eval_script.evaluate` and `infer_script.infer`, named as
in T5X's gin files. They live here rather than in the `python -m` modules so
that they are registered once, whichever command runs. `check_*_settings`
check the values that gin will pass them, before anything is built or
written, and name the macro at fault as the gin files spell it.
"""

import dataclasses
import numbers
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import gin
import optax
import seqio

from prompt_tuning import storage
from prompt_tuning.errors import UserError
from prompt_tuning.models import t5
from prompt_tuning.runtime import (checkpointing, evaluation, inference, inputs, run_setup,
                                   serving, train_loop)
from prompt_tuning.runtime.model import EncoderDecoderModel

TRAIN_MACROS = ('MODEL_DIR', 'MIXTURE_OR_TASK_NAME', 'TASK_FEATURE_LENGTHS', 'TRAIN_STEPS',
                'BATCH_SIZE')
EVAL_MACROS = ('MODEL_DIR', 'MIXTURE_OR_TASK_NAME', 'TASK_FEATURE_LENGTHS')
INFER_MACROS = EVAL_MACROS


class SettingError(UserError, ValueError):
  """A configured value cannot work (a batch size of 0, a negative step count, ...)."""


# ---------------------------------------------------------------- settings checks


_UNSET = object()  # not bound: the default applies
_COMPUTED = object()  # bound to a configurable's result (`@...()`), not known before the run


def _setting(*keys: str) -> Tuple[str, Any]:
  """(name, value) of the first of the gin parameters `keys` that is bound.

  The name is the macro the parameter is bound to (`%BATCH_SIZE` -> 'BATCH_SIZE',
  following macros bound to macros), or the parameter itself when it is bound
  to a value. The value is `_UNSET` when no key is bound (the default applies),
  `_COMPUTED` when a configurable computes it (`@...()`): neither is checked here.
  """
  for key in keys:
    try:
      value = gin.query_parameter(key)
    except ValueError:  # not bound
      continue
    name = key
    while isinstance(value, gin.config.ConfigurableReference) and value.selector == 'gin.macro':
      name = value.scoped_selector.rsplit('/', 1)[0]
      value = gin.query_parameter(f'%{name}')
    if isinstance(value, gin.config.ConfigurableReference) or value is gin.REQUIRED:
      return name, _COMPUTED
    return name, value
  return keys[0], _UNSET


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class _Rule:
  """What the value of some gin parameters must be."""
  keys: Tuple[str, ...]
  ok: Callable[[Any], bool]
  expected: str


def _positive(*keys: str) -> _Rule:
  return _Rule(keys, lambda v: _is_int(v) and v > 0, 'a positive integer')


def _non_negative(*keys: str) -> _Rule:
  return _Rule(keys, lambda v: _is_int(v) and v >= 0, 'an integer >= 0')


def _none_or_positive(*keys: str) -> _Rule:
  return _Rule(keys, lambda v: v is None or (_is_int(v) and v > 0),
               'None or a positive integer')


def _feature_lengths(*keys: str) -> _Rule:
  def ok(lengths: Any) -> bool:
    return (isinstance(lengths, Mapping) and {'inputs', 'targets'} <= set(lengths)
            and all(_is_int(v) and v > 0 for k, v in lengths.items()
                    if k in ('inputs', 'targets')))
  return _Rule(keys, ok, "a dict giving 'inputs' and 'targets' positive integer lengths")


def _normalizing_factor(*keys: str) -> _Rule:
  def ok(factor: Any) -> bool:
    if factor is None or factor == 'NUM_REAL_TARGET_TOKENS':
      return True
    return isinstance(factor, numbers.Real) and not isinstance(factor, bool) and factor > 0
  return _Rule(keys, ok, "None, a positive number or 'NUM_REAL_TARGET_TOKENS'")


def _check(rules: Sequence[_Rule]) -> None:
  for rule in rules:
    name, value = _setting(*rule.keys)
    if value is not _UNSET and value is not _COMPUTED and not rule.ok(value):
      raise SettingError(f'{name}={value!r}: must be {rule.expected}')


def _check_task(dataset_keys: Sequence[str]) -> None:
  """MIXTURE_OR_TASK_NAME names a registered task (after MIXTURE_OR_TASK_MODULE is imported)."""
  _, module = _setting(*(f'{key}.module' for key in dataset_keys))
  _, name = _setting(*(f'{key}.mixture_or_task_name' for key in dataset_keys))
  if module is _COMPUTED or not isinstance(name, str):
    return
  inputs.import_task_module(None if module is _UNSET else module)
  inputs.get_mixture_or_task(name)


def _model_rules() -> list:
  return [_non_negative('prompted.PromptConfig.length'),
          _normalizing_factor('models.EncoderDecoderModel.loss_normalizing_factor'),
          _Rule(('t5.config_for_size.remat_policy',), lambda v: v in t5.REMAT_POLICIES,
                f'one of {", ".join(map(repr, t5.REMAT_POLICIES))}')]


def _dataset_rules(*dataset_keys: str) -> list:
  return [_positive(*(f'{key}.batch_size' for key in dataset_keys)),
          _feature_lengths(*(f'{key}.task_feature_lengths' for key in dataset_keys))]


def check_train_settings() -> None:
  """Checks what `train` will be given: step counts, periods, batch size, lengths, the task."""
  rules = [_non_negative('train_script.train.total_steps'),
           _positive('train_script.train.log_every'),
           _positive('checkpointing.CheckpointConfig.period'),
           _none_or_positive('checkpointing.CheckpointConfig.keep'),
           *_dataset_rules('train/utils.DatasetConfig', 'utils.DatasetConfig'),
           *_model_rules()]
  _, eval_dataset = _setting('train_script.train.infer_eval_dataset_cfg')
  if eval_dataset is not None:  # evaluation is on
    rules += [_non_negative('train_script.train.eval_period'),
              _none_or_positive('train_script.train.eval_steps'),
              *_dataset_rules('validation/utils.DatasetConfig', 'utils.DatasetConfig')]
  _check(rules)
  name, length = _setting('prompted.PromptConfig.length')
  _, regexes = _setting('run_setup.RunConfig.trainable_regexes')
  if (length == 0 and isinstance(regexes, (list, tuple)) and regexes
      and all('prompt' in str(r) for r in regexes)):
    raise SettingError(f'{name}=0: must be a positive integer to tune a prompt (TRAINABLE_REGEXES '
                       f'{list(regexes)} train only the prompt)')
  _check_task(['train/utils.DatasetConfig', 'utils.DatasetConfig'])


def check_eval_settings() -> None:
  """Checks what `evaluate` will be given: batch size, steps, lengths, the task."""
  _check([_none_or_positive('eval_script.evaluate.eval_steps'),
          *_dataset_rules('utils.DatasetConfig'), *_model_rules()])
  _check_task(['utils.DatasetConfig'])


def check_infer_settings() -> None:
  """Checks what `infer` will be given: batch size, lengths, the task."""
  _check([*_dataset_rules('utils.DatasetConfig'), *_model_rules()])
  _check_task(['utils.DatasetConfig'])


# ---------------------------------------------------------------- the commands


def _check_vocabulary_reachable(model: EncoderDecoderModel) -> None:
  """A `gs://` vocabulary is read later by TensorFlow, whose retries do not end: probe it first."""
  if isinstance(model.vocabulary, seqio.SentencePieceVocabulary):
    storage.check_reachable(model.vocabulary.sentencepiece_model_file, 'VOCABULARY')


@gin.configurable('train', module='train_script')
def train(*, model: EncoderDecoderModel, optimizer: optax.GradientTransformation,
          train_dataset_cfg: inputs.DatasetConfig, model_dir: str,
          total_steps: int, run_cfg: run_setup.RunConfig = run_setup.RunConfig(),
          infer_eval_dataset_cfg: Optional[inputs.DatasetConfig] = None,
          eval_mode: str = 'generate', eval_period: int = 0, eval_steps: Optional[int] = None,
          checkpoint_cfg: checkpointing.CheckpointConfig = checkpointing.CheckpointConfig(),
          log_every: int = 100, prompt_bank: Optional[str] = None) -> train_loop.TrainResult:
  """Trains, evaluating `infer_eval_dataset_cfg` every `eval_period` steps and at the end.

  `eval_steps` batches are evaluated each time (all of the split when None).
  `prompt_bank` trains a bank of prompts: 'ensemble' (gin/prompts/ensemble.gin)
  or 'tasks' (gin/prompts/multi_task.gin).
  """
  _check_vocabulary_reachable(model)
  return train_loop.train(
      model=model, optimizer=optimizer, train_dataset_config=train_dataset_cfg,
      model_dir=model_dir,
      total_steps=total_steps, run_config=run_cfg, checkpoint_config=checkpoint_cfg,
      eval_period=eval_period, eval_config=_eval_config(infer_eval_dataset_cfg, eval_mode,
                                                        eval_steps),
      log_every=log_every, config_text=gin.config_str(), prompt_bank=prompt_bank)


def _eval_config(dataset_cfg: Optional[inputs.DatasetConfig], eval_mode: str,
                 eval_steps: Optional[int], ensemble: bool = False,
                 prompt_names: Optional[Sequence[str]] = None) -> Optional[evaluation.EvalConfig]:
  """What to evaluate: `eval_steps` batches of `dataset_cfg` (all of the split when None).

  The names of a bank's prompts, unless they are an ensemble, are the tasks they are for.
  """
  if dataset_cfg is None:
    return None
  num_examples = eval_steps * dataset_cfg.batch_size if eval_steps else None
  task_rows = None
  if prompt_names is not None and not ensemble:
    task_rows = {name: row for row, name in enumerate(prompt_names)}
  return evaluation.EvalConfig(dataset_cfg, eval_mode, num_examples, ensemble=ensemble,
                               task_rows=task_rows)


@gin.configurable('evaluate', module='eval_script')
def evaluate(*, model: EncoderDecoderModel, dataset_cfg: inputs.DatasetConfig, output_dir: str,
             run_cfg: run_setup.RunConfig = run_setup.RunConfig(), eval_mode: str = 'generate',
             eval_steps: Optional[int] = None, checkpoint_path: Optional[str] = None,
             ensemble: bool = False,
             prompt_files: Optional[Mapping[str, str]] = None) -> Dict[str, Dict[str, Any]]:
  """Evaluates every task of `dataset_cfg`; `eval_steps` batches only, when set.

  With a bank of prompts (`prompt_files`, gin/prompts/from_files.gin), each task is
  evaluated with the prompt of its name; with `ensemble`, all the prompts are one
  ensemble for each task, evaluated in one pass.
  """
  _check_vocabulary_reachable(model)
  eval_config = _eval_config(dataset_cfg, eval_mode, eval_steps, ensemble,
                             None if prompt_files is None else list(prompt_files))
  return inference.evaluate(model=model, eval_config=eval_config,
                            output_dir=output_dir, run_config=run_cfg,
                            checkpoint_path=checkpoint_path)


@gin.configurable('infer', module='infer_script')
def infer(*, model: EncoderDecoderModel, dataset_cfg: inputs.DatasetConfig, model_dir: str,
          run_cfg: run_setup.RunConfig = run_setup.RunConfig(), output_file: Optional[str] = None,
          input_file: Optional[str] = None, checkpoint_path: Optional[str] = None,
          prompt_files: Optional[Mapping[str, str]] = None) -> int:
  """Predicts every example of `dataset_cfg`'s split, or every line of `input_file`.

  With `prompt_files` (a bank of task prompts, gin/prompts/from_files.gin), `input_file`
  is JSONL, {"task": <a name of prompt_files>, "inputs": <text>} per line, tasks mixed.
  Writes `output_file`, by default MODEL_DIR/inference/predictions.jsonl.
  """
  _check_vocabulary_reachable(model)
  output_file = output_file or os.path.join(model_dir, 'inference', 'predictions.jsonl')
  if prompt_files is not None:
    if not input_file:
      raise SettingError('INPUT_FILE=None: a bank of prompts (PROMPT_FILES) serves the '
                         'requests of a JSONL INPUT_FILE, {"task": ..., "inputs": ...} per line')
    inputs.check_vocabulary(dataset_cfg, model.vocabulary)  # the task's, as for a split
    count = serving.serve_file(input_file=input_file, output_file=output_file,
                               prompt_names=list(prompt_files), model=model,
                               task_feature_lengths=dataset_cfg.task_feature_lengths,
                               batch_size=dataset_cfg.batch_size, run_config=run_cfg,
                               checkpoint_path=checkpoint_path)
  else:
    count = inference.infer(model=model, dataset_config=dataset_cfg, output_file=output_file,
                            run_config=run_cfg, checkpoint_path=checkpoint_path,
                            input_file=input_file)
  print(f'wrote {count} predictions to {output_file}')
  return count
