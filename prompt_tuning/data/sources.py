"""Chooses where every task reads its examples: TFDS (the default) or the official release files.

Tasks are registered at import, before any flag is parsed, and seqio finds them by name, so
the choice cannot be a task's argument: the runtime builds datasets inside
`reading_from(source, data_dir)` (the DATA_SOURCE and DATA_DIR of its DatasetConfig), and each
task's `DatasetSource` asks for the choice in force when a dataset is built. Outside such a block,
TFDS in its default data dir. Both sources give the same examples (see `readers`). This
module knows datasets and files, not task formats.
"""

import contextlib
import contextvars
import dataclasses
import os
from typing import Iterator, Mapping, Optional, Sequence

import seqio
import tensorflow as tf

from prompt_tuning import storage
from prompt_tuning.data import datasets
from prompt_tuning.data import errors
from prompt_tuning.data import readers

SOURCES = ('tfds', 'files')


@dataclasses.dataclass(frozen=True)
class SourceConfig:
  """`source`: 'tfds' or 'files'; `data_dir`: the TFDS data dir, or the release files' folder."""
  source: str = 'tfds'
  data_dir: Optional[str] = None


# Set only inside `reading_from`, for the datasets built there.
_in_force: contextvars.ContextVar[SourceConfig] = contextvars.ContextVar(
    'data_source', default=SourceConfig())


@contextlib.contextmanager
def reading_from(source: str = 'tfds', data_dir: Optional[str] = None) -> Iterator[SourceConfig]:
  """Inside the block, the tasks of `prompt_tuning.data` read their examples from `source`.

  Args:
    source: 'tfds' reads prepared TFDS datasets (`super_glue/<name>:1.0.2`,
      `glue/<name>:2.0.0`, `mrqa/<name>:1.0.0`); 'files' reads the official release files.
    data_dir: for 'tfds', the TFDS data dir (None: seqio's override or TFDS's default). For
      'files', the folder holding the release folders (`BoolQ/`, `SST-2/`, `train/`, `dev/`,
      ...); each benchmark is looked for first in `<data_dir>/<benchmark>/` ('super_glue',
      'glue', 'mrqa', which lets GLUE's and SuperGLUE's `RTE/` live side by side), then in
      `<data_dir>/` itself.

  Yields:
    The configuration in force in the block.

  Raises:
    DataError: an unknown source, or 'files' without an existing `data_dir`.
  """
  if source not in SOURCES:
    raise errors.DataError(f'DATA_SOURCE={source!r} is unknown; expected one of {SOURCES}')
  if source == 'files' and not (data_dir and storage.is_dir(data_dir)):
    raise errors.DataError(f"DATA_SOURCE='files' needs DATA_DIR, the folder of the release "
                           f'files; got {data_dir!r}, which is not a folder')
  token = _in_force.set(SourceConfig(source, data_dir))
  try:
    yield _in_force.get()
  finally:
    _in_force.reset(token)


def current_sources() -> SourceConfig:
  """The source configuration in force (see `reading_from`)."""
  return _in_force.get()


def release_paths(dataset: datasets.Dataset, split: str, data_dir: str) -> list[str]:
  """The release files of `split`, found under `data_dir` (see `reading_from`)."""
  paths = []
  for name in dataset.files[split]:
    candidates = [os.path.join(root, name)
                  for root in (os.path.join(data_dir, dataset.release), data_dir)]
    if name.endswith('.gz'):  # Users may have gunzipped MRQA's files.
      candidates += [c[:-len('.gz')] for c in candidates]
    found = next((c for c in candidates if storage.is_file(c)), None)
    if found is None:
      raise errors.DataError(f"missing file for split '{split}' of {dataset.tfds_name}: "
                             f"{candidates[0]} (also looked for {', '.join(candidates[1:])})")
    paths.append(found)
  return paths


class DatasetSource(seqio.DataSource):
  """A seqio source for one dataset that reads TFDS or the release files, as configured."""

  def __init__(self, dataset: datasets.Dataset, splits: Optional[Sequence[str]] = None):
    super().__init__(splits=splits or dataset.splits)
    self._dataset = dataset
    self._tfds_sources: dict[Optional[str], seqio.TfdsDataSource] = {}

  @property
  def dataset(self) -> datasets.Dataset:
    return self._dataset

  def _tfds(self, data_dir: Optional[str]) -> seqio.TfdsDataSource:
    if data_dir not in self._tfds_sources:
      self._tfds_sources[data_dir] = seqio.TfdsDataSource(
          self._dataset.tfds_name, tfds_data_dir=data_dir,
          splits={split: self._dataset.tfds_split(split) for split in self.splits})
    return self._tfds_sources[data_dir]

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    config = current_sources()
    if config.source == 'tfds':
      return self._tfds(config.data_dir).list_shards(split)
    return release_paths(self._dataset, split, config.data_dir)

  def num_input_examples(self, split: str) -> Optional[int]:
    config = current_sources()
    if config.source == 'tfds':
      return self._tfds(config.data_dir).num_input_examples(split)
    return None  # Unknown until the files are read.

  def get_dataset(
      self,
      split: str = 'train',
      shuffle: bool = True,
      seed: Optional[int] = None,
      shard_info: Optional[seqio.ShardInfo] = None,
      *,
      sequence_length: Optional[Mapping[str, int]] = None,
      use_cached: bool = False,
      num_epochs: Optional[int] = 1,
  ) -> tf.data.Dataset:
    del sequence_length, use_cached, num_epochs  # Unused, as in seqio's sources.
    config = current_sources()
    if config.source == 'tfds':
      return self._tfds(config.data_dir).get_dataset(split, shuffle, seed, shard_info)
    paths = release_paths(self._dataset, split, config.data_dir)
    examples = self._dataset.read(paths, split)
    if not examples:
      raise errors.DataError(f"{', '.join(paths)}: no examples for split '{split}' of "
                             f'{self._dataset.tfds_name}')
    ds = readers.to_dataset(examples, self._dataset.spec)
    if shard_info:
      ds = ds.shard(shard_info.num_shards, shard_info.index)
    return ds
