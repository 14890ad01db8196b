"""The gin edge: which library objects gin files may name, where gin files are found, parsing.

Gin stays here and in the CLI; the library below takes plain arguments.
Configurables are named after the modules they live in, except where T5X users
will look for T5X's names (see `_register`).
"""

import ast
import difflib
import os
import pathlib
import re
from typing import List, Sequence

import gin
import jax.numpy as jnp
import optax
import seqio

# `commands` registers train_script.train, eval_script.evaluate and infer_script.infer, so a
# recipe may bind more than the running command uses.
from prompt_tuning import checkpoints, commands, decoding, prompts  # pylint: disable=unused-import
from prompt_tuning.errors import UserError
from prompt_tuning.models import prompted, t5
from prompt_tuning.runtime import (checkpointing, evaluation, inputs, model, optimizer, partitioning,
                                   run_setup)

PACKAGE_DIR = pathlib.Path(__file__).resolve().parent


class GinConfigError(UserError, ValueError):
  """A gin file, binding or macro is wrong or missing."""


def _register() -> None:
  """Registers each configurable under the module it is imported from (`t5.T5Config`, ...).

  Except T5X's own names, kept so that T5X users find them where they look:
  `models.EncoderDecoderModel`, `utils.DatasetConfig`, `partitioning.Partitioner`
  and `seqio.*` (and the commands' `train_script.train`, ..., in `commands`).
  """
  configurables = [
      (t5.T5Config, t5), (t5.Transformer, t5), (t5.config_for_size, t5),
      (prompted.PromptedT5, prompted), (prompted.PromptConfig, prompted),
      (prompts.random_uniform, prompts), (prompts.sampled_vocab, prompts),
      (prompts.class_labels, prompts), (prompts.from_string, prompts),
      (prompts.from_array, prompts),
      (checkpoints.read_embedding, checkpoints), (checkpoints.read_prompt, checkpoints),
      (checkpoints.read_prompt_bank, checkpoints), (checkpoints.prompt_bank_size, checkpoints),
      (decoding.DecodingMethod, decoding),
      (optimizer.adafactor, optimizer), (optimizer.warmup_then_decay, optimizer),
      (checkpointing.CheckpointConfig, checkpointing), (evaluation.EvalConfig, evaluation),
      (inputs.task_vocabulary, inputs), (inputs.task_count, inputs),
      (run_setup.RunConfig, run_setup),
  ]
  for fn_or_cls, module in configurables:
    gin.external_configurable(fn_or_cls, module=module.__name__)
  t5x_names = [
      (model.EncoderDecoderModel, 'models'), (partitioning.Partitioner, 'partitioning'),
      (inputs.DatasetConfig, 'utils'), (seqio.SentencePieceVocabulary, 'seqio'),
      (seqio.ByteVocabulary, 'seqio'), (seqio.PassThroughVocabulary, 'seqio'),
  ]
  optax_functions = [optax.adamw, optax.sgd, optax.constant_schedule, optax.linear_schedule,
                     optax.cosine_decay_schedule, optax.warmup_cosine_decay_schedule,
                     optax.exponential_decay]
  for fn_or_cls, module in [*t5x_names, *((fn, 'optax') for fn in optax_functions)]:
    gin.external_configurable(fn_or_cls, module=module)
  gin.constant('jnp.float32', jnp.float32)
  gin.constant('jnp.bfloat16', jnp.bfloat16)


_register()


def default_search_paths() -> List[str]:
  """Folders holding `gin/` and `configs/`: inside the installed package, or the repository root."""
  roots = [PACKAGE_DIR, PACKAGE_DIR.parent]
  return [str(root) for root in roots if (root / 'gin').is_dir()]


def _missing_macro_error(name: str) -> GinConfigError:
  return GinConfigError(f'Missing required gin macro {name}: set it in a gin file or pass '
                        f'--gin.{name}=... on the command line.')


# gin.finalize's words for a macro left at %gin.REQUIRED, and for a macro used but never set.
_MISSING_MACRO = re.compile(r"(\w+)/macro\.value set to `%gin\.REQUIRED`|"
                            r"No bindings specified for '(\w+)/gin\.macro'")


