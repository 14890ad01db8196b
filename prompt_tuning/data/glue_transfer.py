"""Zero-shot transfer between QQP and MRPC: eval tasks for a prompt trained on the other one.

The two are paraphrase tasks with different label words (QQP: duplicate / not_duplicate;
MRPC: equivalent / not_equivalent). Each eval task reads the target's validation split, maps
the prediction from the source's label to the target's (a postprocessor) and scores it with
the target's metrics:

  [taskless_]glue_<target>_from_<source>_v200   inputs in the target's own format, as the
                                                paper's code has them ('mrpc sentence1: ...')
  [taskless_]glue_<target>_as_<source>_v200     inputs under the source's field and benchmark
                                                names ('qqp question1: ... question2: ...')
  [taskless_]glue_<target>_{from,as}_<source>_zeroshot_v200   mixtures: train on the source,
                                                              evaluate on the target

for (source, target) = (qqp, mrpc) and (mrpc, qqp), each also as `..._examples` and
`..._sentinel`. Their verbalizers are the source's labels. This module only declares.
"""

import functools

import seqio

from prompt_tuning.data import datasets
from prompt_tuning.data import glue
from prompt_tuning.data import postprocessors
from prompt_tuning.data import registry

_FIELDS = {'qqp': ('question1', 'question2'), 'mrpc': ('sentence1', 'sentence2')}
_TRANSLATIONS = {('qqp', 'mrpc'): postprocessors.QQP_TO_MRPC,
                 ('mrpc', 'qqp'): postprocessors.MRPC_TO_QQP}

for (_source, _target), _mapping in _TRANSLATIONS.items():
  _dataset = datasets.GLUE[_target]
  _common = dict(
      metric_fns=glue.METRICS[_target], splits=('validation',),
      label_strings=datasets.GLUE[_source].label_names,
      postprocess_fn=postprocessors.translate_labels(_mapping, functools.partial(
          postprocessors.class_id, label_names=_dataset.label_names)))
  _as_source = functools.partial(seqio.preprocessors.rekey, key_map={
      **dict(zip(_FIELDS[_source], _FIELDS[_target])), 'label': 'label', 'idx': 'idx'})
  _formats = {'from': registry.glue_format(_dataset, _target, **_common),
              'as': registry.glue_format(_dataset, _source, before=(_as_source,), **_common)}
  for _how, _format in _formats.items():
    _base = f'glue_{_target}_{_how}_{_source}_v200'
    registry.add_tasks(_base, _format)
    registry.add_mixtures(f'glue_{_target}_{_how}_{_source}_zeroshot_v200',
                          [(f'glue_{_source}_v200', 1.), (_base, 1.)])
