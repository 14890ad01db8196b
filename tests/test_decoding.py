"""Cached decoding: greedy, beam search and sampling agree with rerunning the whole model."""

import functools
from typing import Any, Dict, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import decoding, scoring
from prompt_tuning.models import prompted, t5

CONFIG = t5.config_for_size('tiny')
LENGTH = 8  # max_decode_length
NEVER = CONFIG.vocab_size  # an EOS id the model cannot emit: decoding runs to LENGTH
INPUTS = np.array([[5, 6, 7, 8, 9, 10, 1], [11, 12, 13, 1, 0, 0, 0], [14, 1, 0, 0, 0, 0, 0]],
                  np.int32)  # three lengths, 0-padded

greedy = jax.jit(decoding.greedy_decode, static_argnums=(0, 3), static_argnames=('eos_id',))
beam = jax.jit(decoding.beam_search, static_argnums=(0, 3),
               static_argnames=('num_beams', 'alpha', 'eos_id'))
sample = jax.jit(decoding.temperature_sample, static_argnums=(0, 3),
                 static_argnames=('temperature', 'top_k', 'top_p', 'eos_id'))


class Case(NamedTuple):
  model: nn.Module
  params: Any
  features: Dict[str, Any]


@pytest.fixture(scope='module')
def bare() -> Case:
  model = t5.Transformer(CONFIG)
  targets = np.ones((len(INPUTS), LENGTH), np.int32)
  init = jax.jit(functools.partial(model.init, enable_dropout=False))
  # This seed's model ends sequences at several lengths, and beam search beats greedy on some.
  return Case(model, init(jax.random.key(3), INPUTS, targets, targets)['params'], {})


@pytest.fixture(scope='module')
def with_prompt_bank(bare) -> Case:
  """Its encoder output is P longer than the inputs, and each example picks its prompt."""
  config = prompted.PromptConfig(length=3, num_prompts=2)
  params = nn.unbox(bare.params)  # a fresh tree: the frozen weights plus a bank of 2 prompts
  params['encoder']['prompt'] = {'prompt': {'prompt': jax.random.uniform(
      jax.random.key(5), (2, 3, CONFIG.emb_dim))}}
  return Case(prompted.PromptedT5(CONFIG, prompt_config=config), params,
              {'prompt_index': np.array([0, 1, 1], np.int32)})


@pytest.fixture(scope='module')
def bfloat16(bare) -> Case:
  """The bare model computing in, and holding its weights in, bfloat16."""
  model = t5.Transformer(t5.config_for_size('tiny', dtype=jnp.bfloat16, param_dtype=jnp.bfloat16))
  return Case(model, jax.tree.map(lambda x: x.astype(jnp.bfloat16), bare.params), {})


@pytest.fixture(scope='module')
def eos_id(bare) -> int:
  """A token that free-running greedy decoding emits early, used as EOS so sequences end."""
  tokens, _ = greedy(bare.model, bare.params, INPUTS, LENGTH, eos_id=NEVER)
  return int(tokens[0, 2])


@functools.partial(jax.jit, static_argnums=0)
def teacher_forced_logits(model, params, inputs, decoder_inputs, **features):
  # Every target position visible: causality alone hides the future, as with the cache.
  visible = jnp.ones_like(decoder_inputs)
  return model.apply({'params': params}, inputs, decoder_inputs, visible, enable_dropout=False,
                     **features)


def up_to_eos(tokens, eos_id):
  """[B, L] mask of the positions up to and including the first EOS (all when none)."""
  is_eos = np.asarray(tokens) == eos_id
  return np.cumsum(is_eos, axis=1) - is_eos == 0


def teacher_forced_score(case: Case, tokens, eos_id):
  logits = teacher_forced_logits(case.model, case.params, INPUTS, scoring.shift_right(tokens),
                                 **case.features)
  return np.asarray(scoring.sequence_log_likelihood(logits, tokens, up_to_eos(tokens, eos_id)))


