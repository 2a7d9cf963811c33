"""Search the pattern of a patch trigger that the suspect encoder reacts to most.

A defense-side, label-free search (it never reads the attacker's trigger): the ``S x S`` pattern of
a :class:`~bmaiu_plugin.triggers.PatchTrigger` is optimised on the defense data so that pasting it
(at the trigger's own positions, e.g. a new random one per image) changes the frozen encoder's
features as much as possible.  Two objectives:

* ``'collapse'`` (default): maximise the mean pairwise cosine of the triggered features of a
  batch, DECREE's signature of a backdoor (every triggered image mapped to one point), with a
  fixed patch size instead of DECREE's learned mask;
* ``'shift'``: minimise the cosine between each triggered feature and the same image's clean one.

Why a defense needs it (``docs/searched_trigger.md``; ``docs/results.md``, "The custom
trigger's pattern, searched on the suspect"): at CPU scale, unlearning a trigger only removes the
attacker's backdoor when the suspect *already* reacts to that trigger; a seeded random pattern
does not (its features stay at cosine 0.99 to the clean ones), so unlearning it has nothing of
the attacker's circuit to act on.

Besides the search itself, this module holds what every model that searches its trigger shares:
:func:`check_search_cfg` (the search settings), :func:`search_into` (search, broadcast rank 0's
pattern, write it into the trigger) and :class:`TriggerSearchHook` (re-search during training,
on the encoder being trained).
"""
import json
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook

from ..models.features import pool_features
from ..registry import HOOKS
from ..utils.data import eval_mode, unwrap_model
from ..utils.device import module_device
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number
from .decree import mean_pairwise_cosine

__all__ = ['search_patch_pattern', 'OBJECTIVES', 'SEARCH_KEYS', 'check_search_cfg', 'search_into',
           'TriggerSearchHook']

OBJECTIVES = ('collapse', 'shift')


def _objective(name: str, feats: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The value to *minimise*."""
    if name == 'collapse':
        return -mean_pairwise_cosine(feats)
    return F.cosine_similarity(feats, clean, dim=1).mean()


def search_patch_pattern(encoder: nn.Module, normalizer: nn.Module, imgs: torch.Tensor,
                         trigger: nn.Module, steps: int = 200, lr: float = 0.1,
                         batch_size: int = 128, objective: str = 'collapse',
                         seed: int = 0) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Optimise ``trigger.pattern`` against a frozen encoder; return the new pattern.

    Args:
        encoder (nn.Module): The encoder to probe: the frozen suspect, or the one being trained
            (it is used in eval mode, and neither its weights nor their ``.grad`` change).
        normalizer (nn.Module): Pixel-space ``[0, 255]`` images to the encoder's input.
        imgs (Tensor): ``(N, C, H, W)`` uint8 defense images (any device).
        trigger (nn.Module): A :class:`~bmaiu_plugin.triggers.PatchTrigger`; its pattern is the
            starting point and its ``sample_positions`` / ``stamp_at`` place the patch.
        steps (int): Adam steps. lr (float): Adam learning rate on the ``atanh`` parameters.
        batch_size (int): Images per step (>= 2 for ``'collapse'``).
        objective (str): One of :data:`OBJECTIVES`.
        seed (int): Seed of the batch and position draws.

    Returns:
        tuple: ``(pattern, info)``: the ``(C, S, S)`` pattern in ``[0, 255]`` (rounded, on the
        CPU), and ``{'objective': name, 'start': value, 'end': value}`` where the value is the
        mean pairwise cosine (``'collapse'``) or the clean-to-triggered cosine (``'shift'``) of
        a fixed evaluation batch, before and after the search.
    """
    if objective not in OBJECTIVES:
        raise ConfigValueError(f'trigger search objective must be one of {OBJECTIVES}, '
                               f'got {objective!r}')
    if int(steps) < 1 or int(batch_size) < 2:
        raise ConfigValueError(f'trigger search needs steps >= 1 and batch_size >= 2, got '
                               f'steps={steps}, batch_size={batch_size}')
    if len(imgs) < 2:
        raise ConfigValueError('trigger search needs at least 2 defense images')
    if not hasattr(trigger, 'stamp_at') or not torch.is_tensor(getattr(trigger, 'pattern', None)):
        raise ConfigValueError(f'trigger search needs a PatchTrigger, got {type(trigger).__name__}')
    with eval_mode(encoder):
        return _search(encoder, normalizer, imgs, trigger, int(steps), float(lr),
                       int(batch_size), objective, int(seed), module_device(encoder))


def _search(encoder, normalizer, imgs, trigger, steps, lr, batch_size, objective, seed, device):
    gen = torch.Generator(device=device).manual_seed(seed)
    cpu_gen = torch.Generator().manual_seed(seed)
    h, w = imgs.shape[-2:]
    start = trigger.pattern.detach().float().to(device)
    param = torch.atanh((start / 127.5 - 1).clamp(-0.999, 0.999)).requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)

    def value(x: torch.Tensor, pattern: torch.Tensor, generator) -> torch.Tensor:
        pos = trigger.sample_positions(len(x), h, w, device=device, generator=generator)
        xt = trigger.stamp_at(x.float(), pos, patterns=pattern[None])
        feats = pool_features(encoder(normalizer(xt)))
        with torch.no_grad():
            clean = pool_features(encoder(normalizer(x.float()))) if objective == 'shift' \
                else None
        return _objective(objective, feats, clean)

    eval_x = imgs[:min(len(imgs), max(batch_size, 256))].to(device)

    @torch.no_grad()
    def measure(pattern: torch.Tensor) -> float:
        """The reported value (collapse or clean-to-triggered cosine) on the fixed batch."""
        v = value(eval_x, pattern, torch.Generator(device=device).manual_seed(1)).item()
        return -v if objective == 'collapse' else v

    before = measure(start)
    for _ in range(steps):
        idx = torch.randperm(len(imgs), generator=cpu_gen)[:batch_size]
        loss = value(imgs[idx].to(device), 127.5 * (torch.tanh(param) + 1), gen)
        # the gradient of the pattern only: nothing is accumulated in a trainable encoder's
        # .grad (the search also runs on the encoder being trained, between its steps)
        param.grad, = torch.autograd.grad(loss, [param])
        opt.step()
    pattern = (127.5 * (torch.tanh(param.detach()) + 1)).round().clamp(0, 255)
    after = measure(pattern)
    return pattern.cpu(), dict(objective=objective, start=round(before, 4), end=round(after, 4))


