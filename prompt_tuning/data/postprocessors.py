"""Turns decoded model outputs (and targets) into what the metrics compare, as T5 does.

Each function has seqio's postprocessor signature `fn(output, example=None, is_target=False)`:
`output` is the decoded text (or the target text when `is_target`), `example` the task's
example with numpy values. Text that is no label becomes `INVALID`, which every metric counts
as wrong and `metrics.invalid_predictions` counts on its own. Nothing here knows of models.
"""

from typing import Any, Callable, Mapping, Optional, Sequence

INVALID = -1
SENTINEL = '<extra_id_0>'
QQP_TO_MRPC = {'duplicate': 'equivalent', 'not_duplicate': 'not_equivalent'}
MRPC_TO_QQP = {v: k for k, v in QQP_TO_MRPC.items()}

Postprocessor = Callable[..., Any]


def _text(value: Any) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def class_id(output: str, label_names: Sequence[str], **unused_kwargs) -> int:
  """The index of `output` in `label_names`, or INVALID."""
  return list(label_names).index(output) if output in label_names else INVALID


def to_float(output: str, **unused_kwargs) -> float:
  """STS-B: the number written, or INVALID (-1.0, outside the 0-5 scale)."""
  try:
    return float(output)
  except ValueError:
    return float(INVALID)


def multirc(output: str, example: Optional[Mapping[str, Any]] = None,
            is_target: bool = False) -> dict[str, Any]:
  """{'value': class id} plus, for targets, the question it belongs to as 'group'."""
  result = {'value': class_id(output, ('False', 'True'))}
  if is_target:
    result['group'] = (int(example['idx/paragraph']), int(example['idx/question']))
  return result


def record(output: str, example: Optional[Mapping[str, Any]] = None,
           is_target: bool = False) -> dict[str, Any]:
  """Predictions: {'value': text}; targets: all answers, grouped by (passage, query)."""
  if is_target:
    return {'value': [_text(a) for a in example['answers']],
            'group': (int(example['idx/passage']), int(example['idx/query']))}
  return {'value': output}


def qa(output: str, example: Optional[Mapping[str, Any]] = None, is_target: bool = False) -> Any:
  """Predictions: the text; targets: all gold answers."""
  if is_target:
    return [_text(a) for a in example['answers']]
  return output


_DETERMINERS = frozenset({
    'a', 'an', 'few', 'her', 'his', 'each', 'every', 'many', 'much', 'my', 'our', 'some', 'that',
    'the', 'their', 'these', 'this', 'those', 'which', 'whose', 'your'})


def _referent_words(text: str) -> str:
  """Lowercased, without determiners: how T5 compares WSC referents."""
  return ' '.join(w for w in text.strip().lower().split(' ') if w not in _DETERMINERS)


def wsc_simple(output: str, example: Optional[Mapping[str, Any]] = None,
               is_target: bool = False) -> int:
  """1 if the prediction names the example's candidate referent, else 0; targets: the label.

  As T5: words are compared as sets (either may contain the other), a possessive must match
  a possessive, and an empty prediction is INVALID.
  """
  if is_target:
    return int(example['label'])
  prediction = _referent_words(output)
  if not prediction:
    return INVALID
  referent = _referent_words(_text(example['targets_pretokenized']))
  if ("'" in prediction) != ("'" in referent):
    return 0
  predicted, candidate = set(prediction.split(' ')), set(referent.split(' '))
  return int(predicted <= candidate or candidate <= predicted)


def gender_pairs(output: str, label_names: Sequence[str],
                 example: Optional[Mapping[str, Any]] = None,
                 is_target: bool = False) -> dict[str, Any]:
  """AX-g: {'value': class id} plus, for targets, its minimal pair (examples 2k and 2k+1)."""
  result = {'value': class_id(output, label_names)}
  if is_target:
    result['pair'] = int(example['idx']) // 2
  return result


def strip_sentinel(postprocess_fn: Postprocessor) -> Postprocessor:
  """Wraps `postprocess_fn` to drop a leading `<extra_id_0>` (and spaces) first."""

  def fn(output: str, **kwargs) -> Any:
    if output.startswith(SENTINEL):
      output = output[len(SENTINEL):].lstrip()
    return postprocess_fn(output, **kwargs)

  return fn


def translate_labels(mapping: Mapping[str, str], postprocess_fn: Postprocessor) -> Postprocessor:
  """Wraps `postprocess_fn` to rename predicted labels first (targets are left as they are).

  For zero-shot transfer: a QQP prompt says 'duplicate' where MRPC's label is 'equivalent'.
  """

  def fn(output: str, example: Optional[Mapping[str, Any]] = None,
         is_target: bool = False) -> Any:
    if not is_target:
      output = mapping.get(output, output)
    return postprocess_fn(output, example=example, is_target=is_target)

  return fn
