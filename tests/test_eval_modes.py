"""End-to-end evaluation on SuperGLUE fixture files: generation and rank classification."""

import dataclasses
import json
import pathlib

import flax
import flax.linen as nn
import numpy as np
import pytest

from prompt_tuning import data
from prompt_tuning.models import prompted, t5
from prompt_tuning.runtime import evaluation, inputs, run_setup
from prompt_tuning.runtime.model import EncoderDecoderModel

TESTDATA = pathlib.Path(__file__).parent / 'testdata'
TASKS = {'taskless_super_glue_cb_v102': 'CB', 'taskless_super_glue_rte_v102': 'RTE'}
CB = 'taskless_super_glue_cb_v102'
LENGTHS = {'inputs': 96, 'targets': 8}
BATCH = 4


@pytest.fixture(scope='module')
def setup(fixtures_dir):
  data.set_vocabulary_path(str(fixtures_dir / 't5_vocab' / 'sentencepiece.model'))
  config = t5.config_for_size('tiny', vocab_size=32128)
  module = prompted.PromptedT5(config, prompt_config=prompted.PromptConfig(length=2))
  model = EncoderDecoderModel(module, data.get_vocabulary())
  shapes = inputs.model_feature_shapes(inputs.DatasetConfig('', LENGTHS, batch_size=BATCH))
  run = run_setup.set_up(model, run_setup.RunConfig(), input_shapes=shapes)
  return model, run.mesh, run.shardings, run.params()


def evaluator_for(setup, task, mode, log_dir, ensemble=False):
  model, mesh, shardings, _ = setup
  config = evaluation.EvalConfig(
      inputs.DatasetConfig(task, LENGTHS, split='validation', batch_size=BATCH, shuffle=False,
                           data_source='files', data_dir=str(TESTDATA)),
      mode=mode, ensemble=ensemble)
  return evaluation.Evaluator(model, config, mesh, shardings, str(log_dir))


def with_prompt(params, prompt):
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params), sep='/')
  return flax.traverse_util.unflatten_dict({**flat, prompted.PROMPT_PATH: prompt}, sep='/')


@pytest.mark.parametrize('mode', ['generate', 'rank'])
def test_eval_writes_metrics_and_predictions_for_each_task(setup, mode, tmp_path):
  params = setup[3]
  for task, folder in TASKS.items():
    metrics = evaluator_for(setup, task, mode, tmp_path).evaluate(params, step=7)[task]
    assert 'accuracy' in metrics and 0 <= metrics['accuracy'] <= 100
    lines = (tmp_path / f'{task}-metrics.jsonl').read_text().splitlines()
    assert json.loads(lines[-1])['step'] == 7
    predictions = [json.loads(l) for l in (tmp_path / f'{task}-000007.jsonl').read_text().splitlines()]
    examples = (TESTDATA / 'super_glue' / folder / 'val.jsonl').read_text().splitlines()
    assert len(predictions) == len(examples)
    assert all('prediction' in p and 'target' in p for p in predictions)
    if mode == 'rank':
      labels = data.get_label_strings(task)
      assert all(p['prediction'] in range(len(labels)) for p in predictions)


def test_rank_classification_never_predicts_an_invalid_label(setup, tmp_path):
  metrics = evaluator_for(setup, CB, 'rank', tmp_path).evaluate(setup[3], 0)[CB]
  invalid = [v for k, v in metrics.items() if 'invalid' in k]
  assert invalid and all(v == 0 for v in invalid)


def test_rank_classification_encodes_each_batch_once_whatever_the_label_count(setup, tmp_path):
  evaluator = evaluator_for(setup, CB, 'rank', tmp_path)  # CB: three labels
  encoder_batches = []

  def count_encoder_calls(next_fn, args, kwargs, context):
    if isinstance(context.module, t5.Encoder) and context.method_name == '__call__':
      encoder_batches.append(args[0].shape[0])
    return next_fn(*args, **kwargs)

  with nn.intercept_methods(count_encoder_calls):
    evaluator.evaluate(setup[3], 0)  # the first call traces (and compiles) the rank function
  assert len(evaluation.candidate_tokens(CB)) == 3
  assert encoder_batches == [BATCH]  # one encoder pass over B rows, not B x 3


def test_rank_mode_refuses_a_task_without_verbalizers(setup, tmp_path):
  with pytest.raises(evaluation.EvaluationError, match="no verbalizers"):
    evaluator_for(setup, 'taskless_super_glue_record_v102', 'rank', tmp_path)


def test_the_super_glue_mixture_reports_every_task_and_the_super_glue_score(setup, tmp_path):
  mixture = 'taskless_super_glue_v102_proportional'
  metrics = evaluator_for(setup, mixture, 'generate', tmp_path).evaluate(setup[3], step=3)
  tasks = {t for t in metrics if t != 'super_glue_average'}
  assert len(tasks) == 8 and not any('_axb_' in t or '_axg_' in t for t in tasks)  # test-only
  expected = data.super_glue_average({t: metrics[t] for t in tasks})
  assert metrics['super_glue_average']['score'] == pytest.approx(expected)
  logged = json.loads((tmp_path / 'super_glue_average-metrics.jsonl').read_text().splitlines()[-1])
  assert logged == {'step': 3, 'score': pytest.approx(expected)}
  assert list((tmp_path / 'super_glue_average').glob('events.out.tfevents.*'))


def test_a_rank_ensemble_scores_each_member_as_its_own_evaluation_does(setup, tmp_path):
  model, mesh, _, params = setup
  single = np.asarray(flax.traverse_util.flatten_dict(params, sep='/')[prompted.PROMPT_PATH])
  other = np.random.default_rng(1).uniform(-0.5, 0.5, single.shape).astype(np.float32)
  alone = [evaluator_for(setup, CB, 'rank', tmp_path / f'alone_{k}').evaluate(
      with_prompt(params, prompt), 0)[CB] for k, prompt in enumerate((single, other))]
  config = dataclasses.replace(model.module.prompt_config, num_prompts=3)
  bank_model = dataclasses.replace(model, module=model.module.clone(prompt_config=config))
  shapes = inputs.model_feature_shapes(inputs.DatasetConfig('', LENGTHS, batch_size=BATCH))
  layout = run_setup.lay_out(bank_model, run_setup.RunConfig(), input_shapes=shapes)
  ensemble = evaluator_for((bank_model, mesh, layout.shardings, None), CB, 'rank',
                           tmp_path / 'ensemble', ensemble=True)
  metrics = ensemble.evaluate(with_prompt(params, np.stack([single, other, single])), 0)[CB]
  for name, value in alone[0].items():  # members 0 and 2 are the single prompt, 1 the other
    assert metrics[f'member_0/{name}'] == metrics[f'member_2/{name}'] == pytest.approx(value)
    assert metrics[f'member_1/{name}'] == pytest.approx(alone[1][name])
    assert metrics[f'best/{name}'] == pytest.approx(max(alone[0][name], alone[1][name]))
  assert 0 <= metrics['accuracy'] <= 100
  logged = json.loads((tmp_path / 'ensemble' / f'{CB}-metrics.jsonl').read_text().splitlines()[-1])
  assert logged == {'step': 0, **{k: pytest.approx(v) for k, v in metrics.items()}}
  rows = [json.loads(l) for l in (tmp_path / 'ensemble' / f'{CB}-000000.jsonl').read_text().splitlines()]
  labels = data.get_label_strings(CB)
  assert rows and all(len(r['members']) == 3 and r['members'][0] == r['members'][2]
                      and {r['prediction'], *r['members']} <= set(labels) for r in rows)
