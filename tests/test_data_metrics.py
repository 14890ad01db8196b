"""Metrics: the official definitions, checked by hand and against scikit-learn."""

import numpy as np
import pytest
from sklearn import metrics as sk

from prompt_tuning.data import errors
from prompt_tuning.data import metrics

INVALID = metrics.INVALID


def test_accuracy_counts_invalid_predictions_as_wrong():
  targets, predictions = [1, 0, 1, 1], [1, 0, INVALID, 0]
  assert metrics.accuracy(targets, predictions) == {'accuracy': 50.0}
  assert metrics.invalid_predictions(targets, predictions) == {'invalid_predictions': 1}


def test_f1_turns_an_invalid_prediction_into_the_wrong_class():
  targets, predictions = [1, 1, 0, 0, 1], [1, INVALID, 1, 0, 0]
  # The invalid one counts as 0: tp=1, fp=1, fn=2.
  assert metrics.f1_with_invalid(targets, predictions)['f1'] == pytest.approx(40.0)
  assert metrics.f1_with_invalid(targets, predictions)['f1'] == pytest.approx(
      100 * sk.f1_score(targets, [1, 0, 1, 0, 0]))


def test_cb_macro_f1_averages_three_classes_even_when_one_is_never_right():
  targets, predictions = [0, 1, 2, 2], [0, 2, 2, INVALID]
  # Class 0: 1.0; class 1: 0.0; class 2: tp=1, fp=1, fn=1 -> 0.5.
  assert metrics.mean_3class_f1(targets, predictions) == {'mean_3class_f1': pytest.approx(50.0)}


@pytest.mark.parametrize('seed', range(5))
def test_metrics_agree_with_scikit_learn_on_random_predictions(seed):
  rng = np.random.default_rng(seed)
  targets3 = rng.integers(0, 3, 40)
  predictions3 = np.where(rng.random(40) < 0.1, INVALID, rng.integers(0, 3, 40))
  assert metrics.mean_3class_f1(targets3, predictions3)['mean_3class_f1'] == pytest.approx(
      100 * sk.f1_score(targets3, predictions3, labels=[0, 1, 2], average='macro',
                        zero_division=0))
  assert metrics.accuracy(targets3, predictions3)['accuracy'] == pytest.approx(
      100 * sk.accuracy_score(targets3, predictions3))
  targets = rng.integers(0, 2, 40)
  predictions = np.where(rng.random(40) < 0.1, INVALID, rng.integers(0, 2, 40))
  as_wrong = np.where(predictions == INVALID, 1 - targets, predictions)
  assert metrics.f1_with_invalid(targets, predictions)['f1'] == pytest.approx(
      100 * sk.f1_score(targets, as_wrong))
  assert metrics.matthews_corrcoef(targets, predictions)['matthews_corrcoef'] == pytest.approx(
      100 * sk.matthews_corrcoef(targets, as_wrong))


def test_matthews_correlation_by_hand_and_for_constant_predictions():
  # tp=1, tn=2, fp=0, fn=1: (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3).
  assert metrics.matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0])['matthews_corrcoef'] == (
      pytest.approx(100 * 2 / np.sqrt(12)))
  assert metrics.matthews_corrcoef([1, 0, 1], [1, 1, 1]) == {'matthews_corrcoef': 0.0}
  assert sk.matthews_corrcoef([1, 0, 1], [1, 1, 1]) == 0.0


def test_correlations_are_reported_times_100():
  assert metrics.pearson_corrcoef([1., 2., 3.], [2., 4., 6.])['pearson_corrcoef'] == (
      pytest.approx(100))
  assert metrics.spearman_corrcoef([1., 2., 3.], [3., 2., 1.])['spearman_corrcoef'] == (
      pytest.approx(-100))
  assert metrics.pearson_corrcoef([1., 2., 3., 4.], [1., 3., 2., 4.])['pearson_corrcoef'] == (
      pytest.approx(80.0))


