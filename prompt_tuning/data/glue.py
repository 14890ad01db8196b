"""GLUE (TFDS 2.0.0) tasks in T5's text-to-text formats, under the paper's task names.

  [taskless_]glue_<name>_v200   cola sst2 mrpc qqp stsb mnli mnli_matched mnli_mismatched qnli rte
  [taskless_]glue_mnli_and_dev_v200   (MNLI train with its matched and mismatched dev sets)

each also as `..._examples` and `..._sentinel` (see `registry`). MNLI's matched/mismatched
tasks start their inputs with 'mnli', as in T5. STS-B's targets are its score rounded to 0.2
('3.8'); its 26 values are its verbalizers. WNLI and AX are not registered. This module only
declares; it holds no logic.
"""

from prompt_tuning.data import datasets
from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors
from prompt_tuning.data import registry

_ACCURACY = (metrics.accuracy, metrics.invalid_predictions)
_F1_ACCURACY = (metrics.f1_with_invalid, metrics.accuracy, metrics.invalid_predictions)

METRICS = {
    'cola': (metrics.matthews_corrcoef, metrics.invalid_predictions),
    'sst2': _ACCURACY,
    'mrpc': _F1_ACCURACY,
    'qqp': _F1_ACCURACY,
    'mnli': _ACCURACY,
    'mnli_matched': _ACCURACY,
    'mnli_mismatched': _ACCURACY,
    'qnli': _ACCURACY,
    'rte': _ACCURACY,
}
STSB_LABELS = tuple(f'{k / 5:.1f}' for k in range(26))  # '0.0', '0.2', ..., '5.0'

FORMATS = {
    name: registry.glue_format(datasets.GLUE[name], 'mnli' if 'mnli' in name else name,
                               metric_fns)
    for name, metric_fns in METRICS.items()
}
FORMATS['stsb'] = registry.TaskFormat(
    datasets.GLUE['stsb'], (preprocessors.stsb,), postprocessors.to_float,
    (metrics.pearson_corrcoef, metrics.spearman_corrcoef, metrics.invalid_predictions),
    STSB_LABELS)

for _name, _format in FORMATS.items():
  registry.add_tasks(f'glue_{_name}_v200', _format)

registry.add_mixtures('glue_mnli_and_dev_v200', [
    (f'glue_{name}_v200', 1.) for name in ('mnli', 'mnli_matched', 'mnli_mismatched')])
