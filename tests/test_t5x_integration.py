"""Prompt tuning under the real T5X (`python -m t5x.train/eval/infer` with gin/t5x/ files).

Runs the unmodified T5X snapshots of ../shared/vendor in child processes, on
the tiny T5X-trained fixture model (../shared/fixtures/t5x_tiny_copy) and the
toy parity task. Each command runs once per module; several tests check its
outputs.
"""

import json
import re
import shlex
import shutil
import sys

import flax
import numpy as np
import pytest
from flax import serialization

import runtime_helpers as h
from prompt_tuning.checkpoints import loader

SHARED = h.REPO_ROOT.parent / 'shared'
VENDOR = SHARED / 'vendor'
FROZEN = SHARED / 'fixtures' / 't5x_tiny_copy' / 'legacy' / 'checkpoint_20'
pytestmark = pytest.mark.skipif(
    not (VENDOR / 't5x').is_dir() or not FROZEN.is_dir(),
    reason='needs the T5X snapshots in ../shared/vendor and ../shared/fixtures/t5x_tiny_copy')

STEPS = 3
PROMPT_FILE_NAME = 'encoder.prompt.prompt.prompt.npy'
# The fixture's model: the tiny preset with T5X's default relative-position buckets.
MODEL_FIELDS = {'num_heads': 4, 'head_dim': 3, 'relative_attention_num_buckets': 32,
                'relative_attention_max_distance': 128}
TASK = {'MIXTURE_OR_TASK_NAME': "'toy_parity'", 'MIXTURE_OR_TASK_MODULE': "'toy_tasks'",
        'TASK_FEATURE_LENGTHS': "{'inputs': 12, 'targets': 4}", 'BATCH_SIZE': '8',
        'PROMPT_LENGTH': '4', 'DROPOUT_RATE': '0.0', 'RANDOM_SEED': '0',
        'LOSS_NORMALIZING_FACTOR': "'NUM_REAL_TARGET_TOKENS'"}

# What a T5X user's own gin file adds: the toy task's vocabulary and the fixture's shape.
TOY_GIN = """
from __gin__ import dynamic_registration
import seqio
from prompt_tuning.models import t5
VOCABULARY = @seqio.PassThroughVocabulary()
seqio.PassThroughVocabulary.size = 128
seqio.PassThroughVocabulary.eos_id = 1
MODEL_SIZE = 'tiny'
""" + ''.join(f't5.config_for_size.{k} = {v}\n' for k, v in MODEL_FIELDS.items()) + ''.join(
    f'{k} = {v}\n' for k, v in TASK.items())

EVAL_GIN = """
from __gin__ import dynamic_registration
from t5x import utils
utils.DatasetConfig.batch_size = 8
"""

TRAIN_GIN = """
from __gin__ import dynamic_registration
import __main__ as train_script
from t5x import utils
train_script.train.infer_eval_dataset_cfg = None
train_script.train.train_eval_dataset_cfg = None
train_script.train.stats_period = 1
train/utils.DatasetConfig.shuffle = False
utils.SaveCheckpointConfig.period = 2
EVAL_PERIOD = 2
"""


def readme_commands():
  """{'train' | 'eval' | 'infer': the arguments of the README's `python -m t5x.<script>` line}."""
  section = (h.REPO_ROOT / 'README.md').read_text().split('\n## With T5X\n', 1)[1]
  section = section.split('\n## ', 1)[0]
  commands = {}
  for block in re.findall(r'```sh\n(.*?)```', section, flags=re.DOTALL):
    for line in block.splitlines():
      words = shlex.split(line)
      if words[:2] == ['python', '-m'] and words[2].startswith('t5x.'):
        commands[words[2][4:]] = words[3:]
  return commands


README_COMMANDS = readme_commands()


VENDOR_PATHS = [str(VENDOR / name) for name in ('t5x', 'airio', 'jestimator')]


