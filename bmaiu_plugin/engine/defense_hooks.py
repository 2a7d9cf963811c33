"""Hooks of the baseline defenses (CLP, I-BAU, DECREE): run-time plumbing only.

* :class:`IBAUHook` drives I-BAU's rounds in mmengine's epoch loop (fit the linear head before
  training, find the universal perturbation at the start of every epoch = round).
* :class:`EvaluatorTriggersHook` lends the probe loop's triggers (the attacker's, known to the
  evaluator only) to the model for the duration of one evaluation, and takes them back after it.
  A defense therefore never holds the attacker's trigger while it trains.
* :class:`SaveDefendedEncoderHook` writes the defended encoder's weights (tensors only, ``.pth``
  and ``.safetensors``) into the run's folder and the work dir, for other tools (DECREE, the
  probe config, a pipeline).
"""
import os.path as osp
import time

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..registry import HOOKS
from ..utils.errors import ConfigValueError
from .results import publish


def _unwrap(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module()
class IBAUHook(Hook):
    """Run I-BAU's rounds with mmengine's ``EpochBasedTrainLoop``: one epoch is one round.

    * ``before_train``: ``model.fit_head(train_dataloader)`` (skipped when a resumed checkpoint
      already holds the head).
    * ``before_train_epoch``: ``model.start_round(train_dataloader)`` finds the round's universal
      perturbation (one pass over the labeled clean data); the train steps then take the implicit
      hypergradient steps (``IBAUDefense.train_step``).
    * ``after_train_epoch``: ``model.end_round()`` records the round's mean outer loss.

    I-BAU's hypergradient is not an ordinary ``backward()``, which mmengine's DDP wrapper needs:
    the run must be a single process.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        if runner.world_size > 1:
            raise ConfigValueError(
                f'I-BAU runs in a single process (got world size {runner.world_size}): its '
                'implicit hypergradient is not a DDP backward; run without --launcher')
        model = _unwrap(runner)
        self._t0 = time.perf_counter()
        model.fit_head(runner.train_dataloader)

    def before_train_epoch(self, runner) -> None:
        _unwrap(runner).start_round(runner.train_dataloader)

    def after_train_epoch(self, runner) -> None:
        model = _unwrap(runner)
        model.end_round()
        model.train_seconds = round(time.perf_counter() - self._t0, 1)


@HOOKS.register_module()
class EvaluatorTriggersHook(Hook):
    """Lend the probe loop's triggers to ``model.set_evaluator_triggers`` during evaluation only.

    For models that report metrics of their own classifier (I-BAU's encoder + head) with the same
    triggers as the probe.  The triggers are handed over in ``before_val`` / ``before_test``
    (inside the probe loop's ``run``) and withdrawn (``None``) in ``after_val`` / ``after_test``.
    """

    priority = 'NORMAL'

    @staticmethod
    def _lend(runner, triggers) -> None:
        model = _unwrap(runner)
        if not hasattr(model, 'set_evaluator_triggers'):
            raise ConfigValueError(f'EvaluatorTriggersHook: {type(model).__name__} does not '
                                   'report metrics of its own classifier; remove the hook')
        model.set_evaluator_triggers(triggers)

    def before_val(self, runner) -> None:
        self._lend(runner, list(getattr(runner.val_loop, 'triggers', None) or []))

    def before_test(self, runner) -> None:
        self._lend(runner, list(getattr(runner.test_loop, 'triggers', None) or []))

    def after_val(self, runner) -> None:
        self._lend(runner, None)

    def after_test(self, runner) -> None:
        self._lend(runner, None)


@HOOKS.register_module()
class SaveDefendedEncoderHook(Hook):
    """Save ``model.defended_state_dict()`` as ``filename`` and as its ``.safetensors`` twin.

    Both files hold the same tensors (contiguous, on the CPU) under the same keys: the ``.pth``
    is a ``torch.save`` of the state dict, the ``.safetensors`` a safetensors ``save_file``.  They
    are written into the run's folder and published as the work dir's latest copies
    (:func:`~bmaiu_plugin.engine.results.publish`), before every evaluation (CLP prunes at load
    time, so its defended encoder exists before the test) and after training (I-BAU).  A
    top-level file that is the model's own ``encoder_checkpoint`` is never replaced: that run's
    files stay in its run folder (a warning is logged).

    Args:
        filename (str): A plain file name (no folder): the file stays inside the work dir.
    """

    priority = 'LOW'

    def __init__(self, filename: str = 'defended_encoder.pth'):
        if not filename or osp.basename(filename) != filename or filename in ('.', '..'):
            raise ConfigValueError(
                f'SaveDefendedEncoderHook filename must be a plain file name (it is written in '
                f'the work dir), got {filename!r}')
        self.filename = filename
        self.safetensors_name = osp.splitext(filename)[0] + '.safetensors'

    def _save(self, runner) -> None:
        model = _unwrap(runner)
        if not hasattr(model, 'defended_state_dict'):
            raise ConfigValueError(f'SaveDefendedEncoderHook: {type(model).__name__} has no '
                                   'defended encoder to save; remove the hook')
        if not is_main_process():
            return
        from safetensors.torch import save_file
        state = {k: v.detach().cpu().contiguous().clone()
                 for k, v in model.defended_state_dict().items()}
        src = getattr(model, 'encoder_checkpoint', None)
        writers = {self.filename: lambda p: torch.save(state, p),  # a .safetensors name: once
                   self.safetensors_name: lambda p: save_file(state, p, metadata=dict(format='pt'))}
        saved = []
        for name, write in writers.items():
            top = osp.join(runner.work_dir, name)
            is_input = bool(src) and osp.isfile(top) and osp.samefile(top, src)
            saved.append(publish(runner, name, write, latest=not is_input))
            if is_input:
                runner.logger.warning(f'{top} is the input encoder_checkpoint: not replaced; '
                                      f'this run\'s defended encoder is {saved[-1]}')
        runner.logger.info(f'defended encoder (backbone state dict) saved to {", ".join(saved)}')

    def before_val(self, runner) -> None:
        self._save(runner)

    def before_test(self, runner) -> None:
        self._save(runner)

    def after_train(self, runner) -> None:
        self._save(runner)
