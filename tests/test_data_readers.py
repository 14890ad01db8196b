"""Release-file readers: TFDS's examples from the official formats, and one-line errors."""

import gzip
import json

import pytest
import tensorflow as tf

from prompt_tuning.data import datasets
from prompt_tuning.data import errors
from prompt_tuning.data import readers
from prompt_tuning.data import sources
import test_data_helpers as helpers

CASES = [(key, split) for key, d in helpers.ALL_DATASETS.items() for split in d.splits]


@pytest.mark.parametrize('key,split', CASES, ids=[f'{k}-{s}' for k, s in CASES])
def test_release_files_give_the_examples_tfds_builds_from_them(key, split, tmp_path):
  dataset = helpers.ALL_DATASETS[key]
  ours = readers.to_dataset(
      dataset.read(sources.release_paths(dataset, split, str(helpers.TESTDATA)), split),
      dataset.spec)
  reference = helpers.tfds_reference(dataset, split, tmp_path)
  assert ours.element_spec == reference.element_spec
  assert [helpers.to_python(ex) for ex in ours] == [helpers.to_python(ex) for ex in reference]


def _write_lines(path, lines):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(''.join(line + '\n' for line in lines))
  return str(path)


def _read_rte(path, split='validation'):
  return datasets.SUPER_GLUE['rte'].read([path], split)


def _one_line_error(fn, *args) -> str:
  with pytest.raises(errors.DataError) as info:
    fn(*args)
  message = str(info.value)
  assert '\n' not in message
  return message


GOOD = json.dumps({'premise': 'p', 'hypothesis': 'h', 'label': 'entailment', 'idx': 0})


def test_a_malformed_json_line_names_file_and_line(tmp_path):
  path = _write_lines(tmp_path / 'val.jsonl', [GOOD, '{"premise": "p", "hypothesis": '])
  assert _one_line_error(_read_rte, path).startswith(f'{path}:2: not valid JSON')


@pytest.mark.parametrize('gzipped', [False, True], ids=['plain', 'gzip'])
def test_a_json_line_that_is_not_utf8_names_file_line_and_byte(tmp_path, gzipped):
  data = (GOOD + '\n' + GOOD.replace('"p"', '"caf\xe9"', 1) + '\n').encode('latin-1')
  path = tmp_path / ('val.jsonl.gz' if gzipped else 'val.jsonl')
  path.write_bytes(gzip.compress(data) if gzipped else data)
  column = GOOD.index('"p"') + 5  # the byte after 'caf', counted from 1
  assert _one_line_error(_read_rte, str(path)) == (
      f'{path}:2: not valid UTF-8 (byte 0xe9 at column {column})')


def test_a_tsv_line_that_is_not_utf8_names_file_and_line(tmp_path):
  path = _glue_file(tmp_path, [['index', 'sentence1', 'sentence2', 'label'],
                               ['0', 'a', 'b', 'entailment']])
  with open(path, 'ab') as f:
    f.write(b'1\ta\t\xff\tentailment\n')
  assert _one_line_error(datasets.GLUE['rte'].read, [path], 'validation').startswith(
      f'{path}:3: not valid UTF-8 (byte 0xff')


def test_a_missing_field_is_named(tmp_path):
  path = _write_lines(tmp_path / 'val.jsonl', [json.dumps({'premise': 'p', 'idx': 0})])
  assert _one_line_error(_read_rte, path) == f"{path}:1: field 'hypothesis' is missing"


def test_a_field_of_the_wrong_type_is_named(tmp_path):
  row = {'premise': 'p', 'hypothesis': 'h', 'label': 'entailment', 'idx': '0'}
  path = _write_lines(tmp_path / 'val.jsonl', [json.dumps(row)])
  assert _one_line_error(_read_rte, path) == (
      f"{path}:1: field 'idx' should be int, got str '0'")


def test_an_unknown_label_names_the_expected_ones(tmp_path):
  row = {'premise': 'p', 'hypothesis': 'h', 'label': 'maybe', 'idx': 0}
  path = _write_lines(tmp_path / 'val.jsonl', [GOOD, json.dumps(row)])
  assert _one_line_error(_read_rte, path) == (
      f"{path}:2: field 'label' has 'maybe'; expected one of ['entailment', 'not_entailment']")


def test_only_test_files_may_leave_out_the_label(tmp_path):
  path = _write_lines(tmp_path / 'val.jsonl', [json.dumps({'premise': 'p', 'hypothesis': 'h',
                                                           'idx': 0})])
  assert 'is missing (only test files' in _one_line_error(_read_rte, path)
  assert _read_rte(path, 'test')[0]['label'] == -1


