"""T5 1.1 encoder-decoder with the parameter paths of T5X's T5 1.1 checkpoints.

The interface follows T5X's `examples/t5/network.Transformer` (`encode`,
`decode`, `__call__`), so these modules can be handed to T5X's
`EncoderDecoderModel`. Pure Flax: no I/O, no gin, no tasks.
"""

import dataclasses
from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning.models import layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyperparameters of a T5 1.1 model (defaults: Small)."""
  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 6
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  head_dim: int = 64
  mlp_dim: int = 1024
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.0
  layer_norm_epsilon: float = 1e-6
  dtype: Any = jnp.float32  # activations
  param_dtype: Any = jnp.float32  # weights
  remat_policy: str = 'none'  # what each layer saves for the backward pass: REMAT_POLICIES
  scan_layers: bool = False  # one scanned layer per stack; params gain a leading `layers` axis

  def __post_init__(self):
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f'remat_policy={self.remat_policy!r}: expected one of '
                       f'{", ".join(map(repr, REMAT_POLICIES))}.')


# Per-layer rematerialisation (`remat_policy`, named as in T5X's scalable_t5): what each layer
# keeps from its forward pass for its backward pass; the rest is recomputed there.
REMAT_POLICIES: Dict[str, Any] = {
    'none': None,  # no remat: every activation is kept
    'full': jax.checkpoint_policies.nothing_saveable,  # only the layer's input
    # The outputs of matmuls with the weights (projections, MLP); attention scores and
    # everything elementwise are recomputed.
    'minimal': jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


# The one table of model shapes: the released T5 1.1 LM-adapted checkpoints
# (`t5_1_1_lm100k_<size>`), plus 'tiny' for tests and 'demo' for the offline demo's
# frozen model. Gin files name a row with MODEL_SIZE (gin/models/sizes/).
SIZES: Dict[str, Dict[str, int]] = {
    'tiny': dict(emb_dim=8, num_heads=2, num_encoder_layers=2, num_decoder_layers=2, head_dim=4,
                 mlp_dim=16, relative_attention_num_buckets=8, relative_attention_max_distance=16,
                 vocab_size=128),
    'demo': dict(emb_dim=64, num_heads=4, num_encoder_layers=2, num_decoder_layers=2, head_dim=16,
                 mlp_dim=128, relative_attention_num_buckets=16, relative_attention_max_distance=32,
                 vocab_size=128),
    'small': dict(emb_dim=512, num_heads=6, num_encoder_layers=8, num_decoder_layers=8, mlp_dim=1024),
    'base': dict(emb_dim=768, num_heads=12, num_encoder_layers=12, num_decoder_layers=12,
                 mlp_dim=2048),
    'large': dict(emb_dim=1024, num_heads=16, num_encoder_layers=24, num_decoder_layers=24,
                  mlp_dim=2816),
    'xl': dict(emb_dim=2048, num_heads=32, num_encoder_layers=24, num_decoder_layers=24,
               mlp_dim=5120),
    'xxl': dict(emb_dim=4096, num_heads=64, num_encoder_layers=24, num_decoder_layers=24,
                mlp_dim=10240),
}


def config_for_size(size: str, **overrides: Any) -> T5Config:
  """The T5Config of a named size ('tiny', 'small', ..., 'xxl'), with overrides."""
  if size not in SIZES:
    raise ValueError(f'Unknown T5 1.1 size {size!r}; expected one of {sorted(SIZES)}.')
  return T5Config(**{**SIZES[size], **overrides})


def _layer_stack(layer_cls, config: T5Config, num_layers: int, name: str, decode_cache: bool):
  """Wraps a layer class with `nn.remat` / `nn.scan` as the config asks."""
  # Arguments after the carried `x`; the trailing flags (deterministic, decode) are static.
  num_args, num_flags = (6, 2) if decode_cache else (3, 1)
  if config.remat_policy != 'none':
    # remat counts `self` as argument 0 and `x` as argument 1.
    static = tuple(range(num_args + 2 - num_flags, num_args + 2))
    layer_cls = nn.remat(layer_cls, static_argnums=static, prevent_cse=not config.scan_layers,
                         policy=REMAT_POLICIES[config.remat_policy])
  if not config.scan_layers:
    return [layer_cls(config, name=f'layers_{i}') for i in range(num_layers)]
  scanned = nn.scan(
      layer_cls,
      variable_axes={'params': 0, 'cache': 0},
      split_rngs={'params': True, 'dropout': True},
      in_axes=(nn.broadcast,) * num_args,
      length=num_layers,
      metadata_params={nn.PARTITION_NAME: 'layers'})
  return scanned(config, name=name)


def _norm(c: T5Config, name: Optional[str] = None) -> layers.RMSNorm:
  return layers.RMSNorm(c.layer_norm_epsilon, c.dtype, c.param_dtype, name=name)


def _relpos_bias(c: T5Config) -> layers.RelativePositionBiases:
  """The stack's one relative position bias table, shared by all its layers."""
  return layers.RelativePositionBiases(c.relative_attention_num_buckets,
                                       c.relative_attention_max_distance, c.num_heads, c.dtype,
                                       c.param_dtype)


