"""Hooks of the encoder fine-tuning algorithms."""
import json
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number, is_number


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
        self.implant_epochs = check_number('BMAIUStageHook implant_epochs', implant_epochs, 0,
                                           integer=True)

    @staticmethod
    def check_cfg(cfg: dict, config, path: str) -> None:
        """Pre-flight: stage 2 must get at least one of the run's epochs."""
        implant = cfg.get('implant_epochs')
        max_epochs = (config.get('train_cfg') or {}).get('max_epochs')
        if is_number(implant) and is_number(max_epochs) and implant >= max_epochs:
            raise ConfigValueError(
                f'{path}.implant_epochs={implant} >= train_cfg.max_epochs={max_epochs} leaves '
                'BMAIU stage 2 (unlearning) without epochs; give train_cfg.max_epochs = '
                'implant epochs + unlearning epochs (and train_cfg.val_interval the same)')

    def before_train(self, runner) -> None:
        if self.implant_epochs >= runner.max_epochs:
            raise ConfigValueError(
                f'BMAIUStageHook implant_epochs={self.implant_epochs} >= max_epochs='
                f'{runner.max_epochs} leaves BMAIU stage 2 (unlearning) without epochs')

    def before_train_epoch(self, runner) -> None:
        model = _unwrap(runner)
        if runner.epoch >= self.implant_epochs and int(model.stage) == 1:
            model.start_unlearning()
            optim = runner.optim_wrapper.optimizer
            optim.state.clear()
            runner.logger.info(f'BMAIU: stage 2 (unlearning) from epoch {runner.epoch + 1}; '
                               'f1 frozen as teacher, optimizer state reset')


@HOOKS.register_module()
class CustomTriggerSearchHook(Hook):
    """Repeat BMAIU's custom-trigger search during stage 2, on the encoder being unlearned.

    Every ``interval`` epochs of stage 2 (from its first epoch), the custom pattern is replaced by
    the patch the *current* encoder reacts to most (a search warm-started from the previous
    pattern; the model's ``trigger_search`` settings).  Unlearning then keeps chasing what the
    encoder still responds to instead of one fixed pattern it has already learned to ignore.
    Runs before the epoch's first step, on every rank (rank 0's pattern is broadcast), and the
    pattern is a buffer of the model, so a resumed run continues with the checkpoint's.

    The BMAIU configs carry it switched off (``interval=None``); turn it on with
    ``--cfg-options custom_hooks.2.interval=2`` together with ``model.trigger_search``.

    Args:
        interval (int, optional): Epochs of stage 2 between searches; ``None``: off.
    """

    priority = 'NORMAL'  # after BMAIUStageHook (HIGH) has switched the stage

    def __init__(self, interval: Optional[int] = None):
        self.interval = check_number('CustomTriggerSearchHook interval', interval, 1,
                                     integer=True, optional=True)
        self.stage2_start = None

    @staticmethod
    def check_cfg(cfg: dict, config, path: str) -> None:
        """Pre-flight: a search interval needs the model's search settings."""
        if cfg.get('interval') is not None and \
                (config.get('model') or {}).get('trigger_search') is None:
            raise ConfigValueError(f'{path}.interval needs the model\'s trigger_search settings '
                                   '(e.g. model.trigger_search.steps=300)')

    def before_train(self, runner) -> None:
        if self.interval is not None and getattr(_unwrap(runner), 'trigger_search', None) is None:
            raise ConfigValueError('CustomTriggerSearchHook(interval=...) needs the model\'s '
                                   'trigger_search settings (e.g. model.trigger_search.steps=300)')

    def before_train_epoch(self, runner) -> None:
        model = _unwrap(runner)
        if self.interval is None or int(model.stage) != 2:
            return
        if self.stage2_start is None:
            stage_hooks = [h for h in runner.hooks if isinstance(h, BMAIUStageHook)]
            self.stage2_start = stage_hooks[0].implant_epochs if stage_hooks else runner.epoch
        k = runner.epoch - self.stage2_start
        if k % self.interval == 0:
            info = model.search_custom_trigger('backbone')
            runner.logger.info(f'custom trigger re-searched on the encoder being unlearned '
                               f'(epoch {runner.epoch + 1}): {json.dumps(info)}')
