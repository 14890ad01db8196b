"""The bare T5 1.1 model: parameter layout, padding invariance, dtypes, remat and scan."""

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.models import layers, t5

CONFIG = t5.config_for_size('tiny', mlp_dim=24, head_dim=3)  # distinct dims: kernels are easy to tell apart

ENCODER_INPUTS = np.array([[5, 6, 7, 8, 1, 0], [9, 10, 1, 0, 0, 0]], np.int32)
DECODER_INPUTS = np.array([[0, 11, 12, 13], [0, 14, 0, 0]], np.int32)
DECODER_TARGETS = np.array([[11, 12, 13, 1], [14, 1, 0, 0]], np.int32)


@pytest.fixture(scope='module')
def params():
  init = lambda rng: t5.Transformer(CONFIG).init(rng, ENCODER_INPUTS, DECODER_INPUTS,
                                                  DECODER_TARGETS, enable_dropout=False)
  return nn.unbox(jax.jit(init)(jax.random.key(0))['params'])


@functools.partial(jax.jit, static_argnums=0)
def _logits(config, params, enc, dec_in, dec_t):
  return t5.Transformer(config).apply({'params': params}, enc, dec_in, dec_t, enable_dropout=False)


def logits(config, params, enc=ENCODER_INPUTS, dec_in=DECODER_INPUTS, dec_t=DECODER_TARGETS):
  return _logits(config, params, enc, dec_in, dec_t)


@functools.partial(jax.jit, static_argnums=0)
def gradients(config, params):
  """d(sum of the logits)/d(params); compiled once per config."""
  return jax.grad(lambda p: _logits(config, p, ENCODER_INPUTS, DECODER_INPUTS,
                                    DECODER_TARGETS).sum())(params)


def test_parameter_paths_are_those_of_t5x_t5_1_1_checkpoints(params):
  paths = set(flax.traverse_util.flatten_dict(params, sep='/'))
  expected = {'token_embedder/embedding', 'encoder/relpos_bias/rel_embedding',
              'encoder/encoder_norm/scale', 'decoder/relpos_bias/rel_embedding',
              'decoder/decoder_norm/scale', 'decoder/logits_dense/kernel'}
  for i in range(CONFIG.num_encoder_layers):
    expected |= {f'encoder/layers_{i}/pre_attention_layer_norm/scale',
                 f'encoder/layers_{i}/pre_mlp_layer_norm/scale'}
    expected |= {f'encoder/layers_{i}/attention/{p}/kernel' for p in ('query', 'key', 'value', 'out')}
    expected |= {f'encoder/layers_{i}/mlp/{p}/kernel' for p in ('wi_0', 'wi_1', 'wo')}
  for i in range(CONFIG.num_decoder_layers):
    for norm in ('pre_self_attention_layer_norm', 'pre_cross_attention_layer_norm',
                 'pre_mlp_layer_norm'):
      expected.add(f'decoder/layers_{i}/{norm}/scale')
    for attn in ('self_attention', 'encoder_decoder_attention'):
      expected |= {f'decoder/layers_{i}/{attn}/{p}/kernel' for p in ('query', 'key', 'value', 'out')}
    expected |= {f'decoder/layers_{i}/mlp/{p}/kernel' for p in ('wi_0', 'wi_1', 'wo')}
  assert paths == expected
  joined = CONFIG.num_heads * CONFIG.head_dim
  assert params['encoder']['layers_0']['attention']['query']['kernel'].shape == (CONFIG.emb_dim, joined)
  assert params['encoder']['relpos_bias']['rel_embedding'].shape == (
      CONFIG.num_heads, CONFIG.relative_attention_num_buckets)


def test_every_parameter_carries_logical_axis_names():
  init = lambda rng: t5.Transformer(CONFIG).init(rng, ENCODER_INPUTS, DECODER_INPUTS,
                                                  DECODER_TARGETS, enable_dropout=False)
  variables = jax.eval_shape(init, jax.random.key(0))
  specs = flax.traverse_util.flatten_dict(nn.get_partition_spec(variables['params']), sep='/')
  specs = {path: tuple(spec) for path, spec in specs.items()}
  assert specs['encoder/layers_0/mlp/wi_0/kernel'] == ('embed', 'mlp')
  assert specs['encoder/layers_0/attention/out/kernel'] == ('joined_kv', 'embed')
  assert specs['token_embedder/embedding'] == ('vocab', 'embed')
  assert specs['decoder/logits_dense/kernel'] == ('embed', 'vocab')
  assert all(spec is not None and len(spec) > 0 for spec in specs.values())


def test_size_presets_match_the_released_checkpoints():
  base = t5.config_for_size('base')
  assert (base.num_encoder_layers, base.num_heads, base.emb_dim, base.mlp_dim) == (12, 12, 768, 2048)
  xxl = t5.config_for_size('xxl')
  assert (xxl.num_encoder_layers, xxl.num_heads, xxl.emb_dim, xxl.mlp_dim) == (24, 64, 4096, 10240)
  assert base.vocab_size == xxl.vocab_size == 32128 and base.head_dim == 64
  with pytest.raises(ValueError, match='Unknown T5 1.1 size'):
    t5.config_for_size('huge')


