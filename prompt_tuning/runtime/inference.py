"""Evaluation and inference runs: a frozen model plus a prompt from a `.npy` file or a training run.

The prompt comes from the model's prompt initializer (e.g. `prompts.from_array`
of the file PROMPT_FILE), or, when `checkpoint_path` names a training checkpoint
(`MODEL_DIR/checkpoint_<step>`), from that checkpoint's trained parameters.
"""

import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np
import seqio
from absl import logging

from prompt_tuning import storage
from prompt_tuning.errors import UserError
from prompt_tuning.runtime import checkpointing, evaluation, inputs, partitioning, run_setup
from prompt_tuning.runtime.model import EncoderDecoderModel

Params = Any


class InferenceError(UserError, ValueError):
  """CHECKPOINT_PATH or INPUT_FILE cannot be used (one-line message naming it)."""


def _checkpoint_location(checkpoint_path: str) -> Tuple[str, int]:
  """`.../MODEL_DIR/checkpoint_<step>` -> (MODEL_DIR, step)."""
  path = checkpoint_path.rstrip('/')
  match = re.fullmatch(r'checkpoint_(\d+)', os.path.basename(path))
  if not match or not storage.is_dir(path, 'CHECKPOINT_PATH'):
    raise InferenceError(f'CHECKPOINT_PATH={checkpoint_path} is not a training checkpoint '
                         'folder (MODEL_DIR/checkpoint_<step>).')
  return os.path.dirname(path), int(match.group(1))


def load_params(model: EncoderDecoderModel, dataset_config: Optional[inputs.DatasetConfig],
                run_config: run_setup.RunConfig, checkpoint_path: Optional[str] = None, *,
                input_shapes: Optional[Dict[str, tuple]] = None
                ) -> Tuple[run_setup.RunSetup, Params, int]:
  """The run's set-up, the full parameters to evaluate, and their training step.

  The input shapes come from `dataset_config` (which is checked against the model), or
  from `input_shapes` for inputs that are not a task's.
  """
  location = _checkpoint_location(checkpoint_path) if checkpoint_path else None
  run = run_setup.set_up(model, run_config, dataset_config, input_shapes=input_shapes)
  if location is None:
    return run, run.params(), 0
  model_dir, step = location
  checkpointer = checkpointing.Checkpointer(model_dir)
  trainable = checkpointer.restore_trainable(run.trainable, step)
  checkpointer.close()
  return run, run.params(trainable), step


