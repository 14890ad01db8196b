"""Plans as text: the full report of one plan, the one line of one that does not fit, a search table.

Formatting only: every figure comes from `aot.Plan`.
"""

from typing import List, Optional

from prompt_tuning.planning import aot

GiB, MiB = 2**30, 2**20



def size(num_bytes: float) -> str:
  return f'{num_bytes / GiB:.2f} GiB' if num_bytes >= GiB / 10 else f'{num_bytes / MiB:.1f} MiB'


def seconds(value: Optional[float]) -> str:
  if value is None:
    return 'n/a'
  return f'{value:.3f} s' if value >= 0.1 else f'{value * 1e3:.1f} ms'


def layers(plan: aot.Plan) -> str:
  return f'scan {"on" if plan.scan else "off"}, remat {plan.remat_policy}'


def mesh(plan: aot.Plan) -> str:
  return f'{plan.mesh_shape[0]}x{plan.mesh_shape[1]}'


def why_not(plan: aot.Plan) -> str:
  """Why a plan does not fit, in one line, and what to change."""
  topology = plan.topology
  reason = plan.refused or (f'the peak is {size(plan.peak_bytes)} per device, more than its '
                            f'{size(topology.device_memory)}')
  # What to change, as the user would type it; only what this plan has not tried.
  fixes = ['--search (every data x model split, with remat and scan)']
  if plan.mesh_shape[1] < topology.num_devices:
    fixes.append('a larger model axis (--mesh=DATAxMODEL)')
  if plan.remat_policy != 'full':
    fixes.append("remat (--gin.REMAT_POLICY=\"'full'\")")
  fixes.append('a smaller BATCH_SIZE, or a larger slice')
  return (f'does not fit on {topology.name} (mesh {mesh(plan)}, {layers(plan)}): {reason}; '
          f'try {"; ".join(fixes)}.')


def _slice(plan: aot.Plan) -> str:
  topology = plan.topology
  if topology.chip is None:
    return f'{topology.num_devices} CPU devices'
  return (f'{topology.num_devices} devices on {topology.num_chips} {topology.chip.name} chips '
          f'({topology.topology_name})')


def _step_lines(step: aot.Step, memory: float) -> List[str]:
  lines = [f'  {step.name} step (compiled in {step.compile_seconds:.1f} s): arguments '
           f'{size(step.argument_bytes)}, outputs {size(step.output_bytes)} '
           f'(aliased {size(step.alias_bytes)}), temporaries {size(step.temp_bytes)}, code '
           f'{size(step.code_bytes)}; peak {size(step.peak_bytes)} = '
           f'{step.peak_bytes / memory:.0%} of {size(memory)}']
  found = ', '.join(f'{kind} x{c.count} ({c.in_loops} in layer loops) {size(c.bytes)}'
                    for kind, c in sorted(step.collectives.items()))
  lines.append(f'    collectives: {found or "none"}')
  return lines


def full(plan: aot.Plan) -> str:
  """Every figure of a plan, per device."""
  topology = plan.topology
  lines = [f'{topology.name}: {_slice(plan)}, mesh data x model = {mesh(plan)}, {layers(plan)}',
           'per device:',
           f'  frozen weights {size(plan.frozen_bytes)}; prompt and optimizer state '
           f'{size(plan.trainable_bytes)}']
  for step in plan.steps:
    lines += _step_lines(step, topology.device_memory)
  train = plan.train
  if train is not None:
    devices = topology.num_devices
    lines.append(f'  train FLOPs over all layers {train.flops:.4g} (XLA cost analysis '
                 f'{train.xla_flops:.4g}, which counts a scanned layer once, plus the other '
                 'layers\' matmuls counted in the step\'s jaxpr)')
    if plan.formula_flops:
      lines.append(f'  FLOP formula (prompt_tuning/planning/flops.py, matmuls, no remat) / devices '
                   f'{plan.formula_flops / devices:.4g}; compiled / formula '
                   f'{train.flops * devices / plan.formula_flops:.3f}')
  if topology.chip is not None and train is not None:
    chip = topology.chip
    lines.append(f'roofline train step {seconds(plan.roofline_seconds)}: compute '
                 f'{seconds(train.flops / topology.device_flops)} at '
                 f'{topology.device_flops / 1e12:.1f} TFLOP/s, memory >= '
                 f'{seconds(train.bytes_accessed / topology.device_bandwidth)} at '
                 f'{topology.device_bandwidth / 1e9:.0f} GB/s per device ({chip.name}: '
                 f'{chip.bf16_flops / 1e12:.0f} TFLOP/s, {chip.hbm_bandwidth / 1e9:.0f} GB/s, '
                 f'{size(chip.hbm_bytes)} per chip)')
  lines.append('fits' if plan.fits else why_not(plan))
  return '\n'.join(lines)


def table(plans: List[aot.Plan]) -> str:
  """Plans as rows, in the order given (a search's: fitting ones fastest first)."""
  rows = [f'{"mesh":>7}  {"layers":<22}{"peak/device":>13}  {"fits":<5}{"roofline step":>14}']
  for plan in plans:
    peak = 'refused' if plan.refused else size(plan.peak_bytes)
    rows.append(f'{mesh(plan):>7}  {layers(plan):<22}{peak:>13}  '
                f'{"yes" if plan.fits else "no":<5}{seconds(plan.roofline_seconds):>14}')
  return '\n'.join(rows)
