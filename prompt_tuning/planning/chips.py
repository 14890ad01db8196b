"""The slices a run can be planned for: user names (v3-32, v5e-16, cpu-8), their devices, their chips.

A TPU slice's devices come from libtpu's compile-only topology (no TPU is
needed, and none is touched); a `cpu-N` mesh is N of this host's CPU devices.
Knows nothing of models or of the runtime.

Names follow Cloud TPU accelerator types:
- v2-N, v3-N: N TensorCores, two per chip, each its own JAX device
  (v3-32 = 16 chips, `v3:4x4`, 32 devices);
- v4-N, v5p-N: N TensorCores, two per chip fused into one device (megacore)
  (v4-8 = 4 chips, `v4:2x2x1`, 4 devices);
- v5e-N, v6e-N: N chips of one TensorCore each (v5e-16 = `v5e:4x4`, 16 devices).
"""

import dataclasses
import os
import re
from typing import Dict, List, Optional, Tuple

import jax

from prompt_tuning.errors import UserError


class TopologyError(UserError, ValueError):
  """--topology names no slice the planner knows, or this host cannot make its devices."""


@dataclasses.dataclass(frozen=True)
class Chip:
  """The figures of one TPU chip that a roofline needs.

  Attributes:
    name: the generation, as in accelerator types ('v3', 'v5e').
    topology_prefix: its name in libtpu topologies ('v3', 'v5e', 'v5' for v5p).
    bf16_flops: peak bfloat16 FLOP/s of the chip.
    hbm_bytes: HBM of the chip.
    hbm_bandwidth: HBM bytes/s of the chip.
    devices_per_chip: JAX devices a chip shows as (its TensorCores, or 1 with megacore).
    cores_in_name: whether the accelerator type counts TensorCores (v3-8) rather than chips.
    dims: 2 or 3, the torus the chips form.
  """
  name: str
  topology_prefix: str
  bf16_flops: float
  hbm_bytes: float
  hbm_bandwidth: float
  devices_per_chip: int
  cores_in_name: bool
  dims: int


GiB, GB, TERA = 2**30, 1e9, 1e12

# Per-chip figures from the public Cloud TPU system architecture pages:
#   v2: https://cloud.google.com/tpu/docs/v2 (figures from the paper it cites, "A Domain Specific
#       Supercomputer for Training Deep Neural Networks", CACM 2020: 45 TFLOP/s, 16 GiB, 600 GB/s)
#   v3: https://cloud.google.com/tpu/docs/v3   (123 TFLOP/s bf16; HBM2 32 GiB, 900 GBps)
#   v4: https://cloud.google.com/tpu/docs/v4   (275 TFLOP/s bf16; HBM2 32 GiB, 1200 GBps)
#   v5e: https://cloud.google.com/tpu/docs/v5e (197 TFLOP/s bf16; HBM2 16 GB, 819 GBps)
#   v5p: https://cloud.google.com/tpu/docs/v5p (459 TFLOP/s bf16; HBM2e 95 GB, 2765 GBps)
#   v6e: https://cloud.google.com/tpu/docs/v6e (918 TFLOP/s bf16; HBM 32 GB, 1638 GBps)
CHIPS: Dict[str, Chip] = {
    'v2': Chip('v2', 'v2', 45 * TERA, 16 * GiB, 600 * GB, 2, True, 2),
    'v3': Chip('v3', 'v3', 123 * TERA, 32 * GiB, 900 * GB, 2, True, 2),
    'v4': Chip('v4', 'v4', 275 * TERA, 32 * GiB, 1200 * GB, 1, True, 3),
    'v5e': Chip('v5e', 'v5e', 197 * TERA, 16 * GB, 819 * GB, 1, False, 2),
    'v5p': Chip('v5p', 'v5', 459 * TERA, 95 * GB, 2765 * GB, 1, True, 3),
    'v6e': Chip('v6e', 'v6e', 918 * TERA, 32 * GB, 1638 * GB, 1, False, 2),
}


