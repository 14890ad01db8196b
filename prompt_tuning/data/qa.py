"""SQuAD training and zero-shot MRQA 2019 domain-shift tasks, under the paper's task names.

  squad_v010_allanswers   train on SQuAD, evaluate in domain (MRQA's SQuAD release)
  mrqa_<name>_v001        zero-shot eval on MRQA's out-of-domain dev sets, as `validation`:
                          bioasq drop duorc race relation_extraction textbookqa
  squad_to_<name>, squad_to_mrqa   mixtures: train on SQuAD, evaluate on one / all of them

each also as `..._examples` and `..._sentinel`. All use T5's SQuAD format
('question: <q> context: <c>' -> the first answer) and keep every answer for EM/F1. They read
MRQA's files (TFDS `mrqa/<name>`), so in-domain and out-of-domain examples share one
structure. This module only declares.
"""

from prompt_tuning.data import datasets
from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors
from prompt_tuning.data import registry

# Task name -> TFDS `mrqa` config.
MRQA_DOMAINS = {'bioasq': 'bio_asq', 'drop': 'drop', 'duorc': 'duo_rc', 'race': 'race',
                'relation_extraction': 'relation_extraction', 'textbookqa': 'textbook_qa'}


def _format(config: str) -> registry.TaskFormat:
  return registry.TaskFormat(datasets.MRQA[config], (preprocessors.squad,), postprocessors.qa,
                             (metrics.squad,), named=False)


registry.add_tasks('squad_v010_allanswers', _format('squad'))
for _name, _config in MRQA_DOMAINS.items():
  registry.add_tasks(f'mrqa_{_name}_v001', _format(_config))
  registry.add_mixtures(f'squad_to_{_name}',
                        [('squad_v010_allanswers', 1.), (f'mrqa_{_name}_v001', 1.)], named=False)
registry.add_mixtures('squad_to_mrqa', [('squad_v010_allanswers', 1.)] + [
    (f'mrqa_{name}_v001', 1.) for name in MRQA_DOMAINS], named=False)
