"""Where each dataset lives, in TFDS and in its official release, and what its examples look like.

A `Dataset` names the TFDS builder and version, the release files of each split (relative to
the benchmark's folder), the reader that parses them, and the TFDS feature structure both
sources yield (`[]` scalars, `[None]` sequences). Release layouts, as the official archives
and download scripts leave them:

  SuperGLUE (the task zips):  BoolQ/{train,val,test}.jsonl, CB/, COPA/, MultiRC/, ReCoRD/,
                              RTE/, WiC/, WSC/, AX-b/AX-b.jsonl, AX-g/AX-g.jsonl
  GLUE (download_glue_data.py): CoLA/{train,dev,test}.tsv, SST-2/, QQP/, STS-B/, QNLI/, RTE/,
                              MNLI/{train,dev_matched,dev_mismatched,test_matched,
                              test_mismatched}.tsv, and for MRPC the files TFDS reads:
                              MRPC/{msr_paraphrase_train.txt,msr_paraphrase_test.txt,dev_ids.tsv}
  MRQA 2019 (its release URLs): train/SQuAD.jsonl.gz, dev/SQuAD.jsonl.gz, dev/BioASQ.jsonl.gz,
                              dev/DROP.jsonl.gz, dev/DuoRC.ParaphraseRC.jsonl.gz,
                              dev/RACE.jsonl.gz, dev/RelationExtraction.jsonl.gz,
                              dev/TextbookQA.jsonl.gz (MRQA's out-of-domain dev sets are the
                              `validation` split here, TFDS's `test` split)

This module holds no task formats and reads no files itself.
"""

import dataclasses
import functools
from typing import Any, Callable, Mapping, Optional, Sequence

import tensorflow as tf

from prompt_tuning.data import readers

_TEXT = tf.TensorSpec([], tf.string)
_TEXTS = tf.TensorSpec([None], tf.string)
_INT = tf.TensorSpec([], tf.int32)
_INTS = tf.TensorSpec([None], tf.int32)
_CLASS = tf.TensorSpec([], tf.int64)
_SPANS = tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1, row_splits_dtype=tf.int64)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """One dataset, as TFDS serves it and as its official release ships it."""
  tfds_name: str
  release: str  # The benchmark folder: 'super_glue', 'glue' or 'mrqa'.
  files: Mapping[str, tuple[str, ...]]  # Split -> release files, under the benchmark folder.
  read: Callable[[Sequence[str], str], list[readers.Example]]
  spec: Mapping[str, Any]  # The TFDS element spec of one example.
  label_names: Optional[tuple[str, ...]] = None  # Class names by id; None for free text.
  tfds_splits: Mapping[str, str] = dataclasses.field(default_factory=dict)  # When renamed.

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.files)

  def tfds_split(self, split: str) -> str:
    return self.tfds_splits.get(split, split)


def _texts(*names: str) -> dict[str, Any]:
  return {name: _TEXT for name in names}


# ---------------------------------------------------------------- SuperGLUE 1.0.2

_ENTAILMENT = ('entailment', 'not_entailment')
_BOOL = ('False', 'True')


def _super_glue(config: str, folder: str, spec: Mapping[str, Any], read: Callable[..., Any],
                label_names: Optional[tuple[str, ...]], test_only: bool = False) -> Dataset:
  if test_only:
    files = {'test': (f'{folder}/{folder}.jsonl',)}
  else:
    files = {split: (f'{folder}/{name}.jsonl',)
             for split, name in (('train', 'train'), ('validation', 'val'), ('test', 'test'))}
  return Dataset(f'super_glue/{config}:1.0.2', 'super_glue', files, read, dict(spec),
                 label_names)


