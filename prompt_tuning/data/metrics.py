"""The official GLUE, SuperGLUE and SQuAD/MRQA metrics, as seqio metric functions.

Each function is `fn(targets, predictions) -> {name: value}` over postprocessed values (see
`postprocessors`), in percent as T5 reports them, with T5's metric names. Predictions that are
no label (`INVALID`) count as wrong everywhere; `invalid_predictions` counts them. The
SuperGLUE average is the leaderboard's: the mean over the eight tasks of each task's mean
metric. Pure numpy/scipy; nothing here knows of tasks' data or models.
"""

import collections
import re
import string
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.stats

from prompt_tuning.data import errors
from prompt_tuning.data import postprocessors

INVALID = postprocessors.INVALID


def _values(items: Sequence[Any]) -> list[Any]:
  """The 'value' of postprocessed dicts (MultiRC, AX-g), or the items themselves."""
  return [x['value'] if isinstance(x, dict) else x for x in items]


def _arrays(targets: Sequence[Any], predictions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
  if len(targets) != len(predictions):
    raise errors.DataError(f'metrics got {len(targets)} targets but {len(predictions)} '
                           'predictions')
  return np.asarray(_values(targets)), np.asarray(_values(predictions))


def invalid_predictions(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, int]:
  """How many predictions were no label at all (the model wrote something else)."""
  del targets
  return {'invalid_predictions': int(sum(p == INVALID for p in _values(predictions)))}


def accuracy(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  t, p = _arrays(targets, predictions)
  return {'accuracy': 100 * float(np.mean(t == p))}


def _f1_per_class(t: np.ndarray, p: np.ndarray, classes: Sequence[int]) -> np.ndarray:
  """F1 of each class (0 where it has no true or predicted example)."""
  scores = []
  for c in classes:
    tp = np.sum((p == c) & (t == c))
    wrong = np.sum((p == c) != (t == c))  # False positives plus false negatives.
    scores.append(2 * tp / (2 * tp + wrong) if tp + wrong else 0.0)
  return np.asarray(scores, dtype=np.float64)


def _binary(t: np.ndarray, p: np.ndarray) -> np.ndarray:
  """Predictions with each invalid one replaced by the wrong class."""
  return np.where(np.isin(p, (0, 1)), p, 1 - t)


def f1_with_invalid(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  """Binary F1 of class 1 (MRPC, QQP; MultiRC's F1a over all answer options)."""
  t, p = _arrays(targets, predictions)
  return {'f1': 100 * float(_f1_per_class(t, _binary(t, p), [1])[0])}


def mean_3class_f1(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  """CB: the unweighted mean of the three classes' F1."""
  t, p = _arrays(targets, predictions)
  return {'mean_3class_f1': 100 * float(np.mean(_f1_per_class(t, p, range(3))))}


def matthews_corrcoef(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  """Matthews correlation of a binary task (CoLA, AX-b); 0 when a side is constant."""
  t, p = _arrays(targets, predictions)
  p = _binary(t, p)
  n = float(len(t))
  true_counts = np.array([np.sum(t == c) for c in (0, 1)], np.float64)
  pred_counts = np.array([np.sum(p == c) for c in (0, 1)], np.float64)
  correct = float(np.sum(t == p))
  covariance = correct * n - true_counts @ pred_counts
  scale = (n * n - true_counts @ true_counts) * (n * n - pred_counts @ pred_counts)
  return {'matthews_corrcoef': 100 * (covariance / np.sqrt(scale) if scale > 0 else 0.0)}


def pearson_corrcoef(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  t, p = _arrays(targets, predictions)
  return {'pearson_corrcoef': 100 * float(scipy.stats.pearsonr(t, p)[0])}


def spearman_corrcoef(targets: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
  t, p = _arrays(targets, predictions)
  return {'spearman_corrcoef': 100 * float(scipy.stats.spearmanr(t, p)[0])}


def group_exact_match(targets: Sequence[Mapping[str, Any]],
                      predictions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """MultiRC EM: the share of questions (target 'group') whose every answer option is right."""
  groups = collections.defaultdict(list)
  for target, prediction in zip(targets, predictions, strict=True):
    groups[target['group']].append(target['value'] == prediction['value'])
  return {'exact_match': 100 * float(np.mean([all(g) for g in groups.values()]))}


def gender_parity(targets: Sequence[Mapping[str, Any]],
                  predictions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """AX-g: the share of minimal pairs (target 'pair') whose two predictions are the same."""
  pairs = collections.defaultdict(list)
  for target, prediction in zip(targets, predictions, strict=True):
    pairs[target['pair']].append(prediction['value'])
  complete = [p for p in pairs.values() if len(p) == 2]
  if not complete:
    return {'gender_parity': float('nan')}
  return {'gender_parity': 100 * float(np.mean([a == b for a, b in complete]))}


def normalize_squad(text: str) -> str:
  """SQuAD's answer normalization: lowercase, no punctuation or articles, single spaces."""
  text = ''.join(ch for ch in text.lower() if ch not in set(string.punctuation))
  return ' '.join(re.sub(r'\b(a|an|the)\b', ' ', text).split())


def _token_f1(target: str, prediction: str) -> float:
  common = collections.Counter(target.split()) & collections.Counter(prediction.split())
  same = sum(common.values())
  if not same:
    return 0.0
  precision, recall = same / len(prediction.split()), same / len(target.split())
  return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD EM and token F1, each the best over an example's gold answers."""
  if len(targets) != len(predictions):
    raise errors.DataError(f'metrics got {len(targets)} targets but {len(predictions)} '
                           'predictions')
  em, f1 = [], []
  for answers, prediction in zip(targets, predictions):
    golds = [normalize_squad(a) for a in answers]
    prediction = normalize_squad(prediction)
    em.append(max(float(gold == prediction) for gold in golds))
    f1.append(max(_token_f1(gold, prediction) for gold in golds))
  return {'em': 100 * float(np.mean(em)), 'f1': 100 * float(np.mean(f1))}


def record_squad(targets: Sequence[Mapping[str, Any]],
                 predictions: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """ReCoRD: SQuAD EM/F1 over each (passage, query) once, though it has one example per answer."""
  seen, golds, answers = set(), [], []
  for target, prediction in zip(targets, predictions, strict=True):
    if target['group'] not in seen:
      seen.add(target['group'])
      golds.append(target['value'])
      answers.append(prediction['value'])
  return squad(golds, answers)


# Each task's own metrics, averaged into its leaderboard score.
SUPER_GLUE_SCORES = {
    'boolq': ('accuracy',),
    'cb': ('mean_3class_f1', 'accuracy'),
    'copa': ('accuracy',),
    'multirc': ('f1', 'exact_match'),
    'record': ('f1', 'em'),
    'rte': ('accuracy',),
    'wic': ('accuracy',),
    'wsc': ('accuracy',),
}
_SUPER_GLUE_TASK = re.compile(
    r'(?:taskless_)?super_glue_([a-z]+)_v102(?:_simple_eval)?(?:_examples|_sentinel)?')


def super_glue_average(results: Mapping[str, Mapping[str, float]]) -> float:
  """The SuperGLUE score: the mean over the eight tasks of each task's mean metric.

  Args:
    results: metrics by task; keys are the eval task names ('taskless_super_glue_cb_v102',
      'super_glue_wsc_v102_simple_eval', ...) or the short names ('cb'). Other tasks (AX-b,
      AX-g, GLUE, ...) are ignored.

  Raises:
    DataError: a task is missing, appears twice, or lacks one of its metrics.
  """
  scores = {}
  for name, metrics in results.items():
    match = _SUPER_GLUE_TASK.fullmatch(name)
    task = match.group(1) if match else name
    if task not in SUPER_GLUE_SCORES:
      continue
    if task in scores:
      raise errors.DataError(f'SuperGLUE average: two results for {task} (e.g. {name!r})')
    missing = [m for m in SUPER_GLUE_SCORES[task] if m not in metrics]
    if missing:
      raise errors.DataError(f'SuperGLUE average: {name!r} has no {missing[0]!r} metric '
                             f'(has {sorted(metrics)})')
    scores[task] = np.mean([metrics[m] for m in SUPER_GLUE_SCORES[task]])
  missing = [task for task in SUPER_GLUE_SCORES if task not in scores]
  if missing:
    raise errors.DataError(f'SuperGLUE average: no results for {missing} (got {sorted(results)})')
  return float(np.mean(list(scores.values())))