def test_multirc_scores_every_answer_option_and_each_question_as_a_whole():
  targets = [{'value': 1, 'group': (0, 0)}, {'value': 0, 'group': (0, 0)},
             {'value': 1, 'group': (0, 1)}, {'value': 1, 'group': (1, 1)}]
  predictions = [{'value': 1}, {'value': 0}, {'value': 0}, {'value': INVALID}]
  # Questions (0, 1) and (1, 1) differ only in their paragraph: they are separate groups.
  assert metrics.group_exact_match(targets, predictions) == {
      'exact_match': pytest.approx(100 / 3)}
  assert metrics.f1_with_invalid(targets, predictions)['f1'] == pytest.approx(50.0)
  assert metrics.invalid_predictions(targets, predictions) == {'invalid_predictions': 1}


def test_squad_takes_the_best_gold_answer_after_normalising():
  targets = [['Vinci , Italy', 'Vinci'], ['the Los Angeles!'], ['1981']]
  predictions = ['Italy', 'los angeles', 'in 1981']
  result = metrics.squad(targets, predictions)
  assert result['em'] == pytest.approx(100 / 3)
  # 'italy' vs 'vinci italy': 2/3; exact: 1; 'in 1981' vs '1981': 2/3.
  assert result['f1'] == pytest.approx(100 * (2 / 3 + 1 + 2 / 3) / 3)
  assert metrics.normalize_squad('The  Cat, a dog!') == 'cat dog'


def test_record_scores_each_passage_query_once_though_it_has_one_example_per_answer():
  targets = [{'value': ['Tesla'], 'group': (0, 0)},
             {'value': ['LA', 'Los Angeles'], 'group': (0, 1)},
             {'value': ['LA', 'Los Angeles'], 'group': (0, 1)}]
  predictions = [{'value': 'tesla'}, {'value': 'Paris'}, {'value': 'Paris'}]
  assert metrics.record_squad(targets, predictions) == {'em': 50.0, 'f1': 50.0}


def test_gender_parity_is_the_share_of_pairs_predicted_alike():
  targets = [{'value': 1, 'pair': 0}, {'value': 1, 'pair': 0}, {'value': 0, 'pair': 1},
             {'value': 0, 'pair': 1}]
  predictions = [{'value': 1}, {'value': 0}, {'value': 0}, {'value': 0}]
  assert metrics.gender_parity(targets, predictions) == {'gender_parity': 50.0}
  assert metrics.accuracy(targets, predictions) == {'accuracy': 75.0}


def _super_glue_results(prefix='taskless_super_glue_'):
  return {
      f'{prefix}boolq_v102': {'accuracy': 80.0, 'invalid_predictions': 3},
      f'{prefix}cb_v102': {'mean_3class_f1': 60.0, 'accuracy': 80.0},
      f'{prefix}copa_v102': {'accuracy': 70.0},
      f'{prefix}multirc_v102': {'f1': 70.0, 'exact_match': 30.0},
      f'{prefix}record_v102': {'f1': 81.0, 'em': 79.0},
      f'{prefix}rte_v102': {'accuracy': 75.0},
      f'{prefix}wic_v102': {'accuracy': 65.0},
      f'{prefix}wsc_v102_simple_eval': {'accuracy': 60.0},
      f'{prefix}axb_v102': {'matthews_corrcoef': 20.0},
  }


def test_super_glue_average_averages_each_tasks_metrics_first():
  # 80, 70, 70, 50, 80, 75, 65, 60.
  assert metrics.super_glue_average(_super_glue_results()) == pytest.approx(550 / 8)
  assert metrics.super_glue_average(_super_glue_results('super_glue_')) == pytest.approx(550 / 8)


def test_super_glue_average_needs_all_eight_tasks_once():
  results = _super_glue_results()
  del results['taskless_super_glue_copa_v102']
  with pytest.raises(errors.DataError, match=r"no results for \['copa'\]"):
    metrics.super_glue_average(results)
  results = {**_super_glue_results(), 'cb': {'mean_3class_f1': 1.0, 'accuracy': 1.0}}
  with pytest.raises(errors.DataError, match='two results for cb'):
    metrics.super_glue_average(results)
