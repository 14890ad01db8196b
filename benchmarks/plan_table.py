"""The README's table: T5 1.1 Small to XXL at the paper's settings, planned for TPU slices and a CPU mesh.

  python benchmarks/plan_table.py [--sizes=small,base,large,xl,xxl]
      [--topologies=v3-8,v3-32,v4-8,v5e-16,cpu-8] [--targets=8]

The paper's run: recipe configs/super_glue/boolq.gin (batch 32, inputs 512
tokens + a 100-token prompt, targets 8), bfloat16 frozen weights and
activations (gin/models/bfloat16.gin), the prompt in float32, scanned layers.
Each cell is `aot.first_fit`: the smallest model axis whose frozen weights
take at most half a device, remat only where the step does not fit without
it, the next larger model axis where it still does not. Only the train step
is compiled. Prints a Markdown table; reads and writes nothing else.
"""

import argparse
import os
import sys
import time
from typing import List, Sequence

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # compiles for compile-only devices; runs nothing

SIZES = ('small', 'base', 'large', 'xl', 'xxl')
TOPOLOGIES = ('v3-8', 'v3-32', 'v4-8', 'v5e-16', 'cpu-8')


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--sizes', default=','.join(SIZES))
  parser.add_argument('--topologies', default=','.join(TOPOLOGIES))
  parser.add_argument('--targets', type=int, default=8, help='Target length (BoolQ: 8).')
  return parser.parse_args(argv)


def configured_run(size: str, targets: int):
  """The model, optimizer, run and dataset configs of the paper's BoolQ run at `size`."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning import gin_config, plan  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  gin_config.parse([f'gin/models/t5_1_1_{size}_prompt.gin', 'configs/super_glue/boolq.gin',
                    'gin/models/bfloat16.gin'],
                   [*plan.COMMAND_BINDINGS, 'SCAN_LAYERS = True',
                    f"TASK_FEATURE_LENGTHS = {{'inputs': 512, 'targets': {targets}}}"])
  return plan.configured_run()


def main(argv: Sequence[str]) -> None:
  args = parse_args(argv)
  topologies: List[str] = args.topologies.split(',')
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_enable_compilation_cache', False)
  cpus = [int(t[4:]) for t in topologies if t.startswith('cpu-')]
  jax.config.update('jax_num_cpu_devices', max(cpus, default=1))
  from prompt_tuning.planning import aot, chips, report  # pylint: disable=g-import-not-at-top
  print('| size | slice | mesh (data x model) | layers | peak per device | fits | '
        'roofline step |')
  print('| --- | --- | --- | --- | --- | --- | --- |')
  for size in args.sizes.split(','):
    model, optimizer, run_config, dataset_config = configured_run(size, args.targets)
    for name in topologies:
      topology, start = chips.parse(name), time.perf_counter()
      plan = aot.first_fit(model, optimizer, run_config, dataset_config, topology, decode=False)
      memory = f'{report.size(plan.peak_bytes)} of {report.size(topology.device_memory)}'
      print(f'| {size.upper() if len(size) <= 3 else size.capitalize()} | {name} | '
            f'{report.mesh(plan)} | {report.layers(plan)} | '
            f'{"refused" if plan.refused else memory} | {"yes" if plan.fits else "**no**"} | '
            f'{report.seconds(plan.roofline_seconds)} |', flush=True)
      print(f'{size} {name}: {time.perf_counter() - start:.0f} s'
            + ('' if plan.fits else f'; {report.why_not(plan)}'), file=sys.stderr, flush=True)


if __name__ == '__main__':
  main(sys.argv[1:])