#: Keys of a search configuration (:func:`search_patch_pattern`'s arguments).
SEARCH_KEYS = ('steps', 'lr', 'batch_size', 'objective', 'seed')


def check_search_cfg(cfg: dict, trigger: nn.Module, what: str,
                     extra_keys: Tuple[str, ...] = ()) -> dict:
    """Validate search settings for ``trigger``; return them as a plain dict.

    Args:
        cfg (dict): Any of :data:`SEARCH_KEYS` (and ``extra_keys``).
        trigger (nn.Module): The trigger to search; must be a ``PatchTrigger``.
        what (str): The setting's name in error messages.
        extra_keys (tuple[str]): Further integer keys the caller accepts (>= 1).
    """
    cfg = dict(cfg)
    if type(trigger).__name__ != 'PatchTrigger':
        raise ConfigValueError(f'{what} needs a PatchTrigger custom trigger, got '
                               f'{type(trigger).__name__}')
    keys = set(SEARCH_KEYS) | set(extra_keys)
    if set(cfg) - keys:
        raise ConfigValueError(f'unknown {what} keys {sorted(set(cfg) - keys)}; '
                               f'allowed: {sorted(keys)}')
    if cfg.get('objective', 'collapse') not in OBJECTIVES:
        raise ConfigValueError(f'{what}.objective must be one of {OBJECTIVES}, got '
                               f'{cfg["objective"]!r}')
    for k in ('steps', 'batch_size') + tuple(extra_keys):
        if k in cfg:
            check_number(f'{what}.{k}', cfg[k], 2 if k == 'batch_size' else 1, integer=True)
    if 'lr' in cfg:
        check_number(f'{what}.lr', cfg['lr'], 0, inclusive=(False, True))
    return cfg


@torch.no_grad()
def search_into(trigger: nn.Module, encoder: nn.Module, normalizer: nn.Module,
                imgs: torch.Tensor, **cfg) -> Dict[str, float]:
    """Search ``trigger``'s pattern on ``encoder`` and write rank 0's result into it.

    Args:
        trigger, encoder, normalizer, imgs: As :func:`search_patch_pattern`.
        **cfg: :func:`search_patch_pattern` settings.

    Returns:
        dict: The search's objective before and after (``objective``, ``start``, ``end``).
    """
    from mmengine.dist import broadcast, is_distributed
    with torch.enable_grad():
        pattern, info = search_patch_pattern(encoder, normalizer, imgs, trigger, **cfg)
    pattern = pattern.to(trigger.pattern)
    if is_distributed():
        broadcast(pattern, 0)
    trigger.pattern.copy_(pattern)
    return info


@HOOKS.register_module()
class TriggerSearchHook(Hook):
    """Re-search a model's trigger every ``interval`` epochs, on the encoder being trained.

    Unlearning then keeps chasing the patch the *current* encoder still reacts to instead of one
    fixed pattern it has already learned to ignore.  Before the epoch's first step, on every rank
    (rank 0's pattern is broadcast); the pattern is a buffer of the model, so a resumed run
    continues with the checkpoint's.

    Works with any model that has ``searches_trigger`` (true), ``search_trigger(encoder)`` (the
    warm-started search on ``'backbone'``) and ``search_start_epoch(runner)`` (the first epoch
    the searches count from, or ``None`` while the model is not unlearning yet), e.g.
    :class:`~bmaiu_plugin.defenses.searched_trigger.SearchedTriggerUnlearning`.

    Args:
        interval (int, optional): Epochs between searches; ``None``: off.
    """

    priority = 'NORMAL'  # after a stage switch (BMAIUStageHook is HIGH)

    def __init__(self, interval: Optional[int] = 1):
        self.interval = check_number('TriggerSearchHook interval', interval, 1, integer=True,
                                     optional=True)

    def before_train(self, runner) -> None:
        model = unwrap_model(runner)
        if self.interval is not None and not getattr(model, 'searches_trigger', False):
            raise ConfigValueError(
                f'TriggerSearchHook(interval=...) needs a model that searches its trigger '
                f'({type(model).__name__} does not; e.g. SearchedTriggerUnlearning)')

    def before_train_epoch(self, runner) -> None:
        if self.interval is None:
            return
        model = unwrap_model(runner)
        start = model.search_start_epoch(runner)
        if start is None or runner.epoch < start or (runner.epoch - start) % self.interval:
            return
        info = model.search_trigger('backbone')
        runner.logger.info(f'trigger re-searched on the encoder being unlearned '
                           f'(epoch {runner.epoch + 1}): {json.dumps(info)}')
