"""The runtime tests' toy runs: one gin configuration, run in this process or through the CLI.

Every runtime test trains the same widened tiny model, whose random frozen
weights come from a checkpoint written here, on the toy parity task
(tests/toy_tasks.py), so that runs made in different ways (in this process,
as the CLI, on a simulated mesh, over two processes) can be compared step by
step. Also: child processes (one of which can run many CLI command lines in
turn), and readers of what runs write. Knows nothing about what the tests
check.
"""

import atexit
import dataclasses
import functools
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import types
from typing import IO, Callable, Dict, List, Mapping, Optional, Sequence

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TESTS_DIR = REPO_ROOT / 'tests'

MODEL_GIN = ('gin/models/t5_1_1_prompt.gin', 'gin/models/sizes/tiny.gin')
TRAIN_GIN = MODEL_GIN + ('gin/runs/prompt_finetune.gin',)
EVAL_GIN = MODEL_GIN + ('gin/runs/prompt_eval.gin',)
INFER_GIN = MODEL_GIN + ('gin/runs/prompt_infer.gin',)
# Evaluation of the prompt in PROMPT_FILE (prompt files go between the model and its size).
PROMPT_FILE_EVAL_GIN = (MODEL_GIN[0], 'gin/prompts/from_file.gin', *EVAL_GIN[1:])

TASK = 'toy_parity'
PROMPT_PATH = 'encoder/prompt/prompt/prompt'
# The tiny preset, widened: with 64 dimensions the frozen random output layer can
# single out the two labels, and 4 heads (mlp 16, vocab 128) split over a 4-way model axis.
TOY_MODEL = {'emb_dim': 64, 'num_heads': 4, 'head_dim': 2}


def scratch_dir(name: str) -> pathlib.Path:
  """A folder that lives until this test process ends (for runs shared by several modules)."""
  path = pathlib.Path(tempfile.mkdtemp(prefix=f'runtime_{name}_'))
  atexit.register(shutil.rmtree, path, ignore_errors=True)
  return path


@functools.lru_cache(maxsize=None)
def frozen_checkpoint(**fields: int) -> str:
  """A T5X checkpoint (orbax layout) of a random bare T5 1.1: the tiny preset with `fields` changed.

  Written with numpy once per test session; every toy run reads its frozen
  model from it, as INITIAL_CHECKPOINT_PATH, so only the prompt is initialised.
  """
  import flax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from prompt_tuning import checkpoints  # pylint: disable=g-import-not-at-top
  from prompt_tuning.models import t5  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  params = {}
  for path, shape in checkpoints.model_shapes(t5.config_for_size('tiny', **fields)).items():
    if path.endswith('/scale'):  # RMS norms
      value = np.ones(shape)
    else:  # unit-variance embeddings; kernels (and position biases) scaled by their fan-in
      scale = 1.0 if path.endswith('/embedding') else shape[0] ** -0.5
      value = rng.normal(0.0, scale, shape)
    params[path] = value.astype(np.float32)
  checkpoint = scratch_dir('frozen') / 'checkpoint_0'
  ocp.PyTreeCheckpointer().save(checkpoint / 'state',
                                {'target': flax.traverse_util.unflatten_dict(params, sep='/')})
  return str(checkpoint)


def model_macros(**fields: int) -> Dict[str, str]:
  """Gin bindings of the tiny preset with `fields` changed, and of its frozen checkpoint."""
  return {**{f't5.config_for_size.{name}': str(value) for name, value in fields.items()},
          'INITIAL_CHECKPOINT_PATH': repr(frozen_checkpoint(**fields))}


def toy_macros(model_dir: os.PathLike, model: Mapping[str, int] = TOY_MODEL,
               **overrides: str) -> Dict[str, str]:
  """Gin bindings (name -> value text) of a deterministic toy run writing to `model_dir`.

  No dropout and no shuffling, so that any split of the batch over devices or
  processes sees the same examples at every step; tests that need them turn them on.
  """
  macros = {
      'MODEL_DIR': repr(str(model_dir)),
      'MIXTURE_OR_TASK_NAME': repr(TASK),
      'MIXTURE_OR_TASK_MODULE': "'toy_tasks'",
      'TASK_FEATURE_LENGTHS': "{'inputs': 12, 'targets': 4}",
      'BATCH_SIZE': '8',
      'PROMPT_LENGTH': '4',
      'VOCABULARY': '@seqio.PassThroughVocabulary()',
      'seqio.PassThroughVocabulary.size': '128',
      'seqio.PassThroughVocabulary.eos_id': '1',
      'DROPOUT_RATE': '0.0',
      'LEARNING_RATE': '1.0',
      'LOSS_NORMALIZING_FACTOR': "'NUM_REAL_TARGET_TOKENS'",
      **model_macros(**model),
  }
  macros.update(overrides)
  return macros


