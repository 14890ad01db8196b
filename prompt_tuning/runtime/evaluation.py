"""Evaluation with SeqIO's `Evaluator`: predict, postprocess, score each task, log everywhere.

Two modes produce the predictions:
- 'generate' (the paper's): decode with the model's decoding method;
- 'rank': score every verbalizer of a classification task and return the
  best one, so a prediction is never an invalid label. Each input is encoded
  once, whatever the number of labels.
Metrics go to TensorBoard and JSON, predictions to JSONL, all under
`MODEL_DIR/inference_eval/`, with a sample of predictions as TensorBoard text.
With `ensemble`, the model's bank holds K prompts for the task: every example
runs with all K in one batched pass (`ensembles`), and each member's metrics,
their mean and best, and the ensemble's (majority vote, or in rank mode the
summed log-likelihoods) are reported together. With `task_rows`, the bank
holds a prompt per task instead, and each task is evaluated with its own.
"""

import dataclasses
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import jax
import numpy as np
import seqio
import tensorflow as tf
from absl import logging
from clu import metric_writers
from jax.sharding import Mesh

from prompt_tuning import ensembles, storage
from prompt_tuning.errors import UserError
from prompt_tuning.runtime import inputs, partitioning
from prompt_tuning.runtime.model import EncoderDecoderModel

Params = Any
MODES = ('generate', 'rank')


class EvaluationError(UserError, ValueError):
  """The evaluation cannot run as configured."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """What to evaluate, how, and where to write it.

  Attributes:
    dataset: the task or mixture, split (e.g. 'validation') and batch size.
    mode: 'generate' or 'rank'.
    num_examples: evaluate on the first N examples only (None: all).
    sample_size: how many predictions to show as TensorBoard text.
    ensemble: the prompts of the model's bank are an ensemble for the task (ENSEMBLE).
    task_rows: task name -> row of the model's bank holding that task's prompt.
  """
  dataset: inputs.DatasetConfig
  mode: str = 'generate'
  num_examples: Optional[int] = None
  sample_size: int = 8
  ensemble: bool = False
  task_rows: Optional[Mapping[str, int]] = None

  def __post_init__(self):
    if self.mode not in MODES:
      raise EvaluationError(f'Unknown eval mode {self.mode!r}; expected one of {MODES}.')


def candidate_tokens(task_name: str) -> np.ndarray:
  """A classification task's verbalizers as [C, Lc] target tokens (EOS-ended, 0-padded).

  They come from the task's registration in `prompt_tuning.data`, sentinel
  included for the `_sentinel` tasks.
  """
  from prompt_tuning import data  # pylint: disable=g-import-not-at-top
  try:
    labels = data.get_label_token_ids(task_name)
  except data.DataError:
    labels = None
  if not labels:
    raise EvaluationError(f"Task {task_name} has no verbalizers, so eval mode 'rank' cannot "
                          "score it; use mode 'generate'.")
  width = max(len(label) for label in labels)
  return np.array([label + [0] * (width - len(label)) for label in labels], np.int32)


def super_glue_average(all_metrics: Dict[str, Dict[str, Any]]) -> Optional[float]:
  """The SuperGLUE score when the evaluated tasks are SuperGLUE's, else None."""
  names = [n for n in all_metrics if 'super_glue' in n and not ('_axb_' in n or '_axg_' in n)]
  if len(names) < 2:
    return None
  from prompt_tuning import data  # pylint: disable=g-import-not-at-top
  return float(data.super_glue_average({n: all_metrics[n] for n in names}))


def _batches(dataset: tf.data.Dataset, batch_size: int):
  """(indices [n], features {name: [batch_size, ...]}, n) with the last batch zero-padded."""
  for indices, features in dataset.batch(batch_size).as_numpy_iterator():
    count = len(indices)
    padded = {k: np.pad(v, [(0, batch_size - count)] + [(0, 0)] * (v.ndim - 1))
              for k, v in features.items()}
    yield indices, padded, count


