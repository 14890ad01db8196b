"""The offline demo: a synthetic task and a tiny frozen T5 that the project makes ready itself.

Importing it (the demo's gin files do) registers its tasks with SeqIO and its
two gin configurables, `demo.frozen_model_checkpoint` and `demo.vocabulary_file`.
"""

import gin

from prompt_tuning.demo import frozen_model, tasks

gin.external_configurable(frozen_model.frozen_model_checkpoint, module='demo')
gin.external_configurable(tasks.vocabulary_file, module='demo')