def train_macros(model_dir: os.PathLike, steps: int, evaluate: bool = False,
                 **overrides: str) -> Dict[str, str]:
  """`toy_macros` plus training: every step logged; 2 batches evaluated at the end, or none."""
  macros = {'TRAIN_STEPS': str(steps), 'SHUFFLE_TRAIN_EXAMPLES': 'False', 'LOG_EVERY': '1',
            'EVAL_PERIOD': '0', 'EVAL_STEPS': '2'}
  if not evaluate:
    macros['train_script.train.infer_eval_dataset_cfg'] = 'None'
  return toy_macros(model_dir, **macros, **overrides)


def _bindings(macros: Mapping[str, str]) -> List[str]:
  return [f'{name} = {value}' for name, value in macros.items()]


def parse_gin(gin_files: Sequence[str], macros: Mapping[str, str]) -> None:
  """Parses gin in this process exactly as the CLI does (a fresh config every time)."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning import gin_config  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin_config.parse([str(REPO_ROOT / f) for f in gin_files], _bindings(macros))


def train_in_process(macros: Mapping[str, str], gin_files: Sequence[str] = TRAIN_GIN):
  """`prompt_tuning.train`'s main in this process; returns its `TrainResult`."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning import commands  # pylint: disable=g-import-not-at-top
  parse_gin(gin_files, macros)
  try:
    return commands.train()
  finally:
    gin.clear_config()


REFERENCE_STEPS = 30


def reference_macros(model_dir: os.PathLike, **overrides: str) -> Dict[str, str]:
  """The deterministic toy run that learning, sharding and multi-host tests compare."""
  return train_macros(model_dir, REFERENCE_STEPS, evaluate=True, **overrides)


@functools.lru_cache(maxsize=None)
def reference_run():
  """(MODEL_DIR, TrainResult) of `reference_macros` on this process's single device, trained
  once per test session."""
  model_dir = scratch_dir('reference')
  return model_dir, train_in_process(reference_macros(model_dir))


TRAINED_STEPS = 20
# A wide frozen MLP (about 3 MB of weights in all), so that a prompt checkpoint is tiny beside it.
WIDE_MODEL = {**TOY_MODEL, 'mlp_dim': 1024}


def trained_macros(model_dir: os.PathLike, **overrides: str) -> Dict[str, str]:
  """A full training run: shuffled data, checkpoints every 5 steps, eval every 10."""
  macros = {'TRAIN_STEPS': str(TRAINED_STEPS), 'SHUFFLE_TRAIN_EXAMPLES': 'True',
            'SAVING_PERIOD': '5', 'EVAL_PERIOD': '10', 'EVAL_STEPS': '2', 'LOG_EVERY': '5',
            **overrides}
  return toy_macros(model_dir, WIDE_MODEL, **macros)


@functools.lru_cache(maxsize=None)
def trained_run():
  """(MODEL_DIR, TrainResult) of `trained_macros`, trained once per test session in this process.

  The outputs, resume and eval/infer tests read it.
  """
  model_dir = scratch_dir('trained')
  return model_dir, train_in_process(trained_macros(model_dir))


def cli_command(script: str, gin_files: Sequence[str], macros: Mapping[str, str],
                *flags: str) -> List[str]:
  """`python -m prompt_tuning.<script> --gin_file=... --gin.NAME=VALUE ...`."""
  return [sys.executable, '-m', f'prompt_tuning.{script}',
          *[f'--gin_file={f}' for f in gin_files],
          *[f'--gin.{name}={value}' for name, value in macros.items()], *flags]


