"""What the train, eval and infer commands share: T5X's flags, `--gin.NAME=VALUE`, multi-host set-up.

Thin on purpose: parse flags and gin, start `jax.distributed` when asked,
then hand over to a library function. User errors end in one line.
"""

import os
import sys
from typing import Callable, List, Sequence

from absl import app, flags, logging

from prompt_tuning.errors import Preempted, UserError

flags.DEFINE_multi_string('gin_file', [], 'Gin files, in order; later files override earlier ones. '
                          'Paths are tried as given, then under --gin_search_paths and the '
                          "package's gin/ and configs/ folders.")
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings; `--gin.NAME=VALUE` is the same as '
                          '`--gin_bindings="NAME=VALUE"`.')
flags.DEFINE_list('gin_search_paths', [], 'Extra folders in which to look for gin files.')
flags.DEFINE_string('tfds_data_dir', None, 'Where TFDS datasets are prepared (local or gs://).')
flags.DEFINE_bool('multiprocess', False, 'Call jax.distributed.initialize(); on TPU pods and '
                  'managed clusters it needs no other flag.')
flags.DEFINE_bool('multiprocess_gpu', False, 'As --multiprocess (T5X name).')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for --multiprocess.')
flags.DEFINE_integer('process_count', None, 'Number of processes, for --multiprocess.')
flags.DEFINE_integer('process_index', None, 'This process, for --multiprocess.')
flags.DEFINE_bool('dry_run', False, 'Parse the gin files and bindings, check the required macros, '
                  'print the resulting config and stop: nothing is read, trained or written.')

FLAGS = flags.FLAGS



def rewrite_gin_args(argv: Sequence[str]) -> List[str]:
  """`--gin.NAME=VALUE` -> `--gin_bindings=NAME = VALUE` (absl flags cannot have dotted names)."""
  rewritten = []
  for arg in argv:
    if arg.startswith('--gin.'):
      name, sep, value = arg[len('--gin.'):].partition('=')
      if not sep:
        raise app.UsageError(f'{arg}: expected --gin.NAME=VALUE.')
      arg = f'--gin_bindings={name} = {value}'
    rewritten.append(arg)
  return rewritten


def initialize_distributed() -> None:
  """Joins the other processes of a multi-host run (GSPMD over all their devices)."""
  if not (FLAGS.multiprocess or FLAGS.multiprocess_gpu or FLAGS.coordinator_address):
    return
  import jax  # pylint: disable=g-import-not-at-top
  jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                             num_processes=FLAGS.process_count, process_id=FLAGS.process_index)
  logging.info('Process %d of %d, %d local and %d global devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def parse_gin(required_macros: Sequence[str]) -> bool:
  """Parses --gin_file and the bindings, then checks that the required macros are set.

  Returns whether to go on: with --dry_run it prints the config and returns False.
  """
  from prompt_tuning import gin_config  # pylint: disable=g-import-not-at-top
  if FLAGS.tfds_data_dir:
    import seqio  # pylint: disable=g-import-not-at-top
    seqio.set_tfds_data_dir_override(FLAGS.tfds_data_dir)
  gin_config.parse(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.gin_search_paths)
  gin_config.require_macros(required_macros)
  if FLAGS.dry_run:
    import gin  # pylint: disable=g-import-not-at-top
    print(gin.config_str())
    return False
  return True


def run(main: Callable[[], None]) -> None:
  """Runs `main` under absl with T5X's flag conventions; user errors exit with one line."""

  def absl_main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    if not FLAGS['verbosity'].present:
      # The console shows progress lines; --verbosity=0 brings back every INFO log line.
      logging.set_verbosity(logging.WARNING)
    try:
      main()
    except UserError as e:
      logging.debug('Full traceback of the error below:', exc_info=True)
      message = str(e).splitlines()[0] if str(e) else type(e).__name__
      print(f'error: {message}', file=sys.stderr)
      sys.exit(2)
    except Preempted as e:
      print(str(e), file=sys.stderr)
      sys.exit(e.exit_code)

  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  app.run(absl_main, argv=rewrite_gin_args(sys.argv))
