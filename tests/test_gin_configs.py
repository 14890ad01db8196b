"""The gin library (gin/) and the recipes (configs/): every file parses, and builds what it says.

Files are parsed as the CLI parses them (`gin_config.parse`): unknown configurables, unknown
macros and required macros left unset all fail. The key configurables are then built for real
on the tiny size, with a byte vocabulary and a random embedding table standing in for the
released ones, and `train_loop.train` replaced by a recorder of its arguments: nothing is
downloaded and no gs:// path is opened.
"""

import pathlib
import re
import shlex
from typing import Dict, List, Mapping, Sequence, Tuple

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio
from flax import linen as nn
from flax import traverse_util

from prompt_tuning import cli, commands, data, gin_config, plan
from prompt_tuning.models import t5
from prompt_tuning.runtime import optimizer, train_loop

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REQUIRED_MACROS = {'train': commands.TRAIN_MACROS, 'eval': commands.EVAL_MACROS,
                   'infer': commands.INFER_MACROS, 'plan': plan.REQUIRED_MACROS}

GENERIC_MODEL = 'gin/models/t5_1_1_prompt.gin'
TINY_MODEL = (GENERIC_MODEL, 'gin/models/sizes/tiny.gin')
BASE_MODEL = 'gin/models/t5_1_1_base_prompt.gin'
# The base model file (for its checkpoint macros) with the tiny shape, so that models build fast.
BASE_NAMES_TINY_SHAPE = (BASE_MODEL, 'gin/models/sizes/tiny.gin')
TRAIN_RUN = 'gin/runs/prompt_finetune.gin'
RTE = 'configs/super_glue/rte.gin'
SIZES = ('small', 'base', 'large', 'xl', 'xxl')

RUN_MACROS = {'MODEL_DIR': "'/tmp/unused'",
              'MIXTURE_OR_TASK_NAME': "'taskless_super_glue_rte_v102'",
              'TASK_FEATURE_LENGTHS': "{'inputs': 8, 'targets': 4}", 'TRAIN_STEPS': '1',
              'INITIAL_CHECKPOINT_PATH': 'None'}
PROMPT_MACROS = {'CLASS_LABELS': "['yes']", 'PROMPT_STRING': "'yes'", 'PROMPT_FILE': "'unused.npy'",
                 'PROMPT_FILES': "{'a': 'unused.npy'}"}
# Offline stand-ins for the released vocabulary and embedding table.
EMBEDDING_SHAPE = (300, t5.SIZES['tiny']['emb_dim'])  # ByteVocabulary ids stay below 259.
OFFLINE_MACROS = {'MODEL_DIR': "'/tmp/unused'", 'VOCABULARY': '@seqio.ByteVocabulary()'}


def _gin_files(*roots: str) -> List[str]:
  return sorted(str(p.relative_to(REPO_ROOT)) for root in roots
                for p in (REPO_ROOT / root).rglob('*.gin'))


# gin/t5x/ is for T5X's own commands (python -m t5x.train); tests/test_t5x_integration.py parses it.
ALL_GIN_FILES = [f for f in _gin_files('gin', 'configs') if not f.startswith('gin/t5x/')]
# Included by the recipes, not run on their own.
FRAGMENTS = ('configs/paper_settings.gin', 'configs/demo/demo_model.gin',
             'configs/demo/demo_task.gin')
RECIPES = [f for f in _gin_files('configs') if f not in FRAGMENTS]
SUPER_GLUE = ('boolq', 'cb', 'copa', 'multirc', 'record', 'rte', 'wic', 'wsc', 'mixture')


def _bindings(macros: Mapping[str, str]) -> List[str]:
  return [f'{name} = {value}' for name, value in macros.items()]


def _parse(gin_files: Sequence[str], macros: Mapping[str, str] = ()) -> None:
  gin.clear_config()
  gin_config.parse(gin_files, _bindings(dict(macros)))


@pytest.fixture(autouse=True)
def _fresh_gin():
  yield
  gin.clear_config()


def _macro(name: str):
  return gin.query_parameter(f'%{name}')


# -- Every file parses ----------------------------------------------------------------------