def t5x_command(script, gin_files, macros, readme=False):
  """`python -m t5x.<script>` (run from the repository root).

  With `readme`, the README's command as written, then `gin_files` and `macros`, which
  override its task, frozen checkpoint and folders with the toy ones (later ones win).
  """
  given = README_COMMANDS[script] if readme else [f'--gin_search_paths={h.REPO_ROOT}']
  return [sys.executable, '-m', f't5x.{script}', *given,
          *[f'--gin_file={f}' for f in gin_files],
          *[f'--gin.{name}={value}' for name, value in macros.items()]]


def checkpoint_params(path) -> dict:
  """{'/'-joined path: array} of a T5X checkpoint, read by the project's own readers."""
  checkpoint = loader.open_checkpoint(str(path))
  paths = list(checkpoint.shapes(False))
  params = checkpoint.read_all(np.float32, None, False, paths=paths)
  return flax.traverse_util.flatten_dict(params, sep='/')


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  directory = tmp_path_factory.mktemp('t5x')
  (directory / 'toy.gin').write_text(TOY_GIN)
  (directory / 'train_toy.gin').write_text(TRAIN_GIN)
  (directory / 'eval_toy.gin').write_text(EVAL_GIN)
  # One starting prompt for both runtimes, so that their losses can be compared.
  prompt = np.random.default_rng(0).uniform(-0.5, 0.5, (4, 8)).astype(np.float32)
  np.save(directory / 'start.npy', prompt)
  return directory


@pytest.fixture(scope='module')
def frozen():
  return checkpoint_params(FROZEN)


def t5x_train_command(workdir, name, *extra_gin, **macros):
  """The README's `t5x.train` on the toy task: 3 steps from the fixture and the start prompt,
  saving at steps 2 and 3, into `workdir/name`."""
  return t5x_command('train', [
      'gin/t5x/prompts/from_file.gin', *extra_gin, str(workdir / 'toy.gin'),
      str(workdir / 'train_toy.gin')], {
          **TASK, 'MODEL_DIR': repr(str(workdir / name)), 'TRAIN_STEPS': str(STEPS),
          'INITIAL_CHECKPOINT_PATH': repr(str(FROZEN)),
          'PROMPT_FILE': repr(str(workdir / 'start.npy')), **macros}, readme=True)


def t5x_eval_command(workdir, name, run_gin, **macros):
  """`t5x.eval` of the validation split into `workdir/name` (the README's command when
  `run_gin` is None)."""
  gin_files = [] if run_gin is None else ['gin/t5x/models/t5_1_1_small_prompt.gin', run_gin]
  return t5x_command('eval', [*gin_files, str(workdir / 'toy.gin'), str(workdir / 'eval_toy.gin')],
                     {**TASK, 'EVAL_OUTPUT_DIR': repr(str(workdir / name)), **macros},
                     readme=run_gin is None)


MISSING = 'decoder/logits_dense/kernel'


def checkpoint_missing_an_array(workdir):
  """The fixture without `decoder/logits_dense/kernel` (its array and its msgpack entry)."""
  checkpoint = workdir / 'incomplete' / 'checkpoint_20'
  shutil.copytree(FROZEN, checkpoint)
  shutil.rmtree(checkpoint / f'target.{MISSING.replace("/", ".")}')
  contents = serialization.msgpack_restore((checkpoint / 'checkpoint').read_bytes())
  del contents['optimizer']['target']['decoder']['logits_dense']
  (checkpoint / 'checkpoint').write_bytes(serialization.msgpack_serialize(contents))
  return checkpoint


def project_macros(model_dir, prompt_file, **overrides):
  """Bindings of the project's CLI for the toy task on the fixture, with the prompt of a file."""
  return {**TASK, **{f't5.config_for_size.{k}': str(v) for k, v in MODEL_FIELDS.items()},
          'VOCABULARY': '@seqio.PassThroughVocabulary()',
          'seqio.PassThroughVocabulary.size': '128', 'seqio.PassThroughVocabulary.eos_id': '1',
          'MODEL_DIR': repr(str(model_dir)), 'INITIAL_CHECKPOINT_PATH': repr(str(FROZEN)),
          'PROMPT_FILE': repr(str(prompt_file)), 'EVAL_STEPS': 'None', **overrides}


