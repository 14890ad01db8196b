"""The planner compiles the runtime's own train and decode steps for TPU slices and CPU meshes.

TPU slices need libtpu (`pip install "jax[tpu]"`, in the test extra); without
it those tests skip, saying so. Models are tiny or narrow, so each compile
takes seconds; the paper's sizes are planned by benchmarks/plan_table.py.
"""

import dataclasses
import importlib.util
import math
import re
import sys
from typing import List

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import seqio

import runtime_helpers as h
from prompt_tuning import checkpoints
from prompt_tuning.models import prompted, t5
from prompt_tuning.planning import aot, chips, flops
from prompt_tuning.runtime import inputs, optimizer, partitioning, run_setup
from prompt_tuning.runtime.model import EncoderDecoderModel
from prompt_tuning.runtime.trainer import Trainer

HAS_LIBTPU = importlib.util.find_spec('libtpu') is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU,
                                  reason='libtpu is not installed: pip install "jax[tpu]" '
                                  '(the test extra has it) to compile for TPU slices')

LENGTHS = {'inputs': 12, 'targets': 4}
BATCH = 8


def toy_model(size: str = 'tiny', prompt_length: int = 4, **fields) -> EncoderDecoderModel:
  config = t5.config_for_size(size, dtype=jnp.bfloat16, **fields)
  module = prompted.PromptedT5(config, prompt_config=prompted.PromptConfig(length=prompt_length))
  return EncoderDecoderModel(module, seqio.PassThroughVocabulary(config.vocab_size, 1))


def toy_data(batch_size: int = BATCH, lengths=LENGTHS) -> inputs.DatasetConfig:
  return inputs.DatasetConfig(h.TASK, lengths, batch_size=batch_size, module='toy_tasks')


RUN = run_setup.RunConfig(frozen_dtype=jnp.bfloat16)


def test_the_abstract_parameters_and_state_are_the_real_ones_shape_for_shape():
  model, data = toy_model(scan_layers=True), toy_data()
  layout = run_setup.lay_out(model, RUN, data, devices=jax.devices()[:1])
  real = run_setup.set_up(model, RUN, data, devices=jax.devices()[:1])
  described = lambda tree: jax.tree_util.tree_map(lambda x: (x.shape, x.dtype, x.sharding), tree)
  assert described(layout.abstract_params()) == described(real.params())
  trainer = real.trainer(optimizer.adafactor())
  abstract_trainable = optimizer.split(layout.abstract_params(), layout.labels)[0]
  assert (described(trainer.abstract_state(abstract_trainable, 0))
          == described(real.initial_state(trainer)))


def test_the_planner_compiles_the_trainers_step_with_the_layouts_shardings(monkeypatch):
  seen = {}
  jit_train_step = Trainer.jit_train_step

  def spy(trainer, state_shardings):
    seen['frozen'] = trainer.frozen_shardings
    return jit_train_step(trainer, state_shardings)

  monkeypatch.setattr(Trainer, 'jit_train_step', spy)
  model, data = toy_model(), toy_data()
  plan = aot.plan(model, optimizer.adafactor(), RUN, data, chips.parse('cpu-1'), decode=False)
  layout = run_setup.lay_out(model, RUN, data, devices=jax.devices()[:1])
  assert plan.fits and seen['frozen'] == optimizer.split(layout.shardings, layout.labels)[1]


def _bare_shapes_bytes(model: EncoderDecoderModel, dtype) -> int:
  """Bytes of the frozen bare model, from the checkpoint readers' own table of shapes."""
  shapes = checkpoints.model_shapes(model.module.config)
  return sum(math.prod(shape) for shape in shapes.values()) * np.dtype(dtype).itemsize


def test_on_a_cpu_mesh_argument_bytes_are_frozen_weights_state_and_batch():
  model, data = toy_model(), toy_data()
  plan = aot.plan(model, optimizer.adafactor(), RUN, data, chips.parse('cpu-1'), decode=False)
  assert plan.frozen_bytes == _bare_shapes_bytes(model, jnp.bfloat16)
  prompt = 4 * model.module.config.emb_dim * 4  # [P, H] float32
  batch = sum(BATCH * length * 4 for length in (12, 4, 4, 4))  # int32 features
  # The step's int32 counter and [2] uint32 dropout key; Adafactor's two int32 counts, its
  # float32 learning rate and, for a prompt under 128 x 128, an unfactored [P, H] second
  # moment (its factored row and column statistics go unused, and jit drops unused arguments).
  state = 4 + 8 + 4 + 4 + 4 + prompt
  assert plan.train.argument_bytes == plan.frozen_bytes + prompt + batch + state


