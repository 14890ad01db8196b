"""Building blocks of T5 1.1: RMS norm, embedding, gated-GELU MLP, attention, relative position biases.

Pure Flax: no I/O, no gin, no knowledge of tasks or prompts. Every parameter
carries logical axis names (`embed`, `mlp`, `joined_kv`, `heads`, `kv`,
`vocab`, `relpos_buckets`) so the runtime can shard it over a mesh.
"""

from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
DType = Any
Initializer = Callable[..., Array]

# Initializers of T5 1.1 (T5X `examples/t5/network.py`). They only matter
# when a model is trained from scratch, e.g. in tests and the offline demo.
default_kernel_init = nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal')
embedding_init = nn.initializers.normal(stddev=1.0)
relpos_init = nn.initializers.variance_scaling(1.0, 'fan_avg', 'uniform')

# Added to attention logits at masked positions (T5X uses the same value).
_MASK_BIAS = -1e10


def dense(features: int, axes: Tuple[str, str], config_dtype: DType, param_dtype: DType,
          name: str, kernel_init: Initializer = default_kernel_init) -> nn.Dense:
  """A bias-free dense layer whose `kernel` carries the logical axes `axes`."""
  return nn.Dense(
      features,
      use_bias=False,
      dtype=config_dtype,
      param_dtype=param_dtype,
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      name=name)


class RMSNorm(nn.Module):
  """T5 layer norm: scale only, no bias and no mean subtraction; statistics in float32."""
  epsilon: float = 1e-6
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """[..., H] -> [..., H]."""
    scale = self.param('scale', nn.with_logical_partitioning(nn.initializers.ones, ('embed',)),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
    return y.astype(self.dtype) * scale.astype(self.dtype)


class Embed(nn.Module):
  """Token embedding table `[V, H]` (logical axes `vocab`, `embed`)."""
  num_embeddings: int
  features: int
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, tokens: Array) -> Array:
    """[B, T] int tokens -> [B, T, H]."""
    embedding = self.param('embedding', nn.with_logical_partitioning(embedding_init, ('vocab', 'embed')),
                           (self.num_embeddings, self.features), self.param_dtype)
    return jnp.take(embedding.astype(self.dtype), tokens, axis=0)


class MlpBlock(nn.Module):
  """Gated-GELU feed-forward: wo(gelu(wi_0 x) * wi_1 x)."""
  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    """[B, T, H] -> [B, T, H]."""
    emb_dim = x.shape[-1]
    gate = dense(self.mlp_dim, ('embed', 'mlp'), self.dtype, self.param_dtype, 'wi_0')(x)
    linear = dense(self.mlp_dim, ('embed', 'mlp'), self.dtype, self.param_dtype, 'wi_1')(x)
    # T5 1.1 uses the tanh approximation of GELU (HF calls it `gelu_new`).
    h = jax.nn.gelu(gate, approximate=True) * linear
    h = nn.with_logical_constraint(h, ('batch', 'length', 'mlp'))
    h = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(h, deterministic=deterministic)
    return dense(emb_dim, ('mlp', 'embed'), self.dtype, self.param_dtype, 'wo')(h)


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
  """Maps key-minus-query offsets to T5's log-spaced buckets (numpy, computed at trace time).

  Half the buckets are exact offsets, the rest grow logarithmically up to
  `max_distance`. Bidirectional (encoder) buckets split the range in two by
  the sign of the offset; causal (decoder) buckets see only the past.
  """
  ret = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  val_if_large = max_exact + (
      np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps) /
      np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(np.int32)
  val_if_large = np.minimum(val_if_large, num_buckets - 1)
  return ret + np.where(is_small, n, val_if_large)


class RelativePositionBiases(nn.Module):
  """One bias table `rel_embedding` `[heads, buckets]` shared by all layers of a stack."""
  num_buckets: int
  max_distance: int
  num_heads: int
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, qlen: int, klen: int, bidirectional: bool) -> Array:
    """Returns the attention bias `[1, heads, qlen, klen]`."""
    context = np.arange(qlen, dtype=np.int32)[:, None]
    memory = np.arange(klen, dtype=np.int32)[None, :]
    buckets = relative_position_bucket(memory - context, bidirectional, self.num_buckets,
                                       self.max_distance)
    table = self.param('rel_embedding',
                       nn.with_logical_partitioning(relpos_init, ('heads', 'relpos_buckets')),
                       (self.num_heads, self.num_buckets), self.param_dtype)
    # A one-hot matmul rather than a gather: it partitions cleanly over heads.
    one_hot = jax.nn.one_hot(buckets, self.num_buckets, dtype=self.dtype)  # [q, k, buckets]
    values = jnp.einsum('hb,qkb->hqk', table.astype(self.dtype), one_hot)
    return values[None]