def documented_commands(text: str) -> List[List[str]]:
  """The `python -m prompt_tuning.<script>` commands of a gin header or a README, as argv.

  Commands may span lines ending in `\\`; in README tables, `$MODEL` is the base model file.
  """
  commands, current = [], None
  for line in text.splitlines():
    line = re.sub(r'^#\s?', '', line).strip()
    if current is None and line.startswith('python -m prompt_tuning.'):
      current = ''
    if current is not None:
      current += ' ' + line.rstrip('\\')
      if not line.endswith('\\'):
        commands.append(shlex.split(current))
        current = None
  for inline in re.findall(r'\| `(python -m prompt_tuning\.[^`]+)` \|', text):
    commands.append(shlex.split(inline.replace('$MODEL', BASE_MODEL)))
  return commands


def parse_command(argv: Sequence[str]) -> str:
  """Parses a documented command's gin as the CLI does; returns its script ('train', ...)."""
  script = argv[2].split('.')[-1]
  files, bindings = [], []
  for arg in cli.rewrite_gin_args(argv[3:]):
    flag, _, value = arg.partition('=')
    if script == 'plan' and flag in ('--topology', '--mesh'):  # the planner's own flags
      continue
    {'--gin_file': files, '--gin_bindings': bindings}[flag].append(value)
  if script == 'plan':
    bindings += plan.COMMAND_BINDINGS
  gin.clear_config()
  gin_config.parse(files, bindings)
  gin_config.require_macros(REQUIRED_MACROS[script])
  return script


def _stack(path: str) -> Tuple[Tuple[str, ...], Dict[str, str]]:
  """The files and macros that make a complete configuration around a gin/ file."""
  rules = [
      (r'gin/models/t5_1_1_prompt\.gin', (*TINY_MODEL, TRAIN_RUN), {}),
      (r'gin/models/t5_1_1_\w+_prompt\.gin', (path, TRAIN_RUN), {}),
      (r'gin/models/sizes/|configs/demo/demo_model\.gin', (GENERIC_MODEL, path, TRAIN_RUN), {}),
      (r'gin/models/', (*TINY_MODEL, path, TRAIN_RUN), {}),
      (r'gin/prompts/', (*TINY_MODEL, path, TRAIN_RUN), PROMPT_MACROS),
      (r'gin/runs/prompt_', (*TINY_MODEL, path), {}),
      (r'gin/partitioning/model_parallel\.gin', (*TINY_MODEL, TRAIN_RUN, path),
       {'MODEL_PARALLEL_PARTITIONS': '2'}),
      (r'gin/runs/|gin/partitioning/', (*TINY_MODEL, TRAIN_RUN, path), {}),
      (r'configs/paper_settings\.gin', (BASE_MODEL, path), {}),
      (r'configs/demo/demo_task\.gin', ('configs/demo/prompt_tuning_demo.gin', path), {}),
  ]
  for pattern, files, macros in rules:
    if re.match(pattern, path):
      return files, {**RUN_MACROS, **macros}
  raise AssertionError(f'{path}: no rule says how to parse it; add one to _stack')


@pytest.mark.parametrize('path', [f for f in ALL_GIN_FILES if f not in RECIPES])
def test_every_library_file_parses_in_a_complete_configuration(path):
  files, macros = _stack(path)
  _parse(files, macros)


@pytest.mark.parametrize('recipe', RECIPES)
def test_every_recipe_parses_with_the_command_in_its_header(recipe):
  commands = documented_commands((REPO_ROOT / recipe).read_text())
  assert commands, f'{recipe}: no `python -m prompt_tuning....` command in its header'
  for argv in commands:
    assert f'--gin_file={recipe}' in argv, f'{recipe}: its command does not use it: {argv}'
    parse_command(argv)


@pytest.mark.parametrize('readme', ['gin/README.md', 'configs/README.md'])
def test_the_commands_of_the_readmes_parse(readme):
  commands = documented_commands((REPO_ROOT / readme).read_text())
  assert commands
  for argv in commands:
    parse_command(argv)


def _expand_braces(text: str) -> List[str]:
  match = re.search(r'\{([^}]*)\}', text)
  if not match:
    return [text]
  return [expanded for choice in match.group(1).split(',')
          for expanded in _expand_braces(text[:match.start()] + choice + text[match.end():])]