@pytest.fixture(scope='module')
def mesh_runs(workdir):
  """{name: completed process} of the module's two runs on a 2x2 mesh of simulated devices.

  `python -m t5x.train` (with gin/t5x/partitioning/model_parallel.gin) and
  `python -m prompt_tuning.train`, one after another in one child
  (`h.start_serving`), on the same data, start prompt and optimizer settings.
  """
  macros = project_macros(workdir / 'project_run', workdir / 'start.npy', TRAIN_STEPS=str(STEPS),
                          LEARNING_RATE='0.3', SHUFFLE_TRAIN_EXAMPLES='False', LOG_EVERY='1',
                          EVAL_PERIOD='0', SAVING_PERIOD=str(STEPS), MODEL_PARALLEL_PARTITIONS='2')
  gin_files = (h.MODEL_GIN[0], 'gin/prompts/from_file.gin', *h.TRAIN_GIN[1:],
               'gin/partitioning/model_parallel.gin')
  commands = {  # T5X's first: see the end of `t5x_runs`
      't5x': t5x_train_command(workdir, 't5x_mesh', 'gin/t5x/partitioning/model_parallel.gin',
                               MODEL_PARALLEL_PARTITIONS='2'),
      'project': h.cli_command('train', gin_files, macros),
  }
  folder = workdir / 'mesh_runs'
  folder.mkdir()
  return h.start_serving(commands, folder, devices=4, extra_paths=VENDOR_PATHS)(timeout=600)


@pytest.fixture(scope='module')
def project_train(workdir, mesh_runs):
  """The project's run on the 2x2 mesh (which gives the losses of one device); the validation
  split is decoded at the end."""
  succeeded(mesh_runs, 'project')
  return workdir / 'project_run'


def project_prompt(project_train):
  return project_train / 'numpy_checkpoints' / f'checkpoint_{STEPS}' / PROMPT_FILE_NAME


@pytest.fixture(scope='module')
def t5x_runs(workdir, project_train):
  """{name: completed process} of every one-device command of the module.

  They run one after another in one child process (`h.start_serving`), as
  `python -m t5x.<script>` / `python -c` would: T5X's own flags, gin config
  and `__main__` code anew for each.
  """
  trained = workdir / 't5x_run' / f'checkpoint_{STEPS}'
  exported = workdir / 't5x_run' / 'numpy_checkpoints' / f'checkpoint_{STEPS}' / PROMPT_FILE_NAME
  commands = {
      'checks': [sys.executable, '-c', CHECKS, str(FROZEN), json.dumps(MODEL_FIELDS)],
      # Stopped after step 2, then resumed in the same MODEL_DIR up to step 3.
      'train_to_2': t5x_train_command(workdir, 't5x_run', TRAIN_STEPS='2'),
      'train': t5x_train_command(workdir, 't5x_run'),
      'optax': t5x_train_command(workdir, 't5x_optax', 'gin/t5x/optimizers/optax_adafactor.gin'),
      'missing_array': t5x_command('train', [
          'gin/t5x/models/t5_1_1_small_prompt.gin', 'gin/t5x/runs/prompt_finetune.gin',
          str(workdir / 'toy.gin'), str(workdir / 'train_toy.gin')], {
              'MODEL_DIR': repr(str(workdir / 'refused')), 'TRAIN_STEPS': '1',
              'INITIAL_CHECKPOINT_PATH': repr(str(checkpoint_missing_an_array(workdir)))}),
      # The README's `t5x.eval` and `t5x.infer`, of the T5X-trained checkpoint.
      't5x_eval': t5x_eval_command(workdir, 't5x_eval', None, CHECKPOINT_PATH=repr(str(trained))),
      'infer': t5x_command('infer', [str(workdir / 'toy.gin'), str(workdir / 'eval_toy.gin')],
                           {**TASK, 'INFER_OUTPUT_DIR': repr(str(workdir / 't5x_infer')),
                            'CHECKPOINT_PATH': repr(str(trained))}, readme=True),
      # The project-trained prompt, through prompt_file_eval.gin; also into a scanned model.
      't5x_eval_file': t5x_eval_command(
          workdir, 't5x_eval_file', 'gin/t5x/runs/prompt_file_eval.gin',
          CHECKPOINT_PATH=repr(str(FROZEN)), PROMPT_FILE=repr(str(project_prompt(project_train)))),
      't5x_eval_scanned': t5x_eval_command(
          workdir, 't5x_eval_scanned', 'gin/t5x/runs/prompt_file_eval.gin',
          CHECKPOINT_PATH=repr(str(FROZEN)), PROMPT_FILE=repr(str(project_prompt(project_train))),
          **{'t5.config_for_size.scan_layers': 'True'}),
      # After T5X's scripts: its gin configurables, registered under the names its stacks
      # import, would stay beside theirs.
      'parse': [sys.executable, '-c', PARSE, str(h.REPO_ROOT), str(VENDOR / 't5x'),
                *gin_stacks()],
      # After every T5X script: the project's CLI defines absl flags of the names T5X's scripts
      # define in their `__main__` code (--gin_file, ...), in a module that stays imported.
      'project_eval': h.cli_command('eval', h.PROMPT_FILE_EVAL_GIN,
                                    project_macros(workdir / 'project_eval', exported)),
  }
  return h.start_serving(commands, workdir, extra_paths=VENDOR_PATHS)(timeout=1200)


