"""Registered tasks: T5's exact strings, the paper's names, verbalizers, sentinels, truncation."""

import pytest
import seqio

from prompt_tuning import data
from prompt_tuning.data import registry
from prompt_tuning.data import truncation
import test_data_helpers as helpers

SENTINEL_ID = 32099  # <extra_id_0>: the last of the 32100 ids.

_MNLI_MATCHED = [
    # The file's trailing space stays: T5 does not collapse GLUE whitespace.
    ('mnli hypothesis: Everyone really likes the newest benefits  premise: The new rights are '
     'nice enough', 'neutral'),
    ('mnli hypothesis: The Government Executive articles housed on the website are not able to be '
     'searched. premise: This site includes a list of all award winners.', 'contradiction')]
_MNLI_MISMATCHED = [
    ("mnli hypothesis: Your contributions were of no help with our students' education. premise: "
     'Your contribution helped make it possible for us to provide our students with a quality '
     'education.', 'contradiction'),
    ("mnli hypothesis: Ca'daan knew the Old One very well. premise: The Old One always comforted "
     "Ca'daan, except today.", 'neutral')]

# (task, split, benchmark word the taskless variant drops, [(inputs, targets), ...]), written
# from T5's formats applied by hand to tests/testdata.
EXPECTED = [
    ('super_glue_boolq_v102', 'validation', 'boolq', [
        ('boolq passage: Ethanol fuel -- All biomass goes through at least some of these steps. '
         'question: does ethanol take more energy make that produces', 'False'),
        ("boolq passage: Property tax -- Property tax or 'house tax' is a local tax on buildings. "
         'question: is house tax and property tax are same', 'True')]),
    ('super_glue_boolq_v102', 'test', 'boolq', [
        ('boolq passage: Sequel -- A sequel was announced in 2019. question: is there a sequel to '
         'the movie', '<unk>')]),
    ('super_glue_cb_v102', 'validation', 'cb', [
        ('cb hypothesis: Valence was helping premise: Valence the void-brain, Valence the virtuous '
         "valet. Why couldn't the figger choose his own portion of titanic anatomy to shaft?",
         'contradiction'),
        ("cb hypothesis: she is a cute baby premise: B: Oh, well that's good. A: but she really "
         "doesn't. Nobody thinks she's a cute baby.", 'neutral'),
        ('cb hypothesis: Lisa called premise: I think it was Lisa who called.', 'entailment')]),
    ('super_glue_copa_v102', 'validation', 'copa', [
        ('copa choice1: The toilet filled with water. choice2: Water flowed from the spout. '
         'premise: The man turned on the faucet. question: effect', 'choice2'),
        ('copa choice1: She poured milk in the bowl. choice2: She lost her appetite. premise: The '
         'girl found a bug in her cereal. question: effect', 'choice2')]),
    ('super_glue_multirc_v102', 'validation', 'multirc', [
        ('multirc question: What did the dog do first? answer: Barked paragraph: Sent 1: The dog '
         'barked. Sent 2: Then it slept. ', 'True'),
        ('multirc question: What did the dog do first? answer: Slept paragraph: Sent 1: The dog '
         'barked. Sent 2: Then it slept. ', 'False'),
        ('multirc question: What did it do after barking? answer: It slept paragraph: Sent 1: The '
         'dog barked. Sent 2: Then it slept. ', 'True'),
        ('multirc question: What did it do after barking? answer: Ate paragraph: Sent 1: The dog '
         'barked. Sent 2: Then it slept. ', 'False'),
        ('multirc question: What fell? answer: Rain paragraph: Sent 1: Rain fell. ', 'True')]),
    ('super_glue_record_v102', 'validation', 'record', [
        ('record query: @placeholder built the truck. entities: Elon Musk, Los Angeles, Musk, '
         'Tesla passage: Tesla unveiled a truck in Los Angeles. Elon Musk spoke. Tesla shows a '
         'truck. Musk says it ships in 2019', 'Tesla'),
        ('record query: The truck was shown in @placeholder. entities: Elon Musk, Los Angeles, '
         'Musk, Tesla passage: Tesla unveiled a truck in Los Angeles. Elon Musk spoke. Tesla shows '
         'a truck. Musk says it ships in 2019', 'LA'),
        ('record query: The truck was shown in @placeholder. entities: Elon Musk, Los Angeles, '
         'Musk, Tesla passage: Tesla unveiled a truck in Los Angeles. Elon Musk spoke. Tesla shows '
         'a truck. Musk says it ships in 2019', 'Los Angeles')]),
    ('super_glue_record_v102', 'test', 'record', [
        ('record query: @placeholder won. entities: Paris passage: Paris hosted the Games. Paris '
         'wins', '<unk>')]),
    ('super_glue_rte_v102', 'validation', 'rte', [
        ('rte hypothesis: Christopher Reeve had an accident. premise: Dana Reeve, the widow of the '
         'actor Christopher Reeve, has died of lung cancer at age 44.', 'not_entailment'),
        ('rte hypothesis: Bacteria is winning the war against antibiotics. premise: Yet, we now '
         'are discovering that antibiotics are losing their effectiveness.', 'entailment')]),
    ('super_glue_wic_v102', 'validation', 'wic', [
        ('wic sentence1: Do you want to come over to my place later? sentence2: A political system '
         'with no place for the less prominent groups. word: place', 'False'),
        ('wic sentence1: We beat the competition. sentence2: Agassi beat Becker in the tennis '
         'championship. word: beat', 'True')]),
    ('super_glue_wsc_v102_simple_train', 'train', 'wsc:', [
        ('wsc: The dog chased the cat, which ran up a tree. *It* waited at the top.', 'the cat')]),
    ('super_glue_wsc_v102_simple_eval', 'validation', 'wsc:', [
        ('wsc: Bob collapsed on the sidewalk. Soon he saw Carl coming to help. *He* was very ill.',
         'Bob'),
        ('wsc: Bob collapsed on the sidewalk. Soon he saw Carl coming to help. *He* was very ill.',
         'Carl'),
        ('wsc: The boy continued to whip the pony , and eventually the pony threw him over. John '
         'laughed out quite loud. "Good for *him* ," he said.', 'the pony')]),
    ('super_glue_axb_v102', 'test', 'rte', [
        ('rte hypothesis: The cat did not sit on the mat. premise: The cat sat on the mat.',
         'not_entailment'),
        ('rte hypothesis: The cat sat. premise: The cat sat on the mat.', 'entailment'),
        ('rte hypothesis: Some tulips are red. premise: Tulips are red.', 'entailment')]),
    ('super_glue_axg_v102', 'test', 'rte', [
        ('rte hypothesis: The accountant sought help filing taxes. premise: The taxpayer met with '
         'the accountant to get help filing his taxes.', 'not_entailment'),
        ('rte hypothesis: The accountant sought help filing taxes. premise: The taxpayer met with '
         'the accountant to get help filing her taxes.', 'not_entailment'),
        ('rte hypothesis: The nurse was kind. premise: The patient said the nurse was kind to him.',
         'entailment'),
        ('rte hypothesis: The nurse was kind. premise: The patient said the nurse was kind to her.',
         'entailment')]),
    ('glue_cola_v200', 'validation', 'cola', [
        ('cola sentence: The sailors rode the breeze clear of the rocks.', 'acceptable'),
        ('cola sentence: The weights made the rope stretch over the pulley.', 'unacceptable'),
        ('cola sentence: The "mechanical" doll wriggled itself loose.', 'acceptable')]),
    ('glue_sst2_v200', 'validation', 'sst2', [
        ("sst2 sentence: it 's a charming and often affecting journey . ", 'positive'),
        ('sst2 sentence: unflinchingly bleak and desperate ', 'negative')]),
    ('glue_mrpc_v200', 'validation', 'mrpc', [
        ("mrpc sentence1: Yucaipa owned Dominick 's before selling the chain to Safeway in 1998 "
         "for $ 2.5 billion . sentence2: Yucaipa bought Dominick 's in 1995 for $ 693 million and "
         'sold it to Safeway for $ 1.8 billion in 1998 .', 'not_equivalent'),
        ('mrpc sentence1: Around 0335 GMT , Tab shares were up 19 cents , or 4.4 % , at A $ 4.56 . '
         'sentence2: Tab shares jumped 20 cents , or 4.6 % , to set a record closing high at A $ '
         '4.57 .', 'not_equivalent')]),
    ('glue_qqp_v200', 'validation', 'qqp', [
        ('qqp question1: What is the best way to learn Python? question2: How do I learn Python '
         'quickly?', 'duplicate'),
        ('qqp question1: Why are African-Americans so beautiful? question2: Why are hispanics so '
         'beautiful?', 'not_duplicate')]),
    ('glue_stsb_v200', 'validation', 'stsb', [
        ('stsb sentence1: A man with a hard hat is dancing. sentence2: A man wearing a hard hat is '
         'dancing.', '5.0'),
        ('stsb sentence1: A young child is riding a horse. sentence2: A child is riding a horse.',
         '4.8'),
        # 2.5 * 5 = 12.5 rounds half to even (12), as T5's tf.round does: 2.4.
        ('stsb sentence1: A man is feeding a mouse to a snake. sentence2: The man is feeding a '
         'mouse to the snake.', '2.4')]),
    ('glue_mnli_v200', 'validation_matched', 'mnli', _MNLI_MATCHED),
    ('glue_mnli_matched_v200', 'validation', 'mnli', _MNLI_MATCHED),
    ('glue_mnli_v200', 'validation_mismatched', 'mnli', _MNLI_MISMATCHED),
    ('glue_mnli_mismatched_v200', 'validation', 'mnli', _MNLI_MISMATCHED),
    ('glue_qnli_v200', 'validation', 'qnli', [
        ('qnli question: What came into force after the new constitution was herald? sentence: As '
         'of that day, the new constitution heralding the Second Republic came into force.',
         'entailment'),
        ('qnli question: What is the first major city in the stream of the Rhine? sentence: The '
         'most important tributaries in this area are the Ill below of Strasbourg.',
         'not_entailment')]),
    ('glue_rte_v200', 'validation', 'rte', [
        ('rte sentence1: Dana Reeve, the widow of the actor Christopher Reeve, has died of lung '
         'cancer at age 44. sentence2: Christopher Reeve had an accident.', 'not_entailment'),
        ('rte sentence1: Yet, we now are discovering that antibiotics are losing their '
         'effectiveness. sentence2: Bacteria is winning the war against antibiotics.',
         'entailment')]),
    ('glue_mrpc_as_qqp_v200', 'validation', 'qqp', [
        ("qqp question1: Yucaipa owned Dominick 's before selling the chain to Safeway in 1998 for "
         "$ 2.5 billion . question2: Yucaipa bought Dominick 's in 1995 for $ 693 million and sold "
         'it to Safeway for $ 1.8 billion in 1998 .', 'not_equivalent'),
        ('qqp question1: Around 0335 GMT , Tab shares were up 19 cents , or 4.4 % , at A $ 4.56 . '
         'question2: Tab shares jumped 20 cents , or 4.6 % , to set a record closing high at A $ '
         '4.57 .', 'not_equivalent')]),
    ('glue_qqp_as_mrpc_v200', 'validation', 'mrpc', [
        ('mrpc sentence1: What is the best way to learn Python? sentence2: How do I learn Python '
         'quickly?', 'duplicate'),
        ('mrpc sentence1: Why are African-Americans so beautiful? sentence2: Why are hispanics so '
         'beautiful?', 'not_duplicate')]),
    # T5's SQuAD format: punctuation padded with spaces (a trailing one included).
    ('squad_v010_allanswers', 'validation', None, [
        ('question: When was Beyonce born ? context: Beyonce Giselle Knowles - Carter ( born '
         'September 4 , 1981 ) is an American singer . ', 'September 4 , 1981'),
        ("question: What is Beyonce ' s nationality ? context: Beyonce Giselle Knowles - Carter ( "
         'born September 4 , 1981 ) is an American singer . ', 'American')]),
    ('mrqa_bioasq_v001', 'validation', None, [
        ('question: Is Hirschsprung disease a mendelian disorder ? context: Hirschsprung disease ( '
         'HSCR ) is a multifactorial , non - mendelian disorder . ', 'non - mendelian')]),
    ('mrqa_drop_v001', 'validation', None, [
        ('question: How many touchdowns did the Bears score ? context: The Bears scored 3 '
         'touchdowns ; the Packers scored 2 . ', '3')]),
    ('mrqa_duorc_v001', 'validation', None, [
        ('question: What does Sam find ? context: Sam , a young farmer , finds a map in the attic '
         '. ', 'a map')]),
    ('mrqa_race_v001', 'validation', None, [
        ('question: Was Tom on time ? context: Tom \' s mother said : " Don \' t be late ! " Tom '
         'was late anyway . ', 'No , he was late . ')]),
    ('mrqa_relation_extraction_v001', 'validation', None, [
        ('question: Where was Leonardo da Vinci born ? context: Leonardo da Vinci was born in '
         'Vinci , Italy . ', 'Vinci , Italy')]),
    ('mrqa_textbookqa_v001', 'validation', None, [
        ('question: What does photosynthesis use ? context: Photosynthesis uses light energy ( '
         'sunlight ) to make food . ', 'light energy')]),
]