def evaluate(*, model: EncoderDecoderModel, eval_config: evaluation.EvalConfig, output_dir: str,
             run_config: run_setup.RunConfig = run_setup.RunConfig(),
             checkpoint_path: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
  """Metrics per task; writes them (TensorBoard, JSON) and predictions (JSONL) to output_dir/inference_eval."""
  run, params, step = load_params(model, eval_config.dataset, run_config, checkpoint_path)
  evaluator = evaluation.Evaluator(model, eval_config, run.mesh, run.shardings,
                                   os.path.join(output_dir, 'inference_eval'))
  return evaluator.evaluate(params, step)


def input_lines(input_file: str) -> List[Tuple[int, str]]:
  """(line number, text) of each non-blank line of INPUT_FILE, which must be UTF-8."""
  if not storage.exists(input_file, 'INPUT_FILE'):
    raise InferenceError(f'INPUT_FILE={input_file!r}: no such file.')
  raw_lines = storage.read_bytes(input_file, 'INPUT_FILE').split(b'\n')
  lines = []
  for number, raw in enumerate(raw_lines, start=1):
    try:
      text = raw.decode('utf-8').rstrip('\r')
    except UnicodeDecodeError as e:
      raise InferenceError(f'INPUT_FILE {input_file}:{number}: not valid UTF-8 (byte '
                           f'0x{raw[e.start]:02x} at column {e.start + 1}).') from None
    if text.strip():
      lines.append((number, text))
  if not lines:
    raise InferenceError(f'INPUT_FILE {input_file} holds no input lines.')
  return lines


def encode_inputs(vocabulary: seqio.Vocabulary, texts: Sequence[str], length: int,
                  labels: Sequence[str], source: str) -> List[List[int]]:
  """Each text's token ids, cut to `length` - 1 and ended by EOS, as a task's inputs are.

  Warns once of the texts that are cut, naming them by `labels` (e.g. 'line 3') and
  `source` (e.g. 'INPUT_FILE inputs.txt').
  """
  encoded, cut = [], []
  for label, text in zip(labels, texts):
    ids = list(vocabulary.encode(text))
    if len(ids) > length - 1:
      cut.append(f'{label} ({len(ids)} tokens)')
    encoded.append(ids[:length - 1] + [vocabulary.eos_id])
  if cut:
    more = f' and {len(cut) - 5} more' if len(cut) > 5 else ''
    logging.warning('%s: %d of %d inputs have more than the %d tokens that '
                    "TASK_FEATURE_LENGTHS['inputs'] allows before EOS and are truncated: %s%s",
                    source, len(cut), len(texts), length - 1, ', '.join(cut[:5]), more)
  return encoded


def padded_tokens(encoded: Sequence[Sequence[int]], batch_size: int, length: int) -> np.ndarray:
  """[batch_size, length] int32 tokens: the rows of `encoded`, then zero rows."""
  tokens = np.zeros((batch_size, length), np.int32)
  for row, ids in enumerate(encoded):
    tokens[row, :len(ids)] = ids
  return tokens


def _text_batches(input_file: str, model: EncoderDecoderModel, dataset: inputs.DatasetConfig
                  ) -> List[Tuple[List[str], Dict[str, np.ndarray], int]]:
  """Raw input lines -> (texts, zero-padded model features, count), tokenized like task inputs.

  Reads and tokenizes the whole file at once, so that a bad file fails before
  the model is built.
  """
  length = dataset.task_feature_lengths['inputs']
  lines = input_lines(input_file)
  texts = [text for _, text in lines]
  encoded = encode_inputs(model.vocabulary, texts, length,
                          [f'line {number}' for number, _ in lines], f'INPUT_FILE {input_file}')
  size = dataset.batch_size
  return [(texts[start:start + size],
           {'encoder_input_tokens': padded_tokens(encoded[start:start + size], size, length)},
           len(encoded[start:start + size])) for start in range(0, len(lines), size)]


def _task_batches(dataset: inputs.DatasetConfig, model: EncoderDecoderModel):
  """A task split -> (input texts, zero-padded model features, count)."""
  task = inputs.get_mixture_or_task(dataset.mixture_or_task_name)
  with inputs.reading(dataset):
    ds = task.get_dataset(dataset.task_feature_lengths, split=dataset.split, shuffle=False,
                          num_epochs=1, use_cached=dataset.use_cached)
  batch_size = dataset.batch_size
  length = dataset.task_feature_lengths['inputs']
  # Examples differ in length: pad each batch to its longest input.
  for chunk in ds.map(lambda ex: ex['inputs']).padded_batch(batch_size).as_numpy_iterator():
    count = len(chunk)
    tokens = np.zeros((batch_size, length), np.int32)
    tokens[:count, :chunk.shape[1]] = chunk[:, :length]
    texts = [model.vocabulary.decode(t[t > 0].tolist()) for t in chunk]
    yield texts, {'encoder_input_tokens': tokens}, count


def infer(*, model: EncoderDecoderModel, dataset_config: inputs.DatasetConfig, output_file: str,
          run_config: run_setup.RunConfig = run_setup.RunConfig(),
          checkpoint_path: Optional[str] = None, input_file: Optional[str] = None) -> int:
  """Writes one JSON line (inputs, prediction, score) per input of a split or of `input_file`.

  Returns the number of lines written. The file appears whole or not at all.
  """
  if model.prompt_bank_size:
    raise InferenceError(f'The model has a bank of {model.prompt_bank_size} prompts; a bank '
                         'serves JSONL requests {"task": ..., "inputs": ...}: set PROMPT_FILES '
                         '(gin/prompts/from_files.gin) and INPUT_FILE.')
  # The input file is read first: a missing or bad one fails before the model is built.
  text_batches = _text_batches(input_file, model, dataset_config) if input_file else None
  run, params, _ = load_params(model, dataset_config, run_config, checkpoint_path)
  mesh, shardings, seed = run.mesh, run.shardings, run_config.random_seed
  batches = text_batches if input_file else _task_batches(dataset_config, model)
  predict = evaluation.jit_predict(model, dataset_config.task_feature_lengths['targets'],
                                   shardings, mesh)
  lines = []
  with jax.set_mesh(mesh):
    for step, (texts, features, count) in enumerate(batches):
      batch = partitioning.replicated_batch(features, mesh)
      tokens, scores = predict(params, batch, jax.random.key(seed + step))
      tokens, scores = np.asarray(tokens), np.asarray(scores)
      for row in range(count):
        lines.append(json.dumps({'inputs': texts[row],
                                 'prediction': model.vocabulary.decode(tokens[row].tolist()),
                                 'score': float(scores[row])}))
  if jax.process_index() == 0:
    storage.write_text(output_file, '\n'.join(lines) + '\n')
  return len(lines)
