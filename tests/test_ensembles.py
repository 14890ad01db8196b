"""Combining an ensemble's predictions: the vote and the rank sum, on cases worked out by hand."""

import numpy as np

from prompt_tuning import ensembles

EOS = 1


def test_each_example_is_repeated_once_per_member_with_its_prompt_index():
  features = {'encoder_input_tokens': np.array([[5, 6, EOS], [7, EOS, 0]])}
  expanded = ensembles.expand_for_members(features, 3)
  np.testing.assert_array_equal(expanded['encoder_input_tokens'],
                                [[5, 6, EOS]] * 3 + [[7, EOS, 0]] * 3)
  np.testing.assert_array_equal(expanded['prompt_index'], [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(ensembles.by_member(np.arange(6), 3), [[0, 1, 2], [3, 4, 5]])


def test_the_vote_is_the_most_frequent_output_and_a_tie_goes_to_the_first_member():
  a, b, c = [10, EOS, 0], [11, EOS, 0], [10, 12, EOS]  # c begins like a: whole outputs count
  outputs = np.array([
      [a, b, b, a, b],  # b 3 to 2
      [b, a, a, b, c],  # a 2, b 2: member 0 said b
      [c, a, b, a, c],  # c 2, a 2: member 0 said c
      [a, b, c, c, b],  # b 2, c 2: member 1 (b) comes before member 2 (c)
      [c, c, a, a, a],  # a 3 to 2
  ])
  np.testing.assert_array_equal(ensembles.majority_vote(outputs), [b, b, c, b, a])


def test_one_member_votes_for_its_own_output():
  outputs = np.array([[[10, EOS]], [[11, EOS]]])
  np.testing.assert_array_equal(ensembles.majority_vote(outputs), outputs[:, 0])


def test_rank_mode_sums_log_likelihoods_over_members_not_their_votes():
  # Two members prefer candidate 0 a little, one prefers candidate 1 by far: the sum picks 1,
  # where a vote of the members' choices would pick 0.
  log_likelihoods = np.log(np.array([[[0.55, 0.45], [0.55, 0.45], [0.05, 0.95]]]))
  assert ensembles.rank_sum(log_likelihoods).tolist() == [1]
  assert ensembles.majority_vote(np.argmax(log_likelihoods, -1)[..., None])[:, 0].tolist() == [0]


def test_member_metrics_with_their_mean_and_best():
  summary = ensembles.member_summary([{'accuracy': 80.0}, {'accuracy': 90.0},
                                      {'accuracy': 70.0}])
  assert summary == {'member_0/accuracy': 80.0, 'member_1/accuracy': 90.0,
                     'member_2/accuracy': 70.0, 'mean/accuracy': 80.0, 'best/accuracy': 90.0}