def test_the_recipe_table_lists_every_recipe():
  listed = {f'configs/{name}' for cell in re.findall(r'^\| `([^`]+\.gin)`',
                                                     (REPO_ROOT / 'configs/README.md').read_text(),
                                                     re.MULTILINE)
            for name in _expand_braces(cell)}
  paper_recipes = {r for r in RECIPES if not r.startswith('configs/demo/')}
  assert listed == paper_recipes


@pytest.mark.parametrize('recipe', [r for r in RECIPES if not r.startswith('configs/demo/')])
def test_every_recipe_header_names_its_paper_result_and_checkpoint(recipe):
  header = ''.join(re.findall(r'^#.*\n', (REPO_ROOT / recipe).read_text(), re.MULTILINE))
  assert re.search(r'Figure \d|Table \d|Not in the paper', header, re.IGNORECASE), recipe
  assert re.search(r't5_1_1_lm100k_<size>|t5_1_1_<size>/checkpoint_1000000', header), recipe


# -- Required macros --------------------------------------------------------------------------

RUN_FILES = ('gin/runs/prompt_finetune.gin', 'gin/runs/prompt_eval.gin',
             'gin/runs/prompt_infer.gin')


def _declared_required(path: str) -> List[str]:
  """The macros that `path` and the files it includes declare required."""
  text = (REPO_ROOT / path).read_text()
  included = re.findall(r"^include '(gin/runs/[\w.]+)'", text, re.MULTILINE)
  return [*re.findall(r'^(\w+) = %gin\.REQUIRED', text, re.MULTILINE),
          *(macro for other in included for macro in _declared_required(other))]


@pytest.mark.parametrize('run_file', RUN_FILES)
def test_run_files_declare_the_required_macros_their_header_lists(run_file):
  header = (REPO_ROOT / run_file).read_text().split('\n\n')[0]
  documented = re.search(r'Required macros: ([\w,\s#]+)', header).group(1)
  assert sorted(re.findall(r'[A-Z_]+', documented)) == sorted(_declared_required(run_file))


@pytest.mark.parametrize('run_file,macro',
                         [(f, m) for f in RUN_FILES for m in _declared_required(f)])
def test_a_missing_required_macro_stops_parsing_with_one_line_naming_it(run_file, macro):
  macros = {name: value for name, value in RUN_MACROS.items() if name != macro}
  with pytest.raises(gin_config.GinConfigError) as error:
    _parse((*TINY_MODEL, run_file), macros)
  assert str(error.value) == (f'Missing required gin macro {macro}: set it in a gin file or pass '
                              f'--gin.{macro}=... on the command line.')


def test_a_recipe_without_a_size_file_names_the_missing_checkpoint_macro():
  with pytest.raises(gin_config.GinConfigError,
                     match='Missing required gin macro LM_ADAPTED_CHECKPOINT'):
    _parse((GENERIC_MODEL, 'gin/models/sizes/base.gin', RTE), OFFLINE_MACROS)


def test_the_sentinel_overlay_needs_a_recipe_that_names_its_sentinel_task():
  with pytest.raises(gin_config.GinConfigError,
                     match='Missing required gin macro SENTINEL_TASK_NAME'):
    _parse((BASE_MODEL, 'configs/domain_shift/squad_to_mrqa.gin',
            'configs/ablations/frozen_span_corruption_sentinel.gin'), OFFLINE_MACROS)


# -- Model files -------------------------------------------------------------------------------


@pytest.mark.parametrize('size', SIZES)
def test_each_size_file_builds_the_released_shape_and_names_its_checkpoints(size):
  _parse([f'gin/models/t5_1_1_{size}_prompt.gin', TRAIN_RUN], RUN_MACROS)
  config = gin.get_configurable('t5.config_for_size')()
  # XXL is set up for the paper's 16 v3 chips (the planner's README table).
  pod = dict(dtype=jnp.bfloat16, scan_layers=True, remat_policy='full') if size == 'xxl' else {}
  assert config == t5.config_for_size(size, dropout_rate=0.1, **pod)
  if size == 'xxl':
    assert gin.get_configurable('run_setup.RunConfig')().frozen_dtype == jnp.bfloat16
  assert _macro('LM_ADAPTED_CHECKPOINT') == (
      f'gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_{size}/checkpoint_1100000')
  assert _macro('SPAN_CORRUPTION_CHECKPOINT') == (
      f'gs://t5-data/pretrained_models/t5x/t5_1_1_{size}/checkpoint_1000000')
  assert _macro('LM_ADAPTED_HF_CHECKPOINT') == f'google/t5-{size}-lm-adapt'
  assert _macro('SPAN_CORRUPTION_HF_CHECKPOINT') == f'google/t5-v1_1-{size}'


