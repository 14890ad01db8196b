"""SuperGLUE v1.0.2 tasks in T5's text-to-text formats, under the paper's task names.

  [taskless_]super_glue_<name>_v102     boolq cb copa multirc record rte wic axb axg
  [taskless_]super_glue_wsc_v102_simple_train / _simple_eval
  [taskless_]super_glue_wsc_and_dev_v102_simple   (WSC train + eval mixture)
  [taskless_]super_glue_v102_proportional         (examples-proportional mixture, T5's rates)

each also as `..._examples` and `..._sentinel` (see `registry`). AX-b (re-keyed to RTE's
fields) and AX-g are cast as RTE and have only a `test` split, as in TFDS; AX-g's metrics pair
examples 2k and 2k+1 (its minimal pairs). This module only declares; it holds no logic.
"""

import functools

import seqio

from prompt_tuning.data import datasets
from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors
from prompt_tuning.data import registry

_ACCURACY = (metrics.accuracy, metrics.invalid_predictions)


def _classification(name: str, metric_fns=_ACCURACY, benchmark_name=None,
                    **kwargs) -> registry.TaskFormat:
  return registry.glue_format(datasets.SUPER_GLUE[name], benchmark_name or name, metric_fns,
                              **kwargs)


_AXB_AS_RTE = functools.partial(
    seqio.preprocessors.rekey,
    key_map={'premise': 'sentence1', 'hypothesis': 'sentence2', 'label': 'label', 'idx': 'idx'})

FORMATS = {
    'boolq': _classification('boolq'),
    'cb': _classification(
        'cb', (metrics.mean_3class_f1, metrics.accuracy, metrics.invalid_predictions)),
    'copa': _classification('copa'),
    'multirc': _classification(
        'multirc', (metrics.f1_with_invalid, metrics.group_exact_match,
                    metrics.invalid_predictions),
        feature_names=('question', 'answer', 'paragraph'), postprocess_fn=postprocessors.multirc),
    'record': registry.TaskFormat(datasets.SUPER_GLUE['record'], (preprocessors.record,),
                                  postprocessors.record, (metrics.record_squad,)),
    'rte': _classification('rte'),
    'wic': _classification('wic', feature_names=('sentence1', 'sentence2', 'word')),
    'axb': _classification('axb', (metrics.matthews_corrcoef, metrics.invalid_predictions),
                           benchmark_name='rte', before=(_AXB_AS_RTE,)),
    'axg': _classification(
        'axg', (metrics.accuracy, metrics.gender_parity, metrics.invalid_predictions),
        benchmark_name='rte',
        postprocess_fn=functools.partial(postprocessors.gender_pairs,
                                         label_names=datasets.SUPER_GLUE['axg'].label_names)),
    'wsc_v102_simple_train': registry.TaskFormat(
        datasets.SUPER_GLUE['wsc'],
        (functools.partial(preprocessors.wsc_simple, correct_referent_only=True),),
        None, (), splits=('train',)),
    'wsc_v102_simple_eval': registry.TaskFormat(
        datasets.SUPER_GLUE['wsc'],
        (functools.partial(preprocessors.wsc_simple, correct_referent_only=False),),
        postprocessors.wsc_simple, _ACCURACY, splits=('validation', 'test')),
}

# T5's examples-proportional rates: training examples per task (WSC: its correct referents;
# ReCoRD: one per answer); the eval-only tasks get 0.
_RATES = {'wsc_v102_simple_train': 259., 'wsc_v102_simple_eval': 0., 'boolq': 9_427.,
          'cb': 250., 'copa': 400., 'multirc': 27_243., 'record': 138_854., 'rte': 2_490.,
          'wic': 5_428., 'axb': 0., 'axg': 0.}


def _base(name: str) -> str:
  return f'super_glue_{name}' if name.startswith('wsc') else f'super_glue_{name}_v102'


for _name, _format in FORMATS.items():
  registry.add_tasks(_base(_name), _format)

registry.add_mixtures('super_glue_wsc_and_dev_v102_simple',
                      [(_base('wsc_v102_simple_train'), 1.), (_base('wsc_v102_simple_eval'), 1.)])
registry.add_mixtures('super_glue_v102_proportional',
                      [(_base(name), rate) for name, rate in _RATES.items()])
