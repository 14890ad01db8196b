"""On a host without TPU chips, an installed libtpu is left out: JAX stays on the CPU, quietly."""

import importlib.util
import os
import subprocess
import sys

import pytest

from prompt_tuning import host

needs_libtpu = pytest.mark.skipif(importlib.util.find_spec('libtpu') is None,
                                  reason='libtpu is not installed (the test extra has it)')


@pytest.mark.skipif(host.has_tpu_chips(), reason='this host has TPU chips')
@needs_libtpu
def test_a_tpu_less_host_with_libtpu_runs_jax_on_the_cpu_without_libtpu_warnings():
  env = {k: v for k, v in os.environ.items() if k != 'JAX_PLATFORMS'}
  result = subprocess.run(
      [sys.executable, '-c', 'import os, prompt_tuning, jax; '
       'print(os.environ["JAX_PLATFORMS"], jax.devices()[0].platform)'],
      env=env, capture_output=True, text=True, timeout=120, check=True)
  assert result.stdout.split() == ['cpu', 'cpu']
  assert 'libtpu' not in result.stderr and 'TPU_ACCELERATOR_TYPE' not in result.stderr


def test_jax_platforms_when_set_is_left_as_it_is(monkeypatch):
  monkeypatch.setenv('JAX_PLATFORMS', 'tpu,cpu')
  host.leave_out_an_absent_tpu()
  assert os.environ['JAX_PLATFORMS'] == 'tpu,cpu'


@pytest.mark.skipif(host.has_tpu_chips(), reason='this host has TPU chips')
@needs_libtpu
def test_without_jax_platforms_a_tpu_less_host_gets_the_cpu(monkeypatch):
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  host.leave_out_an_absent_tpu()
  assert os.environ['JAX_PLATFORMS'] == 'cpu'