def test_the_tiny_size_file_matches_the_tiny_preset():
  _parse((*TINY_MODEL, TRAIN_RUN), RUN_MACROS)
  assert gin.get_configurable('t5.config_for_size')() == t5.config_for_size('tiny', dropout_rate=0.1)


def test_the_vocabulary_is_the_tasks_output_vocabulary():
  _parse((*TINY_MODEL, TRAIN_RUN), RUN_MACROS)
  task = seqio.get_mixture_or_task('taskless_super_glue_rte_v102')
  assert gin.get_configurable('inputs.task_vocabulary')() is (
      task.output_features['targets'].vocabulary)


@pytest.mark.parametrize('method,name', [('greedy', 'greedy'), ('beam_search', 'beam_search'),
                                         ('nucleus_sampling', 'sample')])
def test_decoding_files_pick_their_method(method, name):
  _parse((*TINY_MODEL, f'gin/models/decoding/{method}.gin', TRAIN_RUN), RUN_MACROS)
  assert gin.get_configurable('decoding.DecodingMethod')().name == name


# -- What the recipes build ----------------------------------------------------------------------


@pytest.fixture
def embedding(tmp_path) -> Tuple[np.ndarray, str]:
  """A random `[V, H]` embedding table standing in for the checkpoint's, and its .npy path."""
  table = np.random.RandomState(0).normal(size=EMBEDDING_SHAPE).astype(np.float32)
  path = tmp_path / 'embedding.npy'
  np.save(path, table)
  return table, str(path)


@pytest.fixture
def train_arguments(monkeypatch, embedding):
  """`(gin files, **macros) -> the keyword arguments `prompt_tuning.train` gives the loop`."""

  def build(gin_files: Sequence[str], **macros: str) -> Dict[str, object]:
    recorded = {}
    monkeypatch.setattr(train_loop, 'train', lambda **kwargs: recorded.update(kwargs))
    _parse((*BASE_NAMES_TINY_SHAPE, *gin_files),
           {**OFFLINE_MACROS, 'EMBEDDING_FILE': repr(embedding[1]), **macros})
    commands.train()
    return recorded

  return build


def _registered(name: str) -> bool:
  return name in seqio.TaskRegistry.names() or name in seqio.MixtureRegistry.names()


def _label_strings(name: str) -> List[str]:
  """A task's verbalizers, or the union of its tasks' for a mixture (in order, no repeats)."""
  tasks = [name]
  if name in seqio.MixtureRegistry.names():
    tasks = [t.name for t in seqio.get_mixture_or_task(name).tasks]
  labels = [label for task in tasks for label in data.get_label_strings(task) or []]
  return list(dict.fromkeys(labels))


def _prompt(args) -> jax.Array:
  prompt_config = args['model'].module.prompt_config
  return prompt_config.init(jax.random.key(0), (prompt_config.length, EMBEDDING_SHAPE[1]))


@pytest.mark.parametrize('task', SUPER_GLUE)
def test_super_glue_recipes_train_a_registered_task_with_the_papers_settings(task, train_arguments):
  args = train_arguments([f'configs/super_glue/{task}.gin'])
  name = args['train_dataset_config'].mixture_or_task_name
  assert name == {'mixture': 'taskless_super_glue_v102_proportional',
                  'wsc': 'taskless_super_glue_wsc_and_dev_v102_simple'}.get(
                      task, f'taskless_super_glue_{task}_v102')
  assert _registered(name)
  assert args['eval_config'].dataset.mixture_or_task_name == name
  assert args['eval_config'].dataset.split == 'validation'
  sentinel = _macro('SENTINEL_TASK_NAME')
  assert sentinel == f'{name}_sentinel' and _registered(sentinel)
  assert args['train_dataset_config'].batch_size == 32
  assert args['total_steps'] == 30_000
  assert args['model'].module.prompt_config.length == 100
  assert args['run_config'].initial_checkpoint_path == (
      'gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000')
  learning_rate = optimizer.current_learning_rate(args['optimizer'].init({'w': jnp.ones(3)}))
  assert float(learning_rate) == pytest.approx(0.3)
  if task in ('boolq', 'multirc', 'record', 'mixture'):
    assert args['train_dataset_config'].task_feature_lengths['inputs'] >= 512


