"""The offline demo: a synthetic task and a tiny frozen T5 that the project makes ready itself.

Importing it (the demo's gin files do) registers its tasks with SeqIO and its
gin configurable `demo.frozen_model_checkpoint`.
"""

import gin

from prompt_tuning.demo import frozen_model, tasks  # pylint: disable=unused-import

gin.external_configurable(frozen_model.frozen_model_checkpoint, module='demo')
