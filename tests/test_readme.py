"""Every command of the README runs as written: offline ones for real, cloud ones as dry runs.

Commands that read `gs://` or the Hugging Face hub run with `--dry_run` (the CLI parses and
checks the whole gin config, then stops); the TPU scripts run under `DRY_RUN=1` as written.
The offline demo, its evaluation and inference, the Python snippet and TensorBoard run for real.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

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


def run(command, env, timeout, cwd=REPO_ROOT):
  result = subprocess.run(['bash', '-c', command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
  assert result.returncode == 0, f'{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}'
  # libtpu (in the test extra) must not start on this TPU-less host (prompt_tuning/host.py).
  assert not re.search(r'libtpu|TPU_ACCELERATOR_TYPE|TPU_WORKER_HOSTNAMES', result.stderr), (
      result.stderr[-3000:])
  return result.stdout


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  cache = tmp_path_factory.mktemp('cache')
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}  # as a user's shell has it
  return {**env, 'PROMPT_TUNING_CACHE': str(cache), 'TF_CPP_MIN_LOG_LEVEL': '2',
          'PATH': f'{pathlib.Path(sys.executable).parent}:{os.environ["PATH"]}'}


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
def test_cloud_commands_parse_and_check_their_config_in_a_dry_run(command, env):
  out = run(command + ' --dry_run', env, timeout=120)
  assert 'MODEL_DIR' in out


@pytest.mark.parametrize('command', [c for c in COMMANDS if c.startswith('DRY_RUN=1 ')])
def test_tpu_script_commands_print_their_gcloud_or_python_commands(command, env):
  out = run(command, env, timeout=60)
  assert 'gcloud' in out or 'prompt_tuning.train' in out


def test_the_python_snippet_prints_logits_of_the_tiny_t5x_checkpoint(fixtures_dir, env):
  (snippet,) = [c for c in COMMANDS if c.startswith('python -c ')]
  if not (REPO_ROOT.parent / 'shared' / 'fixtures').is_dir():
    pytest.skip('the snippet reads ../shared/fixtures, which is not beside the repository')
  out = run(snippet, env, timeout=120)
  assert re.search(r'\[\[\[.*-?\d+\.\d+', out, flags=re.DOTALL), out


def readme_demo_output():
  """The lines the README shows the offline demo printing: the plain block of its section."""
  section = README.split('\n## The offline demo\n', 1)[1].split('\n## ', 1)[0]
  blocks = re.findall(r'^```(\w*)\n(.*?)^```$', section, flags=re.DOTALL | re.MULTILINE)
  (output,) = [text for language, text in blocks if not language]
  return output.splitlines()


DEMO_STEP_LINE = re.compile(r'step (\d+)/(\d+)  loss ([\d.]+)  accuracy ([\d.]+)  ')
DEMO_FINAL_LINE = re.compile(r'final eval demo_sentiment: accuracy ([\d.]+)$')


def test_the_offline_demo_learns_and_its_prompt_evaluates_and_predicts(env, tmp_path, demo_cache):
  env = {**env, 'PROMPT_TUNING_CACHE': str(demo_cache)}  # its frozen model, made once per session
  demo = [c.replace(DEMO_DIR, str(tmp_path / 'demo')) for c in COMMANDS if is_demo(c)]
  train, evaluate, infer = demo
  assert 'prompt_tuning.train' in train and 'prompt_tuning.eval' in evaluate
  trained = run(train, env, timeout=600)
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
  prompt = (tmp_path / 'demo' / 'numpy_checkpoints' / 'checkpoint_300' /
            'encoder.prompt.prompt.prompt.npy')
  assert prompt.exists()
  evaluated = re.search(r'demo_sentiment: accuracy ([\d.]+)', run(evaluate, env, timeout=300))
  assert evaluated and evaluated.group(1) == final.group(1)
  predicted = run(infer, env, timeout=300)
  assert 'wrote 200 predictions' in predicted
  (tensorboard,) = [c for c in COMMANDS if c.startswith('tensorboard ')]
  inspected = run(tensorboard.replace(DEMO_DIR, str(tmp_path / 'demo')) + ' --inspect', env,
                  timeout=120)
  for tag in ('loss', 'accuracy', 'learning_rate', 'timing/steps_per_second'):
    assert tag in inspected
