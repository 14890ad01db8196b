"""End-to-end evaluation on SuperGLUE fixture files: generation and rank classification."""

import json
import pathlib

import flax.linen as nn
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


def evaluator_for(setup, task, mode, log_dir):
  model, mesh, shardings, _ = setup
  config = evaluation.EvalConfig(
      inputs.DatasetConfig(task, LENGTHS, split='validation', batch_size=BATCH, shuffle=False,
                           data_source='files', data_dir=str(TESTDATA)),
      mode=mode)
  return evaluation.Evaluator(model, config, mesh, shardings, str(log_dir))


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
