"""Prompt initializers from the paper, with the flax signature `init(rng, shape, dtype)`.

`shape` is `[P, H]` for one prompt or `[K, P, H]` for a bank of K prompts;
vocabulary-based initializers take the frozen model's embedding table `[V, H]`
as a concrete array, and a stored prompt comes as an array (`from_array`): the
checkpoint readers read files, so that nothing here does I/O.
"""

from typing import Callable, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from prompt_tuning.errors import UserError

Initializer = Callable[..., jax.Array]


class PromptInitError(UserError, ValueError):
  """A prompt initializer cannot make the prompt it is configured for (one-line message)."""


class PromptShapeError(PromptInitError):
  """A prompt value does not have the shape the model's prompt parameter expects."""


class Tokenizer(Protocol):
  """Anything with `encode(text) -> token ids`: a seqio Vocabulary or a SentencePieceProcessor."""

  def encode(self, text: str) -> Sequence[int]:
    ...


def _each_prompt(init_one: Callable[[jax.Array, tuple, jnp.dtype], jax.Array]) -> Initializer:
  """Lifts an initializer of one `[P, H]` prompt to banks `[K, P, H]`, one rng per prompt."""

  def init(rng: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    shape = tuple(shape)
    if len(shape) == 2:
      return init_one(rng, shape, dtype)
    return jax.vmap(lambda key: init(key, shape[1:], dtype))(jax.random.split(rng, shape[0]))

  return init


def random_uniform(scale: float = 0.5) -> Initializer:
  """Each value uniform in [-scale, scale] (the paper's "random uniform")."""

  def init(rng: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    return jax.random.uniform(rng, tuple(shape), dtype, -scale, scale)

  return init


def sampled_vocab(embedding: np.ndarray, population_size: int = 5000) -> Initializer:
  """Rows drawn from the first `population_size` rows of the embedding table `[V, H]`.

  Without replacement, unless the prompt is longer than the population.
  """
  population = np.asarray(embedding)[:population_size]

  def init_one(rng: jax.Array, shape: tuple, dtype) -> jax.Array:
    length, width = shape
    _check_width(population, width, 'embedding table')
    rows = jax.random.choice(rng, population.shape[0], (length,), replace=length > population.shape[0])
    return jnp.asarray(population, dtype)[rows]

  return _each_prompt(init_one)


def _fill_rows(rows: np.ndarray, fallback: Initializer, what: str,
               keep_first: bool = False) -> Initializer:
  """The given `[N, H]` rows first, then `fallback` for the remaining P - N rows.

  More rows than P is an error, or with `keep_first` only the first P are used.
  """

  def init_one(rng: jax.Array, shape: tuple, dtype) -> jax.Array:
    nonlocal rows
    length, width = shape
    _check_width(rows, width, what)
    if rows.shape[0] > length:
      if not keep_first:
        raise PromptShapeError(
            f'{what} needs {rows.shape[0]} prompt rows but the prompt length is {length}.')
      logging.warning('%s: only the first %d fit in a prompt of length %d.', what, length, length)
      rows = rows[:length]
    rest = fallback(rng, (length - rows.shape[0], width), dtype)
    return jnp.concatenate([jnp.asarray(rows, dtype), rest], axis=0)

  return _each_prompt(init_one)


def class_labels(embedding: np.ndarray, vocabulary: Tokenizer, labels: Sequence[str],
                 fallback: Initializer) -> Initializer:
  """Row i is the mean embedding of label i's sub-tokens; the other rows come from `fallback`.

  With more labels than prompt rows, the first P labels are used (as in the paper's code).
  """
  embedding = np.asarray(embedding)
  rows = []
  for label in labels:
    tokens = list(vocabulary.encode(label))
    if not tokens:
      raise PromptInitError(f'Class label {label!r} tokenizes to no tokens.')
    rows.append(embedding[tokens].mean(axis=0))
  return _fill_rows(np.stack(rows), fallback, f'class labels {list(labels)}', keep_first=True)


def from_string(embedding: np.ndarray, vocabulary: Tokenizer, text: str,
                fallback: Initializer) -> Initializer:
  """The embeddings of `text`'s tokens fill the first rows; the other rows come from `fallback`."""
  tokens = list(vocabulary.encode(text))
  return _fill_rows(np.asarray(embedding)[tokens], fallback, f'prompt string {text!r}')


def from_array(value: np.ndarray, source: str = 'array') -> Initializer:
  """Exactly `value`, which must have the prompt's full shape."""
  value = np.asarray(value)

  def init(rng: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    del rng
    if value.shape != tuple(shape):
      raise PromptShapeError(f'{source} has shape {value.shape} but the model\'s prompt has shape '
                             f'{tuple(shape)}.')
    return jnp.asarray(value, dtype)

  return init


def _check_width(rows: np.ndarray, width: int, what: str) -> None:
  if rows.shape[-1] != width:
    raise PromptShapeError(f'{what} has width {rows.shape[-1]} but the prompt has width {width}.')
