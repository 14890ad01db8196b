"""Reads the official release files of SuperGLUE, GLUE and MRQA 2019 as TFDS would give them.

Every reader returns, for one split, the examples that the matching TFDS builder
(`super_glue/<name>:1.0.2`, `glue/<name>:2.0.0`, `mrqa/<name>:1.0.0`) produces from the same
files: the same keys, nesting, label ids and `idx`. `to_dataset` turns them into a
`tf.data.Dataset` with TFDS's dtypes and shapes, so that one set of preprocessors serves both
sources. Bad data fails with a one-line `DataError` naming `file:line` and the field. This
module knows file formats only: nothing of tasks, vocabularies or models.
"""

import contextlib
import csv
import gzip
import io
import json
import re
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

from absl import logging
import tensorflow as tf

from prompt_tuning import storage
from prompt_tuning.data import errors

Example = dict[str, Any]  # Nested like the TFDS features; lists where TFDS has sequences.

_UNFIXABLE_WSC_SPANS = ('Kamenev and Zinoviev', 'Kamenev, Zinoviev, and Stalin')


def _is_test(split: str) -> bool:
  """Test splits ('test', MNLI's 'test_matched', ...) come without labels."""
  return split.startswith('test')


# How undecodable bytes look after decoding with errors='surrogateescape': U+DC80..U+DCFF.
_UNDECODABLE = re.compile('[\udc80-\udcff]')


def _checked_lines(lines: Iterable[str], path: str) -> Iterator[str]:
  """`lines`, failing with `file:line` at the first one that was not valid UTF-8."""
  for number, line in enumerate(lines, start=1):
    bad = _UNDECODABLE.search(line)
    if bad:
      raise errors.DataError(f'{path}:{number}: not valid UTF-8 (byte '
                             f'0x{ord(bad.group()) - 0xdc00:02x} at column {bad.start() + 1})')
    yield line


@contextlib.contextmanager
def _open_text(path: str) -> Iterator[Iterator[str]]:
  """The lines of a UTF-8 text file, local or remote, gunzipped if its name ends in `.gz`.

  A line that is not valid UTF-8 is a DataError naming the file and line.
  """
  with contextlib.ExitStack() as stack:
    binary = stack.enter_context(storage.open_binary(path))
    if path.endswith('.gz'):
      binary = stack.enter_context(gzip.GzipFile(fileobj=binary))
    text = io.TextIOWrapper(binary, encoding='utf-8', errors='surrogateescape')
    yield _checked_lines(text, path)


def _get(row: Mapping[str, Any], key: str, kind: type, where: str, prefix: str = '') -> Any:
  """`row[key]`, checked to be a `kind` (ints are not bools)."""
  if not isinstance(row, dict):
    what = f"field '{prefix.rstrip('.')}'" if prefix else 'the line'
    raise errors.DataError(f'{where}: {what} should be an object, got {type(row).__name__}')
  if key not in row:
    raise errors.DataError(f"{where}: field '{prefix}{key}' is missing")
  value = row[key]
  if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
    raise errors.DataError(f"{where}: field '{prefix}{key}' should be {kind.__name__}, got "
                           f'{type(value).__name__} {str(value)[:40]!r}')
  return value


def _json_rows(path: str) -> Iterator[tuple[int, Any]]:
  """(line number, parsed JSON) for each non-blank line of a JSON-lines file."""
  with _open_text(path) as f:
    for number, text in enumerate(f, start=1):
      if not text.strip():
        continue
      try:
        row = json.loads(text)
      except json.JSONDecodeError as e:
        raise errors.DataError(
            f'{path}:{number}: not valid JSON ({e.msg} at column {e.colno})') from None
      yield number, row


def _label(row: Mapping[str, Any], names: Sequence[str], split: str, where: str,
           prefix: str = '', int_labels: bool = False) -> int:
  """The class id of `row['label']`: a name, a bool ('True'/'False') or, if `int_labels`, an id."""
  if 'label' not in row:
    if _is_test(split):
      return -1
    raise errors.DataError(
        f"{where}: field '{prefix}label' is missing (only test files may leave it out)")
  value = row['label']
  if int_labels and isinstance(value, int) and not isinstance(value, bool):
    if 0 <= value < len(names):
      return value
  elif isinstance(value, (str, bool)) and str(value) in names:
    return list(names).index(str(value))
  raise errors.DataError(
      f"{where}: field '{prefix}label' has {value!r}; expected one of {list(names)}")


# ---------------------------------------------------------------- SuperGLUE (JSON lines)


