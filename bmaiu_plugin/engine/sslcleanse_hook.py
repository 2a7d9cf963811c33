"""The hook that runs SSL-Cleanse's detector before the mitigator trains."""
import json

from mmengine.hooks import Hook

from ..registry import HOOKS
from .hooks import _unwrap


@HOOKS.register_module()
class SSLCleanseDetectHook(Hook):
    """Before training, run the SSL-Cleanse detector of the model on the training data.

    Works with any model that has ``prepare_defense(dataset)`` and ``detection_summary()``
    (:class:`~bmaiu_plugin.models.sslcleanse.SSLCleanse`).  The detector's result lives in model
    buffers, so a run resumed from a checkpoint (loaded before ``before_train``) keeps it and does
    not run the detector again.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        model = _unwrap(runner)
        model.prepare_defense(runner.train_dataloader.dataset)
        runner.logger.info('SSL-Cleanse detection: '
                           + json.dumps(model.detection_summary())[:2000])
