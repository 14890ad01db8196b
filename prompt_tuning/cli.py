"""What the train, eval and infer commands share: T5X's flags, `--gin.NAME=VALUE`, multi-host set-up.

Thin on purpose: parse flags and gin, start `jax.distributed` when asked,
then hand over to a library function. User errors (`errors.UserError`, a bad
flag, a bad `--gin.NAME=VALUE`) end in one stderr line `error: ...` and exit
status 2; `--verbosity=1` also logs their traceback. Any other exception is a
bug and keeps its traceback. This module imports no TensorFlow or JAX, so that
`--help` answers at once; they are imported after the flags are parsed.
"""

import contextlib
import importlib
import logging as python_logging
import os
import re
import sys
import tempfile
from typing import Callable, Iterator, List, NoReturn, Sequence

# Before TensorFlow is first imported: its C++ logging is read once, at load time.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


from absl import app, flags, logging  # pylint: disable=g-import-not-at-top,wrong-import-position

from prompt_tuning.errors import Preempted, UserError  # pylint: disable=g-import-not-at-top

flags.DEFINE_multi_string('gin_file', [], 'Gin files, in order; later files override earlier ones. '
                          'Paths are tried as given, then under --gin_search_paths and the '
                          "package's gin/ and configs/ folders.")
flags.DEFINE_multi_string('gin_bindings', [], 'Gin bindings, applied after the files. '
                          '`--gin.NAME=VALUE` is the same as `--gin_bindings="NAME = VALUE"`: '
                          "e.g. --gin.MODEL_DIR=\"'/tmp/run'\" sets the macro MODEL_DIR (string "
                          'values keep their quotes), --gin.t5.config_for_size.emb_dim=8 binds a '
                          'parameter. A macro that no gin file uses is an error.')
flags.DEFINE_list('gin_search_paths', [], 'Extra folders in which to look for gin files.')
flags.DEFINE_string('tfds_data_dir', None, 'Where TFDS datasets are prepared (local or gs://); '
                    "the same as --gin.DATA_DIR=\"'DIR'\".")
flags.DEFINE_bool('multiprocess', False, 'Call jax.distributed.initialize(); on TPU pods and '
                  'managed clusters it needs no other flag.')
flags.DEFINE_bool('multiprocess_gpu', False, 'As --multiprocess (T5X name).')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for --multiprocess.')
flags.DEFINE_integer('process_count', None, 'Number of processes, for --multiprocess.')
flags.DEFINE_integer('process_index', None, 'This process, for --multiprocess.')
flags.DEFINE_bool('dry_run', False, 'Parse the gin files and bindings, check the required macros '
                  'and the settings, print the resulting config and stop: nothing is read, '
                  'trained or written.')
# absl's own flag; listed in each command's --help because errors refer to it.
flags.declare_key_flag('verbosity')

FLAGS = flags.FLAGS


class CommandLineError(UserError):
  """A command-line argument is malformed (e.g. `--gin.NAME` without `=VALUE`)."""


def rewrite_gin_args(argv: Sequence[str]) -> List[str]:
  """`--gin.NAME=VALUE` -> `--gin_bindings=NAME = VALUE` (absl flags cannot have dotted names)."""
  rewritten = []
  for arg in argv:
    if arg.startswith('--gin.'):
      name, sep, value = arg[len('--gin.'):].partition('=')
      if not sep or not name:
        raise CommandLineError(f'{arg}: expected --gin.NAME=VALUE, e.g. '
                               "--gin.MODEL_DIR=\"'/tmp/run'\"")
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


def parse_gin(required_macros: Sequence[str], check_settings: Callable[[], None] = lambda: None,
              command_bindings: Sequence[str] = ()) -> bool:
  """Parses --gin_file and the bindings, then checks them before anything is built.

  `command_bindings` are the command's own, applied after the files and
  before the command line's (the planner's: it reads and writes nothing).
  The checks: every macro bound on the command line is used by some gin
  file, the required macros are set, and `check_settings()` (the command's
  own checks of its values) passes. Returns whether to go on: with --dry_run
  it prints the config and returns False.
  """
  from prompt_tuning import gin_config  # pylint: disable=g-import-not-at-top
  # The data dir travels in the dataset configuration (DATA_DIR), like every data setting.
  data_dir = [f'DATA_DIR = {FLAGS.tfds_data_dir!r}'] if FLAGS.tfds_data_dir else []
  gin_config.parse(FLAGS.gin_file, [*command_bindings, *data_dir, *FLAGS.gin_bindings],
                   FLAGS.gin_search_paths)
  gin_config.check_bound_macros_are_used(FLAGS.gin_bindings)
  gin_config.require_macros(required_macros)
  check_settings()
  if FLAGS.dry_run:
    import gin  # pylint: disable=g-import-not-at-top
    print(gin.config_str())
    return False
  return True


