"""Exact matmul FLOP counts of a prompt-tuning train step of T5 1.1, and a counter to check them.

Only matrix products count, 2*m*k*n each for an [m, k] x [k, n] product;
elementwise work (norms, softmax, GELU, the loss) and gathers (token and
prompt embeddings) do not. Knows the T5 1.1 architecture of
`prompt_tuning.models.t5`, nothing of the runtime or of any other framework.
"""

import dataclasses
import math
from typing import Any, Callable, List

import jax
from jax.extend import core as jax_core

from prompt_tuning.models import t5


@dataclasses.dataclass(frozen=True)
class Matmul:
  """`count` products of [m, k] x [k, n] in the forward pass.

  Attributes:
    name: what it computes.
    m, k, n: the product's shape.
    count: how many such products (layers x heads), per example or per batch.
    grad_operands: how many operands the backward pass differentiates. Prompt
      tuning takes no weight gradients, so an activation x frozen-weight
      product has 1 (its input's gradient) and an activation x activation
      product (attention scores, attention values) 2; a product that nothing
      trainable feeds has none, or 1 when only one side depends on the prompt.
    per_example: False for work done once per batch (the position biases).
  """
  name: str
  m: int
  k: int
  n: int
  count: int
  grad_operands: int
  per_example: bool = True

  def flops(self, batch_size: int) -> int:
    return 2 * self.m * self.k * self.n * self.count * (batch_size if self.per_example else 1)


@dataclasses.dataclass(frozen=True)
class StepFlops:
  """FLOPs of one train step of a whole batch."""
  forward: int
  backward: int  # activation gradients only, exactly as autodiff takes them

  @property
  def model(self) -> int:
    """The conventional count: forward plus an activation-gradient backward of the same cost."""
    return 2 * self.forward

  @property
  def exact(self) -> int:
    return self.forward + self.backward


def _attention(stack: str, q_len: int, kv_len: int, layers: int, config: t5.T5Config,
               query_grad: int, kv_grad: int) -> List[Matmul]:
  """The matmuls of one attention block: projections over their own lengths, scores, values, out.

  `query_grad` / `kv_grad` say whether the query side and the key/value side
  depend on the prompt (1) or not (0).
  """
  h, heads, d = config.emb_dim, config.num_heads, config.head_dim
  inner = heads * d
  out_grad = max(query_grad, kv_grad)
  return [
      Matmul(f'{stack} query', q_len, h, inner, layers, query_grad),
      Matmul(f'{stack} key, value', kv_len, h, inner, 2 * layers, kv_grad),
      Matmul(f'{stack} scores QK^T', q_len, d, kv_len, layers * heads, query_grad + kv_grad),
      Matmul(f'{stack} values AV', q_len, kv_len, d, layers * heads, out_grad + kv_grad),
      Matmul(f'{stack} out', q_len, inner, h, layers, out_grad),
  ]


def _mlp(stack: str, length: int, layers: int, config: t5.T5Config) -> List[Matmul]:
  h, f = config.emb_dim, config.mlp_dim
  return [Matmul(f'{stack} mlp wi_0, wi_1', length, h, f, 2 * layers, 1),
          Matmul(f'{stack} mlp wo', length, f, h, layers, 1)]


def _position_bias(stack: str, length: int, config: t5.T5Config) -> Matmul:
  """The relative position bias is looked up by a one-hot matmul, once per stack and batch."""
  return Matmul(f'{stack} position bias (one-hot)', config.num_heads,
                config.relative_attention_num_buckets, length * length, 1, 0, per_example=False)


def forward_matmuls(config: t5.T5Config, inputs_length: int, prompt_length: int,
                    targets_length: int) -> List[Matmul]:
  """Every matmul of the prompted model's teacher-forced forward pass.

  The encoder runs over L = P + T positions, the decoder over S target
  positions; cross-attention projects keys and values from all L encoder
  positions and attends over them. The decoder's first self-attention block,
  and the query of its first cross-attention, see only the decoder's own
  tokens, so nothing trainable feeds them and the backward pass skips them.
  """
  length = prompt_length + inputs_length
  s, enc, dec = targets_length, config.num_encoder_layers, config.num_decoder_layers
  return [
      _position_bias('encoder', length, config),
      *_attention('encoder self-attention', length, length, enc, config, 1, 1),
      *_mlp('encoder', length, enc, config),
      _position_bias('decoder', s, config),
      *_attention('decoder self-attention (layer 0)', s, s, 1, config, 0, 0),
      *_attention('decoder self-attention', s, s, dec - 1, config, 1, 1),
      *_attention('cross-attention (layer 0)', s, length, 1, config, 0, 1),
      *_attention('cross-attention', s, length, dec - 1, config, 1, 1),
      *_mlp('decoder', s, dec, config),
      Matmul('logits_dense', s, config.emb_dim, config.vocab_size, 1, 1),
  ]


def train_step_flops(config: t5.T5Config, batch_size: int, inputs_length: int, prompt_length: int,
                     targets_length: int) -> StepFlops:
  """Matmul FLOPs of one prompt-tuning train step: forward, and the backward autodiff runs.

  forward  = sum over `forward_matmuls` of 2*m*k*n*count (x batch)
  backward = the same sum weighted by each product's `grad_operands`
  The optimizer update of a [P, H] prompt has no matmul.
  """
  matmuls = forward_matmuls(config, inputs_length, prompt_length, targets_length)
  return StepFlops(forward=sum(m.flops(batch_size) for m in matmuls),
                   backward=sum(m.flops(batch_size) * m.grad_operands for m in matmuls))


def jaxpr_matmul_flops(fn: Callable[..., Any], *args: Any, scan_bodies_once: bool = False) -> int:
  """2 * (product of all dimensions) summed over every `dot_general` in the trace of `fn(*args)`.

  Nested jaxprs (jit, custom derivatives, remat) count once; scan bodies
  once per iteration, or once in all with `scan_bodies_once` (as XLA's
  cost analysis counts a loop body).
  """
  return _dot_flops(jax.make_jaxpr(fn)(*args).jaxpr, scan_bodies_once)


def _dot_flops(jaxpr: jax_core.Jaxpr, scan_bodies_once: bool) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      (_, rhs_contracting), (_, rhs_batch) = eqn.params['dimension_numbers']
      lhs, rhs = (v.aval.shape for v in eqn.invars)
      rhs_free = [size for i, size in enumerate(rhs) if i not in rhs_contracting + rhs_batch]
      total += 2 * math.prod(lhs) * math.prod(rhs_free)
    scanned = eqn.primitive.name == 'scan' and not scan_bodies_once
    repeats = eqn.params['length'] if scanned else 1
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        if isinstance(sub, jax_core.ClosedJaxpr):
          sub = sub.jaxpr
        if isinstance(sub, jax_core.Jaxpr):
          total += repeats * _dot_flops(sub, scan_bodies_once)
  return total
