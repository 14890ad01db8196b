"""Times this runtime's prompt-tuning train step against Hugging Face PEFT prompt tuning.

  python benchmarks/train_step.py [--config=small] [--batch_size=8] [--json=PATH]

Both sides train a length-P prompt on the same randomly initialised T5 1.1
model, the same batch and Adafactor. Each framework runs in a worker process
of its own, so its peak RSS is its own; the coordinator (this process) takes
turns with the workers round by round, timing float32 matmuls in its own
turn, so that load from other programs falls on all of them alike. Reads
nothing from disk, downloads nothing, writes only the optional JSON.
"""

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

FRAMEWORKS = ('ours', 'peer')
TITLES = {'ours': 'this runtime (JAX)', 'peer': 'HF PEFT (torch)'}
MIB = 2**20


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default='small',
                      help='T5 1.1 size, one of prompt_tuning.models.t5.SIZES.')
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--inputs_length', type=int, default=128)
  parser.add_argument('--prompt_length', type=int, default=20)
  parser.add_argument('--targets_length', type=int, default=8)
  parser.add_argument('--warmup_steps', type=int, default=2,
                      help='Untimed steps per framework (the first one compiles).')
  parser.add_argument('--rounds', type=int, default=8, help='Timing turns per framework.')
  parser.add_argument('--steps_per_round', type=int, default=1, help='Timed steps per turn.')
  parser.add_argument('--matmul_size', type=int, default=2048,
                      help='N of the N x N @ N x N float32 matmul that measures the machine.')
  parser.add_argument('--matmul_reps', type=int, default=4,
                      help='Timed matmuls per round and framework.')
  parser.add_argument('--threads', type=int, default=len(os.sched_getaffinity(0)),
                      help='Cores for each framework (CPU affinity; also torch.set_num_threads).')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--json', default=None, help='Also write every figure to this file.')
  parser.add_argument('--worker', choices=FRAMEWORKS, default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  for name in ('batch_size', 'inputs_length', 'prompt_length', 'targets_length', 'rounds',
               'steps_per_round', 'matmul_size', 'matmul_reps', 'threads'):
    if getattr(args, name) < 1:
      parser.error(f'--{name} must be at least 1, got {getattr(args, name)}.')
  return args


def use_cores(threads: int) -> None:
  """Pins this process to `threads` cores; XLA sizes its thread pool from the affinity mask."""
  cores = sorted(os.sched_getaffinity(0))
  if threads > len(cores):
    raise SystemExit(f'--threads={threads}, but this process may use only {len(cores)} cores.')
  os.sched_setaffinity(0, cores[:threads])


def make_batch(args: argparse.Namespace, vocab_size: int) -> Dict[str, np.ndarray]:
  """The one batch both frameworks train on: random non-padding tokens, teacher forcing."""
  rng = np.random.default_rng(args.seed)
  shape_in = (args.batch_size, args.inputs_length)
  shape_out = (args.batch_size, args.targets_length)
  targets = rng.integers(2, vocab_size, shape_out, dtype=np.int32)
  return {
      'encoder_input_tokens': rng.integers(2, vocab_size, shape_in, dtype=np.int32),
      'decoder_input_tokens': np.pad(targets[:, :-1], ((0, 0), (1, 0))),  # BOS is the pad id 0
      'decoder_target_tokens': targets,
      'decoder_loss_weights': np.ones(shape_out, np.int32),
  }


# --- Memory of the calling process ----------------------------------------------------------------


def _proc_status_mib(field: str) -> float:
  with open('/proc/self/status') as f:
    for line in f:
      if line.startswith(field + ':'):
        return int(line.split()[1]) * 1024 / MIB
  raise RuntimeError(f'/proc/self/status has no {field} line.')


def reset_peak_rss() -> bool:
  """Restarts the kernel's peak-RSS count (VmHWM) from the current RSS; False where not allowed."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


# --- The two train steps ----------------------------------------------------------------------


class OursStep:
  """This runtime's train step, set up as `train_loop.train` sets it up, on one CPU device."""

  def __init__(self, args: argparse.Namespace):
    import jax
    import seqio
    from prompt_tuning.models import prompted, t5
    from prompt_tuning.runtime import model as model_lib, optimizer, partitioning, run_setup
    self.rss_after_imports = _proc_status_mib('VmRSS')
    self._jax = jax
    config = t5.config_for_size(args.config)
    prompt = prompted.PromptConfig(length=args.prompt_length)
    module = prompted.PromptedT5(config, prompt_config=prompt)
    model = model_lib.EncoderDecoderModel(module, seqio.PassThroughVocabulary(config.vocab_size))
    batch = make_batch(args, config.vocab_size)
    shapes = {k: v.shape for k, v in batch.items() if k != 'decoder_loss_weights'}
    self.partitioner = partitioning.Partitioner()
    run = run_setup.set_up(model, run_setup.RunConfig(self.partitioner, random_seed=args.seed),
                           input_shapes=shapes, devices=jax.devices()[:1])
    self.mesh, self.frozen = run.mesh, run.frozen
    self.trainer = run.trainer(optimizer.adafactor(0.3))
    self.state = run.initial_state(self.trainer)
    self.batch = partitioning.global_batch(batch, self.mesh)
    self.step_fn = self.trainer.jit_train_step(
        jax.tree_util.tree_map(lambda x: x.sharding, self.state))

  def context(self):
    return _both(self._jax.set_mesh(self.mesh), self.partitioner.activation_context())

  def __call__(self) -> None:
    self.state, metrics = self.step_fn(self.state, self.frozen, self.batch)
    self._jax.block_until_ready((self.state, metrics))

  def analysis(self) -> Dict[str, Any]:
    """XLA's own figures for the compiled step, and the matmul FLOPs of its jaxpr."""
    from prompt_tuning.planning import flops as flop_count
    compiled = self.step_fn.lower(self.state, self.frozen, self.batch).compile()
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    argument, output = memory.argument_size_in_bytes, memory.output_size_in_bytes
    temp, alias = memory.temp_size_in_bytes, memory.alias_size_in_bytes
    return {
        'xla_flops': float(cost['flops']),
        'jaxpr_matmul_flops': flop_count.jaxpr_matmul_flops(self.trainer.train_step, self.state,
                                                            self.frozen, self.batch),
        'xla_memory_mib': {'argument': argument / MIB, 'output': output / MIB, 'temp': temp / MIB,
                           'alias': alias / MIB,
                           'total': (argument + output + temp - alias) / MIB},
        'threads': len(os.sched_getaffinity(0)),
    }


class PeerStep:
  """HF PEFT prompt tuning of `T5ForConditionalGeneration`, with transformers' Adafactor."""

  def __init__(self, args: argparse.Namespace, config: Dict[str, Any]):
    import peft
    import torch
    import transformers
    from transformers.optimization import Adafactor
    self.rss_after_imports = _proc_status_mib('VmRSS')
    self._torch = torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    hf_config = transformers.T5Config(
        vocab_size=config['vocab_size'], d_model=config['emb_dim'], d_kv=config['head_dim'],
        d_ff=config['mlp_dim'], num_layers=config['num_encoder_layers'],
        num_decoder_layers=config['num_decoder_layers'], num_heads=config['num_heads'],
        relative_attention_num_buckets=config['relative_attention_num_buckets'],
        relative_attention_max_distance=config['relative_attention_max_distance'],
        layer_norm_epsilon=config['layer_norm_epsilon'], dropout_rate=config['dropout_rate'],
        feed_forward_proj='gated-gelu', tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0)
    base = transformers.T5ForConditionalGeneration(hf_config)
    # T5 1.1 has an output layer of its own; transformers 5 ties it to the embedding on creation.
    base.config.tie_word_embeddings = False
    base.lm_head.weight = torch.nn.Parameter(base.shared.weight.detach().clone())
    self.model = peft.get_peft_model(base, peft.PromptTuningConfig(
        task_type=peft.TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=args.prompt_length,
        num_transformer_submodules=1))
    if base.lm_head.weight is base.shared.weight:
      raise RuntimeError('PEFT re-tied the output layer to the embedding; the models would differ.')
    trainable = [p for p in self.model.parameters() if p.requires_grad]
    self.trainable_parameters = sum(p.numel() for p in trainable)
    self.optimizer = Adafactor(trainable, lr=0.3, relative_step=False, scale_parameter=False,
                               warmup_init=False, decay_rate=-0.8, weight_decay=1e-5,
                               clip_threshold=1.0)
    self.model.train()
    batch = make_batch(args, config['vocab_size'])
    batch = {k: torch.from_numpy(v).long() for k, v in batch.items()}
    self.inputs = dict(input_ids=batch['encoder_input_tokens'],
                       attention_mask=torch.ones_like(batch['encoder_input_tokens']),
                       decoder_input_ids=batch['decoder_input_tokens'],
                       labels=batch['decoder_target_tokens'])

  def context(self):
    return contextlib.nullcontext()

  def __call__(self) -> None:
    self.model(**self.inputs).loss.backward()
    self.optimizer.step()
    self.optimizer.zero_grad(set_to_none=True)

  def analysis(self) -> Dict[str, Any]:
    """torch's own figures; runs one (untimed) step to see what autograd keeps for the backward."""
    torch = self._torch
    param_storages = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
    saved = {}

    def pack(tensor):
      storage = tensor.untyped_storage()
      if storage.data_ptr() not in param_storages:
        saved[storage.data_ptr()] = storage.nbytes()
      return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
      self()
    return {
        'saved_activations_mib': sum(saved.values()) / MIB,
        'threads': torch.get_num_threads(),
        'attention': self.model.base_model.config._attn_implementation,
        'trainable_parameters': self.trainable_parameters,
    }


@contextlib.contextmanager
def _both(first, second):
  with first, second:
    yield


# --- Worker side ------------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
  """A worker: answers the coordinator's JSON commands on stdin with one JSON line each."""
  # Libraries may print; keep the real stdout for the protocol alone.
  protocol = os.fdopen(os.dup(1), 'w', buffering=1)
  os.dup2(2, 1)
  use_cores(args.threads)
  reply = lambda message: protocol.write(json.dumps(message) + '\n')
  setup = json.loads(sys.stdin.readline())
  step = OursStep(args) if args.worker == 'ours' else PeerStep(args, setup['config'])
  with step.context():
    for _ in range(args.warmup_steps):
      step()
    ready = {'rss_after_imports_mib': step.rss_after_imports, **step.analysis()}
    ready['rss_ready_mib'] = _proc_status_mib('VmRSS')
    ready['peak_rss_reset'] = reset_peak_rss()
    reply(ready)
    for line in sys.stdin:
      command = json.loads(line)
      if command['op'] == 'finish':
        break
      times = []
      for _ in range(command['steps']):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
      reply({'step_s': times})
  reply({'steady_peak_rss_mib': _proc_status_mib('VmHWM') if ready['peak_rss_reset'] else None,
         'ru_maxrss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB})


# --- Coordinator side -------------------------------------------------------------------------


class WorkerError(RuntimeError):
  """A worker process exited before answering."""


class Worker:
  """One framework's worker process, spoken to in JSON lines."""

  def __init__(self, name: str, argv: Sequence[str]):
    self.name = name
    self.log = tempfile.TemporaryFile('w+')
    env = dict(os.environ)
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), *argv,
                                     f'--worker={name}'], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)

  def send(self, message: Dict[str, Any]) -> None:
    self.process.stdin.write(json.dumps(message) + '\n')
    self.process.stdin.flush()

  def receive(self) -> Dict[str, Any]:
    line = self.process.stdout.readline()
    if not line:
      self.process.wait()
      self.log.seek(0)
      tail = [l for l in self.log.read().splitlines() if l.strip()][-1:] or ['(no output)']
      raise WorkerError(f'The {TITLES[self.name]} worker exited with status '
                        f'{self.process.returncode}: {tail[0]}')
    return json.loads(line)

  def close(self) -> None:
    if self.process.poll() is None:
      self.process.kill()
    self.process.wait()
    self.log.close()