def naive_greedy(case: Case, eos_id):
  """Greedy decoding that reruns the full teacher-forced model for every new token."""
  tokens = np.zeros((len(INPUTS), LENGTH), np.int32)
  scores = np.zeros(len(INPUTS))
  done = np.zeros(len(INPUTS), bool)
  for i in range(LENGTH):
    logits = teacher_forced_logits(case.model, case.params, INPUTS, scoring.shift_right(tokens),
                                   **case.features)
    log_probs = np.asarray(jax.nn.log_softmax(logits[:, i]))
    tokens[:, i] = np.where(done, 0, log_probs.argmax(-1))
    scores += np.where(done, 0, log_probs[np.arange(len(INPUTS)), tokens[:, i]])
    done |= tokens[:, i] == eos_id
  return tokens, scores


def penalised(score, tokens, eos_id, alpha):
  lengths = up_to_eos(tokens, eos_id).sum(axis=1)
  return score / decoding.brevity_penalty(lengths, alpha)


@pytest.mark.parametrize('case_name, rtol', [('bare', 1e-5), ('with_prompt_bank', 1e-5),
                                             ('bfloat16', 1e-2)])
def test_cached_greedy_matches_rerunning_the_full_model(case_name, rtol, eos_id, request):
  case = request.getfixturevalue(case_name)
  tokens, scores = greedy(case.model, case.params, INPUTS, LENGTH, eos_id=eos_id, **case.features)
  expected_tokens, expected_scores = naive_greedy(case, eos_id)
  np.testing.assert_array_equal(tokens, expected_tokens)
  np.testing.assert_allclose(scores, expected_scores, rtol=rtol)


def test_greedy_stops_at_eos_and_pads_after_it(bare, eos_id):
  free, free_scores = greedy(bare.model, bare.params, INPUTS, LENGTH, eos_id=NEVER)
  tokens, scores = greedy(bare.model, bare.params, INPUTS, LENGTH, eos_id=eos_id)
  kept = up_to_eos(free, eos_id)
  assert not kept.all(), 'no sequence emitted the chosen EOS'
  np.testing.assert_array_equal(tokens, np.where(kept, free, 0))
  np.testing.assert_allclose(scores, teacher_forced_score(bare, tokens, eos_id), rtol=1e-5)
  assert np.all(scores >= free_scores)  # fewer tokens, fewer negative log-probabilities


def test_each_example_decodes_as_alone_with_more_padding(bare, eos_id):
  together, together_scores = greedy(bare.model, bare.params, INPUTS, LENGTH, eos_id=eos_id)
  for i, row in enumerate(INPUTS):
    alone, alone_score = greedy(bare.model, bare.params, np.pad(row, (0, 5))[None], LENGTH,
                                eos_id=eos_id)
    np.testing.assert_array_equal(alone[0], together[i])
    np.testing.assert_allclose(alone_score[0], together_scores[i], rtol=1e-5)


def test_one_beam_without_length_penalty_is_greedy(bare, eos_id):
  expected = greedy(bare.model, bare.params, INPUTS, LENGTH, eos_id=eos_id)
  tokens, scores = beam(bare.model, bare.params, INPUTS, LENGTH, num_beams=1, alpha=0.0,
                        eos_id=eos_id)
  np.testing.assert_array_equal(tokens, expected[0])
  np.testing.assert_allclose(scores, expected[1], rtol=1e-5)


@pytest.mark.parametrize('case_name', ['bare', 'with_prompt_bank'])
def test_beam_search_reports_its_penalised_score_and_beats_greedy(case_name, eos_id, request):
  case = request.getfixturevalue(case_name)
  alpha = 0.6
  tokens, scores = beam(case.model, case.params, INPUTS, LENGTH, num_beams=4, alpha=alpha,
                        eos_id=eos_id, **case.features)
  recomputed = penalised(teacher_forced_score(case, tokens, eos_id), tokens, eos_id, alpha)
  np.testing.assert_allclose(scores, recomputed, rtol=1e-5)
  assert np.all(np.where(up_to_eos(tokens, eos_id), True, tokens == 0)), 'tokens after EOS'
  greedy_tokens, greedy_scores = greedy(case.model, case.params, INPUTS, LENGTH, eos_id=eos_id,
                                        **case.features)
  greedy_penalised = penalised(greedy_scores, greedy_tokens, eos_id, alpha)
  # Not a theorem (the greedy path can drop out of the beam), but true of these fixtures,
  # whose random weights were picked to make beam search's work visible.
  assert np.all(scores >= greedy_penalised - 1e-5)
  assert np.any(scores > greedy_penalised + 1e-3), 'the beam never found anything better'
  assert up_to_eos(tokens, eos_id).sum(axis=1).min() < LENGTH, 'no beam ended with EOS'


