"""Every command of the README runs as written: offline ones for real, cloud ones as dry runs.

Commands that read `gs://` or the Hugging Face hub run with `--dry_run` (the CLI parses and
checks the whole gin config, then stops); the TPU scripts run under `DRY_RUN=1` as written.
The offline demo, its evaluation and inference, the Python snippet and TensorBoard run for real.
The `python` commands run one after another in one child process, in a user's environment
(`runtime_helpers.start_serving`: fresh flags and gin config for each).
"""

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

import runtime_helpers as h

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (REPO_ROOT / 'README.md').read_text()
DEMO_DIR = '/tmp/prompt_tuning_demo'


def readme_commands():
  """Each command of the README's bash blocks (one per line; continuation lines joined)."""
  commands = []
  for block in re.findall(r'```bash\n(.*?)```', README, flags=re.DOTALL):
    block = re.sub(r'\\\n\s*', ' ', block)
    lines, current = [], []
    for line in block.splitlines():
      current.append(line)
      text = '\n'.join(current)
      if text.count('"') % 2 == 0:  # a python -c "..." spans several lines
        lines.append(text.strip())
        current = []
    commands += [l for l in lines if l]
  return commands


COMMANDS = readme_commands()


def is_demo(command):
  return 'configs/demo/' in command


def needs_cloud(command):
  return 'prompt_tuning.' in command and not is_demo(command) and command.startswith('python -m')


def checked(result: subprocess.CompletedProcess) -> str:
  """The output of a README command that must succeed on this host as it is."""
  assert result.returncode == 0, f'{result.args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}'
  # libtpu (in the test extra) must not start on this TPU-less host (prompt_tuning/host.py).
  assert not re.search(r'libtpu|TPU_ACCELERATOR_TYPE|TPU_WORKER_HOSTNAMES', result.stderr), (
      result.stderr[-3000:])
  return result.stdout


def run(command, env, timeout, cwd=REPO_ROOT):
  return checked(subprocess.run(['bash', '-c', command], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=timeout))


@pytest.fixture(scope='module')
def env(demo_cache):
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}  # as a user's shell has it
  # The demo's frozen model, made once per session, is found in the cache as on a second run.
  return {**env, 'PROMPT_TUNING_CACHE': str(demo_cache), 'TF_CPP_MIN_LOG_LEVEL': '2',
          'PATH': f'{pathlib.Path(sys.executable).parent}:{os.environ["PATH"]}'}


def python_command(line: str, demo_dir: pathlib.Path):
  """A README `python -m ...` / `python -c "..."` line as this interpreter's arguments."""
  python, *words = shlex.split(line.replace(DEMO_DIR, str(demo_dir)))
  assert python == 'python', line
  return [sys.executable, *words]


@pytest.fixture(scope='module')
def served(env, tmp_path_factory):
  """{README line: completed process} of every `python` command of the README but the set-up.

  Cloud commands get `--dry_run`; the demo's write under a temporary folder. The snippet is
  left out when ../shared/fixtures, which it reads, is not beside the repository.
  """
  folder = tmp_path_factory.mktemp('readme')
  lines = [c for c in COMMANDS if needs_cloud(c) or is_demo(c)]
  if (REPO_ROOT.parent / 'shared' / 'fixtures').is_dir():
    lines += [c for c in COMMANDS if c.startswith('python -c ')]
  commands = {line: python_command(line + (' --dry_run' if needs_cloud(line) else ''),
                                   folder / 'demo') for line in lines}
  # The helper that serves them is imported from tests/; nothing else changes for the commands.
  env = {**env, 'PYTHONPATH': os.pathsep.join(p for p in (str(h.TESTS_DIR),
                                                          env.get('PYTHONPATH')) if p)}
  results = h.start_serving(commands, folder, env=env)(timeout=900)
  return {line: results[line] for line in lines}, folder / 'demo'


def test_the_setup_commands_are_the_two_that_ci_runs():
  setup = COMMANDS[:2]
  assert setup == ['python -m pip install -e ".[test]"', 'python -m pytest -q tests']
  ci = (REPO_ROOT / '.ci' / 'run').read_text().splitlines()
  assert [line for line in ci if line.startswith('python')] == setup


def test_every_readme_command_is_covered_here():
  kinds = [c for c in COMMANDS[2:]
           if not (is_demo(c) or needs_cloud(c) or c.startswith(('DRY_RUN=1 ', 'python -c ',
                                                                 'tensorboard ')))]
  assert kinds == [], 'a README command that no test runs'


@pytest.mark.parametrize('command', [c for c in COMMANDS if needs_cloud(c)])
def test_cloud_commands_parse_and_check_their_config_in_a_dry_run(command, served):
  assert 'MODEL_DIR' in checked(served[0][command])


@pytest.mark.parametrize('command', [c for c in COMMANDS if c.startswith('DRY_RUN=1 ')])
def test_tpu_script_commands_print_their_gcloud_or_python_commands(command, env):
  out = run(command, env, timeout=60)
  assert 'gcloud' in out or 'prompt_tuning.train' in out