def matmul_timers(size: int, seed: int, threads: int) -> Dict[str, Callable[[], float]]:
  """Timers (in seconds) of one float32 [N, N] @ [N, N] in jnp (jitted) and in torch.

  Each is run once here, so the timers see neither compilation nor first-call costs.
  """
  import jax
  import jax.numpy as jnp
  import torch
  torch.set_num_threads(threads)
  a, b = jax.random.normal(jax.random.key(seed), (2, size, size), jnp.float32)
  a_torch, b_torch = torch.from_numpy(np.array(a)), torch.from_numpy(np.array(b))
  jnp_matmul = jax.jit(jnp.matmul)
  runs = {'jnp': lambda: jnp_matmul(a, b).block_until_ready(),
          'torch': lambda: torch.matmul(a_torch, b_torch)}

  def timer(run: Callable[[], Any]) -> Callable[[], float]:
    run()

    def timed() -> float:
      start = time.perf_counter()
      run()
      return time.perf_counter() - start

    return timed

  return {name: timer(run) for name, run in runs.items()}


def run(args: argparse.Namespace, argv: Sequence[str]) -> Dict[str, Any]:
  """Starts the workers, alternates timing rounds, and gathers every figure."""
  use_cores(args.threads)
  start, load_at_start = time.perf_counter(), os.getloadavg()[0]
  import dataclasses
  from prompt_tuning.planning import flops as flop_count
  from prompt_tuning.models import t5
  try:
    config = t5.config_for_size(args.config)
  except ValueError as e:
    raise SystemExit(f'--config: {e}') from None
  workers = {name: Worker(name, argv) for name in FRAMEWORKS}
  try:
    setup = {'config': {k: v for k, v in dataclasses.asdict(config).items()
                        if isinstance(v, (int, float, bool))}}
    for worker in workers.values():
      worker.send(setup)  # all set up (and compile) at once; nothing is timed yet
    matmuls = matmul_timers(args.matmul_size, args.seed, args.threads)
    ready = {name: worker.receive() for name, worker in workers.items()}
    step_s = {name: [] for name in FRAMEWORKS}
    matmul_s = {name: [] for name in matmuls}
    for round_index in range(args.rounds):
      order = FRAMEWORKS if round_index % 2 == 0 else FRAMEWORKS[::-1]
      for name in order:
        workers[name].send({'op': 'time', 'steps': args.steps_per_round})
        step_s[name] += workers[name].receive()['step_s']
      for name, timed in matmuls.items():
        matmul_s[name] += [timed() for _ in range(args.matmul_reps)]
    for worker in workers.values():
      worker.send({'op': 'finish'})
    final = {name: worker.receive() for name, worker in workers.items()}
  finally:
    for worker in workers.values():
      worker.close()

  flops = flop_count.train_step_flops(config, args.batch_size, args.inputs_length,
                                      args.prompt_length, args.targets_length)
  matmul_flops = 2 * args.matmul_size**3
  matmul = {name: {'median_s': statistics.median(times), 'best_s': min(times),
                   'flop_per_s': matmul_flops / statistics.median(times),
                   'best_flop_per_s': matmul_flops / min(times)}
            for name, times in matmul_s.items()}
  results = {'setup': {k: v for k, v in vars(args).items() if k not in ('json', 'worker')},
             'machine': {'load_average_at_start': load_at_start,
                         'load_average_at_end': os.getloadavg()[0],
                         'wall_s': time.perf_counter() - start},
             'flops': {'forward': flops.forward, 'model': flops.model, 'exact': flops.exact,
                       'jaxpr_matmuls': ready['ours']['jaxpr_matmul_flops'],
                       'xla_cost_analysis': ready['ours']['xla_flops']},
             'matmul': matmul}
  for name in FRAMEWORKS:
    median, best = statistics.median(step_s[name]), min(step_s[name])
    results[name] = {
        'step_s': step_s[name], 'median_step_s': median, 'best_step_s': best,
        'model_flop_per_s': flops.model / median,
        'fraction_of_matmul_rate': flops.model / median / matmul['jnp']['flop_per_s'],
        'fraction_of_matmul_rate_best': flops.model / best / matmul['jnp']['best_flop_per_s'],
        **ready[name], **final[name]}
  for kind in ('median', 'best'):
    ours, peer = results['ours'][f'{kind}_step_s'], results['peer'][f'{kind}_step_s']
    results[kind] = {'ratio_ours_over_peer': ours / peer, 'speed_up': peer / ours}
  return results