# Lines that TensorFlow's and XLA's C++ code writes straight to stderr while TensorFlow loads,
# before any log level applies: informational, or about a GPU that this machine lacks.
_NATIVE_NOISE = re.compile(
    r'WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR'
    r'|^[IWE]\d{4} [\d:. ]+\d+ (?:'
    r'port\.cc:\d+\] oneDNN custom operations are on'
    r'|cudart_stub\.cc:\d+\] Could not find cuda drivers'
    r'|cuda_platform\.cc:\d+\] failed call to cuInit'
    r'|cuda_(?:dnn|fft|blas)\.cc:\d+\] Unable to register cu\w+ factory'
    r'|computation_placer\.cc:\d+\] computation placer already registered)'
    r'|TF-TRT Warning: Could not find TensorRT')


@contextlib.contextmanager
def _native_noise_filtered() -> Iterator[None]:
  """Holds back what native code writes to stderr meanwhile, then passes on all but `_NATIVE_NOISE`.

  Python's own output meanwhile (warnings, logs) is held back and passed on
  too; an exception escapes the block before its traceback is printed.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      verbose = logging.get_verbosity() >= logging.DEBUG
      for line in held.read().decode('utf-8', 'replace').splitlines(keepends=True):
        if verbose or not _NATIVE_NOISE.search(line):
          sys.stderr.write(line)
      sys.stderr.flush()


def _fail(message: str) -> NoReturn:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def report_user_errors(main: Callable[[], None]) -> None:
  """Runs `main`; a UserError becomes one line `error: ...` and exit status 2.

  Its traceback is logged at debug level (--verbosity=1). A preempted run
  exits with `Preempted.exit_code`. Other exceptions pass through untouched.
  """
  try:
    main()
  except UserError as e:
    logging.debug('Full traceback of the error below:', exc_info=True)
    _fail(' '.join(str(e).split('\n', 1)[0].split()) or type(e).__name__)
  except Preempted as e:
    print(str(e).split('\n', 1)[0], file=sys.stderr)
    sys.exit(e.exit_code)


def _parse_flags(argv: List[str]) -> List[str]:
  """absl's flag parsing, with its errors (an unknown or malformed flag) in one line."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(f'{" ".join(str(e).split())} (--help lists the flags)')


def _drop_orbax_thread_tracebacks(record: python_logging.LogRecord) -> bool:
  return not (record.exc_info and f'orbax{os.sep}checkpoint' in record.pathname)


def _drop_gin_search_misses(record: python_logging.LogRecord) -> bool:
  """gin logs "Path not found" for every search folder that lacks a file it looks for.

  A file is looked for under several folders (the working directory first), so
  misses are normal; a file found nowhere is still reported by `gin_config.parse`.
  """
  return not (record.module == 'resource_reader' and str(record.msg).startswith('Path not found'))


def run(main: Callable[[], None]) -> None:
  """Runs `main` under absl with T5X's flag conventions; user errors exit with one line."""

  def absl_main(argv):
    if len(argv) > 1:
      _fail(f'unexpected arguments {argv[1:]}: flags only (--help lists them)')
    python_logging.getLogger().addFilter(_drop_gin_search_misses)
    if not FLAGS['verbosity'].present:
      # The console shows progress lines; --verbosity=0 brings back every INFO log line.
      logging.set_verbosity(logging.WARNING)
      # A failed background write of orbax (a full disk) is logged with its traceback by orbax's
      # thread and by asyncio, then raised to the command, which reports it in one line.
      python_logging.getLogger('asyncio').setLevel(python_logging.CRITICAL)
      python_logging.getLogger('absl').addFilter(_drop_orbax_thread_tracebacks)
    with _native_noise_filtered():
      importlib.import_module('prompt_tuning.gin_config')  # TensorFlow, JAX, seqio
    try:
      report_user_errors(main)
    except app.UsageError as e:
      _fail(str(e))

  try:
    argv = rewrite_gin_args(sys.argv)
  except CommandLineError as e:
    _fail(str(e))
  # --help lists the key flags of the program being run (`python -m` or a console script).
  for flag in FLAGS.get_key_flags_for_module(__name__):
    FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(absl_main, argv=argv, flags_parser=_parse_flags)