def stack_layers(params, prefix: str, count: int):
  """Unscanned `layers_{i}` subtrees -> one scanned `layers` subtree with a leading axis."""
  stack = params.pop(prefix)
  layers = [stack.pop(f'layers_{i}') for i in range(count)]
  stack['layers'] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
  params[prefix] = stack


def test_beam_search_with_scanned_layers_matches_unscanned(bare, eos_id):
  params = nn.unbox(bare.params)  # a fresh tree, safe to restructure
  stack_layers(params, 'encoder', CONFIG.num_encoder_layers)
  stack_layers(params, 'decoder', CONFIG.num_decoder_layers)
  scanned = t5.Transformer(t5.config_for_size('tiny', scan_layers=True))
  expected = beam(bare.model, bare.params, INPUTS, LENGTH, eos_id=eos_id)
  actual = beam(scanned, params, INPUTS, LENGTH, eos_id=eos_id)
  np.testing.assert_array_equal(actual[0], expected[0])
  np.testing.assert_allclose(actual[1], expected[1], rtol=1e-5)


def test_sampling_at_temperature_zero_or_top_one_is_greedy(bare, eos_id):
  expected_tokens, expected_scores = greedy(bare.model, bare.params, INPUTS, LENGTH, eos_id=eos_id)
  rng = jax.random.key(1)
  for options in (dict(temperature=0.0), dict(temperature=1.0, top_k=1)):
    tokens, scores = sample(bare.model, bare.params, INPUTS, LENGTH, rng, eos_id=eos_id, **options)
    np.testing.assert_array_equal(tokens, expected_tokens)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)


def test_sampling_depends_only_on_the_rng(bare):
  hot = lambda seed: sample(bare.model, bare.params, INPUTS, LENGTH, jax.random.key(seed),
                            temperature=5.0, eos_id=NEVER)
  first, first_scores = hot(1)
  np.testing.assert_array_equal(hot(1)[0], first)
  assert np.any(hot(2)[0] != first)
  np.testing.assert_allclose(first_scores, teacher_forced_score(bare, first, NEVER), rtol=1e-5)


PROBS = np.array([0.1, 0.5, 0.05, 0.35])


@pytest.mark.parametrize('top_p, nucleus', [(0.5, {1}), (0.8, {1, 3}), (0.9, {0, 1, 3}),
                                            (1.0, {0, 1, 2, 3})])
def test_top_p_keeps_the_fewest_likely_tokens_that_reach_p(top_p, nucleus):
  filtered = decoding.filter_logits(jnp.log(PROBS)[None], top_p=top_p)[0]
  assert set(np.flatnonzero(np.isfinite(filtered))) == nucleus
  draws = jax.random.categorical(jax.random.key(0), filtered, shape=(2000,))
  assert set(np.unique(draws)) == nucleus


def test_top_k_keeps_the_k_most_likely_tokens():
  filtered = decoding.filter_logits(jnp.log(PROBS)[None], top_k=2)[0]
  assert set(np.flatnonzero(np.isfinite(filtered))) == {1, 3}
  np.testing.assert_allclose(filtered[np.array([1, 3])], np.log(PROBS)[np.array([1, 3])], rtol=1e-6)


def test_method_chosen_by_name_runs_that_method(bare, eos_id):
  one_beam = decoding.DecodingMethod('beam_search', num_beams=1, alpha=0.0)
  run = jax.jit(one_beam, static_argnums=(0, 3), static_argnames=('eos_id',))
  expected = greedy(bare.model, bare.params, INPUTS, LENGTH, eos_id=eos_id)
  np.testing.assert_array_equal(run(bare.model, bare.params, INPUTS, LENGTH, eos_id=eos_id)[0],
                                expected[0])
  with pytest.raises(ValueError, match="'sampling'.*'greedy', 'beam_search', 'sample'"):
    decoding.DecodingMethod('sampling')
  with pytest.raises(ValueError, match='needs an rng'):
    decoding.DecodingMethod('sample')(bare.model, bare.params, INPUTS, LENGTH, eos_id=eos_id)
