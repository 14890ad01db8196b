"""`python -m prompt_tuning.plan`: does this run fit on that TPU slice, and how fast could it go?

Compiles the configured run's real train step (and eval's decode step) for
`--topology` with libtpu's own compiler, here, without a TPU: no weights are
read or allocated. Takes the train/eval gin files and flags (`--gin_file`,
`--gin.NAME=VALUE`, `--gin_search_paths`, `--dry_run`), plus:

  --topology=v3-32   a Cloud TPU slice (v2-8 ... v6e-256; see planning/chips.py) or cpu-N
  --mesh=2x16        data x model devices; default: the gin partitioning when it sets one,
                     else the smallest model axis whose frozen weights take half a device
  --search           every data x model split, scan on/off, remat where needed; fastest first

Prints the plan per device (frozen weights, prompt and optimizer state,
temporaries and peak against HBM, FLOPs, collectives, a roofline step time).
A run that does not fit ends in one line `error: does not fit ...` saying
what to change (exit status 2), as does a wrong setting.
"""

import dataclasses
import os

# The planner compiles for libtpu's compile-only devices and never runs on an accelerator:
# JAX's default backend stays the CPU, so no TPU is probed (or locked) on a TPU host either.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from prompt_tuning import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from prompt_tuning.errors import UserError  # pylint: disable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string('topology', None, 'The slice to plan for: a Cloud TPU accelerator type '
                    '(v2-8, v3-8, v3-32, v4-8, v4-32, v5e-16, v5p-8, v6e-8, ...) or cpu-N.')
flags.DEFINE_string('mesh', None, 'DATAxMODEL devices, e.g. 2x16 (default: the gin file\'s '
                    'partitioning, else the smallest model axis that holds the frozen weights).')
flags.DEFINE_bool('search', False, 'Try every data x model split, scan on and off, remat where '
                  'needed; print those that fit, fastest first.')
flags.DEFINE_bool('decode', True, 'Also compile the decode step of eval and infer.')
FLAGS = flags.FLAGS

REQUIRED_MACROS = ('MIXTURE_OR_TASK_NAME', 'TASK_FEATURE_LENGTHS')
# After the gin files: the planner writes nothing, so MODEL_DIR need not be given, and reads
# nothing, so the prompt starts random rather than from the checkpoint's embeddings (its
# values change nothing that is compiled).
COMMAND_BINDINGS = ('MODEL_DIR = None', 'PROMPT_INIT = @prompts.random_uniform()')
# Which command's bindings describe the run, and the name of its dataset parameter.
RUN_COMMANDS = (('train_script.train', 'train_dataset_cfg'), ('eval_script.evaluate', 'dataset_cfg'),
                ('infer_script.infer', 'dataset_cfg'))


class DoesNotFit(UserError):
  """The configured run does not fit on the slice."""


def _is_training() -> bool:
  import gin  # pylint: disable=g-import-not-at-top
  return bool(gin.get_bindings('train_script.train', resolve_references=False))


def _check_settings() -> None:
  from prompt_tuning import commands  # pylint: disable=g-import-not-at-top
  (commands.check_train_settings if _is_training() else commands.check_eval_settings)()


def configured_run():
  """(model, optimizer or None, run config, dataset config) of the gin files' command."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.runtime import run_setup  # pylint: disable=g-import-not-at-top
  for selector, dataset in RUN_COMMANDS:
    if gin.get_bindings(selector, resolve_references=False):
      bound = gin.get_bindings(selector)
      model, dataset_config = bound['model'], bound[dataset]
      if bound.get('prompt_bank') == 'ensemble' or bound.get('ensemble'):
        # Every example runs once per member: the steps see BATCH_SIZE * K rows.
        dataset_config = dataclasses.replace(
            dataset_config, batch_size=dataset_config.batch_size * model.prompt_bank_size)
      return (model, bound.get('optimizer'), bound.get('run_cfg', run_setup.RunConfig()),
              dataset_config)
  raise cli.CommandLineError('The gin files configure no run: pass a recipe, or a model file '
                             'and gin/runs/prompt_finetune.gin (or prompt_eval.gin).')


def _gin_sets_partitioning() -> bool:
  import gin  # pylint: disable=g-import-not-at-top
  return any(gin.get_bindings('partitioning.Partitioner', resolve_references=False).get(key)
             not in (None, 1) for key in ('num_partitions', 'mesh_shape'))


def main() -> None:
  from prompt_tuning.planning import aot, chips, report  # pylint: disable=g-import-not-at-top
  if not FLAGS.topology:
    raise cli.CommandLineError('--topology is required, e.g. --topology=v3-32 or --topology=cpu-8.')
  topology = chips.parse(FLAGS.topology)
  import jax  # pylint: disable=g-import-not-at-top
  if topology.chip is None:
    jax.config.update('jax_num_cpu_devices', topology.num_devices)
  else:  # a persistent cache cannot load programs compiled for devices this host lacks
    jax.config.update('jax_enable_compilation_cache', False)
  if not cli.parse_gin(REQUIRED_MACROS, _check_settings, command_bindings=COMMAND_BINDINGS):
    return
  model, optimizer, run_config, dataset_config = configured_run()
  if FLAGS.search:
    plans = aot.search(model, optimizer, run_config, dataset_config, topology,
                       decode=FLAGS.decode)
    print(f'{topology.name}, batch {dataset_config.batch_size}: every split tried, fitting ones '
          'fastest first')
    print(report.table(plans))
    if not plans[0].fits:
      raise DoesNotFit(f'no split fits on {topology.name}; try a smaller BATCH_SIZE or a '
                       'larger slice.')
    print('\nthe fastest:\n' + report.full(plans[0]))
    return
  if FLAGS.mesh:
    mesh_shape = chips.mesh_shape(FLAGS.mesh, topology.num_devices)
  elif _gin_sets_partitioning():
    mesh_shape = None
  else:
    mesh_shape = aot.smallest_model_axis(model, run_config, dataset_config, topology)
  plan = aot.plan(model, optimizer, run_config, dataset_config, topology, mesh_shape,
                  decode=FLAGS.decode)
  if not plan.fits:
    raise DoesNotFit(report.why_not(plan))
  print(report.full(plan))


def console_main() -> None:
  cli.run(main)


if __name__ == '__main__':
  console_main()