@needs_libtpu
def test_a_v3_8_plan_splits_the_frozen_weights_over_the_model_axis():
  model, data = toy_model(**h.TOY_MODEL), toy_data()
  plan = aot.plan(model, optimizer.adafactor(), RUN, data, chips.parse('v3-8'), (2, 4))
  assert plan.topology.num_devices == 8 and plan.mesh_shape == (2, 4)
  assert plan.fits and plan.train and plan.decode
  # Every kernel with a heads, mlp or vocab axis is split four ways; the rest is replicated.
  assert _bare_shapes_bytes(model, jnp.bfloat16) / 4 < plan.frozen_bytes
  assert plan.frozen_bytes < _bare_shapes_bytes(model, jnp.bfloat16) / 2
  # TPU layouts pad small arrays to their tiles: the compiler holds at least the shards.
  assert plan.train.argument_bytes >= plan.frozen_bytes + plan.trainable_bytes
  assert 'all-reduce' in plan.train.collectives


@needs_libtpu
def test_train_flops_of_a_scanned_stack_count_every_layer_as_the_formula_does():
  # Matmul-heavy: 256 wide with 64-dim heads, so the formula's matmuls dominate the step.
  # XLA counts the scanned body once: uncounted, the 4 layers of a stack would show as 1.
  fields = dict(emb_dim=256, num_heads=4, head_dim=64, mlp_dim=512, num_encoder_layers=4,
                num_decoder_layers=4, scan_layers=True)
  data = toy_data(lengths={'inputs': 124, 'targets': 8})
  plan = aot.plan(toy_model(**fields), optimizer.adafactor(), RUN, data, chips.parse('v5e-4'),
                  (4, 1), decode=False)
  exact = flops.train_step_flops(toy_model(**fields).module.config, BATCH, 124, 4, 8).exact
  assert plan.formula_flops == exact
  assert 1.0 <= plan.train.flops * 4 / exact < 1.1
  assert plan.train.xla_flops * 4 / exact < 0.5


@needs_libtpu
def test_a_program_too_large_for_hbm_is_refused_by_the_tpu_compiler():
  model, data = toy_model(**h.TOY_MODEL), toy_data(4096, {'inputs': 2048, 'targets': 4})
  plan = aot.plan(model, optimizer.adafactor(), RUN, data, chips.parse('v5e-4'), (4, 1),
                  decode=False)
  assert not plan.fits and 'RESOURCE_EXHAUSTED' in plan.refused


@needs_libtpu
def test_search_lists_fitting_splits_fastest_first():
  plans = aot.search(toy_model(**h.TOY_MODEL), optimizer.adafactor(), RUN, toy_data(4),
                     chips.parse('v5e-4'), scans=(True,), decode=False)
  assert {p.mesh_shape for p in plans} == {(4, 1), (2, 2), (1, 4)}
  times = [p.roofline_seconds for p in plans]
  assert all(p.fits for p in plans) and times == sorted(times)


def test_topology_names_map_to_slices_and_bad_ones_name_the_flag():
  assert [(t.num_devices, t.num_chips, t.topology_name)
          for t in map(chips.parse, ('v3-32', 'v4-8', 'v5e-16', 'v5p-8', 'v2-8'))] == [
              (32, 16, 'v3:4x4'), (4, 4, 'v4:2x2x1'), (16, 16, 'v5e:4x4'), (4, 4, 'v5:2x2x1'),
              (8, 4, 'v2:2x2')]
  assert chips.parse('cpu-8').num_devices == 8
  with pytest.raises(chips.TopologyError, match=r'^--topology=v3-7: expected cpu-N or a TPU'):
    chips.parse('v3-7')
  with pytest.raises(chips.TopologyError, match=r'^--mesh=3x3: 3 x 3 devices, but the topology'):
    chips.mesh_shape('3x3', 8)


PLAN_GIN = ('gin/models/t5_1_1_prompt.gin', 'gin/models/sizes/tiny.gin',
            'gin/runs/prompt_finetune.gin')
TOY_MACROS = {'MIXTURE_OR_TASK_NAME': repr(h.TASK), 'MIXTURE_OR_TASK_MODULE': "'toy_tasks'",
              'TASK_FEATURE_LENGTHS': repr(LENGTHS), 'BATCH_SIZE': str(BATCH),
              'PROMPT_LENGTH': '4', 'VOCABULARY': '@seqio.PassThroughVocabulary()',
              'seqio.PassThroughVocabulary.size': '128',
              'seqio.PassThroughVocabulary.eos_id': '1', 'TRAIN_STEPS': '1',
              'INITIAL_CHECKPOINT_PATH': 'None'}


