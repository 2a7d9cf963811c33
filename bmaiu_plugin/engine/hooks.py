"""Hooks of the encoder fine-tuning algorithms."""
import json

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS


def _unwrap(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module()
class ReferenceSetHook(Hook):
    """Before training, let the model choose its reference images from the training data.

    Works with any model that has ``prepare_reference(dataset)`` (BMAIU, BadEncoder).  The choice
    is deterministic (seeded, from the data and the frozen starting encoder), so a resumed run
    makes the same choice.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        model = _unwrap(runner)
        model.prepare_reference(runner.train_dataloader.dataset)
        info = getattr(model, 'reference_info', None)
        runner.logger.info(f'reference set: {json.dumps(info)[:500]}')


@HOOKS.register_module()
class BMAIUStageHook(Hook):
    """Switch BMAIU from implantation (stage 1) to unlearning (stage 2).

    At the start of epoch ``implant_epochs`` (0-based), if the model is still in stage 1: snapshot
    ``f1`` as the frozen teacher, set stage 2, and clear the optimizer state (momentum of stage 1
    must not push stage 2).  The learning-rate schedule of each stage is an ordinary
    ``param_scheduler`` list with ``begin``/``end`` epochs.  The stage and the teacher are part of
    the model's state dict, so a run resumed in stage 2 does not switch again.

    Args:
        implant_epochs (int): Epochs of stage 1.
    """

    priority = 'HIGH'

    def __init__(self, implant_epochs: int):
        if int(implant_epochs) < 0:
            raise ValueError(f'implant_epochs must be >= 0, got {implant_epochs}')
        self.implant_epochs = int(implant_epochs)

    def before_train_epoch(self, runner) -> None:
        model = _unwrap(runner)
        if runner.epoch >= self.implant_epochs and int(model.stage) == 1:
            model.start_unlearning()
            optim = runner.optim_wrapper.optimizer
            optim.state.clear()
            runner.logger.info(f'BMAIU: stage 2 (unlearning) from epoch {runner.epoch + 1}; '
                               'f1 frozen as teacher, optimizer state reset')