def _run_stack(stack, x: Array, *args) -> Array:
  """Runs a list of layers, or one scanned layer, over x."""
  if isinstance(stack, (list, tuple)):
    for layer in stack:
      x, _ = layer(x, *args)
    return x
  x, _ = stack(x, *args)
  return x


class EncoderLayer(nn.Module):
  """Pre-norm self-attention then gated-GELU MLP, each with a residual."""
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, mask: Array, bias: Array, deterministic: bool):
    """x [B, L, H], mask [B, 1, L, L], bias [1, heads, L, L] -> ([B, L, H], None)."""
    c = self.config
    dropout = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    h = _norm(c, 'pre_attention_layer_norm')(x)
    h = layers.MultiHeadAttention(c.num_heads, c.head_dim, c.dropout_rate, c.dtype, c.param_dtype,
                                  name='attention')(h, h, mask, bias, deterministic)
    x = x + dropout(h, deterministic=deterministic)
    h = _norm(c, 'pre_mlp_layer_norm')(x)
    h = layers.MlpBlock(c.mlp_dim, c.dropout_rate, c.dtype, c.param_dtype, name='mlp')(h, deterministic)
    x = x + dropout(h, deterministic=deterministic)
    return nn.with_logical_constraint(x, ('batch', 'length', 'embed')), None


class DecoderLayer(nn.Module):
  """Pre-norm causal self-attention, cross-attention over the encoder output, then MLP."""
  config: T5Config

  @nn.compact
  def __call__(self, x: Array, encoded: Array, decoder_mask: Optional[Array],
               encoder_decoder_mask: Array, bias: Array, deterministic: bool, decode: bool):
    """x [B, T, H] over encoded [B, L, H] -> ([B, T, H], None)."""
    c = self.config
    dropout = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    attention = lambda name: layers.MultiHeadAttention(
        c.num_heads, c.head_dim, c.dropout_rate, c.dtype, c.param_dtype, name=name)
    h = _norm(c, 'pre_self_attention_layer_norm')(x)
    h = attention('self_attention')(h, h, decoder_mask, bias, deterministic, decode=decode)
    x = x + dropout(h, deterministic=deterministic)
    h = _norm(c, 'pre_cross_attention_layer_norm')(x)
    h = attention('encoder_decoder_attention')(h, encoded, encoder_decoder_mask, None, deterministic)
    x = x + dropout(h, deterministic=deterministic)
    h = _norm(c, 'pre_mlp_layer_norm')(x)
    h = layers.MlpBlock(c.mlp_dim, c.dropout_rate, c.dtype, c.param_dtype, name='mlp')(h, deterministic)
    x = x + dropout(h, deterministic=deterministic)
    return nn.with_logical_constraint(x, ('batch', 'length', 'embed')), None


class Encoder(nn.Module):
  """Embeds tokens, then the bidirectional stack. Subclasses may extend `embed_inputs`."""
  config: T5Config
  shared_embedding: nn.Module

  def setup(self):
    c = self.config
    self.relpos_bias = _relpos_bias(c)
    self.layers = _layer_stack(EncoderLayer, c, c.num_encoder_layers, 'layers', decode_cache=False)
    self.encoder_norm = _norm(c)
    self.dropout = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))

  def embed_inputs(self, encoder_input_tokens: Array, **features: Array):
    """[B, T] tokens -> ([B, L, H] embedded inputs, [B, L] visible positions); here L = T."""
    if features:
      raise TypeError(f'The bare T5 encoder takes no extra features, got {sorted(features)}.')
    return self.shared_embedding(encoder_input_tokens), encoder_input_tokens > 0

  def visible_positions(self, encoder_input_tokens: Array) -> Array:
    """[B, T] tokens -> [B, L] mask of the encoder output positions the decoder may attend to."""
    return encoder_input_tokens > 0

  def __call__(self, encoder_input_tokens: Array, encoder_segment_ids: Optional[Array] = None,
               deterministic: bool = True, **features: Array) -> Array:
    """[B, T] tokens -> [B, L, H] encoder output."""
    x, visible = self.embed_inputs(encoder_input_tokens, **features)
    mask = layers.attention_mask(visible, visible, encoder_segment_ids, encoder_segment_ids)
    length = x.shape[1]
    bias = self.relpos_bias(length, length, bidirectional=True)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    x = self.dropout(x, deterministic=deterministic)
    x = _run_stack(self.layers, x, mask, bias, deterministic)
    x = self.encoder_norm(x)
    return self.dropout(x, deterministic=deterministic)