def succeeded(t5x_runs, name):
  result = t5x_runs[name]
  assert result.returncode == 0, f'{name} exited {result.returncode}:\n{result.stderr[-4000:]}'
  return result


@pytest.fixture(scope='module')
def t5x_train(workdir, t5x_runs):
  succeeded(t5x_runs, 'train_to_2')
  succeeded(t5x_runs, 'train')
  return workdir / 't5x_run'


def test_t5x_train_changes_the_prompt_and_nothing_else(t5x_train, frozen, workdir):
  steps = sorted(int(p.name.split('_')[1]) for p in t5x_train.glob('checkpoint_*'))
  assert STEPS in steps and 2 in steps
  start = np.load(workdir / 'start.npy')
  for step in steps:
    params = checkpoint_params(t5x_train / f'checkpoint_{step}')
    assert set(params) == set(frozen) | {h.PROMPT_PATH}
    for path, value in frozen.items():
      np.testing.assert_array_equal(params[path], value, err_msg=f'{path} at step {step}')
    exported = np.load(t5x_train / 'numpy_checkpoints' / f'checkpoint_{step}' / PROMPT_FILE_NAME)
    np.testing.assert_array_equal(exported, params[h.PROMPT_PATH])
    if step == 0:
      np.testing.assert_array_equal(exported, start)
    else:
      assert np.abs(exported - start).min() > 0, f'the prompt did not change by step {step}'


def test_a_checkpoint_missing_a_frozen_array_is_refused_in_one_line(workdir, t5x_runs):
  result = t5x_runs['missing_array']
  assert result.returncode not in (0, None), result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines() if 'FrozenParameterMissingError' in line]
  assert lines, result.stderr[-3000:]
  assert f'lacks the frozen parameter {MISSING};' in lines[-1]
  assert not list((workdir / 'refused').glob('checkpoint_*'))


def losses(model_dir):
  by_step = h.tensorboard(model_dir / 'train')['loss']
  assert sorted(by_step) == list(range(1, STEPS + 1))
  return [by_step[step] for step in sorted(by_step)]


def test_t5x_train_losses_equal_the_project_runtime_losses(t5x_train, project_train):
  np.testing.assert_allclose(losses(t5x_train), losses(project_train), rtol=1e-5)


def test_t5x_train_on_a_2x2_mesh_gives_the_same_losses(workdir, mesh_runs, project_train):
  succeeded(mesh_runs, 't5x')
  np.testing.assert_allclose(losses(workdir / 't5x_mesh'), losses(project_train), rtol=1e-5)


def test_the_project_optax_optimizer_in_t5x_optax_wrapper_gives_the_same_losses(
    workdir, t5x_runs, t5x_train, frozen):
  succeeded(t5x_runs, 'optax')
  wrapped = workdir / 't5x_optax'
  np.testing.assert_allclose(losses(wrapped), losses(t5x_train), rtol=1e-5)
  params = checkpoint_params(wrapped / f'checkpoint_{STEPS}')
  assert all(np.array_equal(params[path], value) for path, value in frozen.items())


