"""Evaluation with SeqIO's `Evaluator`: predict, postprocess, score each task, log everywhere.

Two modes produce the predictions:
- 'generate' (the paper's): decode with the model's decoding method;
- 'rank': score every verbalizer of a classification task and return the
  best one, so a prediction is never an invalid label. Each input is encoded
  once, whatever the number of labels.
Metrics go to TensorBoard and JSON, predictions to JSONL, all under
`MODEL_DIR/inference_eval/`, with a sample of predictions as TensorBoard text.
"""

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np
import seqio
import tensorflow as tf
from clu import metric_writers
from jax.sharding import Mesh

from prompt_tuning.runtime import inputs, partitioning
from prompt_tuning.runtime.model import EncoderDecoderModel

Params = Any
MODES = ('generate', 'rank')


class EvaluationError(ValueError):
  """The evaluation cannot run as configured."""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """What to evaluate, how, and where to write it.

  Attributes:
    dataset: the task or mixture, split (e.g. 'validation') and batch size.
    mode: 'generate' or 'rank'.
    num_examples: evaluate on the first N examples only (None: all).
    sample_size: how many predictions to show as TensorBoard text.
  """
  dataset: inputs.DatasetConfig
  mode: str = 'generate'
  num_examples: Optional[int] = None
  sample_size: int = 8

  def __post_init__(self):
    if self.mode not in MODES:
      raise EvaluationError(f'Unknown eval mode {self.mode!r}; expected one of {MODES}.')


def _label_strings(task_name: str) -> Optional[Sequence[str]]:
  from prompt_tuning import data  # pylint: disable=g-import-not-at-top
  return data.get_label_strings(task_name)


def _batches(dataset: tf.data.Dataset, batch_size: int):
  """(indices [n], features {name: [batch_size, ...]}, n) with the last batch zero-padded."""
  for indices, features in dataset.batch(batch_size).as_numpy_iterator():
    count = len(indices)
    padded = {k: np.pad(v, [(0, batch_size - count)] + [(0, 0)] * (v.ndim - 1))
              for k, v in features.items()}
    yield indices, padded, count


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
    self._evaluators = {}
    self._candidates = {}
    for task in tasks:
      if dataset.split not in task.splits:
        raise EvaluationError(f'Task {task.name} has no split {dataset.split!r}; it has '
                              f'{sorted(task.splits)}.')
      if config.mode == 'rank':
        labels = _label_strings(task.name)
        if not labels:
          raise EvaluationError(f"Task {task.name} has no verbalizers, so eval mode 'rank' cannot "
                                "score it; use mode 'generate'.")
        self._candidates[task.name] = model.tokenize_candidates(labels)
      self._evaluators[task.name] = seqio.Evaluator(
          task.name, inputs.feature_converter(), eval_split=dataset.split,
          use_cached=dataset.use_cached, seed=dataset.seed,
          sequence_length=dataset.task_feature_lengths, num_examples=config.num_examples,
          logger_cls=loggers if jax.process_index() == 0 else (), log_dir=log_dir,
          async_compute_metrics=False)
    max_length = dataset.task_feature_lengths['targets']
    self._predict = jax.jit(
        lambda params, batch, rng: model.predict_batch(params, batch, max_length, rng),
        in_shardings=(param_shardings, self._data_sharding, replicated), out_shardings=replicated)
    self._rank = jax.jit(model.rank_classify,
                         in_shardings=(param_shardings, self._data_sharding, replicated),
                         out_shardings=replicated)

  def _predict_fn(self, params: Params, task_name: str, rng: jax.Array) -> Callable:
    batch_size = self.config.dataset.batch_size

    def predict(dataset: tf.data.Dataset) -> List[Tuple[int, List[int]]]:
      results = []
      for step, (indices, features, count) in enumerate(_batches(dataset, batch_size)):
        batch = partitioning.replicated_batch(features, self.mesh)
        if self.config.mode == 'rank':
          candidates = self._candidates[task_name]
          best, _ = self._rank(params, batch, candidates)
          tokens = candidates[np.asarray(best)]
        else:
          tokens, _ = self._predict(params, batch, jax.random.fold_in(rng, step))
        tokens = np.asarray(tokens)
        results += [(int(i), until_eos(t)) for i, t in zip(indices[:count], tokens[:count])]
      return results

    return predict

  def evaluate(self, params: Params, step: int, seed: int = 0) -> Dict[str, Dict[str, Any]]:
    """Metrics per task (also written to TensorBoard, JSON and JSONL)."""
    all_metrics = {}
    rng = jax.random.key(seed)
    with self.mesh:
      for task_name, evaluator in self._evaluators.items():
        future, _ = evaluator.evaluate(compute_metrics=True, step=step,
                                       predict_fn=self._predict_fn(params, task_name, rng))
        metrics = future.result()[task_name]
        all_metrics[task_name] = {k: _plain(v) for k, v in metrics.items()}
        self._write_sample(task_name, evaluator, step)
    return all_metrics

  def _write_sample(self, task_name: str, evaluator: seqio.Evaluator, step: int) -> None:
    """A few predictions next to their inputs and targets, as TensorBoard text."""
    if jax.process_index() != 0 or not self.config.sample_size:
      return
    path = os.path.join(self.log_dir, f'{task_name}-{step:06}.jsonl')
    if not tf.io.gfile.exists(path):
      return
    with tf.io.gfile.GFile(path) as f:
      rows = [f.readline() for _ in range(self.config.sample_size)]
    table = '\n\n'.join(f'    {row.strip()}' for row in rows if row.strip())
    writer = metric_writers.create_default_writer(os.path.join(self.log_dir, task_name),
                                                  asynchronous=False)
    writer.write_texts(step, {'predictions_sample': table})
    writer.close()


def until_eos(tokens: np.ndarray, eos_id: int = 1) -> List[int]:
  """Decoded ids up to (not including) EOS, as seqio's vocabularies expect."""
  tokens = list(tokens)
  return tokens[:tokens.index(eos_id)] if eos_id in tokens else [t for t in tokens if t]


def _plain(value: Any) -> Any:
  """A metric value as a JSON-friendly number (seqio wraps some in `Scalar`)."""
  value = getattr(value, 'value', value)
  return float(value) if isinstance(value, (np.floating, np.integer, float, int)) else value