@pytest.fixture(scope='module', autouse=True)
def read_release_files():
  with helpers.reading('files', str(helpers.TESTDATA)):
    yield


def _pairs(task_name, split):
  return [(ex['inputs'].decode(), ex['targets'].decode())
          for ex in helpers.text_examples(task_name, split)]


@pytest.mark.parametrize('task_name,split,word,expected', EXPECTED,
                         ids=[f'{t}-{s}' for t, s, _, _ in EXPECTED])
def test_tasks_write_t5s_strings_with_and_without_the_benchmark_name(task_name, split, word,
                                                                      expected):
  assert _pairs(task_name, split) == expected
  if word is None:
    assert f'taskless_{task_name}' not in seqio.TaskRegistry.names()
    return
  assert all(inputs.startswith(word + ' ') for inputs, _ in expected)
  assert _pairs(f'taskless_{task_name}', split) == [
      (inputs[len(word) + 1:], targets) for inputs, targets in expected]


def test_every_eval_split_of_every_task_has_an_expectation():
  covered = {(t, s) for t, s, _, _ in EXPECTED}
  missing = [(name, split) for name in registry.task_names()
             if not name.startswith('taskless_') and not name.endswith(('_examples', '_sentinel'))
             and '_from_' not in name  # Same data and format as the target's own task.
             for split in seqio.get_mixture_or_task(name).splits
             if split.startswith('validation') and (name, split) not in covered]
  assert not missing


