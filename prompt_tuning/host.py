"""Which JAX platforms this host has: a TPU-less host with libtpu installed stays on the CPU.

With libtpu installed (`jax[tpu]`, also in the test extra, for `prompt_tuning.plan`), JAX
starts the TPU runtime even on a host without TPU chips, which prints libtpu's warnings and
takes its machine-wide lock file. Run on import of the package, before JAX starts a backend.
"""

import contextlib
import importlib.util
import os
import pathlib

# Google's PCI vendor id, which TPU chips show in sysfs.
_GOOGLE_PCI_VENDOR = '0x1ae0'
_GPU_PLUGINS = ('jax_cuda12_plugin', 'jax_cuda13_plugin', 'jax_rocm60_plugin')


def has_tpu_chips() -> bool:
  for vendor in pathlib.Path('/sys/bus/pci/devices').glob('*/vendor'):
    with contextlib.suppress(OSError):
      if vendor.read_text().strip() == _GOOGLE_PCI_VENDOR:
        return True
  return False


def leave_out_an_absent_tpu() -> None:
  """Sets JAX_PLATFORMS=cpu where libtpu is installed but no TPU chip (nor GPU plugin) is.

  JAX_PLATFORMS, when already set, decides as usual.
  """
  if 'JAX_PLATFORMS' in os.environ or importlib.util.find_spec('libtpu') is None:
    return
  if any(importlib.util.find_spec(plugin) for plugin in _GPU_PLUGINS) or has_tpu_chips():
    return
  os.environ['JAX_PLATFORMS'] = 'cpu'