CHECKS = """
import json, sys
import flax, jax, jax.numpy as jnp, numpy as np, seqio, tensorflow as tf
from flax import serialization, traverse_util
from flax.linen import partitioning as flax_partitioning
from prompt_tuning.checkpoints import loader
from prompt_tuning.models import prompted, t5
from prompt_tuning.t5x import checkpoints, features, models, optimizers
from t5x import adafactor

frozen, fixture_fields = sys.argv[1], json.loads(sys.argv[2])
vocabulary = seqio.PassThroughVocabulary(128, eos_id=1)

def module(prompt_fields=None, **fields):
  prompt_config = prompted.PromptConfig(length=3, **(prompt_fields or {}))
  return models.PromptedT5(t5.config_for_size('tiny', **fields), prompt_config=prompt_config)

def model(prompt_fields=None, **fields):
  return models.PromptEncoderDecoderModel(module(prompt_fields, **fields), vocabulary, vocabulary,
                                          optimizers.prompt_only(adafactor.Adafactor(
                                              logical_factor_rules=optimizers.logical_factor_rules())))

def flat(tree):
  return traverse_util.flatten_dict(flax.core.unfreeze(tree), sep='/')

def with_prompt(params, prompt):
  params = flax.core.unfreeze(params)
  return {**params, 'encoder': {**params['encoder'], 'prompt': {'prompt': {'prompt': prompt}}}}

# Jitted, as T5X runs them: op by op, each would compile on its own.
shapes = {'encoder_input_tokens': (2, 5), 'decoder_input_tokens': (2, 3)}
variables = jax.jit(lambda rng: model().get_initial_variables(
    rng, shapes, {'encoder_input_tokens': jnp.float32}))(jax.random.key(0))
axes = flax_partitioning.get_axis_names(variables['params_axes'])
print('prompt axes', tuple(axes['encoder']['prompt']['prompt']['prompt']))
print('params unboxed', all(isinstance(x, jax.Array)
                            for x in jax.tree_util.tree_leaves(variables['params'])))
print('scan_layers', module().scan_layers, module(scan_layers=True).scan_layers)
try:
  jax.eval_shape(lambda: model().get_initial_variables(
      jax.random.key(0), {**shapes, 'encoder_segment_ids': (2, 5)}))
except features.PackingError as e:
  print('packing', e)
per_layer = {'target': flax.core.unfreeze(variables['params'])}
prompt = per_layer['target']['encoder']['prompt']['prompt']['prompt']
legacy = {'target': {**per_layer['target'], 'encoder': {
    **per_layer['target']['encoder'], 'prompt': {'prompt': prompt}}}, 'state': {'step': 7}}
moved = checkpoints.restore_frozen_model(legacy, per_layer)
print('legacy', sorted(moved), moved['target']['encoder']['prompt']['prompt']['prompt'] is prompt)
print('resumed', checkpoints.restore_frozen_model(legacy, per_layer, is_resuming=True) is legacy)

# Scanned <-> per-layer: the fixture's own checkpoint, as T5X hands it to a transformation.
def fixture(scan_layers, prompt_fields=None):
  return model(prompt_fields, scan_layers=scan_layers, **fixture_fields)

tokens = np.array([[21, 57, 90, 33, 1, 0], [64, 23, 1, 0, 0, 0], [99, 40, 71, 1, 0, 0]], np.int32)
targets = np.array([[11, 1], [10, 1], [11, 1]], np.int32)
batch = {'encoder_input_tokens': tokens, 'decoder_target_tokens': targets,
         'decoder_input_tokens': np.pad(targets[:, :-1], ((0, 0), (1, 0))),
         'decoder_loss_weights': np.ones_like(targets)}
batch_shapes = {k: v.shape for k, v in batch.items()}
state = serialization.msgpack_restore(open(f'{frozen}/checkpoint', 'rb').read())['optimizer']
arrays = loader.open_checkpoint(frozen).read_all(np.float32)
start = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 8)).astype(np.float32)
unscanned = with_prompt(arrays, start)

# T5X hands transformations the model's abstract state (shapes and dtypes).
scanned_target = jax.eval_shape(
    lambda: fixture(True).get_initial_variables(jax.random.key(0), batch_shapes))['params']
restored = checkpoints.restore_frozen_model(state, {'target': scanned_target},
                                           checkpoint_path=frozen)
leaves = traverse_util.flatten_dict(restored['target'], is_leaf=lambda _, x: 'kvstore' in x,
                                    sep='/')
converted = {p: x for p, x in leaves.items() if isinstance(x, np.ndarray)}
print('to_scanned', sorted(set(flat(scanned_target)) - set(leaves)),
      all('/layers/' in p for p in converted), converted['decoder/layers/mlp/wo/kernel'].shape)
scanned = with_prompt(traverse_util.unflatten_dict(
    {p: x for p, x in flat(arrays).items() if '/layers_' not in p} | converted, sep='/'), start)
logits = [np.asarray(jax.jit(m._compute_logits)(p, batch)) for m, p in
          ((fixture(False), unscanned), (fixture(True), scanned))]
print('scanned_logits', np.abs(logits[0] - logits[1]).max() < 1e-5)
decodes = [jax.jit(lambda p, b, m=m: m.predict_batch_with_aux(p, b, num_decodes=2,
                                                             return_all_decodes=True))(p, batch)
           for m, p in ((fixture(False), unscanned), (fixture(True), scanned))]
print('scanned_beam', np.array_equal(decodes[0][0], decodes[1][0]),
      np.allclose(decodes[0][1]['scores'], decodes[1][1]['scores'], atol=1e-5))
split = checkpoints.convert_layers({'target': scanned, 'state': {'step': 4}}, {'target': unscanned})
print('to_per_layer', split['state'], sorted(flat(split['target'])) == sorted(flat(unscanned)),
      all(np.array_equal(x, flat(unscanned)[p]) for p, x in flat(split['target']).items()))
del state['target']['decoder']['layers_1']['mlp']['wo']
try:
  checkpoints.restore_frozen_model(state, {'target': scanned_target}, checkpoint_path=frozen)
except checkpoints.FrozenParameterMissingError as e:
  print('missing_layer', e)
try:
  checkpoints.restore_frozen_model(state, {'target': scanned_target})
except checkpoints.LayerConversionError as e:
  print('no_checkpoint_path', e)

# A bank of prompts: each example's prompt_index picks the prompt its single-prompt model has.
bank = np.random.default_rng(1).uniform(-0.5, 0.5, (3, 3, 8)).astype(np.float32)
index = np.array([2, 0, 1], np.int32)
banked = fixture(False, {'num_prompts': 3})
bank_variables = jax.eval_shape(lambda: banked.get_initial_variables(
    jax.random.key(0), {**batch_shapes, 'prompt_index': (3,)}))
print('bank axes', tuple(flax_partitioning.get_axis_names(
    bank_variables['params_axes'])['encoder']['prompt']['prompt']['prompt']))
single = fixture(False)
score, predict = jax.jit(single.score_batch), jax.jit(single.predict_batch)
by_prompt = [(score(with_prompt(arrays, p), batch), predict(with_prompt(arrays, p), batch))
             for p in bank]
def own_prompt(results):  # row i of the results of prompt index[i]
  return np.stack([results[k][i] for i, k in enumerate(index)])

single_scores = own_prompt([scores for scores, _ in by_prompt])
bank_batch, bank_params = {**batch, 'prompt_index': index}, with_prompt(arrays, bank)
print('bank_scores', np.allclose(jax.jit(banked.score_batch)(bank_params, bank_batch),
                                 single_scores, atol=1e-5))
# T5X's loss (no z-loss, smoothing or normalisation here) is the negated sum of the scores.
bank_loss = jax.jit(lambda p, b: banked.loss_fn(p, b, None)[0])(bank_params, bank_batch)
print('bank_loss', np.isclose(bank_loss, -single_scores.sum()))
print('bank_predictions', np.array_equal(jax.jit(banked.predict_batch)(bank_params, bank_batch),
                                         own_prompt([decodes for _, decodes in by_prompt])))

# T5X builds the feature converter from the model class.
converter = models.PromptEncoderDecoderModel.FEATURE_CONVERTER_CLS
lengths = {'inputs': 6, 'targets': 2}
example = {'inputs': [21, 57, 1], 'targets': [11, 1], 'prompt_index': tf.constant(2, tf.int64)}
kept = converter(pack=False)(tf.data.Dataset.from_tensors(example), lengths)
print('converter_kept', kept.element_spec['prompt_index'],
      next(kept.as_numpy_iterator())['prompt_index'])
plain = converter(pack=False)(tf.data.Dataset.from_tensors(
    {k: v for k, v in example.items() if k != 'prompt_index'}), lengths)
print('converter_plain', sorted(plain.element_spec))
try:
  converter(pack=True)(tf.data.Dataset.from_tensors(example), lengths)
except features.PackingError as e:
  print('converter_packed', e)
"""


