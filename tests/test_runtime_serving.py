"""Mixed-task serving from Python: one frozen model, a bank of task prompts, requests in order.

The CLI's JSONL serving, checked line for line against each task's own infer, is in
tests/test_runtime_eval_infer.py; bad requests and bank files through the CLI are in
tests/test_cli_errors.py.
"""

import numpy as np
import pytest
import seqio

import runtime_helpers as h
from prompt_tuning import prompts
from prompt_tuning.models import prompted, t5
from prompt_tuning.runtime import model, run_setup, serving

MODEL_FIELDS = {**h.TOY_MODEL, 'vocab_size': 384}
NAMES = ['reverse', 'copy']
REQUESTS = [{'task': 'reverse', 'inputs': 'hello'}, {'task': 'copy', 'inputs': 'hello'},
            {'task': 'copy', 'inputs': 'soft prompts'}, {'task': 'reverse', 'inputs': 'bank'},
            {'task': 'reverse', 'inputs': 'one model'}]


@pytest.fixture(scope='module')
def server():
  bank = np.random.default_rng(0).normal(0, 4, (len(NAMES), 4, 64)).astype(np.float32)
  module = prompted.PromptedT5(
      t5.config_for_size('tiny', **MODEL_FIELDS, dropout_rate=0.0),
      prompt_config=prompted.PromptConfig(length=4, num_prompts=len(NAMES),
                                          init=prompts.from_array(bank)))
  run_config = run_setup.RunConfig(initial_checkpoint_path=h.frozen_checkpoint(**MODEL_FIELDS))
  return serving.MixedTaskServer(
      model=model.EncoderDecoderModel(module, seqio.ByteVocabulary()), prompt_names=NAMES,
      task_feature_lengths={'inputs': 16, 'targets': 8}, batch_size=4, run_config=run_config)


def test_each_request_gets_what_it_gets_alone_whatever_its_batch(server):
  together = server.predict(REQUESTS)
  assert [{'task': r['task'], 'inputs': r['inputs']} for r in together] == REQUESTS
  alone = [server.predict([request])[0] for request in REQUESTS]
  assert [r['prediction'] for r in together] == [r['prediction'] for r in alone]
  np.testing.assert_allclose([r['score'] for r in together], [r['score'] for r in alone],
                             rtol=1e-5, atol=1e-5)


def test_the_task_picks_the_prompt(server):
  # The same input under the two tasks' prompts: the bank's rows answer differently.
  answers = server.predict([{'task': name, 'inputs': text}
                            for text in ('hello', 'bank', 'one model') for name in NAMES])
  by_task = {name: [a['prediction'] for a in answers if a['task'] == name] for name in NAMES}
  assert by_task['reverse'] != by_task['copy']


@pytest.mark.parametrize('request_, message', [
    ({'task': 'summarize', 'inputs': 'x'},
     "request 1: task 'summarize' is not one of PROMPT_FILES's names ('reverse', 'copy')."),
    ({'inputs': 'x'}, 'request 1: expected {"task": <name>, "inputs": <text>}'),
])
def test_a_bad_request_is_one_error_naming_it(server, request_, message):
  with pytest.raises(serving.RequestError) as error:
    server.predict([REQUESTS[0], request_])
  assert str(error.value).startswith(message)
