"""Source selection: TFDS and the release files feed the same examples to every task."""

import shutil

import pytest
import seqio
import tensorflow_datasets as tfds
from tensorflow_datasets.text import glue as tfds_glue
from tensorflow_datasets.text import super_glue as tfds_super_glue
from tensorflow_datasets.text.mrqa import mrqa as tfds_mrqa

from prompt_tuning import data
from prompt_tuning.data import errors
from prompt_tuning.data import registry
import test_data_helpers as helpers

# The tasks in their named variant (the taskless and sentinel variants only add steps after
# the text preprocessors).
BASE_TASKS = [name for name in registry.task_names()
              if not name.startswith('taskless_') and not name.endswith(('_examples', '_sentinel'))]


@pytest.fixture(scope='module')
def fake_tfds(tmp_path_factory):
  fake = helpers.FakeTfds(tmp_path_factory.mktemp('tfds'))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(tfds, 'load', fake.load)
    yield fake


class _NoDownloads:
  """A download manager that downloads nothing, to list a builder's splits offline."""

  def download_and_extract(self, urls):
    return {k: '' for k in urls} if isinstance(urls, dict) else ''

  download = download_and_extract


def _examples(source, data_dir, read):
  with helpers.reading(source, data_dir):
    return read()


def test_every_split_asks_tfds_for_an_existing_builder_version_and_split(monkeypatch):
  """The examples match (test_data_readers); here, each split must reach the right TFDS data."""
  calls = []
  monkeypatch.setattr(tfds, 'load', lambda name, split, **kwargs: calls.append((name, split)))
  builders = {'super_glue': tfds_super_glue.SuperGlue, 'glue': tfds_glue.Glue,
              'mrqa': tfds_mrqa.MRQA}
  checked = set()
  for name in BASE_TASKS:
    source = seqio.get_mixture_or_task(name).source
    for split in source.splits:
      with helpers.reading('tfds'):
        source.get_dataset(split, shuffle=False)
      tfds_name, tfds_split = calls[-1]
      assert (tfds_name, tfds_split) == (source.dataset.tfds_name,
                                         source.dataset.tfds_split(split)), name
      checked.add((tfds_name, tfds_split))
  for tfds_name, tfds_split in checked:
    family_config, version = tfds_name.split(':')
    family, config = family_config.split('/')
    builder = builders[family](config=config, version=version)
    generators = builder._split_generators(_NoDownloads())  # pylint: disable=protected-access
    names = set(generators) if isinstance(generators, dict) else {g.name for g in generators}
    assert tfds_split in names, tfds_name


def test_tasks_preprocess_tfds_and_release_file_examples_alike(fake_tfds):
  mismatched = []
  for name in BASE_TASKS:
    split = seqio.get_mixture_or_task(name).splits[-1]  # An eval split, or WSC's train split.
    read = lambda: helpers.text_examples(name, split)
    from_files = _examples('files', str(helpers.TESTDATA), read)
    if not from_files or _examples('tfds', None, read) != from_files:
      mismatched.append(f'{name}:{split}')
  assert not mismatched


def test_the_tfds_data_dir_reaches_tfds(fake_tfds):
  with helpers.reading('tfds', '/data/tensorflow_datasets'):
    helpers.text_examples('taskless_super_glue_rte_v102', 'validation')
  assert fake_tfds.data_dirs[-1] == '/data/tensorflow_datasets'


def test_tfds_is_the_default_source_and_a_block_ends_its_choice(tmp_path):
  assert data.current_sources() == data.sources.SourceConfig('tfds')
  with data.reading_from('files', str(tmp_path)) as config:
    assert data.current_sources() == config == data.sources.SourceConfig('files', str(tmp_path))
  assert data.current_sources() == data.sources.SourceConfig('tfds')


def test_release_folders_may_sit_directly_in_the_data_dir():
  with helpers.reading('files', str(helpers.TESTDATA / 'super_glue')):
    flat = helpers.text_examples('super_glue_cb_v102', 'validation')
  with helpers.reading('files', str(helpers.TESTDATA)):
    assert flat == helpers.text_examples('super_glue_cb_v102', 'validation')


def _get_dataset_error(task_name: str, split: str, data_dir) -> str:
  with helpers.reading('files', str(data_dir)), pytest.raises(errors.DataError) as info:
    seqio.get_mixture_or_task(task_name).source.get_dataset(split)
  assert '\n' not in str(info.value)
  return str(info.value)


def test_a_missing_split_file_names_where_it_was_looked_for(tmp_path):
  shutil.copytree(helpers.TESTDATA / 'super_glue' / 'BoolQ', tmp_path / 'BoolQ')
  (tmp_path / 'BoolQ' / 'val.jsonl').unlink()
  message = _get_dataset_error('taskless_super_glue_boolq_v102', 'validation', tmp_path)
  assert message.startswith("missing file for split 'validation' of super_glue/boolq:1.0.2: "
                            f"{tmp_path}/super_glue/BoolQ/val.jsonl (also looked for "
                            f'{tmp_path}/BoolQ/val.jsonl)')


def test_an_empty_split_is_refused(tmp_path):
  (tmp_path / 'SST-2').mkdir()
  (tmp_path / 'SST-2' / 'dev.tsv').write_text('sentence\tlabel\n')
  message = _get_dataset_error('glue_sst2_v200', 'validation', tmp_path)
  assert message == (f"{tmp_path}/SST-2/dev.tsv: no examples for split 'validation' of "
                     'glue/sst2:2.0.0')


def test_an_unknown_source_or_a_missing_folder_is_refused(tmp_path):
  with pytest.raises(errors.DataError, match="DATA_SOURCE='csv' is unknown"):
    with data.reading_from('csv'):
      pass
  with pytest.raises(errors.DataError, match="DATA_SOURCE='files' needs DATA_DIR"):
    with data.reading_from('files', str(tmp_path / 'nowhere')):
      pass
  assert data.current_sources().source == 'tfds'
