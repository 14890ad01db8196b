"""Helpers for the data tests: fixture folders, source switching, text-level task output, and
TFDS-built reference examples (TFDS's own builders run on our release-format fixture files)."""
# TFDS's example generators are private; they are the reference for what TFDS serves.
# pylint: disable=protected-access

import gzip
import pathlib
import shutil

import seqio
import tensorflow as tf
from tensorflow_datasets.text import glue as tfds_glue
from tensorflow_datasets.text import super_glue as tfds_super_glue
from tensorflow_datasets.text.mrqa import mrqa as tfds_mrqa

from prompt_tuning import data
from prompt_tuning.data import datasets
from prompt_tuning.data import sources

TESTDATA = pathlib.Path(__file__).parent / 'testdata'
ALL_DATASETS = {**{f'super_glue/{k}': v for k, v in datasets.SUPER_GLUE.items()},
                **{f'glue/{k}': v for k, v in datasets.GLUE.items()},
                **{f'mrqa/{k}': v for k, v in datasets.MRQA.items()}}


def reading(source: str, data_dir=None):
  """Tasks read from `source` inside the block, from TFDS (the default) after it."""
  return data.reading_from(source, data_dir)


def to_python(value):
  """Tensors (dense or ragged, nested in dicts) as plain Python values."""
  if isinstance(value, dict):
    return {k: to_python(v) for k, v in value.items()}
  if isinstance(value, tf.RaggedTensor):
    return value.to_list()
  value = value.numpy()
  return value.tolist() if hasattr(value, 'tolist') else value


def text_examples(task_name: str, split: str) -> list[dict]:
  """The task's examples after its text preprocessors (before tokenizing: no vocabulary)."""
  task = seqio.get_mixture_or_task(task_name)
  ds = task.source.get_dataset(split, shuffle=False)
  for step in task.preprocessors:
    if step is seqio.preprocessors.tokenize:
      break
    ds = step(ds)
  return [to_python(ex) for ex in ds]


def tfds_reference(dataset: datasets.Dataset, split: str, tmp_dir: pathlib.Path) -> tf.data.Dataset:
  """What TFDS would serve for `split`: its builder's generator over the fixture files,
  encoded and decoded by the builder's own features."""
  family, config = dataset.tfds_name.split(':')[0].split('/')
  paths = sources.release_paths(dataset, split, str(TESTDATA))
  tfds_split = dataset.tfds_split(split)
  if family == 'super_glue':
    builder = tfds_super_glue.SuperGlue(config=config, data_dir=str(tmp_dir))
    examples = builder._generate_examples(data_file=paths[0], split=tfds_split)
  elif family == 'glue':
    builder = tfds_glue.Glue(config=config, data_dir=str(tmp_dir))
    file_split = 'test' if split.startswith('test') else 'train' if split == 'train' else 'dev'
    mrpc = TESTDATA / 'glue' / 'MRPC'
    examples = builder._generate_examples(
        data_file=paths[0], split=file_split,
        mrpc_files={'train': str(mrpc / 'msr_paraphrase_train.txt'),
                    'dev_ids': str(mrpc / 'dev_ids.tsv'),
                    'test': str(mrpc / 'msr_paraphrase_test.txt')} if config == 'mrpc' else None)
  else:
    builder = tfds_mrqa.MRQA(config=config, data_dir=str(tmp_dir))
    plain = tmp_dir / f'{config}-{split}.jsonl'  # TFDS reads the files its downloader unzipped.
    with gzip.open(paths[0], 'rb') as src, open(plain, 'wb') as dst:
      shutil.copyfileobj(src, dst)
    examples = builder._generate_examples(path=str(plain), split=tfds_split)
  features = builder.info.features
  serialized = [features.serialize_example(ex) for _, ex in examples]
  return tf.data.Dataset.from_tensor_slices(serialized).map(features.deserialize_example)


class FakeTfds:
  """Stands in for `tfds.load`, serving `tfds_reference` datasets by (name, split)."""

  def __init__(self, tmp_dir: pathlib.Path):
    self.tmp_dir = tmp_dir
    self.data_dirs = []
    self._by_name = {d.tfds_name: d for d in ALL_DATASETS.values()}
    self._served = {}

  def load(self, name, split, data_dir=None, **unused_kwargs):
    self.data_dirs.append(data_dir)
    if (name, split) not in self._served:
      dataset = self._by_name[name]
      ours = {dataset.tfds_split(s): s for s in dataset.splits}[split]
      self._served[name, split] = tfds_reference(dataset, ours, self.tmp_dir)
    return self._served[name, split]