def _flat(label_names: tuple[str, ...], *text_fields: str, int_fields: Sequence[str] = (),
          int_labels: bool = False):
  """Spec and reader of a SuperGLUE task with one example per line."""
  spec = {**_texts(*text_fields), **{name: _INT for name in int_fields}, 'idx': _INT,
          'label': _CLASS}
  read = functools.partial(readers.super_glue, text_fields=text_fields, int_fields=int_fields,
                           label_names=label_names, int_labels=int_labels)
  return spec, read, label_names


SUPER_GLUE = {
    'boolq': _super_glue('boolq', 'BoolQ', *_flat(_BOOL, 'question', 'passage')),
    'cb': _super_glue('cb', 'CB', *_flat(('entailment', 'contradiction', 'neutral'), 'premise',
                                         'hypothesis')),
    'copa': _super_glue('copa', 'COPA', *_flat(('choice1', 'choice2'), 'premise', 'choice1',
                                               'choice2', 'question', int_labels=True)),
    'multirc': _super_glue(
        'multirc', 'MultiRC',
        {**_texts('paragraph', 'question', 'answer'), 'label': _CLASS,
         'idx': {'paragraph': _INT, 'question': _INT, 'answer': _INT}},
        functools.partial(readers.multirc, label_names=_BOOL), _BOOL),
    'record': _super_glue(
        'record', 'ReCoRD',
        {**_texts('passage', 'query'), 'entities': _TEXTS, 'answers': _TEXTS,
         'idx': {'passage': _INT, 'query': _INT}},
        readers.record, None),
    'rte': _super_glue('rte', 'RTE', *_flat(_ENTAILMENT, 'premise', 'hypothesis')),
    'wic': _super_glue('wic', 'WiC', *_flat(_BOOL, 'word', 'sentence1', 'sentence2',
                                            int_fields=('start1', 'start2', 'end1', 'end2'))),
    'wsc': _super_glue(
        'wsc.fixed', 'WSC',
        {**_texts('text', 'span1_text', 'span2_text'), 'span1_index': _INT,
         'span2_index': _INT, 'idx': _INT, 'label': _CLASS},
        functools.partial(readers.wsc, label_names=_BOOL), _BOOL),
    'axb': _super_glue('axb', 'AX-b', *_flat(_ENTAILMENT, 'sentence1', 'sentence2'),
                       test_only=True),
    'axg': _super_glue('axg', 'AX-g', *_flat(_ENTAILMENT, 'premise', 'hypothesis'),
                       test_only=True),
}

# ---------------------------------------------------------------- GLUE 2.0.0


def _glue(config: str, folder: str, text_columns: Mapping[str, str], label_column: str,
          label_names: Optional[tuple[str, ...]], files: Optional[Mapping[str, str]] = None,
          headerless_columns: Optional[Mapping[str, int]] = None) -> Dataset:
  """A GLUE TSV dataset; `files` maps splits to file names (default train/dev/test.tsv)."""
  files = files or {'train': 'train.tsv', 'validation': 'dev.tsv', 'test': 'test.tsv'}

  def read(paths: Sequence[str], split: str) -> list[readers.Example]:
    # CoLA's train and dev files have no header; its test file has one.
    return readers.glue(paths, split, text_columns=text_columns, label_column=label_column,
                        label_names=label_names,
                        headerless_columns=None if split == 'test' else headerless_columns)

  spec = {**_texts(*text_columns), 'idx': _INT,
          'label': _CLASS if label_names else tf.TensorSpec([], tf.float32)}
  return Dataset(f'glue/{config}:2.0.0', 'glue',
                 {split: (f'{folder}/{name}',) for split, name in files.items()}, read, spec,
                 label_names)


_NLI = ('entailment', 'neutral', 'contradiction')
_MNLI_COLUMNS = {'premise': 'sentence1', 'hypothesis': 'sentence2'}
_MRPC_TRAIN = ('MRPC/msr_paraphrase_train.txt', 'MRPC/dev_ids.tsv')