def jit_predict(model: EncoderDecoderModel, max_length: int, param_shardings: Params,
                mesh: Mesh) -> Callable:
  """`model.predict_batch(params, batch, max_length, rng)` jitted with the run's shardings.

  The decode step of eval and infer (and what the planner compiles): parameters as
  laid out, the batch split on `data`, the rng and the results replicated.
  """
  replicated = partitioning.replicated(mesh)
  return jax.jit(lambda params, batch, rng: model.predict_batch(params, batch, max_length, rng),
                 in_shardings=(param_shardings, partitioning.data_sharding(mesh), replicated),
                 out_shardings=replicated)


class Evaluator:
  """Evaluates full parameter trees on every task of a mixture (or one task)."""

  def __init__(self, model: EncoderDecoderModel, config: EvalConfig, mesh: Mesh,
               param_shardings: Params, log_dir: str):
    self.model = model
    self.config = config
    self.mesh = mesh
    self.log_dir = log_dir
    dataset = config.dataset
    inputs.import_task_module(dataset.module)
    mixture = inputs.get_mixture_or_task(dataset.mixture_or_task_name)
    tasks = getattr(mixture, 'tasks', [mixture])
    self._data_sharding = partitioning.data_sharding(mesh)
    replicated = partitioning.replicated(mesh)
    loggers = (seqio.PyLoggingLogger, seqio.TensorBoardLogger, seqio.JSONLogger)
    if jax.process_index() != 0:
      loggers = ()
    self._members = model.prompt_bank_size if config.ensemble else None
    if config.ensemble and not self._members:
      raise EvaluationError('ENSEMBLE=True evaluates the prompts of a bank as one ensemble: '
                            'include gin/prompts/from_files.gin and set PROMPT_FILES.')
    # An ensemble's metrics are logged together, once its members' are known.
    self._loggers = [logger(log_dir) for logger in loggers] if config.ensemble else []
    self._evaluators = {}
    self._candidates = {}
    # As seqio does, a mixture's tasks without the split (e.g. AX-b, test only) are skipped.
    with_split = [task for task in tasks if dataset.split in task.splits]
    if not with_split:
      raise EvaluationError(f'{dataset.mixture_or_task_name} has no split {dataset.split!r}; it '
                            f'has {sorted(tasks[0].splits)}.')
    for task in tasks:
      if task not in with_split:
        logging.warning('%s has no split %r: not evaluated.', task.name, dataset.split)
    if model.prompt_bank_size and not config.ensemble:
      missing = [t.name for t in with_split if t.name not in (config.task_rows or {})]
      if missing:
        raise EvaluationError(
            f'The model has a bank of {model.prompt_bank_size} prompts (PROMPT_FILES) but none '
            f'is named after task {missing[0]}; name each after its task, evaluate them as one '
            'ensemble with ENSEMBLE=True, or one prompt with gin/prompts/from_file.gin.')
    inputs.check_vocabulary(dataset, model.vocabulary)
    with inputs.reading(dataset):  # seqio's evaluator builds its datasets here
      for task in with_split:
        if config.mode == 'rank':
          self._candidates[task.name] = candidate_tokens(task.name)
        self._evaluators[task.name] = seqio.Evaluator(
            task.name, inputs.feature_converter(), eval_split=dataset.split,
            use_cached=dataset.use_cached, seed=dataset.seed,
            sequence_length=dataset.task_feature_lengths, num_examples=config.num_examples,
            logger_cls=() if config.ensemble else loggers, log_dir=log_dir,
            async_compute_metrics=False)
    self._predict = jit_predict(model, dataset.task_feature_lengths['targets'], param_shardings,
                                mesh)
    self._rank = jax.jit(model.rank_classify,
                         in_shardings=(param_shardings, self._data_sharding, replicated),
                         out_shardings=replicated)

  def _predict_fn(self, params: Params, task_name: str, rng: jax.Array) -> Callable:
    batch_size = self.config.dataset.batch_size
    task_row = (self.config.task_rows or {}).get(task_name) if self.model.prompt_bank_size else None

    def predict(dataset: tf.data.Dataset) -> List[Tuple[int, List[int]]]:
      results = []
      for step, (indices, features, count) in enumerate(_batches(dataset, batch_size)):
        if task_row is not None:  # the task's own prompt of the bank
          features['prompt_index'] = np.full(batch_size, task_row, np.int32)
        batch = partitioning.replicated_batch(features, self.mesh)
        if self.config.mode == 'rank':
          candidates = self._candidates[task_name]
          best, _ = self._rank(params, batch, candidates)
          tokens = candidates[np.asarray(best)]
        else:
          tokens, _ = self._predict(params, batch, jax.random.fold_in(rng, step))
        tokens = np.asarray(tokens)
        # Whole rows, as T5X returns them: seqio's metrics stack them into one array, and the
        # vocabulary's `decode` stops at EOS.
        results += [(int(i), t.tolist()) for i, t in zip(indices[:count], tokens[:count])]
      return results

    return predict

  def _ensemble_predictions(self, params: Params, task_name: str, rng: jax.Array,
                            dataset: tf.data.Dataset) -> Dict[str, np.ndarray]:
    """Every example with every member, in one batched pass of [B*K] rows.

    Returns 'indices' [N], the members' 'members' [N, K, L] and the ensemble's
    'ensemble' [N, L] output tokens (a vote, or in rank mode the candidate of the
    highest summed log-likelihood).
    """
    members = self._members
    indices, member_tokens, ensemble_tokens = [], [], []
    for step, (batch_indices, features, count) in enumerate(
        _batches(dataset, self.config.dataset.batch_size)):
      batch = partitioning.replicated_batch(ensembles.expand_for_members(features, members),
                                            self.mesh)
      if self.config.mode == 'rank':
        candidates = self._candidates[task_name]
        _, scores = self._rank(params, batch, candidates)
        scores = ensembles.by_member(np.asarray(scores), members)[:count]  # [n, K, C]
        member_tokens.append(candidates[np.argmax(scores, axis=-1)])
        ensemble_tokens.append(candidates[ensembles.rank_sum(scores)])
      else:
        tokens, _ = self._predict(params, batch, jax.random.fold_in(rng, step))
        tokens = ensembles.by_member(np.asarray(tokens), members)[:count]  # [n, K, L]
        member_tokens.append(tokens)
        ensemble_tokens.append(ensembles.majority_vote(tokens))
      indices += [int(i) for i in batch_indices[:count]]
    return {'indices': np.array(indices), 'members': np.concatenate(member_tokens),
            'ensemble': np.concatenate(ensemble_tokens)}

  def _evaluate_ensemble(self, params: Params, task_name: str, evaluator: seqio.Evaluator,
                         rng: jax.Array, step: int) -> Dict[str, Any]:
    """The ensemble's metrics and 'member_<k>/', 'mean/' and 'best/' ones, scored by seqio."""
    outputs: Dict[str, np.ndarray] = {}

    def metrics_of(choose: Callable[[Dict[str, np.ndarray]], np.ndarray]) -> Dict[str, Any]:
      def predict(dataset: tf.data.Dataset) -> List[Tuple[int, List[int]]]:
        if not outputs:  # the first call runs the model; the others reuse its outputs
          outputs.update(self._ensemble_predictions(params, task_name, rng, dataset))
        return [(int(i), t.tolist()) for i, t in zip(outputs['indices'], choose(outputs))]
      future, _ = evaluator.evaluate(compute_metrics=True, step=step, predict_fn=predict)
      return {k: _plain(v) for k, v in future.result()[task_name].items()}

    member_metrics = [metrics_of(lambda o, k=k: o['members'][:, k]) for k in range(self._members)]
    metrics = metrics_of(lambda o: o['ensemble'])
    metrics.update(ensembles.member_summary(
        [{k: v for k, v in m.items() if isinstance(v, float)} for m in member_metrics]))
    self._log_ensemble(task_name, evaluator, step, metrics, outputs)
    return metrics

  def _log_ensemble(self, task_name: str, evaluator: seqio.Evaluator, step: int,
                    metrics: Dict[str, Any], outputs: Dict[str, np.ndarray]) -> None:
    """The metrics through seqio's loggers (TensorBoard, `<task>-metrics.jsonl`), and one JSON
    line per example (input, target, the ensemble's prediction, each member's)."""
    scalars = {k: seqio.metrics.Scalar(v) for k, v in metrics.items() if isinstance(v, float)}
    for logger in self._loggers:
      logger(task_name=task_name, step=step, metrics=scalars, dataset=None, inferences=None,
             targets=None)
    if jax.process_index() != 0:
      return
    decode = lambda tokens: self.model.vocabulary.decode(tokens.tolist())
    row_of = {int(index): row for row, index in enumerate(outputs['indices'])}
    lines = []
    examples = evaluator.cached_task_datasets[task_name].as_numpy_iterator()
    for index, example in enumerate(examples):
      row = row_of[index]
      lines.append(json.dumps({
          'input': _text(example.get('inputs_pretokenized')),
          'target': _text(example.get('targets_pretokenized')),
          'prediction': decode(outputs['ensemble'][row]),
          'members': [decode(tokens) for tokens in outputs['members'][row]]}) + '\n')
    storage.write_text(os.path.join(self.log_dir, f'{task_name}-{step:06}.jsonl'), ''.join(lines))
    self._write_sample(task_name, evaluator, step)

  def evaluate(self, params: Params, step: int, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """Metrics per task (also written to TensorBoard, JSON and JSONL)."""
    all_metrics = {}
    rng = jax.random.key(seed)
    with jax.set_mesh(self.mesh):
      for task_name, evaluator in self._evaluators.items():
        if self._members:
          all_metrics[task_name] = self._evaluate_ensemble(params, task_name, evaluator, rng, step)
          continue
        future, _ = evaluator.evaluate(compute_metrics=True, step=step,
                                       predict_fn=self._predict_fn(params, task_name, rng))
        metrics = future.result()[task_name]
        all_metrics[task_name] = {k: _plain(v) for k, v in metrics.items()}
        self._write_sample(task_name, evaluator, step)
    average = super_glue_average(all_metrics)
    if average is not None:
      all_metrics['super_glue_average'] = {'score': average}
      self._write_average(average, step)
    return all_metrics

  def _write_average(self, average: float, step: int) -> None:
    """The SuperGLUE score as a TensorBoard scalar and a JSON line, beside the task metrics."""
    if jax.process_index() != 0:
      return
    directory = os.path.join(self.log_dir, 'super_glue_average')
    writer = metric_writers.create_default_writer(directory, asynchronous=False)
    writer.write_scalars(step, {'super_glue_average/score': average})
    writer.close()
    storage.append_text(os.path.join(self.log_dir, 'super_glue_average-metrics.jsonl'),
                        json.dumps({'step': step, 'score': average}) + '\n')

  def _write_sample(self, task_name: str, evaluator: seqio.Evaluator, step: int) -> None:
    """A few predictions next to their inputs and targets, as TensorBoard text."""
    if jax.process_index() != 0 or not self.config.sample_size:
      return
    path = os.path.join(self.log_dir, f'{task_name}-{step:06}.jsonl')
    if not storage.exists(path):
      return
    rows = storage.read_text(path).splitlines()[:self.config.sample_size]
    table = '\n\n'.join(f'    {row.strip()}' for row in rows if row.strip())
    writer = metric_writers.create_default_writer(os.path.join(self.log_dir, task_name),
                                                  asynchronous=False)
    writer.write_texts(step, {'predictions_sample': table})
    writer.close()


def _plain(value: Any) -> Any:
  """A metric value as a JSON-friendly number (seqio wraps some in `Scalar`)."""
  value = getattr(value, 'value', value)
  return float(value) if isinstance(value, (np.floating, np.integer, float, int)) else value


def _text(value: Any) -> Any:
  """A pretokenized feature as text (seqio gives bytes), or None when the task has none."""
  return value.decode('utf-8', 'replace') if isinstance(value, bytes) else value