def _per_line(paths: Sequence[str],
              parse: Callable[[Any, str], Iterable[Example]]) -> list[Example]:
  """The examples `parse(row, 'file:line')` makes of each line of each JSON-lines file."""
  return [ex for path in paths for line, row in _json_rows(path)
          for ex in parse(row, f'{path}:{line}')]


def super_glue(paths: Sequence[str], split: str, *, text_fields: Sequence[str],
               label_names: Sequence[str], int_fields: Sequence[str] = (),
               int_labels: bool = False) -> list[Example]:
  """BoolQ, CB, COPA, RTE, WiC, AX-b, AX-g: one example per line."""

  def parse(row: Any, where: str) -> list[Example]:
    ex = {name: _get(row, name, str, where) for name in text_fields}
    ex.update({name: _get(row, name, int, where) for name in int_fields})
    ex['idx'] = _get(row, 'idx', int, where)
    ex['label'] = _label(row, label_names, split, where, int_labels=int_labels)
    return [ex]

  return _per_line(paths, parse)


def _fix_wsc_spans(ex: Example, where: str) -> Example:
  """TFDS's `wsc.fixed` repairs of span texts that are not substrings of the text."""
  for span in ('span1', 'span2'):
    text, index = ex[f'{span}_text'], ex[f'{span}_index']
    if text in ex['text'] or text in _UNFIXABLE_WSC_SPANS:
      continue
    if 'theyscold' in text:
      ex['span2_index'] = 10  # TFDS moves the index (its text repair has no effect).
    words = ex['text'].split()
    if not 0 <= index < len(words):
      raise errors.DataError(f"{where}: field 'target.{span}_index' is {index} but the text has "
                             f'{len(words)} words')
    text = (text[0].lower() if words[index][0].islower() else text[0].upper()) + text[1:]
    ex[f'{span}_text'] = text.rstrip('.').replace('\n', ' ')
    if ex[f'{span}_text'] not in ex['text']:
      raise errors.DataError(f"{where}: field 'target.{span}_text' {text!r} is not in the text")
  return ex


def wsc(paths: Sequence[str], split: str, *, label_names: Sequence[str]) -> list[Example]:
  """WSC as TFDS's `wsc.fixed`: the spans come from the `target` object."""

  def parse(row: Any, where: str) -> list[Example]:
    target = _get(row, 'target', dict, where)
    ex = {'text': _get(row, 'text', str, where)}
    for name, kind in (('span1_index', int), ('span2_index', int), ('span1_text', str),
                       ('span2_text', str)):
      ex[name] = _get(target, name, kind, where, 'target.')
    ex = _fix_wsc_spans(ex, where)
    ex['idx'] = _get(row, 'idx', int, where)
    ex['label'] = _label(row, label_names, split, where)
    return [ex]

  return _per_line(paths, parse)


def multirc(paths: Sequence[str], split: str, *, label_names: Sequence[str]) -> list[Example]:
  """MultiRC: one example per (paragraph, question, answer option)."""

  def parse(row: Any, where: str) -> Iterator[Example]:
    passage = _get(row, 'passage', dict, where)
    paragraph = _get(passage, 'text', str, where, 'passage.')
    for i, question in enumerate(_get(passage, 'questions', list, where, 'passage.')):
      q_prefix = f'passage.questions[{i}].'
      question_text = _get(question, 'question', str, where, q_prefix)
      for j, answer in enumerate(_get(question, 'answers', list, where, q_prefix)):
        a_prefix = f'{q_prefix}answers[{j}].'
        yield {
            'paragraph': paragraph,
            'question': question_text,
            'answer': _get(answer, 'text', str, where, a_prefix),
            'label': _label(answer, label_names, split, where, a_prefix, int_labels=True),
            'idx': {'paragraph': _get(row, 'idx', int, where),
                    'question': _get(question, 'idx', int, where, q_prefix),
                    'answer': _get(answer, 'idx', int, where, a_prefix)},
        }

  return _per_line(paths, parse)


def record(paths: Sequence[str], split: str) -> list[Example]:
  """ReCoRD: one example per (passage, query); entities and answers sorted and deduplicated."""

  def parse(row: Any, where: str) -> Iterator[Example]:
    passage = _get(row, 'passage', dict, where)
    text = _get(passage, 'text', str, where, 'passage.')
    entities = set()
    for i, entity in enumerate(_get(passage, 'entities', list, where, 'passage.')):
      prefix = f'passage.entities[{i}].'
      start = _get(entity, 'start', int, where, prefix)
      entities.add(text[start:_get(entity, 'end', int, where, prefix) + 1])
    for i, qa in enumerate(_get(row, 'qas', list, where)):
      prefix = f'qas[{i}].'
      if _is_test(split) and isinstance(qa, dict) and 'answers' not in qa:
        answers = []
      else:
        answers = sorted({_get(a, 'text', str, where, f'{prefix}answers[{j}].')
                          for j, a in enumerate(_get(qa, 'answers', list, where, prefix))})
      yield {
          'passage': text,
          'query': _get(qa, 'query', str, where, prefix),
          'entities': sorted(entities),
          'answers': answers,
          'idx': {'passage': _get(row, 'idx', int, where),
                  'query': _get(qa, 'idx', int, where, prefix)},
      }

  return _per_line(paths, parse)


