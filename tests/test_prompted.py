"""The prompted model: exact bare behaviour at P=0, prompt effects, gradients, banks, combine modes."""

import functools

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.models import prompted, t5

# Distinct dims (emb 8, mlp 24, heads*kv 6, vocab 128) so weight-shaped arrays are recognisable.
CONFIG = t5.config_for_size('tiny', mlp_dim=24, head_dim=3)
P = 3

ENCODER_INPUTS = np.array([[5, 6, 7, 8, 1, 0], [9, 10, 1, 0, 0, 0]], np.int32)
DECODER_INPUTS = np.array([[0, 11, 12, 13], [0, 14, 0, 0]], np.int32)
DECODER_TARGETS = np.array([[11, 12, 13, 1], [14, 1, 0, 0]], np.int32)
REAL_TARGETS = DECODER_TARGETS > 0


def make_model(length=P, **kwargs):
  return prompted.PromptedT5(CONFIG, prompt_config=prompted.PromptConfig(length=length, **kwargs))


@functools.lru_cache(maxsize=None)
def _init(length, num_prompts):
  model = make_model(length, num_prompts=num_prompts)
  features = {} if num_prompts is None else {'prompt_index': np.zeros(2, np.int32)}
  init = lambda rng: model.init(rng, ENCODER_INPUTS, DECODER_INPUTS, DECODER_TARGETS,
                                enable_dropout=False, **features)
  return nn.unbox(jax.jit(init)(jax.random.key(0))['params'])


@pytest.fixture(scope='module')
def params():
  return _init(P, None)


@functools.partial(jax.jit, static_argnums=0)
def _apply(model, params, enc, dec_in, dec_t, features):
  return model.apply({'params': params}, enc, dec_in, dec_t, enable_dropout=False, **features)


def logits(model, params, enc=ENCODER_INPUTS, dec_in=DECODER_INPUTS, dec_t=DECODER_TARGETS,
           **features):
  return _apply(model, params, enc, dec_in, dec_t, features)


def encoder_output(model, params, enc):
  return jax.jit(lambda p, e: model.apply({'params': p}, e, enable_dropout=False,
                                          method=model.encode))(params, enc)


def without_prompt(params):
  encoder = {k: v for k, v in params['encoder'].items() if k != 'prompt'}
  return {**params, 'encoder': encoder}


def test_prompt_parameter_lives_at_the_t5x_prompt_tuning_path(params):
  assert prompted.PROMPT_PATH == 'encoder/prompt/prompt/prompt'
  assert params['encoder']['prompt']['prompt']['prompt'].shape == (P, CONFIG.emb_dim)
  assert params['encoder']['prompt']['prompt']['prompt'].dtype == jnp.float32


def test_prompt_length_zero_reproduces_the_bare_model_exactly(params):
  bare = t5.Transformer(CONFIG)
  frozen = without_prompt(params)
  np.testing.assert_array_equal(logits(make_model(0), frozen), logits(bare, frozen))


def test_prompt_changes_every_input_position_and_padding_stays_masked(params):
  model = make_model()
  with_prompt = encoder_output(model, params, ENCODER_INPUTS)[:, P:]
  bare = encoder_output(t5.Transformer(CONFIG), without_prompt(params), ENCODER_INPUTS)
  real = ENCODER_INPUTS > 0
  changed = np.abs(np.asarray(with_prompt) - np.asarray(bare)).max(axis=-1)
  assert (changed[real] > 1e-4).all()
  # Padding stays masked: appending pads changes no logit at a real target position.
  padded = logits(model, params, np.pad(ENCODER_INPUTS, ((0, 0), (0, 4))))
  np.testing.assert_allclose(padded[REAL_TARGETS], logits(model, params)[REAL_TARGETS], atol=1e-5)


@pytest.mark.parametrize('mode', ['prefix', 'after_bos', 'suffix'])
def test_padding_invariance_holds_in_every_combine_mode(params, mode):
  model = make_model(combine=mode)
  padded = logits(model, params, np.pad(ENCODER_INPUTS, ((0, 0), (0, 4))))
  np.testing.assert_allclose(padded[REAL_TARGETS], logits(model, params)[REAL_TARGETS], atol=1e-5)


def _dot_output_shapes(fn, *args):
  """Output shapes of every matmul (dot_general) in fn's jaxpr, sub-jaxprs included."""
  shapes = []

  def visit(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'dot_general':
        shapes.append(tuple(eqn.outvars[0].aval.shape))
    for sub in jax.extend.core.subjaxprs(jaxpr):
      visit(sub)

  visit(jax.make_jaxpr(fn)(*args).jaxpr)
  return shapes


def test_only_the_prompt_gradient_is_computed_when_only_the_prompt_is_trained(params):
  model = make_model()
  prompt = params['encoder']['prompt']
  frozen = without_prompt(params)

  def loss(prompt_params, frozen_params):
    full = {**frozen_params, 'encoder': {**frozen_params['encoder'], 'prompt': prompt_params}}
    out = model.apply({'params': full}, ENCODER_INPUTS, DECODER_INPUTS, DECODER_TARGETS,
                      enable_dropout=False)
    return jnp.sum(jax.nn.log_softmax(out) * jax.nn.one_hot(DECODER_TARGETS, CONFIG.vocab_size))

  grad = jax.jit(jax.grad(loss))(prompt, frozen)
  assert np.abs(np.asarray(grad['prompt']['prompt'])).min(axis=-1).max() > 0
  assert (np.abs(np.asarray(grad['prompt']['prompt'])).sum(axis=-1) > 0).all()

  kernel_shapes = {tuple(x.shape) for x in jax.tree_util.tree_leaves(frozen) if x.ndim == 2}
  prompt_only = set(_dot_output_shapes(jax.grad(loss), prompt, frozen))
  everything = set(_dot_output_shapes(jax.grad(loss, argnums=(0, 1)), prompt, frozen))
  assert kernel_shapes & everything, 'the full gradient must show weight-gradient matmuls'
  assert not kernel_shapes & prompt_only, 'no weight-gradient matmul when only the prompt trains'


def test_each_example_of_a_bank_gets_what_its_own_prompt_gives_alone():
  bank_params = _init(P, 3)
  bank = bank_params['encoder']['prompt']['prompt']['prompt']
  index = np.array([2, 0], np.int32)
  mixed = logits(make_model(num_prompts=3), bank_params, prompt_index=index)
  for row, k in enumerate(index):
    single = {**bank_params,
              'encoder': {**bank_params['encoder'], 'prompt': {'prompt': {'prompt': bank[k]}}}}
    alone = logits(make_model(), single)
    np.testing.assert_allclose(mixed[row][REAL_TARGETS[row]], alone[row][REAL_TARGETS[row]],
                               atol=1e-5)


def test_a_bank_without_prompt_index_fails_clearly():
  with pytest.raises(ValueError, match='prompt_index'):
    logits(make_model(num_prompts=3), _init(P, 3))


def test_bfloat16_model_keeps_a_float32_prompt(params):
  config = t5.config_for_size('tiny', mlp_dim=24, head_dim=3, dtype=jnp.bfloat16)
  model = prompted.PromptedT5(config, prompt_config=prompted.PromptConfig(length=P))
  out = logits(model, params)
  assert out.dtype == jnp.bfloat16
  grad = jax.grad(lambda p: logits(model, p).astype(jnp.float32).sum())(params)
  assert grad['encoder']['prompt']['prompt']['prompt'].dtype == jnp.float32
