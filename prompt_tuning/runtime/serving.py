"""Mixed-task serving: one frozen model, a bank of prompts (one per task), requests of any task.

Each request names its task; the task's row of the bank is its `prompt_index`,
so one batch holds requests of different tasks and runs through one copy of
the model. Results come back one per request, in order.
"""

import json
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

from prompt_tuning import storage
from prompt_tuning.runtime import evaluation, inference, inputs, partitioning, run_setup
from prompt_tuning.runtime.model import EncoderDecoderModel

Request = Mapping[str, str]  # {'task': a name of the bank, 'inputs': text}


class RequestError(inference.InferenceError):
  """A request names no task of the bank, or lacks its text (one line, naming the request)."""


def _prompt_index(request: Any, names: Sequence[str], where: str) -> int:
  """The bank row of `request`'s task; `where` names the request in an error."""
  if (not isinstance(request, Mapping) or not isinstance(request.get('task'), str)
      or not isinstance(request.get('inputs'), str)):
    raise RequestError(f'{where}: expected {{"task": <name>, "inputs": <text>}}, got '
                       f'{str(request)[:200]}')
  if request['task'] not in names:
    raise RequestError(f'{where}: task {request["task"]!r} is not one of PROMPT_FILES\'s names '
                       f'({", ".join(map(repr, names))}).')
  return names.index(request['task'])


def read_requests(input_file: str, names: Sequence[str]) -> List[Dict[str, str]]:
  """The requests of a JSONL INPUT_FILE, one per non-blank line, each checked against `names`."""
  requests = []
  for number, text in inference.input_lines(input_file):
    where = f'INPUT_FILE {input_file}:{number}'
    try:
      request = json.loads(text)
    except json.JSONDecodeError as e:
      raise RequestError(f'{where}: not JSON ({e.msg} at column {e.colno}).') from None
    _prompt_index(request, names, where)
    requests.append(request)
  return requests


class MixedTaskServer:
  """A frozen model with a bank of task prompts, built once; `predict` answers any requests.

  Args:
    model: a prompted model whose prompt is a bank of `len(prompt_names)` rows
      (e.g. initialised by `prompts.from_array(checkpoints.read_prompt_bank(files))`);
      its vocabulary tokenizes the requests.
    prompt_names: the task of each bank row, in order.
    task_feature_lengths: {'inputs': the length requests are cut to, 'targets': the
      decoded length}.
    batch_size: requests per batch (split over the mesh's `data` axis).
    run_config: the frozen checkpoint, the mesh, the seed.
    checkpoint_path: a training checkpoint whose trained bank replaces the initial one.
  """

  def __init__(self, *, model: EncoderDecoderModel, prompt_names: Sequence[str],
               task_feature_lengths: Mapping[str, int], batch_size: int,
               run_config: run_setup.RunConfig = run_setup.RunConfig(),
               checkpoint_path: Optional[str] = None):
    if model.prompt_bank_size != len(prompt_names):
      raise RequestError(f'The model has a bank of {model.prompt_bank_size} prompts, but '
                         f'{len(prompt_names)} task names were given.')
    self.model = model
    self.names = list(prompt_names)
    self.lengths = dict(task_feature_lengths)
    self.batch_size = batch_size
    run, self.params, _ = inference.load_params(
        model, None, run_config, checkpoint_path,
        input_shapes=inputs.feature_shapes(self.lengths, batch_size))
    partitioning.check_batch_size(batch_size, run.mesh)
    self.mesh, self.seed = run.mesh, run_config.random_seed
    self._predict = evaluation.jit_predict(model, self.lengths['targets'], run.shardings,
                                           run.mesh)

  def _batches(self, requests: Sequence[Request], indices: Sequence[int]
               ) -> Iterator[Tuple[Dict[str, np.ndarray], int]]:
    """Requests in order -> ({tokens [B, T], prompt_index [B]}, zero-padded, and the count)."""
    size, length = self.batch_size, self.lengths['inputs']
    encoded = inference.encode_inputs(self.model.vocabulary, [r['inputs'] for r in requests],
                                      length, [f'request {i}' for i in range(len(requests))],
                                      'requests')
    for start in range(0, len(requests), size):
      chunk = encoded[start:start + size]
      prompt_index = np.zeros((size,), np.int32)
      prompt_index[:len(chunk)] = indices[start:start + size]
      yield ({'encoder_input_tokens': inference.padded_tokens(chunk, size, length),
              'prompt_index': prompt_index}, len(chunk))

  def predict(self, requests: Sequence[Request]) -> List[Dict[str, Any]]:
    """{'task', 'inputs', 'prediction', 'score'} for each request, in order.

    Raises RequestError, naming the request by its position, for a task not in the bank.
    """
    indices = [_prompt_index(r, self.names, f'request {i}') for i, r in enumerate(requests)]
    results = []
    with jax.set_mesh(self.mesh):
      for step, (features, count) in enumerate(self._batches(requests, indices)):
        batch = partitioning.replicated_batch(features, self.mesh)
        tokens, scores = self._predict(self.params, batch, jax.random.key(self.seed + step))
        tokens, scores = np.asarray(tokens), np.asarray(scores)
        for row in range(count):
          request = requests[len(results)]
          results.append({'task': request['task'], 'inputs': request['inputs'],
                          'prediction': self.model.vocabulary.decode(tokens[row].tolist()),
                          'score': float(scores[row])})
    return results


def serve_file(*, input_file: str, output_file: str, prompt_names: Sequence[str],
               **server_args: Any) -> int:
  """Answers the JSONL requests of `input_file` into `output_file` (one line each, in order).

  The requests are read and checked before the model is built. Returns the
  number of lines written; the file appears whole or not at all.
  """
  requests = read_requests(input_file, prompt_names)
  results = MixedTaskServer(prompt_names=prompt_names, **server_args).predict(requests)
  if jax.process_index() == 0:
    storage.write_text(output_file, ''.join(json.dumps(r) + '\n' for r in results))
  return len(results)