# ---------------------------------------------------------------- GLUE (tab-separated)


def _tsv_label(raw: Optional[str], names: Optional[Sequence[str]], where: str,
               column: str) -> Any:
  """TFDS's label parsing: a class name or id, or a float for STS-B; None drops the row."""
  if raw is None:
    return None
  if names is None:
    try:
      return float(raw)
    except ValueError:
      raise errors.DataError(f"{where}: column '{column}' has {raw!r}; expected a number") from None
  if raw in names:
    return list(names).index(raw)
  if not raw:
    return None
  if raw.isdigit() and int(raw) < len(names):
    return int(raw)
  raise errors.DataError(f"{where}: column '{column}' has {raw!r}; expected one of "
                         f'{list(names)} or a class id below {len(names)}')


def glue(paths: Sequence[str], split: str, *, text_columns: Mapping[str, str],
         label_column: str, label_names: Optional[Sequence[str]],
         headerless_columns: Optional[Mapping[str, int]] = None) -> list[Example]:
  """A GLUE TSV; `idx` is the row number. Rows with a missing value are skipped, as TFDS does.

  Args:
    paths: the split's one file.
    split: the split; only test files may lack the label column.
    text_columns: feature name -> column name.
    label_column: the label's column.
    label_names: class names, or None for a float label (STS-B).
    headerless_columns: for files without a header (CoLA's train and dev): column name ->
      position.
  """
  (path,) = paths
  examples, skipped = [], []
  with _open_text(path) as f:
    if headerless_columns:
      reader = csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE)
      width = max(headerless_columns.values()) + 1
      rows = ({name: row[i] if len(row) >= width else None
               for name, i in headerless_columns.items()} for row in reader)
    else:
      reader = csv.DictReader(f, delimiter='\t', quoting=csv.QUOTE_NONE)
      wanted = list(text_columns.values()) + ([] if _is_test(split) else [label_column])
      missing = [c for c in wanted if c not in (reader.fieldnames or [])]
      if missing:
        raise errors.DataError(f'{path}:1: header has no column {missing[0]!r} (columns: '
                               f'{reader.fieldnames})')
      rows = reader
    for n, row in enumerate(rows):
      where = f'{path}:{reader.line_num}'
      ex = {name: row.get(column) for name, column in text_columns.items()}
      ex['idx'] = n
      if label_column in row:
        ex['label'] = _tsv_label(row[label_column], label_names, where, label_column)
      else:
        ex['label'] = -1.0 if label_names is None else -1
      if any(value is None for value in ex.values()):
        skipped.append(reader.line_num)
        continue
      examples.append(ex)
  if skipped:
    logging.warning('%s: skipped %d rows with missing values (as TFDS does), first at line %d',
                    path, len(skipped), skipped[0])
  return examples


def mrpc(paths: Sequence[str], split: str) -> list[Example]:
  """MRPC from Microsoft's files, as TFDS reads them (`idx` counts rows of the source file).

  Args:
    paths: train and validation: (`msr_paraphrase_train.txt`, `dev_ids.tsv`); test:
      (`msr_paraphrase_test.txt`,).
    split: the split.
  """
  dev_ids = set()
  if not _is_test(split):
    with _open_text(paths[1]) as f:
      dev_ids = {tuple(row[:2]) for row in csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE)}
  examples = []
  with _open_text(paths[0]) as f:
    text = ''.join(f).lstrip('\ufeff')  # The train file starts with a byte-order mark.
  reader = csv.DictReader(io.StringIO(text), delimiter='\t', quoting=csv.QUOTE_NONE)
  for column in ('Quality', '#1 ID', '#2 ID', '#1 String', '#2 String'):
    if column not in (reader.fieldnames or []):
      raise errors.DataError(f'{paths[0]}:1: header has no column {column!r}')
  for n, row in enumerate(reader):
    where = f'{paths[0]}:{reader.line_num}'
    if _is_test(split):
      label = -1
    elif ((row['#1 ID'], row['#2 ID']) in dev_ids) != (split == 'validation'):
      continue
    else:
      label = _tsv_label(row['Quality'], ('0', '1'), where, 'Quality')
    if None in (row['#1 String'], row['#2 String'], label):
      raise errors.DataError(f'{where}: a value is missing (expected 5 tab-separated columns)')
    examples.append({'sentence1': row['#1 String'], 'sentence2': row['#2 String'],
                     'label': label, 'idx': n})
  return examples