@dataclasses.dataclass(frozen=True)
class Topology:
  """A slice (or a CPU mesh) to plan for.

  Attributes:
    name: as the user wrote it ('v3-32', 'cpu-8').
    num_devices: JAX devices of the slice.
    chip: its chip, None for a CPU mesh.
    topology_name: libtpu's name of the chip grid ('v3:4x4'); '' for CPU.
  """
  name: str
  num_devices: int
  chip: Optional[Chip]
  topology_name: str = ''

  @property
  def num_chips(self) -> int:
    return self.num_devices // self.chip.devices_per_chip if self.chip else 0

  @property
  def device_memory(self) -> float:
    """Bytes one device may use: its share of the chip's HBM, or of this host's RAM for CPU."""
    if self.chip:
      return self.chip.hbm_bytes / self.chip.devices_per_chip
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / self.num_devices

  @property
  def device_flops(self) -> Optional[float]:
    return self.chip.bf16_flops / self.chip.devices_per_chip if self.chip else None

  @property
  def device_bandwidth(self) -> Optional[float]:
    return self.chip.hbm_bandwidth / self.chip.devices_per_chip if self.chip else None

  def devices(self) -> List[jax.Device]:
    """The slice's devices: compile-only TPU devices, or this host's first N CPU devices."""
    if self.chip is None:
      cpus = jax.devices('cpu')
      if len(cpus) < self.num_devices:
        raise TopologyError(
            f'--topology={self.name} needs {self.num_devices} CPU devices but JAX has '
            f'{len(cpus)}; start Python with XLA_FLAGS=--xla_force_host_platform_device_count='
            f'{self.num_devices}.')
      return cpus[:self.num_devices]
    return tpu_devices(self)


def tpu_devices(topology: Topology) -> List[jax.Device]:
  """libtpu's compile-only devices of a slice, loading libtpu as a compiler only.

  JAX's default platform is left alone: ordinary arrays stay where they were.
  """
  # Another process that initialised JAX's TPU backend holds libtpu's lock file; compiling
  # needs no TPU, so share the library instead of waiting for the lock.
  os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')
  # Off a TPU VM, libtpu looks for the host's own slice and warns on stderr that it finds none.
  # These name one; the compile-only devices, and what compiles for them, are the same.
  os.environ.setdefault('TPU_ACCELERATOR_TYPE', topology.name)
  os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  chip = topology.chip
  options = {'chip_config_name': 'megacore'} if chip.devices_per_chip == 1 and chip.dims == 3 else {}
  try:
    return list(topologies.get_topology_desc(topology_name=topology.topology_name,
                                             platform='tpu', **options).devices)
  except RuntimeError as e:
    if 'TPU support not installed' in str(e):
      raise TopologyError('TPU topologies need libtpu: pip install "jax[tpu]" (it installs and '
                          'compiles on CPU-only hosts).') from None
    raise


# Chip grids of the common slice sizes (chips -> grid), as Cloud TPU lays them out.
_GRIDS_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16),
             256: (16, 16), 512: (16, 32), 1024: (32, 32)}
_GRIDS_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4),
             128: (4, 4, 8), 256: (4, 8, 8), 512: (8, 8, 8)}
_TPU_NAME = re.compile(r'(v2|v3|v4|v5e|v5p|v6e)-(\d+)$')
_CPU_NAME = re.compile(r'cpu-(\d+)$')


def known_names() -> List[str]:
  """Every TPU name `parse` accepts, for error messages and docs."""
  names = []
  for chip in CHIPS.values():
    grids = _GRIDS_3D if chip.dims == 3 else _GRIDS_2D
    per_name = 2 if chip.cores_in_name else 1
    names += [f'{chip.name}-{chips * per_name}' for chips in grids]
  return names


def parse(name: str) -> Topology:
  """'v3-32' / 'v5e-16' / 'cpu-8' -> its Topology.

  Raises:
    TopologyError: one line naming --topology and what it accepts.
  """
  cpu = _CPU_NAME.match(name)
  if cpu and int(cpu.group(1)) > 0:
    return Topology(name, int(cpu.group(1)), None)
  tpu = _TPU_NAME.match(name)
  if tpu:
    chip = CHIPS[tpu.group(1)]
    count = int(tpu.group(2))
    chips = count // 2 if chip.cores_in_name else count
    grid = (_GRIDS_3D if chip.dims == 3 else _GRIDS_2D).get(chips)
    if grid and (not chip.cores_in_name or count % 2 == 0):
      return Topology(name, chips * chip.devices_per_chip, chip,
                      f'{chip.topology_prefix}:{"x".join(map(str, grid))}')
  raise TopologyError(f'--topology={name}: expected cpu-N or a TPU slice such as v3-32, v4-8, '
                      f'v5e-16 (known: {", ".join(known_names()[:12])}, ...).')


def mesh_shape(text: str, num_devices: int) -> Tuple[int, int]:
  """'DATAxMODEL' -> (data, model), checked against the device count (--mesh)."""
  match = re.fullmatch(r'(\d+)x(\d+)', text)
  if not match:
    raise TopologyError(f'--mesh={text}: expected DATAxMODEL, e.g. 4x8.')
  shape = (int(match.group(1)), int(match.group(2)))
  if shape[0] * shape[1] != num_devices:
    raise TopologyError(f'--mesh={text}: {shape[0]} x {shape[1]} devices, but the topology has '
                        f'{num_devices}.')
  return shape
