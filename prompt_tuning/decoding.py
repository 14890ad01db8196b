"""Autoregressive decoding with the model's key/value cache: greedy, beam search and sampling.

Pure JAX over any Flax encoder-decoder with T5X's `encode`/`decode` methods
(the bare and the prompted T5). Knows nothing of tasks, vocabularies, gin or
devices. Every function traces under `jax.jit` with the model, the lengths
and the method's options static; the loop stops early once every sequence
has finished.
"""

import dataclasses
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning import scoring
from prompt_tuning.errors import UserError

Array = jax.Array
Params = Any
# (cache, [N] previous tokens) -> ([N, V] float32 logits, cache).
StepFn = Callable[[Any, Array], Tuple[Array, Any]]


class DecodingError(UserError, ValueError):
  """A decoding method or option is not valid (one-line message naming it)."""


def _cached_decoder(model: nn.Module, params: Params, encoder_input_tokens: Array,
                    max_decode_length: int, copies: int = 1,
                    **features: Array) -> Tuple[StepFn, Any, Callable[[int], Any]]:
  """Encodes the [B, T] inputs once and prepares one-token-at-a-time decoding of N = B*copies rows.

  Returns the step function, the zero cache for N rows, and
  `cache_shapes(rows)`, the cache's shapes for that many rows (beam search
  compares them to find each cache array's batch axis).
  """
  encoded = scoring.encode_inputs(model, params, encoder_input_tokens, **features)
  # The copies (beams) of an example share its encoder output: the encoder ran once.
  encoded = jnp.repeat(encoded, copies, axis=0)
  encoder_input_tokens = jnp.repeat(encoder_input_tokens, copies, axis=0)
  run = lambda variables, encoded, inputs, tokens: model.apply(
      variables, encoded, inputs, tokens, tokens, enable_dropout=False, decode=True,
      max_decode_length=max_decode_length, method=model.decode, mutable=['cache'])

  def cache_shapes(rows: int):
    # The model creates its cache when called on full-length decoder inputs.
    tokens = jnp.ones((rows, max_decode_length), jnp.int32)
    return jax.eval_shape(lambda p, e, i: run({'params': p}, e, i, tokens)[1]['cache'], params,
                          encoded[:rows], encoder_input_tokens[:rows])

  def step(cache, tokens: Array):
    logits, variables = run({'params': params, 'cache': cache}, encoded, encoder_input_tokens,
                            tokens[:, None])
    return logits[:, 0].astype(jnp.float32), variables['cache']

  cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), cache_shapes(encoded.shape[0]))
  return step, cache, cache_shapes


def _choose_and_extend(step: StepFn, cache: Any, batch: int, max_decode_length: int,
                       choose: Callable[[Array, Array], Array], eos_id: int,
                       decoder_start_id: int) -> Tuple[Array, Array]:
  """Extends B sequences by one token per step, picked by `choose`, until each has emitted EOS.

  `choose([B, V] logits, step) -> [B] tokens`. Returns [B, L] tokens (0
  after EOS) and [B] sums of the tokens' log-probabilities up to and
  including EOS.
  """
  def unfinished(state):
    i, _, _, done, _ = state
    return (i < max_decode_length) & ~jnp.all(done)

  def extend(state):
    i, cache, sequences, done, scores = state
    logits, cache = step(cache, sequences[:, i])
    tokens = jnp.where(done, 0, choose(logits, i))
    scores += scoring.sequence_log_likelihood(logits[:, None], tokens[:, None], ~done[:, None])
    sequences = sequences.at[:, i + 1].set(tokens)
    return i + 1, cache, sequences, done | (tokens == eos_id), scores

  # Column 0 holds the start token; positions never reached stay 0 (padding).
  sequences = jnp.zeros((batch, max_decode_length + 1), jnp.int32).at[:, 0].set(decoder_start_id)
  done, scores = jnp.zeros((batch,), bool), jnp.zeros((batch,), jnp.float32)
  state = (jnp.array(0), cache, sequences, done, scores)
  _, _, sequences, _, scores = jax.lax.while_loop(unfinished, extend, state)
  return sequences[:, 1:], scores


def _argmax(logits: Array, step: Array) -> Array:
  del step
  return jnp.argmax(logits, axis=-1)


def greedy_decode(model: nn.Module, params: Params, encoder_input_tokens: Array,
                  max_decode_length: int, *, eos_id: int, decoder_start_id: int = 0,
                  **features: Array) -> Tuple[Array, Array]:
  """The most likely next token at every step.

  Args:
    model: an encoder-decoder with `encode` and `decode` (with a cache).
    params: its parameters.
    encoder_input_tokens: [B, T] inputs, 0-padded.
    max_decode_length: L, the most tokens to emit.
    eos_id: the token that ends a sequence.
    decoder_start_id: the decoder's first input.
    **features: extra encoder features, e.g. `prompt_index` [B].

  Returns:
    [B, L] tokens (without the start token; 0 after EOS) and [B] float32
    log-likelihoods of the tokens up to and including EOS.
  """
  step, cache, _ = _cached_decoder(model, params, encoder_input_tokens, max_decode_length,
                                   **features)
  return _choose_and_extend(step, cache, encoder_input_tokens.shape[0], max_decode_length,
                            _argmax, eos_id, decoder_start_id)