def attention_mask(query_visible: Array, key_visible: Array,
                   query_segments: Optional[Array] = None,
                   key_segments: Optional[Array] = None) -> Array:
  """[B, Q], [B, K] visibility (and optional segment ids) -> [B, 1, Q, K] mask of 0/1.

  Segments are compared when both are given; with query segments only, every
  query segment sees all the keys (several decoded sequences over one input).
  """
  mask = (query_visible[:, :, None] > 0) & (key_visible[:, None, :] > 0)
  if query_segments is not None and key_segments is not None:
    mask &= query_segments[:, :, None] == key_segments[:, None, :]
  return mask[:, None].astype(jnp.float32)


def causal_mask(length: int) -> Array:
  """[1, 1, T, T] lower-triangular mask."""
  return jnp.tril(jnp.ones((length, length), jnp.float32))[None, None]


class MultiHeadAttention(nn.Module):
  """T5 attention: no 1/sqrt(d) scaling (folded into the query initializer), float32 softmax.

  Kernels are stored flat as in T5X checkpoints: `query`/`key`/`value`
  `[H, heads*kv]` (`embed`, `joined_kv`) and `out` `[heads*kv, H]`.
  With `decode=True` the keys and values of past positions live in the
  `cache` collection, and each call appends one position.
  """
  num_heads: int
  head_dim: int
  dropout_rate: float = 0.0
  dtype: DType = jnp.float32
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, mask: Optional[Array], bias: Optional[Array],
               deterministic: bool, decode: bool = False) -> Array:
    """[B, Q, H] queries over [B, K, H] keys/values; mask [B, 1, Q, K]; bias [1, heads, Q, K]."""
    joined = self.num_heads * self.head_dim
    query_init = lambda *args: default_kernel_init(*args) / np.sqrt(self.head_dim)
    project = lambda name, init=default_kernel_init: dense(
        joined, ('embed', 'joined_kv'), self.dtype, self.param_dtype, name, init)
    split = lambda x: x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))
    query = split(project('query', query_init)(inputs_q))  # [B, Q, heads, kv]
    key = split(project('key')(inputs_kv))  # [B, K, heads, kv]
    value = split(project('value')(inputs_kv))
    query = nn.with_logical_constraint(query, ('batch', 'length', 'heads', 'kv'))
    key = nn.with_logical_constraint(key, ('batch', 'length', 'heads', 'kv'))
    value = nn.with_logical_constraint(value, ('batch', 'length', 'heads', 'kv'))

    if decode:
      key, value, mask, bias = self._update_cache(key, value, mask, bias)

    # [B, heads, T, kv]: with the batch axes leading, XLA's CPU backend runs both products as
    # plain batched matmuls; the einsums over [B, T, heads, kv] run several times slower there.
    query, key, value = (jnp.swapaxes(x, 1, 2) for x in (query, key, value))
    logits = jnp.einsum('bhqd,bhkd->bhqk', query, key).astype(jnp.float32)
    if bias is not None:
      logits = logits + bias.astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask > 0, logits, _MASK_BIAS)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    weights = nn.Dropout(self.dropout_rate)(weights, deterministic=deterministic)
    out = jnp.swapaxes(jnp.einsum('bhqk,bhkd->bhqd', weights, value), 1, 2)  # [B, Q, heads, kv]
    out = out.reshape(out.shape[:2] + (joined,))
    return dense(inputs_q.shape[-1], ('joined_kv', 'embed'), self.dtype, self.param_dtype, 'out')(out)

  def _update_cache(self, key: Array, value: Array, mask: Optional[Array], bias: Optional[Array]):
    """Writes this step's key/value at the cache index; returns the cached [B, L, heads, kv].

    At initialization (`init` with full-length inputs) the cache is only
    created, with the length of those inputs as the maximum decode length.
    The mask and bias given for all L positions are sliced to this step's row.
    """
    initialized = self.has_variable('cache', 'cached_key')
    cached_key = self.variable('cache', 'cached_key', jnp.zeros, key.shape, key.dtype)
    cached_value = self.variable('cache', 'cached_value', jnp.zeros, value.shape, value.dtype)
    cache_index = self.variable('cache', 'cache_index', lambda: jnp.array(0, dtype=jnp.int32))
    if not initialized:
      return key, value, mask, bias
    batch, length = cached_key.value.shape[:2]
    if key.shape[1] != 1:
      raise ValueError(f'decode=True takes one position per call, got {key.shape[1]}.')
    index = cache_index.value
    cached_key.value = jax.lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
    cached_value.value = jax.lax.dynamic_update_slice(cached_value.value, value, (0, index, 0, 0))
    cache_index.value = index + 1
    # Only positions written so far are visible.
    step_mask = (jnp.arange(length) <= index)[None, None, None, :].astype(jnp.float32)
    mask = step_mask if mask is None else mask * step_mask
    if bias is not None:
      bias = jax.lax.dynamic_slice_in_dim(bias, index, 1, axis=-2)
    return cached_key.value, cached_value.value, mask, bias