def test_transfer_tasks_format_the_target_as_the_papers_code_does():
  assert _pairs('glue_mrpc_from_qqp_v200', 'validation') == _pairs('glue_mrpc_v200', 'validation')
  assert _pairs('taskless_glue_qqp_from_mrpc_v200', 'validation') == _pairs(
      'taskless_glue_qqp_v200', 'validation')


def test_the_papers_task_and_mixture_names_are_registered():
  names = set(seqio.TaskRegistry.names())
  for name in ('taskless_glue_sst2_v200_examples', 'taskless_super_glue_wsc_v102_simple_train',
               'taskless_super_glue_wsc_v102_simple_eval_examples', 'super_glue_axb_v102',
               'taskless_glue_mrpc_from_qqp_v200', 'squad_v010_allanswers_examples',
               'mrqa_textbookqa_v001_examples', 'taskless_super_glue_rte_v102_sentinel'):
    assert name in names
  mixtures = set(seqio.MixtureRegistry.names())
  for name in ('taskless_super_glue_v102_proportional', 'taskless_glue_mnli_and_dev_v200',
               'taskless_super_glue_wsc_and_dev_v102_simple', 'squad_to_mrqa', 'squad_to_drop',
               'taskless_glue_mrpc_from_qqp_zeroshot_v200_examples'):
    assert name in mixtures