def subprocess_env(devices: int = 1, extra_paths: Sequence[str] = ()) -> Dict[str, str]:
  """The environment of a child process: the toy tasks (and `extra_paths`) importable, `devices`
  simulated CPUs."""
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (*extra_paths, str(TESTS_DIR), env.get('PYTHONPATH')) if p)
  env.update(TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu',
             JAX_CPU_COLLECTIVES_IMPLEMENTATION='gloo',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return env


@dataclasses.dataclass
class Child:
  """A child process started by `start`; its output goes to temporary files, not pipes, so that
  a chatty child never blocks on a full pipe while the test waits for something else."""
  process: subprocess.Popen
  stdout: IO[str]
  stderr: IO[str]


def start(command: Sequence[str], devices: int = 1, extra_paths: Sequence[str] = (),
          cwd: os.PathLike = REPO_ROOT, env: Optional[Mapping[str, str]] = None) -> Child:
  """Starts a child process (by default in the repository root, in `subprocess_env`)."""
  stdout, stderr = tempfile.TemporaryFile('w+'), tempfile.TemporaryFile('w+')
  env = subprocess_env(devices, extra_paths) if env is None else dict(env)
  process = subprocess.Popen(list(command), cwd=cwd, env=env, text=True, stdout=stdout,
                             stderr=stderr)
  return Child(process, stdout, stderr)


def finish(child: Child, timeout: float = 240) -> subprocess.CompletedProcess:
  """Waits for a child (killing it after `timeout`); returns its exit status and output."""
  try:
    child.process.wait(timeout)
  except subprocess.TimeoutExpired:
    child.process.kill()
    child.process.wait()
  output = []
  for stream in (child.stdout, child.stderr):
    stream.seek(0)
    output.append(stream.read())
    stream.close()
  return subprocess.CompletedProcess(child.process.args, child.process.returncode, *output)


def _exit_status_of(main: Callable[[], object]) -> int:
  """Runs `main` as Python runs a script; returns the exit status Python would give.

  SystemExit's code is the status (a message as code: printed, status 1); any
  other exception has its traceback printed and gives status 1.
  """
  import traceback  # pylint: disable=g-import-not-at-top
  try:
    main()
  except SystemExit as e:
    if e.code is None or isinstance(e.code, int):
      return e.code or 0
    print(e.code, file=sys.stderr)
    return 1
  except Exception:  # pylint: disable=broad-except
    traceback.print_exc()
    return 1
  return 0


def _run_command_line(command: Sequence[str]) -> int:
  """Runs `python -m module args...` or `python -c code args...` in this process; its exit status.

  Absl flags that the run's own `__main__` code defined (T5X's scripts define theirs there,
  not in an importable module) are removed afterwards, so that the next script can define its own.
  """
  import runpy  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  python, option, target, *args = command
  assert python == sys.executable and option in ('-m', '-c'), command
  if 'gin' in sys.modules:
    gin = sys.modules['gin']
    gin.clear_config()
    # A script that registers configurables in its `__main__` code (T5X's `train`) registers
    # them anew each run: gin's interactive mode lets the new ones replace the old.
    gin.enter_interactive_mode()
  # Every flag back to its default, yet parsed: code that reads flags before `app.run` parses
  # the command line (T5X's, after JAX's one-time absl set-up) sees the defaults, as in a new
  # process.
  flags.FLAGS.unparse_flags()
  flags.FLAGS.mark_as_parsed()
  defined_before = set(flags.FLAGS)
  main_module, process_main = types.ModuleType('__main__'), sys.modules['__main__']
  if option == '-m':
    sys.argv = [target, *args]  # runpy puts the module's file in sys.argv[0]
    main = lambda: runpy.run_module(target, run_name='__main__', alter_sys=True)
  else:
    sys.argv = ['-c', *args]
    sys.modules['__main__'] = main_module  # what `import __main__` finds, as under `python -c`
    main = lambda: exec(compile(target, '<string>', 'exec'), main_module.__dict__)  # pylint: disable=exec-used
  try:
    return _exit_status_of(main)
  finally:
    sys.modules['__main__'] = process_main
    for name in set(flags.FLAGS) - defined_before:
      if flags.FLAGS.find_module_defining_flag(name) not in sys.modules:
        delattr(flags.FLAGS, name)


def serve_cli_commands(requests_path: str, results_path: str) -> None:
  """Runs many Python command lines, one after another, in this process.

  `requests_path` holds a JSON list of {'name', 'command'}: commands as
  `cli_command` makes them (`python -m prompt_tuning.<script> ...`), or any
  `python -m <module> ...` or `python -c <code> ...` (T5X's scripts too). Each
  command gets a fresh gin config and unparsed absl flags, runs with its
  arguments in sys.argv, and has what it writes to file descriptors 1 and 2
  (Python's output and native libraries' alike) captured. One JSON line per
  command is appended to `results_path`: name, returncode, stdout, stderr.
  What a command leaves in the process (imported modules, compiled functions,
  registered tasks) stays for the next ones.
  """
  for request in json.loads(pathlib.Path(requests_path).read_text()):
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
      sys.stdout.flush()
      sys.stderr.flush()
      saved = {fd: os.dup(fd) for fd in (1, 2)}
      os.dup2(stdout.fileno(), 1)
      os.dup2(stderr.fileno(), 2)
      try:
        returncode = _run_command_line(request['command'])
      finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
          os.dup2(copy, fd)
          os.close(copy)
      output = []
      for stream in (stdout, stderr):
        stream.seek(0)
        output.append(stream.read().decode('utf-8', 'replace'))
    with open(results_path, 'a') as results:
      results.write(json.dumps({'name': request['name'], 'returncode': returncode,
                                'stdout': output[0], 'stderr': output[1]}) + '\n')


_SERVE = 'import sys, runtime_helpers; runtime_helpers.serve_cli_commands(*sys.argv[1:])'


def start_serving(commands_by_name: Mapping[str, Sequence[str]], folder: os.PathLike,
                  devices: int = 1, extra_paths: Sequence[str] = (),
                  cwd: os.PathLike = REPO_ROOT, env: Optional[Mapping[str, str]] = None
                  ) -> Callable[..., Dict[str, subprocess.CompletedProcess]]:
  """Starts one child that runs the command lines one after another (`serve_cli_commands`).

  `env`, when given, is the child's whole environment instead of `subprocess_env`'s (this
  folder must be on its PYTHONPATH).

  Returns what waits for it (`timeout` in seconds) and gives each command's
  result by name; a command that never finished has the child's own stderr and
  no exit status.
  """
  folder = pathlib.Path(folder)
  requests, results = folder / 'requests.json', folder / 'results.jsonl'
  requests.write_text(json.dumps([{'name': name, 'command': list(command)}
                                  for name, command in commands_by_name.items()]))
  child = start([sys.executable, '-c', _SERVE, str(requests), str(results)], devices=devices,
                extra_paths=extra_paths, cwd=cwd, env=env)

  def finish_serving(timeout: float = 300) -> Dict[str, subprocess.CompletedProcess]:
    server = finish(child, timeout=timeout)
    done = {name: subprocess.CompletedProcess(command, None, '', server.stderr)
            for name, command in commands_by_name.items()}
    for line in results.read_text().splitlines() if results.exists() else []:
      r = json.loads(line)
      done[r['name']] = subprocess.CompletedProcess(
          commands_by_name[r['name']], r['returncode'], r['stdout'], r['stderr'])
    return done
  return finish_serving


def finish_all(children: Sequence[Child], timeout: float = 240
               ) -> List[subprocess.CompletedProcess]:
  """Waits for children that depend on each other: when one fails, the others are killed."""
  processes = [child.process for child in children]
  deadline = time.monotonic() + timeout
  while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
    if any(p.returncode for p in processes):
      break
    time.sleep(0.1)
  for p in processes:
    if p.poll() is None:
      p.kill()
  return [finish(child) for child in children]


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
  """`result`, or a failure that shows the child's own error output."""
  assert result.returncode == 0, (
      f'{result.args[:3]} exited {result.returncode}:\n{result.stderr[-4000:]}')
  return result


def last_json_line(stdout: str) -> dict:
  """The JSON object a helper script prints last."""
  return json.loads(stdout.strip().splitlines()[-1])


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def tensorboard(directory: os.PathLike) -> Dict[str, Dict[int, object]]:
  """Every summary clu or seqio wrote under `directory`: tag -> step -> value (a number, bytes
  for text, or an array)."""
  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  events = event_accumulator.EventAccumulator(
      str(directory), size_guidance={event_accumulator.TENSORS: 0})
  events.Reload()
  values = {tag: {e.step: tensor_util.make_ndarray(e.tensor_proto) for e in events.Tensors(tag)}
            for tag in events.Tags()['tensors']}
  return {tag: {step: v.item() if v.ndim == 0 else v for step, v in steps.items()}
          for tag, steps in values.items()}


def read_jsonl(path: os.PathLike) -> List[dict]:
  """The rows of a JSON-lines file."""
  return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line.strip()]