GLUE = {
    'cola': _glue('cola', 'CoLA', {'sentence': 'sentence'}, 'is_acceptable',
                  ('unacceptable', 'acceptable'),
                  headerless_columns={'sentence': 3, 'is_acceptable': 1}),
    'sst2': _glue('sst2', 'SST-2', {'sentence': 'sentence'}, 'label', ('negative', 'positive')),
    'mrpc': Dataset(
        'glue/mrpc:2.0.0', 'glue',
        {'train': _MRPC_TRAIN, 'validation': _MRPC_TRAIN,
         'test': ('MRPC/msr_paraphrase_test.txt',)},
        readers.mrpc, {**_texts('sentence1', 'sentence2'), 'idx': _INT, 'label': _CLASS},
        ('not_equivalent', 'equivalent')),
    'qqp': _glue('qqp', 'QQP', {'question1': 'question1', 'question2': 'question2'},
                 'is_duplicate', ('not_duplicate', 'duplicate')),
    'stsb': _glue('stsb', 'STS-B', {'sentence1': 'sentence1', 'sentence2': 'sentence2'}, 'score',
                  None),
    'mnli': _glue('mnli', 'MNLI', _MNLI_COLUMNS, 'gold_label', _NLI, files={
        'train': 'train.tsv', 'validation_matched': 'dev_matched.tsv',
        'validation_mismatched': 'dev_mismatched.tsv', 'test_matched': 'test_matched.tsv',
        'test_mismatched': 'test_mismatched.tsv'}),
    'mnli_matched': _glue('mnli_matched', 'MNLI', _MNLI_COLUMNS, 'gold_label', _NLI, files={
        'validation': 'dev_matched.tsv', 'test': 'test_matched.tsv'}),
    'mnli_mismatched': _glue('mnli_mismatched', 'MNLI', _MNLI_COLUMNS, 'gold_label', _NLI,
                             files={'validation': 'dev_mismatched.tsv',
                                    'test': 'test_mismatched.tsv'}),
    'qnli': _glue('qnli', 'QNLI', {'question': 'question', 'sentence': 'sentence'}, 'label',
                  _ENTAILMENT),
    'rte': _glue('rte', 'RTE', {'sentence1': 'sentence1', 'sentence2': 'sentence2'}, 'label',
                 _ENTAILMENT),
}

# ---------------------------------------------------------------- MRQA 2019 (TFDS 1.0.0)

_MRQA_SPEC = {
    **_texts('subset', 'context', 'qid', 'question'),
    'context_tokens': {'tokens': _TEXTS, 'offsets': _INTS},
    'question_tokens': {'tokens': _TEXTS, 'offsets': _INTS},
    'detected_answers': {'text': _TEXTS, 'char_spans': {'start': _SPANS, 'end': _SPANS},
                         'token_spans': {'start': _SPANS, 'end': _SPANS}},
    'answers': _TEXTS,
}


def _mrqa(config: str, files: Mapping[str, str], **kwargs) -> Dataset:
  return Dataset(f'mrqa/{config}:1.0.0', 'mrqa',
                 {split: (name,) for split, name in files.items()}, readers.mrqa, _MRQA_SPEC,
                 **kwargs)


def _out_of_domain(config: str, file_name: str) -> Dataset:
  return _mrqa(config, {'validation': f'dev/{file_name}.jsonl.gz'},
               tfds_splits={'validation': 'test'})


MRQA = {
    'squad': _mrqa('squad', {'train': 'train/SQuAD.jsonl.gz',
                             'validation': 'dev/SQuAD.jsonl.gz'}),
    'bio_asq': _out_of_domain('bio_asq', 'BioASQ'),
    'drop': _out_of_domain('drop', 'DROP'),
    'duo_rc': _out_of_domain('duo_rc', 'DuoRC.ParaphraseRC'),
    'race': _out_of_domain('race', 'RACE'),
    'relation_extraction': _out_of_domain('relation_extraction', 'RelationExtraction'),
    'textbook_qa': _out_of_domain('textbook_qa', 'TextbookQA'),
}