@pytest.fixture(scope='module')
def checks(t5x_runs):
  """{first word: rest} of the lines CHECKS prints: real T5X model classes."""
  printed = succeeded(t5x_runs, 'checks').stdout
  return dict(line.split(' ', 1) for line in printed.splitlines() if ' ' in line)


def test_t5x_model_adapter_axes_int_tokens_packing_and_legacy_restore(checks):
  assert checks['prompt'] == "axes ('prompt', 'prompt_embed')"
  assert checks['params'] == 'unboxed True'
  assert checks['scan_layers'] == 'False True'
  assert checks['legacy'] == "['target'] True"  # the old prompt path moves; the step is dropped
  assert checks['resumed'] == 'True'
  assert checks['packing'] == ('Packed examples are not supported with a prompt: set '
                               'utils.DatasetConfig.pack = False (gin/t5x/runs/prompt_*.gin do).')


def test_per_layer_and_scanned_checkpoints_restore_into_either_model(checks):
  """The per-layer fixture restores into a scanned model (only the prompt left to T5X's
  fallback), which gives the logits and beam search of the per-layer model; scanned layers
  split back exactly; a missing layer is still a missing frozen parameter."""
  assert checks['to_scanned'] == "['encoder/prompt/prompt/prompt'] True (2, 16, 8)"
  assert checks['scanned_logits'] == 'True'
  assert checks['scanned_beam'] == 'True True'
  assert checks['to_per_layer'] == "{'step': 4} True True"
  assert checks['missing_layer'] == (
      'The initial checkpoint (utils.RestoreCheckpointConfig.path) lacks the frozen parameter '
      'decoder/layers/mlp/wo/kernel; only the prompt may be initialised.')
  assert 'needs the checkpoint folder' in checks['no_checkpoint_path']