# gin.parse_config_file's words for a file found nowhere.
_NOT_FOUND = re.compile(r'Unable to open file: (.*)\. Searched config paths: (.*)\.$')
# The location gin appends to an error raised while a file or the bindings were parsed.
_LOCATION = re.compile(r'^\s*In (?:file "(?P<file>[^"]*)",|bindings string) line (?P<line>\d+)\n'
                       r'\s*(?P<text>.*)$', re.MULTILINE)


def _gin_error(error: Exception) -> GinConfigError:
  """One line for an error gin raised while parsing: what is wrong, and where.

  gin writes the innermost location (file and line, or the bindings) on the
  lines after its message; an include found nowhere names the including file.
  """
  message = str(error)
  missing = _MISSING_MACRO.search(message)
  if missing:
    return _missing_macro_error(missing.group(1) or missing.group(2))
  first = message.split('\n', 1)[0].strip() or type(error).__name__
  location = _LOCATION.search(message)
  if isinstance(error, SyntaxError):  # gin's parser gives the file (None: the bindings) and line
    where = (f'gin file {error.filename} line {error.lineno}' if error.filename else
             f'--gin_bindings line {error.lineno}')
    return GinConfigError(f'{where}: {error.msg.rstrip(".")}: {(error.text or "").strip()}')
  not_found = _NOT_FOUND.match(first)
  if not_found:
    name, prefixes = not_found.groups()
    try:
      folders = [p for p in dict.fromkeys(ast.literal_eval(prefixes)) if p]
    except (ValueError, SyntaxError):
      folders = [prefixes]
    searched = 'as given' + ''.join(f', under {p}' for p in folders)
    if location and location.group('file'):
      return GinConfigError(f'gin file {location.group("file")} line {location.group("line")}: '
                            f'include {name!r} not found (searched {searched}).')
    return GinConfigError(f'--gin_file={name}: not found (searched {searched}; '
                          '--gin_search_paths adds folders).')
  if location:
    where = (f'gin file {location.group("file")} line {location.group("line")}'
             if location.group('file') else '--gin_bindings')
    return GinConfigError(f'{where} ({location.group("text").strip()}): {first}')
  return GinConfigError(f'gin: {first}')


def parse(gin_files: Sequence[str], bindings: Sequence[str],
          search_paths: Sequence[str] = ()) -> None:
  """Parses files (later ones override earlier), then bindings, finding `gin/` and `configs/` files."""
  for path in [os.getcwd(), *default_search_paths(), *search_paths]:
    gin.add_config_file_search_path(path)
  try:
    gin.parse_config_files_and_bindings(gin_files, bindings, finalize_config=False)
    gin.finalize()
  except (IOError, ValueError, SyntaxError, TypeError) as e:
    raise _gin_error(e) from e  # the chain shows with --verbosity=1


def require_macros(names: Sequence[str]) -> None:
  """Fails with one line naming the first required macro that no file or flag set."""
  for name in names:
    try:
      value = gin.query_parameter(f'%{name}')
    except ValueError:
      value = gin.REQUIRED
    if value is gin.REQUIRED or getattr(value, 'selector', None) == 'gin.REQUIRED':
      raise _missing_macro_error(name)


# A macro binding: a name without dots at the start of a line (indented lines are in a block).
_MACRO_BINDING = re.compile(r'^([A-Za-z_]\w*)\s*=', re.MULTILINE)


def _macros_in_use() -> set:
  """Names of the macros that some binding of the parsed config refers to (`%NAME`)."""
  # gin has no public view of its bindings; _CONFIG maps (scope, selector) to them.
  bindings = gin.config._CONFIG  # pylint: disable=protected-access
  return {ref.scoped_selector.rsplit('/', 1)[0] for ref in gin.config.iterate_references(bindings)
          if ref.selector == 'gin.macro'}


def check_bound_macros_are_used(bindings: Sequence[str]) -> None:
  """Fails on a macro set in `bindings` (the command line) that nothing uses: a misspelling.

  Gin itself accepts it silently. Only macros are checked (names without dots);
  a misspelled parameter binding is already gin's error.
  """
  used = _macros_in_use()
  for binding in bindings:
    for name in _MACRO_BINDING.findall(binding):
      if name in used:
        continue
      close = difflib.get_close_matches(name, sorted(used), n=1)
      hint = (f'; did you mean {close[0]}?' if close else
              '; check the spelling and the --gin_file list.')
      raise GinConfigError(f'--gin.{name}: no gin file uses the macro {name}{hint}')
