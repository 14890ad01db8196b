"""Postprocessors: labels to class ids, invalid outputs, WSC referents, grouping, transfer."""

import numpy as np

from prompt_tuning.data import postprocessors as post

INVALID = post.INVALID
RTE = ('entailment', 'not_entailment')


def test_text_that_is_no_label_is_invalid():
  assert post.class_id('not_entailment', RTE) == 1
  for output in ('Entailment', 'entailment ', '', 'yes'):
    assert post.class_id(output, RTE) == INVALID
  assert post.to_float('3.8') == 3.8
  assert post.to_float('three') == INVALID


def _wsc(prediction, referent='the pony', label=1):
  return post.wsc_simple(prediction, example={'targets_pretokenized': referent.encode(),
                                              'label': np.int64(label)})


def test_wsc_compares_the_predicted_referent_as_t5_does():
  assert _wsc('the pony') == 1
  assert _wsc('Pony') == 1  # Case and determiners do not matter.
  assert _wsc('his brown pony', 'the pony') == 1  # Either word set may contain the other.
  assert _wsc('John') == 0
  assert _wsc("Bob's hat", 'Bob') == 0  # A possessive must match a possessive.
  assert _wsc('the') == INVALID  # Nothing left once determiners are gone.
  assert post.wsc_simple('anything', example={'label': np.int64(0)}, is_target=True) == 0


def test_multirc_and_record_targets_carry_their_group():
  example = {'idx/paragraph': np.int32(2), 'idx/question': np.int32(5),
             'idx/passage': np.int32(1), 'idx/query': np.int32(7),
             'answers': np.array([b'LA', b'Los Angeles'], dtype=object)}
  assert post.multirc('True', example=example, is_target=True) == {'value': 1, 'group': (2, 5)}
  assert post.multirc('Maybe', example=example) == {'value': INVALID}
  assert post.record('LA', example=example, is_target=True) == {
      'value': ['LA', 'Los Angeles'], 'group': (1, 7)}
  assert post.record('Paris', example=example) == {'value': 'Paris'}
  assert post.qa('LA', example=example, is_target=True) == ['LA', 'Los Angeles']


def test_ax_g_targets_know_their_minimal_pair():
  assert post.gender_pairs('entailment', RTE, example={'idx': np.int32(5)}, is_target=True) == {
      'value': 0, 'pair': 2}


def test_transfer_maps_predicted_qqp_labels_to_mrpc_and_leaves_targets_alone():
  mrpc = lambda output, **kwargs: post.class_id(output, ('not_equivalent', 'equivalent'))
  from_qqp = post.translate_labels(post.QQP_TO_MRPC, mrpc)
  assert from_qqp('duplicate') == 1
  assert from_qqp('not_duplicate') == 0
  assert from_qqp('equivalent') == 1  # Already in the target's words.
  assert from_qqp('duplicate', is_target=True) == INVALID  # Targets are MRPC labels.
  qqp = lambda output, **kwargs: post.class_id(output, ('not_duplicate', 'duplicate'))
  assert post.translate_labels(post.MRPC_TO_QQP, qqp)('not_equivalent') == 0


def test_the_sentinel_is_stripped_before_the_label_is_read():
  rte = post.strip_sentinel(lambda output, **kwargs: post.class_id(output, RTE))
  assert rte('<extra_id_0> not_entailment') == 1
  assert rte('<extra_id_0>entailment') == 0
  assert rte('entailment') == 0
  assert rte('<extra_id_0> <extra_id_1>') == INVALID
