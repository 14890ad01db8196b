"""A regular `pip install .` ships gin/ and configs/: the installed CLI finds them from anywhere.

A copy of the working tree is installed (not editable) into a fresh virtual environment that
borrows the heavy dependencies from the environment running the tests; the copy is then deleted, and
the installed CLI runs from an empty directory with PYTHONPATH cleared. So the only gin files
it can find are the ones inside the installed package.
"""

import os
import pathlib
import shutil
import site
import subprocess
import sys
from typing import Dict, NamedTuple

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The working tree without version control, caches and build outputs.
NOT_COPIED = shutil.ignore_patterns('.git', '__pycache__', '*.egg-info', 'build', 'dist',
                                    '.pytest_cache', '.benchmarks')
MISSING_MODEL_DIR = ('error: Missing required gin macro MODEL_DIR: set it in a gin file or pass '
                     '--gin.MODEL_DIR=... on the command line.')


class Installed(NamedTuple):
  python: pathlib.Path
  prefix: pathlib.Path  # The virtual environment.
  workdir: pathlib.Path  # An empty directory outside the repository.
  env: Dict[str, str]


def _run(command, cwd: pathlib.Path, env: Dict[str, str]) -> subprocess.CompletedProcess:
  return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300, check=False)


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> Installed:
  root = tmp_path_factory.mktemp('install')
  prefix = root / 'venv'
  made = _run([sys.executable, '-m', 'venv', '--without-pip', prefix], root, dict(os.environ))
  if made.returncode:
    pytest.skip(f'cannot create a virtual environment: {made.stderr.strip()[-300:]}')
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
  env.update(TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu', PIP_DISABLE_PIP_VERSION_CHECK='1')
  python = prefix / 'bin' / 'python'
  # The new environment borrows the packages of the one running the tests, whether that is a
  # venv or not (`--system-site-packages` would borrow the base interpreter's instead). Paths
  # listed in a .pth file come after the environment's own site-packages, and .pth files in
  # them are not run, so the tests' editable install of the project stays invisible there.
  purelib = _run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                 root, env).stdout.strip()
  pathlib.Path(purelib, 'tests_environment.pth').write_text('\n'.join(site.getsitepackages()))
  source = root / 'source'
  shutil.copytree(REPO_ROOT, source, ignore=NOT_COPIED)
  pip = _run([python, '-m', 'pip', 'install', '--quiet', '--no-cache-dir', '--no-deps',
              '--no-build-isolation', '--no-index', '--ignore-installed', source], root, env)
  assert pip.returncode == 0, pip.stderr[-2000:]
  shutil.rmtree(source)
  workdir = root / 'elsewhere'
  workdir.mkdir()
  return Installed(python, prefix, workdir, env)


# Runs the CLI exactly as the `prompt-tuning-train` entry point does, after reporting where the
# package and its gin search paths are, from the same process.
CLI_REPORTING_PATHS = """
import sys
import prompt_tuning
from prompt_tuning import gin_config, train
print('package', prompt_tuning.__file__)
print('search', *gin_config.default_search_paths())
sys.argv = ['prompt-tuning-train', *sys.argv[1:]]
train.console_main()
"""


def test_installed_cli_finds_gin_and_configs_files_inside_the_installed_package(installed):
  result = _run([installed.python, '-c', CLI_REPORTING_PATHS,
                 '--gin_file=gin/models/t5_1_1_base_prompt.gin',
                 '--gin_file=configs/super_glue/rte.gin'], installed.workdir, installed.env)
  report = dict(line.split(' ', 1) for line in result.stdout.splitlines()
                if line.startswith(('package ', 'search ')))
  site_packages = pathlib.Path(report['package']).parent.parent
  assert site_packages.is_relative_to(installed.prefix), report
  assert all(pathlib.Path(p).is_relative_to(installed.prefix) for p in report['search'].split())
  assert (site_packages / 'prompt_tuning' / 'configs' / 'super_glue' / 'rte.gin').is_file()
  # Every file was found and parsed (the recipe includes gin/prompts, configs/ and gin/runs
  # files): the run stops only at the first required macro that the command leaves unset.
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == MISSING_MODEL_DIR


def test_installed_cli_reports_a_gin_file_found_nowhere(installed):
  result = _run([installed.prefix / 'bin' / 'prompt-tuning-train',
                 '--gin_file=configs/super_glue/no_such_recipe.gin',
                 "--gin.MODEL_DIR='/tmp/unused'"], installed.workdir, installed.env)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1].startswith(
      'error: --gin_file=configs/super_glue/no_such_recipe.gin: not found')