@pytest.mark.parametrize('task', SUPER_GLUE)
def test_super_glue_prompts_start_from_the_tasks_class_labels(task, train_arguments, embedding):
  args = train_arguments([f'configs/super_glue/{task}.gin'])
  labels = _label_strings(args['train_dataset_config'].mixture_or_task_name)
  prompt = np.asarray(_prompt(args))
  if not labels:  # Free-text targets (ReCoRD, WSC): rows sampled from the vocabulary.
    assert _macro('PROMPT_INIT').selector == 'prompts.sampled_vocab'
  else:
    assert sorted(_macro('CLASS_LABELS')) == sorted(labels)
    vocabulary = seqio.ByteVocabulary()
    expected = [embedding[0][vocabulary.encode(label)].mean(axis=0)
                for label in _macro('CLASS_LABELS')]
    np.testing.assert_allclose(prompt[:len(labels)], np.stack(expected), rtol=1e-6)
  rest = prompt[len(labels):]
  assert np.isclose(rest[:, None, :], embedding[0][None], rtol=1e-6).all(-1).any(-1).all(), (
      'the other rows are not rows of the embedding table')


@pytest.mark.parametrize('length', [1, 5, 20, 100, 150])
def test_prompt_length_overlays_set_the_length_of_a_class_label_prompt(length, train_arguments):
  args = train_arguments([RTE, f'configs/ablations/prompt_length_{length}.gin'])
  assert args['model'].module.prompt_config.length == length
  assert _prompt(args).shape == (length, EMBEDDING_SHAPE[1])


@pytest.mark.parametrize('init', ['random_uniform', 'sampled_vocab', 'class_labels'])
def test_init_overlays_choose_the_prompt_initializer(init, train_arguments):
  args = train_arguments([RTE, f'configs/ablations/init_{init}.gin'])
  assert _macro('PROMPT_INIT').selector == f'prompts.{init}'
  assert _prompt(args).shape == (100, EMBEDDING_SHAPE[1])


@pytest.mark.parametrize('overlay,checkpoint,task', [
    ('frozen_lm_adapted', 't5_1_1_lm100k_base/checkpoint_1100000', 'taskless_super_glue_rte_v102'),
    ('frozen_span_corruption', 't5_1_1_base/checkpoint_1000000', 'taskless_super_glue_rte_v102'),
    ('frozen_span_corruption_sentinel', 't5_1_1_base/checkpoint_1000000',
     'taskless_super_glue_rte_v102_sentinel'),
])
def test_frozen_model_overlays_choose_the_checkpoint_and_task(overlay, checkpoint, task,
                                                              train_arguments):
  args = train_arguments([RTE, f'configs/ablations/{overlay}.gin'])
  assert args['run_config'].initial_checkpoint_path == (
      f'gs://t5-data/pretrained_models/t5x/{checkpoint}')
  assert args['train_dataset_config'].mixture_or_task_name == task
  assert args['eval_config'].dataset.mixture_or_task_name == task


@pytest.mark.parametrize('recipe,train_task,eval_task', [
    ('squad_to_mrqa', 'squad_v010_allanswers', 'mrqa_textbookqa_v001'),
    ('qqp_to_mrpc', 'taskless_glue_qqp_v200', 'taskless_glue_mrpc_from_qqp_v200'),
    ('mrpc_to_qqp', 'taskless_glue_mrpc_v200', 'taskless_glue_qqp_from_mrpc_v200'),
])
def test_domain_shift_recipes_train_on_the_source_and_evaluate_on_the_target(
    recipe, train_task, eval_task, train_arguments):
  args = train_arguments([f'configs/domain_shift/{recipe}.gin'])
  mixture = seqio.get_mixture_or_task(args['train_dataset_config'].mixture_or_task_name)
  trained = [t.name for t in mixture.tasks if 'train' in t.splits]
  evaluated = [t.name for t in mixture.tasks if 'validation' in t.splits]
  assert trained == [train_task]
  assert eval_task in evaluated
  assert sorted(_macro('CLASS_LABELS') if recipe != 'squad_to_mrqa' else []) == sorted(
      data.get_label_strings(train_task) or [])