def test_a_bad_nested_label_gives_its_path(tmp_path):
  row = {'idx': 0, 'passage': {'text': 't', 'questions': [
      {'question': 'q', 'idx': 0, 'answers': [{'text': 'a', 'idx': 0, 'label': 1},
                                              {'text': 'b', 'idx': 1, 'label': 2}]}]}}
  path = _write_lines(tmp_path / 'val.jsonl', [json.dumps(row)])
  message = _one_line_error(datasets.SUPER_GLUE['multirc'].read, [path], 'validation')
  assert message == (f"{path}:1: field 'passage.questions[0].answers[1].label' has 2; expected "
                     "one of ['False', 'True']")


def _glue_file(tmp_path, rows):
  return _write_lines(tmp_path / 'dev.tsv', ['\t'.join(row) for row in rows])


def test_an_unknown_tsv_label_names_file_line_and_column(tmp_path):
  path = _glue_file(tmp_path, [['index', 'sentence1', 'sentence2', 'label'],
                               ['0', 'a', 'b', 'entailment'], ['1', 'a', 'b', 'maybe']])
  message = _one_line_error(datasets.GLUE['rte'].read, [path], 'validation')
  assert message.startswith(f"{path}:3: column 'label' has 'maybe'; expected one of")


def test_a_tsv_without_a_needed_column_is_refused(tmp_path):
  path = _glue_file(tmp_path, [['index', 'sentence1', 'label'], ['0', 'a', 'entailment']])
  message = _one_line_error(datasets.GLUE['rte'].read, [path], 'validation')
  assert message.startswith(f"{path}:1: header has no column 'sentence2'")


def test_a_non_numeric_similarity_score_is_refused(tmp_path):
  header = ['index', 'genre', 'filename', 'year', 'old_index', 'source1', 'source2', 'sentence1',
            'sentence2', 'score']
  path = _glue_file(tmp_path, [header, ['0', 'g', 'f', 'y', 'o', 's', 's', 'a', 'b', 'high']])
  message = _one_line_error(datasets.GLUE['stsb'].read, [path], 'validation')
  assert message == f"{path}:2: column 'score' has 'high'; expected a number"


def test_tsv_rows_with_missing_values_are_skipped_as_tfds_does_and_logged(tmp_path, caplog):
  path = _glue_file(tmp_path, [['index', 'sentence1', 'sentence2', 'label'],
                               ['0', 'a'], ['1', 'a', 'b', 'entailment']])
  examples = datasets.GLUE['rte'].read([path], 'validation')
  assert [ex['idx'] for ex in examples] == [1]
  assert 'skipped 1 rows with missing values' in caplog.text


def test_a_malformed_mrqa_line_names_the_field(tmp_path):
  path = tmp_path / 'BioASQ.jsonl.gz'
  with gzip.open(path, 'wt') as f:
    f.write(json.dumps({'header': {'dataset': 'BioASQ'}}) + '\n')
    f.write(json.dumps({'context': 'c', 'context_tokens': [['c', 0]],
                        'qas': [{'qid': 'q', 'question': 'q?', 'question_tokens': [['q?', 0]],
                                 'detected_answers': [], 'answers': 'c'}]}) + '\n')
  message = _one_line_error(datasets.MRQA['bio_asq'].read, [str(path)], 'validation')
  assert message == (f"{path}:2: field 'qas[0].answers' should be list, got str 'c'")


def test_an_mrqa_file_without_its_header_is_refused(tmp_path):
  path = _write_lines(tmp_path / 'RACE.jsonl', [json.dumps({'context': 'c'})])
  message = _one_line_error(datasets.MRQA['race'].read, [path], 'validation')
  assert message == f"{path}:1: field 'header' is missing"


def test_sequences_become_dense_and_nested_sequences_ragged_as_in_tfds():
  spec = {'a': tf.TensorSpec([None], tf.string),
          'b': tf.RaggedTensorSpec([None, None], tf.int32, 1, tf.int64),
          'c': tf.TensorSpec([], tf.int64)}
  ds = readers.to_dataset([{'a': ['x', 'y'], 'b': [[1, 2], [3]], 'c': 7},
                           {'a': [], 'b': [], 'c': 8}], spec)
  assert ds.element_spec == spec
  assert [helpers.to_python(ex) for ex in ds] == [
      {'a': [b'x', b'y'], 'b': [[1, 2], [3]], 'c': 7}, {'a': [], 'b': [], 'c': 8}]