def test_a_prompt_bank_under_t5x_gives_each_example_its_own_prompt(checks):
  assert checks['bank'] == "axes ('prompt_bank', 'prompt', 'prompt_embed')"
  assert checks['bank_scores'] == 'True'
  assert checks['bank_loss'] == 'True'
  assert checks['bank_predictions'] == 'True'
  assert checks['converter_kept'] == "TensorSpec(shape=(), dtype=tf.int32, name=None) 2"
  assert checks['converter_plain'] == str(sorted(
      ['encoder_input_tokens', 'decoder_target_tokens', 'decoder_input_tokens',
       'decoder_loss_weights']))
  assert checks['converter_packed'].startswith('Packed examples cannot each keep their '
                                                'prompt_index')


PARSE = """
import sys
import gin
from t5x.eval import evaluate  # what `import __main__ as eval_script` finds
from t5x.infer import infer
from t5x.train import train
for path in sys.argv[1:3]:
  gin.add_config_file_search_path(path)
for stack in sys.argv[3:]:
  gin.clear_config()
  gin.parse_config_files_and_bindings(stack.split(','), [], finalize_config=False)
  print('parsed', stack)
"""


def gin_stacks():
  """Comma-joined stacks of gin files that together include every file of gin/t5x."""
  models = sorted(str(p.relative_to(h.REPO_ROOT))
                  for p in (h.REPO_ROOT / 'gin/t5x/models').glob('t5_1_1_*prompt.gin'))
  stacks = [f'{m},gin/t5x/runs/prompt_finetune.gin' for m in models]
  for folder in ('prompts', 'super_glue'):
    stacks += [f'{models[0]},gin/t5x/{folder}/{p.name},gin/t5x/runs/prompt_finetune.gin'
               for p in sorted((h.REPO_ROOT / 'gin/t5x' / folder).glob('*.gin'))]
  stacks += [f'{models[0]},gin/t5x/models/bfloat16.gin,gin/t5x/optimizers/optax_adafactor.gin,'
             f'gin/t5x/runs/{run}.gin,gin/t5x/decoding/{decoding}.gin,'
             f'gin/t5x/partitioning/{mesh}.gin'
             for run in ('prompt_eval', 'prompt_infer', 'prompt_file_eval')
             for mesh in ('data_parallel', 'model_parallel')
             for decoding in ('greedy', 'beam_search')]
  return stacks


