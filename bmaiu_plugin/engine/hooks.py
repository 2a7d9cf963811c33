"""Generic hooks: preparing a model on its training data, saving a defended encoder.

* :class:`PrepareModelHook` calls ``model.prepare(dataset)`` before training (reference sets,
  detectors, heads: whatever the algorithm prepares on its data) and logs
  ``model.preparation_summary()`` where the model has one.
* :class:`SaveDefendedEncoderHook` writes the defended encoder's weights (tensors only, ``.pth``
  and ``.safetensors``) into the run's folder and the work dir, for other tools (the probe
  config, a BackdoorBench export, a pipeline).
"""
import json
import os.path as osp

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ..registry import HOOKS
from ..utils.data import unwrap_model
from ..utils.errors import ConfigValueError
from .results import publish


@HOOKS.register_module()
class PrepareModelHook(Hook):
    """Before training, let the model prepare itself on the training data: ``model.prepare``.

    The one preparation step of every fine-tuning algorithm: an attack chooses its reference
    images, a defense its reference set, runs its detector or fits its head
    (:class:`~bmaiu_plugin.defenses.base.BaseDefense`).  A model's preparation is a pure
    function of the data, its seed and the frozen starting encoder, or is kept in its
    checkpointed buffers, so a resumed run makes the same choice.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        model = unwrap_model(runner)
        if not hasattr(model, 'prepare'):
            raise ConfigValueError(f'PrepareModelHook: {type(model).__name__} has nothing to '
                                   'prepare; remove the hook')
        model.prepare(runner.train_dataloader.dataset)
        report = model.preparation_summary() if hasattr(model, 'preparation_summary') else None
        if report:
            runner.logger.info(f'{type(model).__name__} prepared: {json.dumps(report)[:2000]}')


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
        model = unwrap_model(runner)
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