# ---------------------------------------------------------------- MRQA 2019 (JSON lines)


def _tokens(row: Mapping[str, Any], key: str, where: str, prefix: str) -> dict[str, list]:
  """MRQA's [[token, offset], ...] as TFDS's {'tokens': [...], 'offsets': [...]}."""
  pairs = _get(row, key, list, where, prefix)
  for i, pair in enumerate(pairs):
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
            and isinstance(pair[1], int)):
      raise errors.DataError(
          f"{where}: field '{prefix}{key}[{i}]' should be [token, offset], got {pair!r:.40}")
  return {'tokens': [p[0] for p in pairs], 'offsets': [p[1] for p in pairs]}


def _spans(answer: Mapping[str, Any], key: str, where: str, prefix: str) -> list[list[int]]:
  spans = _get(answer, key, list, where, prefix)
  for i, span in enumerate(spans):
    if not (isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)):
      raise errors.DataError(
          f"{where}: field '{prefix}{key}[{i}]' should be [start, end], got {span!r:.40}")
  return spans


def mrqa(paths: Sequence[str], split: str) -> list[Example]:
  """An MRQA 2019 file: a header line, then one context with its questions per line."""
  del split  # Every MRQA split has answers.
  examples = []
  for path in paths:
    rows = _json_rows(path)
    line, header = next(rows, (1, None))
    where = f'{path}:{line}'
    subset = _get(_get(header, 'header', dict, where), 'dataset', str, where, 'header.')
    for line, row in rows:
      where = f'{path}:{line}'
      context = _get(row, 'context', str, where).strip()
      context_tokens = _tokens(row, 'context_tokens', where, '')
      for i, qa in enumerate(_get(row, 'qas', list, where)):
        prefix = f'qas[{i}].'
        detected = {'text': [], 'char_spans': {'start': [], 'end': []},
                    'token_spans': {'start': [], 'end': []}}
        for j, answer in enumerate(_get(qa, 'detected_answers', list, where, prefix)):
          a_prefix = f'{prefix}detected_answers[{j}].'
          detected['text'].append(_get(answer, 'text', str, where, a_prefix).strip())
          for key in ('char_spans', 'token_spans'):
            spans = _spans(answer, key, where, a_prefix)
            detected[key]['start'].append([s[0] for s in spans])
            detected[key]['end'].append([s[1] for s in spans])
        answers = _get(qa, 'answers', list, where, prefix)
        if not answers or not all(isinstance(a, str) for a in answers):
          raise errors.DataError(
              f"{where}: field '{prefix}answers' should be a non-empty list of strings")
        examples.append({
            'subset': subset,
            'context': context,
            'context_tokens': context_tokens,
            'qid': _get(qa, 'qid', str, where, prefix),
            'question': _get(qa, 'question', str, where, prefix).strip(),
            'question_tokens': _tokens(qa, 'question_tokens', where, prefix),
            'detected_answers': detected,
            'answers': answers,
        })
  return examples


# ---------------------------------------------------------------- to tf.data


def _column(values: list, spec: Any) -> Any:
  """Stacks one feature of every example into a tensor whose slices have `spec`."""
  if isinstance(spec, dict):
    return {key: _column([v[key] for v in values], sub) for key, sub in spec.items()}
  depth = len(spec.shape)
  if depth == 0:
    return tf.constant(values, spec.dtype)

  def ragged(rows: list, depth: int):
    flat = [v for row in rows for v in row]
    inner = tf.constant(flat, spec.dtype) if depth == 1 else ragged(flat, depth - 1)
    return tf.RaggedTensor.from_row_lengths(inner, tf.constant([len(r) for r in rows], tf.int64))

  return ragged(values, depth)


def to_dataset(examples: Sequence[Example], spec: Mapping[str, Any]) -> tf.data.Dataset:
  """The examples as a `tf.data.Dataset` whose `element_spec` is `spec` (TFDS's)."""
  columns = _column(list(examples), dict(spec))
  # The identity map turns 1-D ragged slices into the dense tensors TFDS gives.
  return tf.data.Dataset.from_tensor_slices(columns).map(lambda ex: ex)