class Decoder(nn.Module):
  """The causal stack with cross-attention, then `logits_dense` (untied from the embedding)."""
  config: T5Config
  shared_embedding: nn.Module

  def setup(self):
    c = self.config
    self.relpos_bias = _relpos_bias(c)
    self.layers = _layer_stack(DecoderLayer, c, c.num_decoder_layers, 'layers', decode_cache=True)
    self.decoder_norm = _norm(c)
    self.dropout = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    self.logits_dense = layers.dense(c.vocab_size, ('embed', 'vocab'), c.dtype, c.param_dtype,
                                     'logits_dense')

  def __call__(self, encoded: Array, decoder_input_tokens: Array, decoder_mask: Optional[Array],
               encoder_decoder_mask: Array, deterministic: bool = True, decode: bool = False,
               max_decode_length: Optional[int] = None) -> Array:
    """[B, T] decoder inputs over [B, L, H] encoded -> [B, T, V] logits.

    With `decode=True`, T is 1 and the relative position bias is built for
    `max_decode_length` positions; attention picks the row of the current step.
    """
    length = max_decode_length if decode and max_decode_length else decoder_input_tokens.shape[1]
    bias = self.relpos_bias(length, length, bidirectional=False)
    x = self.shared_embedding(decoder_input_tokens)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    x = self.dropout(x, deterministic=deterministic)
    x = _run_stack(self.layers, x, encoded, decoder_mask, encoder_decoder_mask, bias, deterministic,
                   decode)
    x = self.decoder_norm(x)
    x = self.dropout(x, deterministic=deterministic)
    logits = self.logits_dense(x)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))


class Transformer(nn.Module):
  """The T5 1.1 encoder-decoder: `token_embedder`, `encoder`, `decoder`."""
  config: T5Config

  def setup(self):
    c = self.config
    self.token_embedder = layers.Embed(c.vocab_size, c.emb_dim, c.dtype, c.param_dtype)
    self.encoder = self.make_encoder()
    self.decoder = Decoder(c, self.token_embedder)

  def make_encoder(self) -> Encoder:
    """The encoder module; the prompted model substitutes its own."""
    return Encoder(self.config, self.token_embedder)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Optional[Array] = None,
             enable_dropout: bool = True, **features: Array) -> Array:
    """[B, T] tokens -> [B, L, H] encoder output."""
    return self.encoder(encoder_input_tokens, encoder_segment_ids,
                        deterministic=not enable_dropout, **features)

  def decode(self, encoded: Array, encoder_input_tokens: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Array, encoder_segment_ids: Optional[Array] = None,
             decoder_segment_ids: Optional[Array] = None,
             decoder_positions: Optional[Array] = None, enable_dropout: bool = True,
             decode: bool = False, max_decode_length: Optional[int] = None) -> Array:
    """Teacher-forced [B, T, V] logits, or one step ([B, 1] inputs) with `decode=True`.

    `decoder_positions` is accepted for T5X compatibility; relative position
    biases depend only on the offsets within the sequence.
    """
    del decoder_positions
    encoder_visible = self.encoder.visible_positions(encoder_input_tokens)
    if decode:
      # Causality comes from the cache: every written position is in the past.
      decoder_mask = None
      encoder_decoder_mask = layers.attention_mask(
          jnp.ones_like(decoder_input_tokens), encoder_visible)
    else:
      decoder_mask = layers.attention_mask(decoder_target_tokens, decoder_target_tokens,
                                           decoder_segment_ids, decoder_segment_ids)
      decoder_mask = decoder_mask * layers.causal_mask(decoder_input_tokens.shape[1])
      encoder_decoder_mask = layers.attention_mask(decoder_target_tokens, encoder_visible,
                                                   decoder_segment_ids, encoder_segment_ids)
    return self.decoder(encoded, decoder_input_tokens, decoder_mask, encoder_decoder_mask,
                        deterministic=not enable_dropout, decode=decode,
                        max_decode_length=max_decode_length)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array, encoder_segment_ids: Optional[Array] = None,
               decoder_segment_ids: Optional[Array] = None,
               encoder_positions: Optional[Array] = None,
               decoder_positions: Optional[Array] = None, *, enable_dropout: bool = True,
               decode: bool = False, max_decode_length: Optional[int] = None,
               **features: Array) -> Array:
    """Teacher-forced logits [B, T, V] for [B, T_in] inputs and [B, T] decoder inputs/targets.

    Extra `features` (e.g. the prompted model's `prompt_index`) go to the encoder.
    """
    del encoder_positions
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, enable_dropout, **features)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
                       encoder_segment_ids, decoder_segment_ids, decoder_positions,
                       enable_dropout=enable_dropout, decode=decode,
                       max_decode_length=max_decode_length)


def stack_layers(params: Dict[str, Any]) -> Dict[str, Any]:
  """Converts per-layer params (`layers_0`, `layers_1`, ...) into the scanned `layers` layout.

  Checkpoints store layers one by one; a `scan_layers=True` model wants each
  stack's layers stacked on a new leading axis. Other entries pass through.
  """
  out = {}
  for name, value in params.items():
    if not isinstance(value, dict):
      out[name] = value
      continue
    layer_names = sorted((k for k in value if k.startswith('layers_')), key=lambda k: int(k[7:]))
    stacked = {k: v for k, v in value.items() if not k.startswith('layers_')}
    if layer_names:
      stacked['layers'] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs),
                                                 *[value[k] for k in layer_names])
      out[name] = stacked
    else:
      out[name] = stack_layers(value)
  return out