def _parameter_paths(model) -> List[str]:
  shapes = {'encoder_input_tokens': (1, 4), 'decoder_input_tokens': (1, 2),
            'decoder_target_tokens': (1, 2)}
  params = nn.unbox(model.abstract_variables(shapes)['params'])
  return list(traverse_util.flatten_dict(params, sep='/'))


def test_the_model_tuning_overlay_trains_every_weight_of_the_bare_model(train_arguments):
  prompt_args = train_arguments([RTE])
  assert 'encoder/prompt/prompt/prompt' in _parameter_paths(prompt_args['model'])
  args = train_arguments([RTE, 'configs/baselines/model_tuning.gin'])
  assert list(args['run_config'].trainable_regexes) == ['.*']
  assert args['model'].module.prompt_config.length == 0
  assert not [p for p in _parameter_paths(args['model']) if 'prompt' in p]
  learning_rate = optimizer.current_learning_rate(args['optimizer'].init({'w': jnp.ones(3)}))
  assert float(learning_rate) == pytest.approx(1e-3)
  assert args['train_dataset_config'].mixture_or_task_name == 'taskless_super_glue_rte_v102'


def test_bfloat16_and_partitioning_presets_hold_wherever_they_are_placed(train_arguments):
  args = train_arguments(['gin/models/bfloat16.gin', 'gin/partitioning/model_parallel.gin', RTE],
                         MODEL_PARALLEL_PARTITIONS='4')
  assert args['run_config'].frozen_dtype == jnp.bfloat16
  assert args['model'].module.config.dtype == jnp.bfloat16
  assert args['run_config'].partitioner.num_partitions == 4


# -- Data sources --------------------------------------------------------------------------------


@pytest.mark.parametrize('run_file', RUN_FILES)
def test_data_source_macros_reach_every_dataset_config(run_file, tmp_path):
  _parse((*TINY_MODEL, run_file), {**RUN_MACROS, 'DATA_SOURCE': "'files'",
                                    'DATA_DIR': repr(str(tmp_path))})
  for scope in ('', 'train/', 'validation/'):
    config = gin.get_configurable('utils.DatasetConfig')
    with gin.config_scope(scope.rstrip('/') or None):
      dataset = config()
    assert (dataset.data_source, dataset.data_dir) == ('files', str(tmp_path)), scope


def test_an_unknown_data_source_is_a_one_line_error_naming_the_macro():
  with pytest.raises(data.DataError, match=r"^DATA_SOURCE='hub' is unknown; expected one of"):
    with data.reading_from('hub'):
      pass
  assert data.current_sources().source == 'tfds'


def test_the_table_3_overlay_trains_five_prompts_of_one_task_as_an_ensemble(train_arguments):
  args = train_arguments([RTE, 'configs/ensembles/five_prompts.gin'])
  assert args['prompt_bank'] == 'ensemble'
  assert args['train_dataset_config'].mixture_or_task_name == 'taskless_super_glue_rte_v102'
  prompt_config = args['model'].module.prompt_config
  assert prompt_config.num_prompts == 5 and prompt_config.length == 100
  bank = np.asarray(prompt_config.init(jax.random.key(0), (5, 100, EMBEDDING_SHAPE[1])))
  labels = len(_macro('CLASS_LABELS'))
  # The class-label rows are every member's; the sampled rows are each member's own.
  assert all(np.array_equal(bank[k, :labels], bank[0, :labels]) for k in range(5))
  assert all(not np.array_equal(bank[k, labels:], bank[0, labels:]) for k in range(1, 5))


def test_the_multi_task_overlay_trains_one_prompt_per_task_of_the_mixture(train_arguments):
  args = train_arguments(['configs/super_glue/mixture.gin', 'gin/prompts/multi_task.gin'])
  assert args['prompt_bank'] == 'tasks'
  tasks = seqio.get_mixture_or_task('taskless_super_glue_v102_proportional').tasks
  assert args['model'].module.prompt_config.num_prompts == len(tasks) > 1