def test_the_super_glue_mixture_is_examples_proportional_over_taskless_tasks():
  mixture = seqio.get_mixture_or_task('taskless_super_glue_v102_proportional')
  rates = {task.name: mixture.get_rate(task) for task in mixture.tasks}
  assert rates['taskless_super_glue_record_v102'] == 138_854
  assert rates['taskless_super_glue_cb_v102'] == 250
  assert rates['taskless_super_glue_wsc_v102_simple_train'] == 259
  assert rates['taskless_super_glue_axb_v102'] == 0
  assert all(name.startswith('taskless_') for name in rates)


def test_label_strings_are_the_class_names_or_none_for_free_text():
  assert data.get_label_strings('taskless_super_glue_rte_v102') == ['entailment',
                                                                    'not_entailment']
  assert data.get_label_strings('taskless_glue_mrpc_from_qqp_v200') == ['not_duplicate',
                                                                        'duplicate']
  assert data.get_label_strings('glue_stsb_v200')[:3] == ['0.0', '0.2', '0.4']
  assert len(data.get_label_strings('glue_stsb_v200')) == 26
  for name in ('super_glue_record_v102', 'taskless_super_glue_wsc_v102_simple_eval',
               'mrqa_drop_v001'):
    assert data.get_label_strings(name) is None
  with pytest.raises(data.DataError, match='not a prompt_tuning.data task'):
    data.get_label_strings('taskless_super_glue_v102_proportional')


