"""Banks trained in one run: which rows they have, which row each example trains, isolation.

The CLI runs (an ensemble trained as its members would be alone, a bank of task prompts
trained on a mixture and evaluated per task) are in tests/test_runtime_eval_infer.py.
"""

import jax
import numpy as np
import pytest
import seqio

import runtime_helpers as h
import toy_tasks
from prompt_tuning.models import prompted, t5
from prompt_tuning.runtime import banks, inputs, model, optimizer, partitioning, run_setup

MIXTURE = 'toy_parity_mix'
TASKS = ('toy_parity', 'toy_parity_flipped')  # sorted: the bank's rows
LENGTHS = {'inputs': 12, 'targets': 4}


def toy_model(num_prompts):
  module = prompted.PromptedT5(t5.config_for_size('tiny', **h.TOY_MODEL, dropout_rate=0.0),
                               prompt_config=prompted.PromptConfig(length=4,
                                                                   num_prompts=num_prompts))
  return model.EncoderDecoderModel(module, seqio.PassThroughVocabulary(128, eos_id=1))


def dataset(name=MIXTURE, **fields):
  return inputs.DatasetConfig(name, LENGTHS, batch_size=8, module='toy_tasks', **fields)


def test_an_ensemble_names_its_members_and_a_task_bank_its_tasks():
  ensemble = banks.bank_rows('ensemble', toy_model(3), dataset('toy_parity'))
  assert ensemble.names == ('member_0', 'member_1', 'member_2') and ensemble.ensemble_size == 3
  assert ensemble.task_rows is None
  tasks = banks.bank_rows('tasks', toy_model(2), dataset())
  assert tasks.task_rows == {'toy_parity': 0, 'toy_parity_flipped': 1}
  assert tasks.ensemble_size is None
  assert banks.bank_rows(None, toy_model(None), dataset()) is None


@pytest.mark.parametrize('kind, num_prompts, message', [
    ('tasks', 3, "PromptConfig.num_prompts=3 but MIXTURE_OR_TASK_NAME='toy_parity_mix' has 2 "
                 'tasks'),
    ('ensemble', None, "train_script.train.prompt_bank='ensemble' trains a bank of prompts, but "
                       'the model has a single prompt'),
    ('ensembles', 2, "train_script.train.prompt_bank='ensembles': must be one of 'ensemble', "
                     "'tasks' or None."),
    (None, 2, 'The model has a bank of 2 prompts (PromptConfig.num_prompts) but '
              'train_script.train.prompt_bank is None'),
])
def test_a_bank_that_does_not_fit_is_a_one_line_error(kind, num_prompts, message):
  with pytest.raises(banks.PromptBankError) as error:
    banks.bank_rows(kind, toy_model(num_prompts), dataset())
  assert message in str(error.value) and '\n' not in str(error.value)


def test_each_example_of_a_mixture_carries_its_tasks_row():
  rows = {'toy_parity': 0, 'toy_parity_flipped': 1}
  examples = list(inputs.host_dataset(dataset(shuffle=False), num_epochs=1,
                                      task_rows=rows).take(64).as_numpy_iterator())
  index = np.array([ex['prompt_index'] for ex in examples])
  assert set(index) == {0, 1}  # both tasks, mixed
  for example in examples:  # the flipped task answers the other label: the row is the task's
    parity = example['encoder_input_tokens'][0] % 2
    label = toy_tasks.LABELS[(parity + example['prompt_index']) % 2]
    assert example['decoder_target_tokens'][0] == label


@pytest.fixture(scope='module')
def bank_step():
  """A bank of two prompts on the toy model: its initial state and its jitted train step."""
  run = run_setup.set_up(toy_model(2), run_setup.RunConfig(
      initial_checkpoint_path=h.frozen_checkpoint(**h.TOY_MODEL)),
                         input_shapes=inputs.feature_shapes(LENGTHS, 8))
  trainer = run.trainer(optimizer.adafactor(learning_rate=1.0))
  state = run.initial_state(trainer)
  step = trainer.jit_train_step(jax.tree_util.tree_map(lambda x: x.sharding, state))
  copy = lambda tree: jax.tree_util.tree_map(np.array, tree)  # the step donates its input
  return run, copy(state), lambda s, batch: copy(step(
      jax.device_put(s, jax.tree_util.tree_map(lambda x: x.sharding, state)), run.frozen,
      partitioning.global_batch(batch, run.mesh)))


def toy_batch(prompt_index):
  examples = inputs.host_dataset(dataset('toy_parity', shuffle=False), num_epochs=1)
  batch = next(examples.batch(8).as_numpy_iterator())
  return {**batch, 'prompt_index': np.asarray(prompt_index, np.int32)}


def test_a_prompt_absent_from_a_batch_gets_no_update_and_keeps_its_optimizer_state(bank_step):
  _, state, step = bank_step
  prompt = lambda s: s.trainable['encoder']['prompt']['prompt']['prompt']
  opt_arrays = lambda s: [x for x in jax.tree_util.tree_leaves(s.opt_state) if x.ndim]
  after, metrics = step(state, toy_batch([0] * 8))  # prompt 1's task is absent
  np.testing.assert_array_equal(prompt(after)[1], prompt(state)[1])
  assert np.abs(prompt(after)[0] - prompt(state)[0]).max() > 1e-3
  for old, new in zip(opt_arrays(state), opt_arrays(after)):  # [2, ...]: one row per prompt
    np.testing.assert_array_equal(new[1], old[1])
  assert any(not np.array_equal(new[0], old[0])
             for old, new in zip(opt_arrays(state), opt_arrays(after)))
  assert list(metrics['prompt_target_tokens']) == [16.0, 0.0]  # 8 labels + 8 EOS, all prompt 0's
  # The next batch mixes both: now both train, prompt 1 from its untouched state.
  both, _ = step(after, toy_batch([0, 1] * 4))
  assert np.abs(prompt(both)[1] - prompt(after)[1]).max() > 1e-3