def _plan_command(*flags: str, **macros: str) -> List[str]:
  return h.cli_command('plan', PLAN_GIN, {**TOY_MACROS, **macros}, *flags)


# The README's command: XXL at the paper's BoolQ settings on 16 v3 chips, as its files set it.
# The train step only: it is what needs remat, and the decode step would add a third to the time.
XXL_ON_V3_32 = [sys.executable, '-m', 'prompt_tuning.plan',
                '--gin_file=gin/models/t5_1_1_xxl_prompt.gin',
                '--gin_file=configs/super_glue/boolq.gin', '--topology=v3-32', '--decode=false']


@pytest.fixture(scope='module')
def plan_commands(tmp_path_factory):
  """{name: completed process} of the module's `python -m prompt_tuning.plan` commands.

  One child runs them one after another (`h.start_serving`), each with fresh flags and gin.
  The CPU plan goes first: it sets the number of CPU devices, which JAX reads once.
  """
  commands = {'cpu_mesh': _plan_command('--topology=cpu-2', '--mesh=1x2', '--decode=false')}
  if HAS_LIBTPU:
    commands['too_large'] = _plan_command('--topology=v3-8', '--mesh=8x1', MODEL_SIZE="'xxl'")
    commands['xxl'] = XXL_ON_V3_32
  return h.start_serving(commands, tmp_path_factory.mktemp('plan'))(timeout=600)


def test_the_command_plans_a_cpu_mesh_of_the_devices_it_names(plan_commands):
  done = plan_commands['cpu_mesh']
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'cpu-2: 2 CPU devices, mesh data x model = 1x2' in done.stdout
  assert done.stdout.rstrip().endswith('fits')


@needs_libtpu
def test_a_run_that_cannot_fit_exits_with_one_line_naming_what_to_change(plan_commands):
  done = plan_commands['too_large']
  assert done.returncode == 2
  (line,) = done.stderr.strip().splitlines()
  assert line.startswith('error: does not fit on v3-8 (mesh 8x1, scan off, remat none): the '
                         'frozen weights alone need 41.')
  assert '--search' in line and 'remat' in line and '--mesh=DATAxMODEL' in line


@needs_libtpu
def test_xxl_fits_on_16_v3_chips_as_its_model_file_sets_it(plan_commands):
  done = plan_commands['xxl']
  assert done.returncode == 0, done.stderr[-2000:]
  out = done.stdout
  # The smallest model axis that holds XXL's bfloat16 weights in half a 16 GiB core: 4.
  assert re.match(r'v3-32: 32 devices on 16 \S*v3\S* chips \(v3:4x4\), mesh data x model = 8x4, '
                  r'scan on, remat full\n', out), out
  # 11.3e9 frozen parameters in bfloat16, split 4 ways: about 5.2 GiB per core.
  frozen = re.search(r'frozen weights\s+([0-9.]+) GiB', out)
  assert frozen and 5.0 < float(frozen.group(1)) < 5.6, out
  assert out.rstrip().endswith('fits')


def test_an_ensemble_is_planned_with_a_row_per_example_and_member():
  from prompt_tuning import plan as plan_command  # pylint: disable=g-import-not-at-top
  h.parse_gin((PLAN_GIN[0], 'gin/prompts/ensemble.gin', *PLAN_GIN[1:]),
              {**TOY_MACROS, 'MODEL_DIR': "'/tmp/unused'", 'ENSEMBLE_SIZE': '3'})
  model, tx, run_config, dataset_config = plan_command.configured_run()
  assert model.prompt_bank_size == 3 and dataset_config.batch_size == 3 * BATCH
  # The step the planner compiles, traced on what it compiles it with (rows carry their member).
  layout = run_setup.lay_out(model, run_config, dataset_config, devices=jax.devices()[:1])
  batch = aot.abstract_batch(layout)
  assert batch['prompt_index'].shape == (3 * BATCH,)
  trainer = layout.trainer(tx)
  trainable, frozen = optimizer.split(layout.abstract_params(), layout.labels)
  _, metrics = jax.eval_shape(trainer.train_step, trainer.abstract_state(trainable, 0), frozen,
                              batch)
  assert metrics['prompt_target_tokens'].shape == (3,)