def filter_logits(logits: Array, top_k: int = 0, top_p: float = 1.0) -> Array:
  """[..., V] logits with every token outside the top k, or outside the top-p nucleus, at -inf.

  The nucleus is the smallest set of most likely tokens whose probability
  reaches `top_p`; it always holds the most likely token. `top_k=0` and
  `top_p=1` keep everything. Tokens tied with the last kept one are kept.
  """
  if top_k:
    kth_best = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth_best, -jnp.inf, logits)
  if top_p < 1.0:
    descending = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(descending, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # of the strictly more likely tokens
    least_kept = jnp.min(jnp.where(mass_before < top_p, descending, jnp.inf), axis=-1,
                         keepdims=True)
    logits = jnp.where(logits < least_kept, -jnp.inf, logits)
  return logits


def temperature_sample(model: nn.Module, params: Params, encoder_input_tokens: Array,
                       max_decode_length: int, rng: Array, *, temperature: float = 1.0,
                       top_k: int = 0, top_p: float = 1.0, eos_id: int,
                       decoder_start_id: int = 0, **features: Array) -> Tuple[Array, Array]:
  """Samples each next token from the model's tempered, top-k/top-p filtered distribution.

  `temperature`, `top_k` and `top_p` are Python numbers (static under jit);
  temperature 0 is greedy decoding. Scores are the model's own
  log-likelihoods (untempered) of the emitted tokens. Other arguments and
  returns as in `greedy_decode`.
  """
  if temperature < 0 or top_k < 0 or not 0 < top_p <= 1:
    raise DecodingError(f'Sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1; got '
                     f'temperature={temperature}, top_k={top_k}, top_p={top_p}.')

  def sample(logits: Array, step: Array) -> Array:
    filtered = filter_logits(logits / temperature, top_k, top_p)
    return jax.random.categorical(jax.random.fold_in(rng, step), filtered, axis=-1)

  step, cache, _ = _cached_decoder(model, params, encoder_input_tokens, max_decode_length,
                                   **features)
  return _choose_and_extend(step, cache, encoder_input_tokens.shape[0], max_decode_length,
                            _argmax if temperature == 0 else sample, eos_id, decoder_start_id)


def brevity_penalty(length: Array, alpha: float) -> Array:
  """T5X's length normalisation ((5 + length) / 6) ** alpha; scores are log-likelihood / penalty."""
  return ((5.0 + length) / 6.0) ** alpha


def _gather_rows(cache: Any, rows: Array, one_row_shapes: Any) -> Any:
  """Takes the given [N] rows of every cache array along its batch axis.

  The batch axis is the one whose size differs from the single-row cache
  (it is not the first one when layers are scanned); arrays without one,
  like the step counter, are shared by all rows.
  """
  def gather(x, one_row):
    grown = [a for a, (n, m) in enumerate(zip(x.shape, one_row.shape)) if n != m]
    return jnp.take(x, rows, axis=grown[0]) if grown else x
  return jax.tree.map(gather, cache, one_row_shapes)


def beam_search(model: nn.Module, params: Params, encoder_input_tokens: Array,
                max_decode_length: int, *, num_beams: int = 4, alpha: float = 0.6,
                eos_id: int, decoder_start_id: int = 0,
                **features: Array) -> Tuple[Array, Array]:
  """The best sequence found by a beam of `num_beams`, by length-normalised log-likelihood.

  At each step the K best continuations that do not end stay alive, and the
  best sequence that ended (with EOS among the K best expansions) is kept.
  The search stops once no alive beam can beat it: their log-likelihoods
  only fall, and for `alpha >= 0` no penalty exceeds the one at length L.
  A sequence that reaches L tokens without EOS competes too.

  Args:
    num_beams: K.
    alpha: brevity penalty exponent (see `brevity_penalty`); 0 ranks by
      plain log-likelihood.
    Others as in `greedy_decode`.

  Returns:
    [B, L] tokens of the best sequence (0 after EOS) and [B] its
    log-likelihood divided by `brevity_penalty(its length, alpha)`.
  """
  if num_beams < 1 or alpha < 0:
    raise DecodingError(f'Beam search needs num_beams >= 1 and alpha >= 0; got '
                     f'num_beams={num_beams}, alpha={alpha}.')
  batch, beams, length = encoder_input_tokens.shape[0], num_beams, max_decode_length
  step, cache, cache_shapes = _cached_decoder(model, params, encoder_input_tokens, length,
                                              copies=beams, **features)
  one_row_shapes = cache_shapes(1)
  best_alive_bound = lambda alive_scores: alive_scores[:, 0] / brevity_penalty(length, alpha)

  def unfinished(state):
    i, _, _, alive_scores, _, best_scores = state
    return (i < length) & ~jnp.all(best_scores >= best_alive_bound(alive_scores))

  def extend(state):
    # alive: [B, K, L+1] sequences (column 0 the start token), [B, K] log-likelihoods (best first).
    i, cache, alive, alive_scores, best, best_scores = state
    logits, cache = step(cache, alive[:, :, i].reshape(-1))
    log_probs = jax.nn.log_softmax(logits).reshape((batch, beams, -1))
    candidates = alive_scores[..., None] + log_probs  # [B, K, V]

    # As in the textbook beam, a sequence ends only when ending ranks among the K best
    # expansions; so one beam with alpha 0 is greedy decoding.
    kth_best = jax.lax.top_k(candidates.reshape((batch, -1)), beams)[0][:, -1:]
    ending = candidates[..., eos_id]
    ended = jnp.where(ending >= kth_best, ending, -jnp.inf) / brevity_penalty(i + 1, alpha)
    ended_beam = jnp.argmax(ended, axis=-1)
    ended_seqs = jnp.take_along_axis(alive, ended_beam[:, None, None], axis=1)[:, 0]
    improved = jnp.max(ended, axis=-1) > best_scores
    best = jnp.where(improved[:, None], ended_seqs.at[:, i + 1].set(eos_id), best)
    best_scores = jnp.maximum(jnp.max(ended, axis=-1), best_scores)

    continuing = candidates.at[..., eos_id].set(-jnp.inf).reshape((batch, -1))
    alive_scores, flat = jax.lax.top_k(continuing, beams)
    parents, tokens = jnp.divmod(flat, log_probs.shape[-1])
    alive = jnp.take_along_axis(alive, parents[..., None], axis=1).at[:, :, i + 1].set(tokens)
    rows = (parents + beams * jnp.arange(batch)[:, None]).reshape(-1)
    return i + 1, _gather_rows(cache, rows, one_row_shapes), alive, alive_scores, best, best_scores

  alive = jnp.zeros((batch, beams, length + 1), jnp.int32).at[:, :, 0].set(decoder_start_id)
  # All beams start identical: only the first is alive, so the first step expands it alone.
  alive_scores = jnp.full((batch, beams), -jnp.inf).at[:, 0].set(0.0)
  best = jnp.zeros((batch, length + 1), jnp.int32)
  state = (jnp.array(0), cache, alive, alive_scores, best, jnp.full((batch,), -jnp.inf))
  _, _, alive, alive_scores, best, best_scores = jax.lax.while_loop(unfinished, extend, state)
  # Only when the loop ran to L can the alive bound win, and then it is the exact score
  # of a full-length alive beam.
  full_length_wins = best_alive_bound(alive_scores) > best_scores
  tokens = jnp.where(full_length_wins[:, None], alive[:, 0], best)[:, 1:]
  return tokens, jnp.where(full_length_wins, best_alive_bound(alive_scores), best_scores)


METHODS = ('greedy', 'beam_search', 'sample')


@dataclasses.dataclass(frozen=True)
class DecodingMethod:
  """A decoding method chosen by name, with its options; hashable, so static under jit.

  Attributes:
    name: 'greedy', 'beam_search' or 'sample'.
    num_beams, alpha: for beam search.
    temperature, top_k, top_p: for sampling.
    decoder_start_id: for all. EOS is the vocabulary's, given with each call.
  """
  name: str = 'greedy'
  num_beams: int = 4
  alpha: float = 0.6
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  decoder_start_id: int = 0

  def __post_init__(self):
    if self.name not in METHODS:
      raise DecodingError(f'Unknown decoding method {self.name!r}; expected one of {METHODS}.')
    # The options of the chosen method are checked here, when gin builds the method, rather
    # than when the first batch is decoded.
    if self.name == 'beam_search' and (self.num_beams < 1 or self.alpha < 0):
      raise DecodingError(f'Beam search needs num_beams >= 1 and alpha >= 0; got '
                          f'num_beams={self.num_beams}, alpha={self.alpha}.')
    if self.name == 'sample' and (self.temperature < 0 or self.top_k < 0
                                  or not 0 < self.top_p <= 1):
      raise DecodingError(f'Sampling needs temperature >= 0, top_k >= 0 and 0 < top_p <= 1; '
                          f'got temperature={self.temperature}, top_k={self.top_k}, '
                          f'top_p={self.top_p}.')

  def __call__(self, model: nn.Module, params: Params, encoder_input_tokens: Array,
               max_decode_length: int, rng: Optional[Array] = None, *, eos_id: int,
               **features: Array) -> Tuple[Array, Array]:
    """[B, T] inputs -> ([B, L] tokens, [B] scores), ending at `eos_id` (the vocabulary's EOS).

    `rng` is needed for sampling only.
    """
    common = dict(eos_id=eos_id, decoder_start_id=self.decoder_start_id, **features)
    if self.name == 'greedy':
      return greedy_decode(model, params, encoder_input_tokens, max_decode_length, **common)
    if self.name == 'beam_search':
      return beam_search(model, params, encoder_input_tokens, max_decode_length,
                         num_beams=self.num_beams, alpha=self.alpha, **common)
    if rng is None:
      raise DecodingError("Decoding method 'sample' needs an rng; none was given.")
    return temperature_sample(model, params, encoder_input_tokens, max_decode_length, rng,
                              temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                              **common)