def test_appending_padding_does_not_change_logits(params):
  expected = logits(CONFIG, params)
  padded = logits(CONFIG, params, np.pad(ENCODER_INPUTS, ((0, 0), (0, 5))),
                  np.pad(DECODER_INPUTS, ((0, 0), (0, 3))), np.pad(DECODER_TARGETS, ((0, 0), (0, 3))))
  real = DECODER_TARGETS > 0  # logits at padded targets are never used
  np.testing.assert_allclose(padded[:, :4][real], expected[real], atol=1e-5)


def test_an_example_gets_the_same_logits_alone_as_in_a_mixed_length_batch(params):
  batch = logits(CONFIG, params)
  alone = logits(CONFIG, params, ENCODER_INPUTS[1:, :3], DECODER_INPUTS[1:, :2],
                 DECODER_TARGETS[1:, :2])
  np.testing.assert_allclose(batch[1, :2], alone[0], atol=1e-5)


def test_relative_position_buckets_follow_t5():
  rel = np.arange(-200, 201)[None, :]
  causal = layers.relative_position_bucket(rel, False, 32, 128)[0]
  assert (causal[rel[0] > 0] == 0).all()  # the future is invisible
  assert list(causal[200 - np.arange(16)]) == list(range(16))  # exact near offsets
  assert causal[0] == 31  # beyond max_distance
  both = layers.relative_position_bucket(rel, True, 32, 128)[0]
  assert both[200] == 0 and both[201] == 17 and both[199] == 1 and both[-1] == 31


def test_bfloat16_compute_stays_close_to_float32(params):
  config = t5.config_for_size('tiny', mlp_dim=24, head_dim=3, dtype=jnp.bfloat16)
  out = logits(config, params)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), logits(CONFIG, params), atol=0.1)


@pytest.mark.parametrize('options', [dict(remat_policy='minimal'), dict(scan_layers=True),
                                     dict(scan_layers=True, remat_policy='full')])
def test_remat_and_scan_give_the_same_logits_and_gradients(params, options):
  config = t5.config_for_size('tiny', mlp_dim=24, head_dim=3, **options)
  converted = t5.stack_layers(params) if config.scan_layers else params
  np.testing.assert_allclose(logits(config, converted), logits(CONFIG, params), atol=1e-5)
  grads = gradients(config, converted)
  expected = gradients(CONFIG, params)
  expected = t5.stack_layers(expected) if config.scan_layers else expected
  for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_each_remat_policy_keeps_less_for_the_backward_pass_than_the_one_before(params):
  """'none' keeps every activation, 'minimal' the weight matmuls' outputs, 'full' the inputs."""
  def residual_bytes(policy):
    model = t5.Transformer(t5.config_for_size('tiny', mlp_dim=24, head_dim=3, remat_policy=policy))
    loss = lambda p: model.apply({'params': p}, ENCODER_INPUTS, DECODER_INPUTS,
                                 DECODER_TARGETS).sum()
    # What the backward pass is handed: the leaves of the VJP's closure, as shapes.
    residuals = jax.eval_shape(lambda p: jax.vjp(loss, p)[1], params)
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(residuals))
  none, minimal, full = map(residual_bytes, ('none', 'minimal', 'full'))
  assert none > minimal > full, (none, minimal, full)


def test_an_unknown_remat_policy_names_the_field_and_the_choices():
  with pytest.raises(ValueError, match=r"^remat_policy='dots': expected one of 'none', 'full', "
                                       r"'minimal'\.$"):
    t5.config_for_size('tiny', remat_policy='dots')


def test_dropout_is_active_only_when_enabled(params):
  config = t5.config_for_size('tiny', mlp_dim=24, head_dim=3, dropout_rate=0.5)
  model = t5.Transformer(config)
  run = jax.jit(lambda seed: model.apply(
      {'params': params}, ENCODER_INPUTS, DECODER_INPUTS, DECODER_TARGETS, enable_dropout=True,
      rngs={'dropout': jax.random.key(seed)}))
  assert not np.allclose(run(0), run(1))
  np.testing.assert_allclose(logits(config, params), logits(CONFIG, params))


def test_cached_decoding_reproduces_teacher_forced_logits(params):
  model = t5.Transformer(CONFIG)
  length = DECODER_INPUTS.shape[1]
  cache = jax.eval_shape(lambda: model.init(
      jax.random.key(0), ENCODER_INPUTS, DECODER_INPUTS, DECODER_TARGETS, enable_dropout=False,
      decode=True))['cache']
  cache = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), cache)
  encoded = model.apply({'params': params}, ENCODER_INPUTS, enable_dropout=False, method=model.encode)

  @jax.jit
  def step(cache, tokens):
    return model.apply({'params': params, 'cache': cache}, encoded, ENCODER_INPUTS, tokens, tokens,
                       enable_dropout=False, decode=True, max_decode_length=length,
                       method=model.decode, mutable=['cache'])

  steps = []
  for i in range(length):
    out, mutated = step(cache, DECODER_INPUTS[:, i:i + 1])
    cache = mutated['cache']
    steps.append(out)
  teacher_forced = model.apply({'params': params}, ENCODER_INPUTS, DECODER_INPUTS,
                               jnp.ones_like(DECODER_INPUTS), enable_dropout=False)
  np.testing.assert_allclose(jnp.concatenate(steps, axis=1), teacher_forced, atol=1e-5)