def _row(label: str, values: Sequence[Any], width: int = 48) -> str:
  return label.ljust(width) + ''.join(str(v).rjust(22) for v in values)


def _mib(value: Optional[float]) -> str:
  return 'n/a' if value is None else f'{value:,.0f}'


def report(results: Dict[str, Any]) -> str:
  """The results as a table for the console."""
  s, m, flops = results['setup'], results['machine'], results['flops']
  ours, peer = results['ours'], results['peer']
  both = lambda f: [f(ours), f(peer)]
  xla = ours['xla_memory_mib']
  giga = lambda x: f'{x / 1e9:,.2f} G'
  lines = [
      f"Prompt-tuning train step: T5 1.1 {s['config']} (random weights), batch {s['batch_size']}, "
      f"inputs {s['inputs_length']} + prompt {s['prompt_length']}, targets {s['targets_length']}, "
      'Adafactor on the prompt only',
      f"{s['rounds']} alternating rounds x {s['steps_per_round']} steps after {s['warmup_steps']} "
      f"warm-up steps; threads: XLA {ours['threads']}, torch {peer['threads']} "
      f"(attention: {peer['attention']})",
      f"machine: load average (1 min) {m['load_average_at_start']:.1f} at start, "
      f"{m['load_average_at_end']:.1f} at end, on {s['threads']} cores; "
      f"the run took {m['wall_s']:.0f} s",
      '',
      _row('', [TITLES['ours'], TITLES['peer']]),
      _row('step time, median (ms)', both(lambda r: f"{r['median_step_s'] * 1e3:,.1f}")),
      _row('step time, min .. max (ms)', both(
          lambda r: f"{min(r['step_s']) * 1e3:,.0f} .. {max(r['step_s']) * 1e3:,.0f}")),
      _row('achieved GFLOP/s (model FLOPs, median step)',
           both(lambda r: f"{r['model_flop_per_s'] / 1e9:,.1f}")),
      _row('fraction of the jnp float32 matmul rate',
           both(lambda r: f"{r['fraction_of_matmul_rate']:.1%}")),
      _row('  the same from best times',
           both(lambda r: f"{r['fraction_of_matmul_rate_best']:.1%}")),
      _row('peak RSS of the process, ru_maxrss (MiB)', both(lambda r: _mib(r['ru_maxrss_mib']))),
      _row('peak RSS during timed steps (MiB)', both(lambda r: _mib(r['steady_peak_rss_mib']))),
      _row('RSS after imports, before the model (MiB)',
           both(lambda r: _mib(r['rss_after_imports_mib']))),
      _row('RSS after warm-up (MiB)', both(lambda r: _mib(r['rss_ready_mib']))),
      _row('XLA: temporaries of the compiled step (MiB)', [_mib(xla['temp']), '-']),
      _row('torch: activations saved for backward (MiB)',
           ['-', _mib(peer['saved_activations_mib'])]),
      '',
      'ours / peer step time: ' + '; '.join(
          f"{kind} {results[kind]['ratio_ours_over_peer']:.3f}, speed-up (peer / ours) "
          f"{results[kind]['speed_up']:.2f}x" for kind in ('median', 'best')),
      f"XLA memory analysis (MiB): arguments {xla['argument']:,.1f} + outputs {xla['output']:,.1f} "
      f"+ temporaries {xla['temp']:,.1f} - aliased {xla['alias']:,.1f} = {xla['total']:,.1f}",
      f"float32 matmul {s['matmul_size']}^3, median (best): " + '; '.join(
          f"{name} {r['median_s'] * 1e3:,.1f} ({r['best_s'] * 1e3:,.1f}) ms = "
          f"{r['flop_per_s'] / 1e9:,.1f} ({r['best_flop_per_s'] / 1e9:,.1f}) GFLOP/s"
          for name, r in results['matmul'].items()),
      '',
      'FLOPs per train step (matmuls only, see prompt_tuning/planning/flops.py)',
      _row('  forward', [giga(flops['forward'])]),
      _row('  model: 2 x forward', [giga(flops['model'])]),
      _row('  exact: forward + autodiff backward', [giga(flops['exact'])]),
      _row("  dot_general in the step's jaxpr", [
          giga(flops['jaxpr_matmuls']),
          f"exact / jaxpr {flops['exact'] / flops['jaxpr_matmuls']:.4f}"]),
      _row('  XLA cost_analysis (all ops)', [
          giga(flops['xla_cost_analysis']),
          f"XLA / exact {flops['xla_cost_analysis'] / flops['exact']:.3f}",
          f"XLA / model {flops['xla_cost_analysis'] / flops['model']:.3f}"]),
  ]
  return '\n'.join(lines)


def main(argv: Sequence[str]) -> None:
  args = parse_args(argv)
  if args.worker:
    serve(args)
    return
  try:
    results = run(args, argv)
  except WorkerError as e:
    raise SystemExit(str(e)) from None
  print(report(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main(sys.argv[1:])