def snapshot(directory: os.PathLike) -> Optional[Dict[str, tuple]]:
  """Every file under `directory` with its size and modification time (None: no folder)."""
  root = pathlib.Path(directory)
  if not root.exists():
    return None
  return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(root.rglob('*'))}


def file_contents(directory: os.PathLike) -> Optional[Dict[str, Optional[bytes]]]:
  """Every entry under `directory`: a file's bytes, None for a folder (None: no such folder).

  Two equal results mean that nothing under `directory` was written, added or removed.
  """
  root = pathlib.Path(directory)
  if not root.exists():
    return None
  return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
          for p in sorted(root.rglob('*'))}


# A watcher process of its own, so that no lock of the test process (nor its busy threads)
# delays the signal.
_SIGNAL_WHEN_PRESENT = """
import os, sys, time
path, pid, signum, deadline = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), time.monotonic() + 240
while not os.path.isdir(path) and time.monotonic() < deadline:
  time.sleep(0.01)
os.kill(pid, signum)
"""


def signal_when_present(folder: os.PathLike, pid: int, signum: int) -> subprocess.Popen:
  """Starts a watcher that sends `signum` to `pid` once `folder` exists (a committed checkpoint)."""
  return subprocess.Popen([sys.executable, '-c', _SIGNAL_WHEN_PRESENT, str(folder), str(pid),
                           str(int(signum))])


def committed_steps(model_dir: os.PathLike) -> List[int]:
  """The steps of the committed `checkpoint_<step>` folders in `model_dir`, in order."""
  return sorted(int(p.name.split('_')[1]) for p in pathlib.Path(model_dir).glob('checkpoint_*')
                if p.name.split('_')[1].isdigit())