def test_every_t5x_gin_file_parses_under_t5x(t5x_runs):
  printed = succeeded(t5x_runs, 'parse').stdout
  parsed = {f for line in printed.splitlines() if line.startswith('parsed ')
            for f in line.split(' ', 1)[1].split(',')}
  every = {str(p.relative_to(h.REPO_ROOT)) for p in (h.REPO_ROOT / 'gin/t5x').rglob('*.gin')}
  assert parsed and every - parsed == set()


def predictions(jsonl):
  return [(row['input']['inputs'], row['prediction']) for row in h.read_jsonl(jsonl)]


def t5x_predictions(workdir, t5x_runs, name, step):
  """The (input, prediction) pairs that the `t5x.eval` run `name` logged for `step`."""
  succeeded(t5x_runs, name)
  return predictions(workdir / name / 'inference_eval' / f'toy_parity-{step:06}.jsonl')


def test_t5x_eval_and_the_project_eval_agree_on_a_t5x_trained_prompt(t5x_train, t5x_runs,
                                                                      workdir):
  by_t5x = t5x_predictions(workdir, t5x_runs, 't5x_eval', STEPS)
  succeeded(t5x_runs, 'project_eval')
  ours = predictions(workdir / 'project_eval' / 'inference_eval' / 'toy_parity-000000.jsonl')
  assert len(by_t5x) == 32 and by_t5x == ours


def test_t5x_eval_of_a_prompt_trained_by_the_project(project_train, t5x_runs, workdir):
  by_t5x = t5x_predictions(workdir, t5x_runs, 't5x_eval_file', 0)
  ours = predictions(project_train / 'inference_eval' / f'toy_parity-{STEPS:06}.jsonl')
  assert len(by_t5x) == 32 and by_t5x == ours


def test_t5x_eval_of_a_scanned_model_restores_the_per_layer_checkpoint(project_train, t5x_runs,
                                                                       workdir):
  """With `scan_layers`, T5X restores the per-layer fixture through prompt_file_eval.gin's
  transformation: its layers are stacked, not re-initialised by T5X's fallback, so the
  predictions are those of the per-layer model."""
  scanned = t5x_predictions(workdir, t5x_runs, 't5x_eval_scanned', 0)
  ours = predictions(project_train / 'inference_eval' / f'toy_parity-{STEPS:06}.jsonl')
  assert len(scanned) == 32 and scanned == ours


def test_the_readme_shows_t5x_train_eval_and_infer():
  assert sorted(README_COMMANDS) == ['eval', 'infer', 'train']


def test_t5x_infer_predicts_what_t5x_eval_does(t5x_runs, workdir):
  by_eval = t5x_predictions(workdir, t5x_runs, 't5x_eval', STEPS)
  succeeded(t5x_runs, 'infer')
  inferred = h.read_jsonl(workdir / 't5x_infer' / 'toy_parity-predict.jsonl-00000-of-00001')
  assert [row['prediction'] for row in inferred] == [p for _, p in by_eval]