def test_the_python_snippet_prints_logits_of_the_tiny_t5x_checkpoint(served):
  (snippet,) = [c for c in COMMANDS if c.startswith('python -c ')]
  if snippet not in served[0]:
    pytest.skip('the snippet reads ../shared/fixtures, which is not beside the repository')
  out = checked(served[0][snippet])
  assert re.search(r'\[\[\[.*-?\d+\.\d+', out, flags=re.DOTALL), out


def readme_demo_output():
  """The lines the README shows the offline demo printing: the plain block of its section."""
  section = README.split('\n## The offline demo\n', 1)[1].split('\n## ', 1)[0]
  blocks = re.findall(r'^```(\w*)\n(.*?)^```$', section, flags=re.DOTALL | re.MULTILINE)
  (output,) = [text for language, text in blocks if not language]
  return output.splitlines()


DEMO_STEP_LINE = re.compile(r'step (\d+)/(\d+)  loss ([\d.]+)  accuracy ([\d.]+)  ')
DEMO_FINAL_LINE = re.compile(r'final eval demo_sentiment: accuracy ([\d.]+)$')


def test_the_offline_demo_learns_and_its_prompt_evaluates_and_predicts(env, served):
  results, demo_dir = served
  train, evaluate, infer = [c for c in COMMANDS if is_demo(c) and 'gin/prompts/' not in c]
  assert 'prompt_tuning.train' in train and 'prompt_tuning.eval' in evaluate
  trained = checked(results[train])
  printed = trained.splitlines()
  finals = [m for m in map(DEMO_FINAL_LINE.match, printed) if m]
  assert finals, trained[-2000:]
  final = finals[-1]
  assert float(final.group(1)) >= 95, trained[-2000:]  # the README's claim; chance is 50
  # What the README shows is what the run printed: the final eval line as it is, and the last
  # step line but for its timing (steps/s, tokens/s) and the loss's last digits.
  shown = readme_demo_output()
  assert [final.group(0)] == [line for line in shown if DEMO_FINAL_LINE.match(line)]
  (shown_step,) = [m for m in map(DEMO_STEP_LINE.match, shown) if m]
  step = [m for m in map(DEMO_STEP_LINE.match, printed) if m][-1]
  assert (step.group(1, 2, 4) == shown_step.group(1, 2, 4)
          and abs(float(step.group(3)) - float(shown_step.group(3))) < 0.01), (
              f'the run printed {step.group(0)!r}, the README shows {shown_step.group(0)!r}')
  prompt = demo_dir / 'numpy_checkpoints' / 'checkpoint_300' / 'encoder.prompt.prompt.prompt.npy'
  assert prompt.exists()
  evaluated = re.search(r'demo_sentiment: accuracy ([\d.]+)', checked(results[evaluate]))
  assert evaluated and evaluated.group(1) == final.group(1)
  assert 'wrote 200 predictions' in checked(results[infer])
  (tensorboard,) = [c for c in COMMANDS if c.startswith('tensorboard ')]
  inspected = run(tensorboard.replace(DEMO_DIR, str(demo_dir)) + ' --inspect', env, timeout=120)
  for tag in ('loss', 'accuracy', 'learning_rate', 'timing/steps_per_second'):
    assert tag in inspected


def test_the_demo_ensemble_trains_its_members_in_one_run_and_each_learns(served):
  results, demo_dir = served
  (command,) = [c for c in COMMANDS if is_demo(c) and 'gin/prompts/ensemble.gin' in c]
  printed = checked(results[command]).splitlines()
  final = [line for line in printed if line.startswith('final eval demo_sentiment: ')][-1]
  metrics = dict(re.findall(r'([\w/]+) ([\d.]+)', final.split(': ', 1)[1]))
  members = [f'member_{k}/accuracy' for k in range(3)]
  assert set(metrics) == {'accuracy', *members, 'mean/accuracy', 'best/accuracy'}, final
  assert all(float(value) >= 95 for value in metrics.values()), final  # chance is 50
  assert final in README  # what the README shows is what the run printed
  exports = demo_dir.parent / 'demo_ensemble' / 'numpy_checkpoints' / 'checkpoint_300'
  assert all((exports / f'member_{k}.npy').exists() for k in range(3))


def test_the_demo_trains_one_prompt_per_task_of_a_mixture_and_each_learns_its_task(served):
  results, demo_dir = served
  (command,) = [c for c in COMMANDS if is_demo(c) and 'gin/prompts/multi_task.gin' in c]
  printed = checked(results[command]).splitlines()
  for task in ('demo_noun', 'demo_sentiment'):
    final = [line for line in printed if line.startswith(f'final eval {task}: ')][-1]
    assert float(re.fullmatch(rf'final eval {task}: accuracy ([\d.]+)', final).group(1)) >= 95
    assert final in README
    exported = demo_dir.parent / 'demo_tasks' / 'numpy_checkpoints' / 'checkpoint_300'
    assert (exported / f'{task}.npy').exists()
