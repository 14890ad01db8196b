"""Registers one task format as seqio tasks under the paper's names, and keeps their verbalizers.

A `TaskFormat` is a dataset plus T5's text preprocessors, postprocessor and metrics. Each is
registered in every variant the paper's code (google-research/prompt-tuning) names, plus ours:

  <base>             T5's format, e.g. 'super_glue_rte_v102' ('rte hypothesis: ... premise: ...')
  taskless_<base>    the same without the leading benchmark name (the prompt carries the task)
  ..._examples       the paper's names for the same tasks (there they logged examples)
  ..._sentinel       targets start with <extra_id_0> (the paper's "span corruption + sentinel")

Formats with no benchmark name (SQuAD/MRQA) have no `taskless_` variant. Every task shares the
vocabulary of `vocab`, reads through `sources.DatasetSource`, and counts truncations.
"""

import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence

import seqio

from prompt_tuning.data import datasets
from prompt_tuning.data import errors
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors
from prompt_tuning.data import sources
from prompt_tuning.data import truncation
from prompt_tuning.data import vocab


@dataclasses.dataclass(frozen=True)
class TaskFormat:
  """How one dataset becomes text-to-text examples, and how the outputs are scored."""
  dataset: datasets.Dataset
  preprocessors: tuple[Callable[..., Any], ...]  # Text preprocessors, up to T5's strings.
  postprocess_fn: Optional[Callable[..., Any]]
  metric_fns: tuple[Callable[..., dict], ...]
  label_strings: Optional[tuple[str, ...]] = None  # What the model may say, by class id.
  splits: Optional[tuple[str, ...]] = None  # A subset of the dataset's splits.
  named: bool = True  # Inputs start with the benchmark name, so a taskless variant exists.


def glue_format(dataset: datasets.Dataset, benchmark_name: str,
                metric_fns: Sequence[Callable[..., dict]],
                feature_names: Optional[Sequence[str]] = None,
                before: Sequence[Callable[..., Any]] = (),
                postprocess_fn: Optional[Callable[..., Any]] = None,
                splits: Optional[tuple[str, ...]] = None,
                label_strings: Optional[Sequence[str]] = None) -> TaskFormat:
  """A classification task in T5's GLUE format, its outputs scored as class ids.

  Args:
    dataset: the dataset, with its label names.
    benchmark_name: the word the inputs start with.
    metric_fns: the metrics.
    feature_names: a fixed order of the text features (default: sorted).
    before: preprocessors run first (e.g. a rekey).
    postprocess_fn: default: the output's index among the label names.
    splits: a subset of the dataset's splits.
    label_strings: what the model may say (default: the label names).
  """
  labels = dataset.label_names
  text = functools.partial(preprocessors.glue, benchmark_name=benchmark_name, label_names=labels,
                           feature_names=feature_names)
  return TaskFormat(
      dataset, (*before, text),
      postprocess_fn or functools.partial(postprocessors.class_id, label_names=labels),
      tuple(metric_fns), tuple(label_strings or labels), splits)


@dataclasses.dataclass(frozen=True)
class Variant:
  taskless: bool = False
  sentinel: bool = False
  examples_alias: bool = False

  def name(self, base: str) -> str:
    return ('taskless_' if self.taskless else '') + base + (
        '_sentinel' if self.sentinel else '') + ('_examples' if self.examples_alias else '')


def variants(named: bool) -> list[Variant]:
  return [Variant(taskless, sentinel, alias)
          for taskless in ((False, True) if named else (False,))
          for sentinel, alias in ((False, False), (False, True), (True, False))]


@dataclasses.dataclass(frozen=True)
class _Verbalizers:
  labels: Optional[tuple[str, ...]]
  sentinel: bool


_VERBALIZERS: dict[str, _Verbalizers] = {}


def _add_task(name: str, fmt: TaskFormat, variant: Variant) -> None:
  steps = list(fmt.preprocessors)
  if variant.taskless:
    steps.append(preprocessors.drop_task_name)
  steps.append(seqio.preprocessors.tokenize)
  if variant.sentinel:
    steps.append(preprocessors.add_sentinel_to_targets)
  steps += [seqio.CacheDatasetPlaceholder(),
            functools.partial(truncation.count_truncations, task_name=name),
            seqio.preprocessors.append_eos_after_trim]
  postprocess_fn = fmt.postprocess_fn
  if variant.sentinel and postprocess_fn:
    postprocess_fn = postprocessors.strip_sentinel(postprocess_fn)
  seqio.TaskRegistry.add(
      name,
      source=sources.DatasetSource(fmt.dataset, fmt.splits),
      preprocessors=steps,
      output_features=vocab.output_features(),
      postprocess_fn=postprocess_fn,
      metric_fns=list(fmt.metric_fns))
  _VERBALIZERS[name] = _Verbalizers(fmt.label_strings, variant.sentinel)


def add_tasks(base: str, fmt: TaskFormat) -> None:
  """Registers `base` in all its variants (see the module docstring)."""
  for variant in variants(fmt.named):
    _add_task(variant.name(base), fmt, variant)


def add_mixtures(base: str, tasks: Sequence[tuple[str, float]], named: bool = True) -> None:
  """Registers mixture `base` of (task base name, rate) in every variant, of the same variants."""
  for variant in variants(named):
    seqio.MixtureRegistry.add(variant.name(base),
                              [(variant.name(task), rate) for task, rate in tasks])


def task_names() -> list[str]:
  """Every task registered here, in all variants, sorted."""
  return sorted(_VERBALIZERS)


def _verbalizers(task_name: str) -> _Verbalizers:
  if task_name not in _VERBALIZERS:
    raise errors.DataError(f'task {task_name!r} is not a prompt_tuning.data task (mixtures have '
                           'no verbalizers of their own: ask each of their tasks)')
  return _VERBALIZERS[task_name]


def get_label_strings(task_name: str) -> Optional[list[str]]:
  """The strings a classification task's model may output, in class-id order.

  For rank classification: score each string, take the argmax i, and hand `strings[i]` to the
  task's postprocessor as if it had been decoded; it maps it to class i. Transfer tasks
  (`..._from_qqp_...`) list the source task's labels, which their postprocessor translates.

  Returns:
    The label strings, or None for tasks that write free text (WSC, ReCoRD, SQuAD/MRQA).
  """
  labels = _verbalizers(task_name).labels
  return list(labels) if labels is not None else None


def get_label_token_ids(task_name: str) -> Optional[list[list[int]]]:
  """Each label string as the task's target token ids ([<extra_id_0>] + pieces + [EOS])."""
  verbalizers = _verbalizers(task_name)
  if verbalizers.labels is None:
    return None
  feature = seqio.get_mixture_or_task(task_name).output_features['targets']
  prefix = [feature.vocabulary.vocab_size - 1] if verbalizers.sentinel else []
  eos = [feature.vocabulary.eos_id] if feature.add_eos else []
  return [prefix + list(feature.vocabulary.encode(label)) + eos for label in verbalizers.labels]