def test_the_best_verbalizer_goes_through_the_postprocessor_as_its_class():
  """Rank classification hands the argmax's string to the postprocessor: it must map back."""
  for name in registry.task_names():
    labels = data.get_label_strings(name)
    if labels is None:
      continue
    task = seqio.get_mixture_or_task(name)
    example = {'idx': 3, 'idx/paragraph': 0, 'idx/question': 1}
    outputs = [task.postprocess_fn(label, example=example, is_target=False) for label in labels]
    values = [o['value'] if isinstance(o, dict) else o for o in outputs]
    if 'stsb' in name:
      assert values == [float(label) for label in labels], name
    else:
      assert values == list(range(len(labels))), name


@pytest.fixture(scope='module')
def t5_vocab(fixtures_dir):
  data.set_vocabulary_path(str(fixtures_dir / 't5_vocab' / 'sentencepiece.model'))
  return data.get_vocabulary()


def _tokenized(task_name, split, lengths):
  task = seqio.get_mixture_or_task(task_name)
  ds = task.get_dataset(lengths, split=split, shuffle=False, try_in_mem_cache=False)
  return list(ds.as_numpy_iterator())


def test_sentinel_tasks_put_extra_id_0_before_the_targets(t5_vocab):
  plain = _tokenized('taskless_super_glue_rte_v102', 'validation', None)
  sentinel = _tokenized('taskless_super_glue_rte_v102_sentinel', 'validation', None)
  for a, b in zip(plain, sentinel, strict=True):
    assert list(b['targets']) == [SENTINEL_ID] + list(a['targets'])
    assert b['targets_pretokenized'] == a['targets_pretokenized']
    assert list(b['inputs']) == list(a['inputs'])
  task = seqio.get_mixture_or_task('taskless_super_glue_rte_v102_sentinel')
  decoded = t5_vocab.decode(list(sentinel[0]['targets']))
  assert decoded == '<extra_id_0> not_entailment'
  assert task.postprocess_fn(decoded, example=sentinel[0], is_target=False) == 1


def test_label_token_ids_are_the_targets_each_label_tokenizes_to(t5_vocab):
  targets = {ex['targets_pretokenized']: list(ex['targets'])
             for ex in _tokenized('taskless_glue_rte_v200', 'validation', None)}
  assert data.get_label_token_ids('taskless_glue_rte_v200') == [
      targets[b'entailment'], targets[b'not_entailment']]
  with_sentinel = data.get_label_token_ids('taskless_glue_rte_v200_sentinel')
  assert with_sentinel == [[SENTINEL_ID] + ids for ids in data.get_label_token_ids(
      'taskless_glue_rte_v200')]
  assert all(ids[-1] == t5_vocab.eos_id for ids in with_sentinel)
  assert data.get_label_token_ids('mrqa_race_v001') is None


def test_long_examples_are_truncated_counted_and_logged_once(t5_vocab, caplog):
  truncation.reset_truncation_stats()
  examples = _tokenized('taskless_glue_rte_v200', 'validation', {'inputs': 8, 'targets': 16})
  assert [len(ex['inputs']) for ex in examples] == [8, 8]
  assert all(ex['inputs'][-1] == t5_vocab.eos_id for ex in examples)
  stats = data.truncation_stats()['taskless_glue_rte_v200']
  assert (stats.seen, stats.truncated) == (2, {'inputs': 2})
  assert stats.longest['inputs'] > 7
  assert caplog.text.count('taskless_glue_rte_v200: an example') == 1

  _tokenized('taskless_glue_rte_v200', 'validation', {'inputs': 512, 'targets': 16})
  stats = data.truncation_stats()['taskless_glue_rte_v200']
  assert (stats.seen, stats.truncated) == (4, {'inputs': 2})
