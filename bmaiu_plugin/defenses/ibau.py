"""I-BAU: Implicit Backdoor Adversarial Unlearning (Zeng et al., ICLR 2022;
github.com/YiZeng623/I-BAU), for an SSL encoder with a linear head.

I-BAU solves ``min_theta max_delta mean_i CE(F_theta(x_i + delta), y_i)`` with one universal
perturbation ``delta`` in the normalized input space, ``F = head(pool(encoder(x_n)))``
(:class:`~bmaiu_plugin.evaluation.probe.EncoderClassifier`).  Each round finds ``delta``
(:func:`ibau_perturbation`), then takes one outer step per batch with the implicit hypergradient
through the inner problem's fixed point (:func:`ibau_hypergradient`, :func:`ibau_outer_step`).
:func:`ibau_unlearn` runs it on tensors; :class:`IBAUDefense` + :class:`IBAUHook` in mmengine's
runner.  The model stays in ``eval()`` mode throughout (BN statistics frozen), as the original.
"""
import contextlib
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.hooks import Hook

from ..evaluation.probe import (EncoderClassifier, L2Normalize, check_probe_cfg,
                                normalize_features, train_linear_probe)
from ..models.finetune_base import frozen_copy
from ..registry import HOOKS, MODELS
from ..utils.data import batch_images, batch_labels_and_idx, eval_mode, unwrap_model
from ..utils.device import module_device
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number
from .base import BaseDefense

__all__ = ['EncoderClassifier', 'ibau_perturbation', 'ibau_inner_map', 'ibau_hypergradient',
           'ibau_outer_step', 'ibau_unlearn']

Batch = Tuple[torch.Tensor, torch.Tensor]
ModelFn = Callable[[torch.Tensor], torch.Tensor]
Normalizer = Optional[Callable[[torch.Tensor], torch.Tensor]]


def _prepare(batch, normalizer: Normalizer, device: torch.device) -> Batch:
    """``(x, y)`` or ``{'inputs': x, 'labels': y}`` -> normalized float ``x``, long ``y``."""
    if isinstance(batch, dict):
        x, y = batch['inputs'], batch['labels']
    else:
        x, y = batch[0], batch[1]
    x = x.to(device)
    if normalizer is not None:
        x = normalizer(x)
    elif not x.is_floating_point():
        x = x.float()
    return x, torch.as_tensor(y, device=device).long()


def _as_reiterable(batches) -> Sequence:
    """Lists/tuples/DataLoaders can be iterated again; a one-shot iterator is materialised."""
    if iter(batches) is batches:
        batches = list(batches)
    return batches


def _inner_objective(model_fn: ModelFn, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor,
                     l2_weight: float) -> torch.Tensor:
    """``-CE(F(x + delta), y) + l2_weight * ||delta||_2^2``."""
    return -F.cross_entropy(model_fn(x + delta), y) + l2_weight * delta.pow(2).sum()


def _eval(model_fn):
    """``eval_mode`` for an ``nn.Module`` model; a plain function is used as it is."""
    return eval_mode(model_fn) if isinstance(model_fn, nn.Module) else contextlib.nullcontext()


def ibau_perturbation(model_fn: ModelFn,
                      batches: Iterable,
                      *,
                      normalizer: Normalizer = None,
                      lr: float = 10.0,
                      l2_weight: float = 1e-3,
                      passes: int = 1,
                      device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """I-BAU's inner maximisation: one universal perturbation against the current model.

    ``delta`` starts at 0 and takes one SGD step per batch on
    ``-CE(F(x + delta), y_hat) + l2_weight * ||delta||_2^2``, where ``y_hat = argmax F(x)`` are
    the model's current predictions on the clean batch. Only ``delta`` gets gradients; nothing is
    written into the model's ``.grad``. An ``nn.Module`` model is evaluated in ``eval()`` mode.

    Args:
        model_fn (callable): Normalized images ``(B, C, H, W)`` -> logits ``(B, K)``; e.g. an
            :class:`EncoderClassifier`.
        batches (Iterable): Batches ``(x, y)`` (the labels are not used here). ``x`` is the
            normalized input, or 0-255 pixels if ``normalizer`` is given.
        normalizer (callable, optional): Applied to ``x`` first (e.g. ``PixelNormalizer``);
            ``delta`` is added after it.
        lr (float): SGD learning rate (the original: 10).
        l2_weight (float): Weight of ``||delta||^2`` (the original: 1e-3).
        passes (int): Passes over ``batches`` (the original: 1).
        device (str | torch.device, optional): Defaults to the model's device.

    Returns:
        Tensor: ``delta``, shape ``(1, C, H, W)``, detached, in normalized-input space.
    """
    check_number('I-BAU lr', lr, 0, inclusive=(False, True))
    check_number('I-BAU passes', passes, 0, inclusive=(False, True))
    check_number('I-BAU l2_weight', l2_weight, 0)
    dev = module_device(model_fn, device)
    batches = _as_reiterable(batches)
    delta = None
    with _eval(model_fn):
        for _ in range(int(passes)):
            for batch in batches:
                x, _ = _prepare(batch, normalizer, dev)
                if delta is None:
                    delta = torch.zeros((1,) + tuple(x.shape[1:]), device=dev,
                                        dtype=x.dtype, requires_grad=True)
                    opt = torch.optim.SGD([delta], lr=float(lr))
                with torch.no_grad():
                    y_hat = model_fn(x).argmax(1)
                loss = _inner_objective(model_fn, x, y_hat, delta, float(l2_weight))
                (grad,) = torch.autograd.grad(loss, [delta])
                delta.grad = grad
                opt.step()
    if delta is None:
        raise ConfigValueError('I-BAU needs at least one batch of clean data')
    return delta.detach()


def ibau_inner_map(model_fn: ModelFn, delta: torch.Tensor, x0: torch.Tensor, y0: torch.Tensor,
                   *, inner_lr: float = 0.1, l2_weight: float = 1e-3,
                   create_graph: bool = True) -> torch.Tensor:
    """The fixed-point map ``Phi(delta, theta)``: one gradient step on the inner objective.

    ``Phi = delta - inner_lr * grad_delta[-CE(F(x0 + delta), y0) + l2_weight * ||delta||^2]``.

    Args:
        model_fn (callable): Normalized images -> logits.
        delta (Tensor): ``(1, C, H, W)`` perturbation with ``requires_grad=True``.
        x0 (Tensor): The normalized inner batch (I-BAU: the first batch).
        y0 (Tensor): Its labels (I-BAU: the true labels).
        inner_lr (float): Step size (the original: 0.1).
        l2_weight (float): Weight of ``||delta||^2`` (the original: 1e-3).
        create_graph (bool): Keep the graph so that ``Phi`` can be differentiated w.r.t.
            ``delta`` and the model parameters.

    Returns:
        Tensor: ``Phi(delta, theta)``, same shape as ``delta``.
    """
    inner = _inner_objective(model_fn, x0, y0, delta, float(l2_weight))
    (g,) = torch.autograd.grad(inner, [delta], create_graph=create_graph)
    return delta - float(inner_lr) * g


def ibau_hypergradient(model_fn: ModelFn,
                       params: Sequence[torch.Tensor],
                       delta: torch.Tensor,
                       inner_batch: Batch,
                       outer_batch: Batch,
                       *,
                       K: int = 5,
                       inner_lr: float = 0.1,
                       l2_weight: float = 1e-3,
                       perturb_mask: Optional[torch.Tensor] = None,
                       accumulate: bool = False) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """The implicit hypergradient of the outer loss w.r.t. ``params`` at the fixed point ``delta``.

    With ``Phi`` the inner map (:func:`ibau_inner_map`, on ``inner_batch``) and
    ``L_out = CE(F(x_b + m * delta), y_b)`` (``m = perturb_mask``, per sample):

    * ``v_0 = 0``; ``v_{k+1} = (dPhi/ddelta)^T v_k + grad_delta L_out`` for ``k < K``
      (the truncated Neumann series of ``(I - dPhi/ddelta)^{-T} grad_delta L_out``);
    * ``hypergrad = grad_theta L_out + (dPhi/dtheta)^T v_K``.

    All products are vector-Jacobian products (no Jacobian is formed). Parameters that do not
    influence a term get a zero contribution.

    Args:
        model_fn (callable): Normalized images -> logits; a function of ``params``.
        params (Sequence[Tensor]): The parameters ``theta`` (``requires_grad=True``).
        delta (Tensor): The perturbation ``(1, C, H, W)`` (the result of the inner problem).
        inner_batch (tuple[Tensor, Tensor]): ``(x_0, y_0)``, normalized, true labels.
        outer_batch (tuple[Tensor, Tensor]): ``(x_b, y_b)``, normalized, true labels.
        K (int): Fixed-point iterations (the original: 5).
        inner_lr (float): Step size of the inner map (the original: 0.1).
        l2_weight (float): Weight of ``||delta||^2`` in the inner objective.
        perturb_mask (Tensor, optional): ``(B,)`` 0/1 (or bool) selecting the samples of the
            outer batch that get ``delta``; all of them if ``None``.
        accumulate (bool): Also add the hypergradient into each parameter's ``.grad``.

    Returns:
        tuple[list[Tensor], Tensor]: The hypergradient (one tensor per parameter) and the outer
        loss (detached).
    """
    check_number('I-BAU K', K, 0, integer=True)
    params = list(params)
    x0, y0 = inner_batch
    xb, yb = outer_batch
    d = delta.detach().clone().requires_grad_(True)
    if perturb_mask is None:
        xp = xb + d
    else:
        m = perturb_mask.to(xb.device, xb.dtype).view(-1, *([1] * (xb.dim() - 1)))
        xp = xb + m * d
    outer = F.cross_entropy(model_fn(xp), yb)
    g_all = torch.autograd.grad(outer, params + [d], allow_unused=True)
    g_theta = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_all[:-1])]
    g_delta = torch.zeros_like(d) if g_all[-1] is None else g_all[-1]

    if int(K) == 0 or not bool(torch.any(g_delta != 0)):
        hyper = g_theta  # v = 0: no indirect term (e.g. no sample of the batch got delta)
    else:
        phi = ibau_inner_map(model_fn, d, x0, y0, inner_lr=inner_lr, l2_weight=l2_weight,
                             create_graph=True)
        v = g_delta  # v_1 = J^T v_0 + g with v_0 = 0
        for _ in range(int(K) - 1):
            (jtv,) = torch.autograd.grad(phi, [d], grad_outputs=v, retain_graph=True)
            v = jtv + g_delta
        indirect = torch.autograd.grad(phi, params, grad_outputs=v, allow_unused=True)
        hyper = [gt if gi is None else gt + gi for gt, gi in zip(g_theta, indirect)]
    if accumulate:
        for p, h in zip(params, hyper):
            p.grad = h.detach().clone() if p.grad is None else p.grad + h.detach()
    return [h.detach() for h in hyper], outer.detach()


def ibau_outer_step(model_fn: ModelFn, params: Sequence[torch.Tensor], delta: torch.Tensor,
                    inner_batch: Batch, outer_batch: Batch, optimizer, *,
                    generator: torch.Generator, portion: float = 0.01, K: int = 5,
                    inner_lr: float = 0.1, l2_weight: float = 1e-3) -> torch.Tensor:
    """One I-BAU outer step: ``delta`` on ``int(portion * B)`` random samples of the batch, the
    implicit hypergradient (:func:`ibau_hypergradient`) into ``.grad``, one optimizer step.

    Args:
        model_fn (callable): Normalized images -> logits.
        params (Sequence[Tensor]): The parameters to update.
        delta (Tensor): The round's perturbation ``(1, C, H, W)``.
        inner_batch (tuple[Tensor, Tensor]): The round's first batch (normalized, true labels).
        outer_batch (tuple[Tensor, Tensor]): This batch (normalized, true labels).
        optimizer: Has ``zero_grad()`` and ``step()`` (a torch optimizer or an mmengine
            ``OptimWrapper``, inside its ``optim_context``).
        generator (torch.Generator): CPU generator of the choice of perturbed samples.
        portion, K, inner_lr, l2_weight: See :func:`ibau_unlearn`.

    Returns:
        Tensor: The outer loss (detached).
    """
    x, _ = outer_batch
    b = x.shape[0]
    pmask = torch.zeros(b)
    pmask[torch.randperm(b, generator=generator)[:int(float(portion) * b)]] = 1.
    optimizer.zero_grad()
    _, loss = ibau_hypergradient(model_fn, params, delta.to(x.device), inner_batch, outer_batch,
                                 K=K, inner_lr=inner_lr, l2_weight=l2_weight,
                                 perturb_mask=pmask, accumulate=True)
    optimizer.step()
    return loss


def ibau_unlearn(model_fn: ModelFn,
                 params: Optional[Iterable[torch.Tensor]],
                 batches: Iterable,
                 *,
                 rounds: int = 5,
                 K: int = 5,
                 outer_lr: float = 1e-4,
                 inner_lr: float = 0.1,
                 pert_lr: float = 10.0,
                 l2_weight: float = 1e-3,
                 portion: float = 0.01,
                 normalizer: Normalizer = None,
                 optimizer: Optional[torch.optim.Optimizer] = None,
                 seed: int = 0,
                 device: Optional[Union[str, torch.device]] = None,
                 logger: Optional[Callable[[str], None]] = None) -> Dict[str, object]:
    """Run I-BAU: ``rounds`` x (find ``delta``; one hypergradient step per batch), in place.

    Args:
        model_fn (callable): Normalized images -> logits, e.g. an :class:`EncoderClassifier`.
            An ``nn.Module`` is kept in ``eval()`` mode during the run (its mode is restored at
            the end); a plain function must wrap modules that are already in ``eval()``.
        params (Iterable[Tensor], optional): Parameters to unlearn; ``None``: all parameters of
            ``model_fn`` (an ``nn.Module``) that require grad, encoder and head alike, as the
            original.
        batches (Iterable): The small labelled clean set as batches ``(x, y)`` (or dicts with
            ``inputs``/``labels``); re-iterable (a list or a DataLoader; a one-shot iterator is
            materialised). ``x`` is normalized, or 0-255 pixels if ``normalizer`` is given.
        rounds (int): I-BAU rounds (the original: 5).
        K (int): Fixed-point iterations per hypergradient (5).
        outer_lr (float): Adam learning rate of the outer step (BackdoorBench: 1e-4; the
            original ``defense.py``: 1e-3). Ignored when ``optimizer`` is given.
        inner_lr (float): Step size of the inner fixed-point map (0.1).
        pert_lr (float): SGD learning rate of the ``delta`` search (10).
        l2_weight (float): Weight of ``||delta||^2`` (1e-3).
        portion (float): Share of each outer batch that gets ``delta`` (the original: 0.01, i.e.
            ``int(0.01 * B)`` random samples; 1 per batch of 100). In ``[0, 1]``.
        normalizer (callable, optional): Pixel -> normalized input, applied before ``delta``.
        optimizer (torch.optim.Optimizer, optional): Outer optimizer over ``params``; defaults to
            ``Adam(params, lr=outer_lr)`` (betas 0.9/0.999, no weight decay).
        seed (int): Seed of the choice of perturbed samples.
        device (str | torch.device, optional): Defaults to the model's device.
        logger (callable, optional): Called with one line per round.

    Returns:
        dict: ``delta`` (the last round's perturbation, CPU), ``outer_loss`` (per-round mean
        outer loss, list of floats), ``delta_norm`` (per-round ``||delta||_2``), ``steps``.
    """
    for name, v in dict(rounds=rounds, outer_lr=outer_lr, inner_lr=inner_lr,
                        pert_lr=pert_lr).items():
        check_number(f'I-BAU {name}', v, 0, inclusive=(False, True))
    check_number('I-BAU portion', portion, 0, 1)
    if params is None:
        if not isinstance(model_fn, nn.Module):
            raise ConfigValueError('I-BAU needs params when model_fn is not an nn.Module')
        params = [p for p in model_fn.parameters() if p.requires_grad]
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ConfigValueError('I-BAU has no parameter that requires grad to unlearn')
    dev = module_device(model_fn, device)
    batches = _as_reiterable(batches)
    if optimizer is None:
        optimizer = torch.optim.Adam(params, lr=float(outer_lr))
    g = torch.Generator().manual_seed(int(seed))
    history: Dict[str, list] = dict(outer_loss=[], delta_norm=[])
    steps = 0
    delta = None
    with _eval(model_fn):
        for r in range(int(rounds)):
            delta = ibau_perturbation(model_fn, batches, normalizer=normalizer, lr=pert_lr,
                                      l2_weight=l2_weight, device=dev)
            inner_batch = None
            losses = []
            for batch in batches:
                x, y = _prepare(batch, normalizer, dev)
                if inner_batch is None:
                    inner_batch = (x, y)  # the inner map uses the first batch, true labels
                loss = ibau_outer_step(model_fn, params, delta, inner_batch, (x, y), optimizer,
                                       generator=g, portion=portion, K=K, inner_lr=inner_lr,
                                       l2_weight=l2_weight)
                steps += 1
                losses.append(float(loss))
            history['outer_loss'].append(sum(losses) / len(losses))
            history['delta_norm'].append(float(delta.norm()))
            if logger is not None:
                logger(f"I-BAU round {r}: outer loss {history['outer_loss'][-1]:.4f}, "
                       f"|delta| {history['delta_norm'][-1]:.3f}")
    return dict(delta=delta.cpu(), steps=steps, **history)


@MODELS.register_module()
class IBAUDefense(BaseDefense):
    """I-BAU (Zeng et al., ICLR 2022) on an SSL encoder + linear head, in mmengine's runner.

    ``F = head(l2norm(pool(backbone(x_n))))``.  The training data is the defender's *labeled*
    clean fraction (``RatioSubset``, 10 % by default in the configs).  With
    :class:`~bmaiu_plugin.defenses.ibau.IBAUHook`:

    1. before training, the head is fit on clean features of the suspect encoder (the same SGD
       linear probe as the evaluator's: ``head`` settings);
    2. each epoch is one I-BAU round: first the universal perturbation ``delta`` (one SGD pass
       over the data against the model's own predictions,
       :func:`~bmaiu_plugin.defenses.ibau.ibau_perturbation`), then one outer step per batch with
       the implicit hypergradient (:func:`~bmaiu_plugin.defenses.ibau.ibau_hypergradient`; the
       fixed-point map on the round's first batch, ``delta`` on ``int(portion * B)`` samples),
       on every encoder and head parameter, with the runner's optimizer.

    Encoder and head stay in ``eval()`` mode throughout (BN statistics frozen), as the original.
    Single process only (the hook checks).

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        num_classes (int): Classes of the labeled data.
        head (dict): Head fitting: ``epochs``, ``batch_size``, ``lr`` (and ``momentum``,
            ``weight_decay``) of :func:`~bmaiu_plugin.evaluation.probe.train_linear_probe`.
        K (int): Fixed-point iterations of the hypergradient. Original: 5.
        inner_lr (float): Step of the inner fixed-point map. Original: 0.1.
        pert_lr (float): SGD learning rate of the ``delta`` search. Original: 10.
        l2_weight (float): Weight of ``||delta||^2``. Original: 1e-3.
        portion (float): Share of each batch that gets ``delta``, in [0, 1]. Original: 0.01.
        img_size (int): Image side, to size the head from one dummy forward pass.
        **kwargs: :class:`EncoderFinetuneBase` arguments (``encoder_checkpoint``, ``mean``,
            ``std``, ``seed``, ...). BN parameters are trained (``freeze_bn=False``).
    """

    def __init__(self, backbone: dict, num_classes: int = 10,
                 head: dict = dict(epochs=10, batch_size=64, lr=0.1), K: int = 5,
                 inner_lr: float = 0.1, pert_lr: float = 10., l2_weight: float = 1e-3,
                 portion: float = 0.01, img_size: int = 32, **kwargs):
        kwargs.setdefault('freeze_bn', False)
        super().__init__(backbone, frozen_copies=('suspect',), **kwargs)
        check_number('I-BAU num_classes', num_classes, 2, integer=True)
        check_number('I-BAU K', K, 0, integer=True)
        self.inner_lr = check_number('I-BAU inner_lr', inner_lr, 0, inclusive=(False, True))
        self.pert_lr = check_number('I-BAU pert_lr', pert_lr, 0, inclusive=(False, True))
        self.l2_weight = check_number('I-BAU l2_weight', l2_weight, 0)
        check_number('I-BAU portion', portion, 0, 1)
        unknown = set(head) - {'epochs', 'batch_size', 'lr', 'momentum', 'weight_decay'}
        if unknown:
            raise ConfigValueError(f'unknown I-BAU head setting(s) {sorted(unknown)}; allowed: '
                                   'epochs, batch_size, lr, momentum, weight_decay')
        check_probe_cfg(head, 'I-BAU head')
        check_number('I-BAU img_size', img_size, 1, integer=True)
        self.head_cfg = dict(head)
        self.K, self.portion, self.num_classes = K, float(portion), num_classes
        with torch.no_grad():
            dim = self.features(self.suspect, torch.zeros(1, 3, img_size, img_size)).shape[1]
        self.head = nn.Linear(dim, num_classes)
        self.head_suspect = frozen_copy(self.head)  # the head before unlearning, for the report
        self.register_buffer('head_ready', torch.zeros((), dtype=torch.bool))
        self.delta: Optional[torch.Tensor] = None
        self._inner_batch = None
        self._round_losses: List[float] = []
        self.history: Dict[str, list] = dict(outer_loss=[], delta_norm=[])
        self.head_train_acc: Optional[float] = None
        self.train_seconds: Optional[float] = None
        self.backbone.eval()
        self.head.eval()

    # modes -------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        """The classifier stays in ``eval()`` (I-BAU freezes BN statistics)."""
        super().train(mode)
        self.backbone.eval()
        self.head.eval()
        return self

    def classifier(self, encoder: Optional[nn.Module] = None,
                   head: Optional[nn.Module] = None) -> EncoderClassifier:
        """``head(l2norm(pool(encoder(x_n))))`` on normalized images (default: trained ones)."""
        clf = EncoderClassifier(self.backbone if encoder is None else encoder,
                                self.head if head is None else head, feature_norm='l2')
        return clf.eval()  # (ibau_* restore the mode they found: it must be eval)

    def _batch(self, data_batch: dict):
        imgs = batch_images(data_batch).to(self.step.device)
        labels = torch.tensor(batch_labels_and_idx(data_batch)[0], device=imgs.device)
        return imgs, labels

    # set-up and rounds (IBAUHook) ----------------------------------------------------------
    @torch.no_grad()
    def fit_head(self, dataloader) -> None:
        """Fit the linear head on clean l2-normalized features of the labeled data (once)."""
        if bool(self.head_ready):
            return
        feats, labels = [], []
        for batch in dataloader:
            imgs, y = self._batch(batch)
            feats.append(self.features(self.backbone, imgs))
            labels.append(y)
        feats, labels = torch.cat(feats), torch.cat(labels)
        if int(labels.max()) >= self.num_classes:
            raise ConfigValueError(f'I-BAU num_classes={self.num_classes} but the labeled data has '
                                   f'class {int(labels.max())}')
        x, _ = normalize_features(feats, 'l2')
        with torch.enable_grad():
            head = train_linear_probe(x, labels, self.num_classes, seed=self.seed,
                                      **self.head_cfg)
        self.head.load_state_dict(head.state_dict())
        self.head_suspect.load_state_dict(head.state_dict())
        self.head_train_acc = round(100. * (head(x).argmax(1) == labels).float().mean().item(), 2)
        self.head_ready.fill_(True)

    def _pixel_batches(self, dataloader):
        for batch in dataloader:
            yield self._batch(batch)

    def start_round(self, dataloader) -> None:
        """Find this round's universal perturbation; the next train step sets the inner batch."""
        if not bool(self.head_ready):
            raise RuntimeError('I-BAU head is not fit: add IBAUHook to custom_hooks')
        self.delta = ibau_perturbation(self.classifier(), self._pixel_batches(dataloader),
                                       normalizer=self.normalizer, lr=self.pert_lr,
                                       l2_weight=self.l2_weight, device=self.step.device)
        self._inner_batch = None
        self._round_losses = []

    def end_round(self) -> None:
        if self._round_losses:
            self.history['outer_loss'].append(
                round(sum(self._round_losses) / len(self._round_losses), 4))
            self.history['delta_norm'].append(round(float(self.delta.norm()), 4))

    # training ----------------------------------------------------------------------------
    def loss(self, imgs, data_samples=None):
        raise ConfigValueError('I-BAU runs in a single process (its hypergradient step is not an '
                               'ordinary backward): run tools/train.py without --launcher')

    def train_step(self, data, optim_wrapper) -> Dict[str, torch.Tensor]:
        """One I-BAU outer step: the implicit hypergradient on encoder + head, then a step."""
        if self.delta is None:
            raise RuntimeError('I-BAU has no perturbation for this round: add IBAUHook to '
                               'custom_hooks')
        data = self.data_preprocessor(data, True)
        imgs = self.images(data['inputs'])
        labels = torch.tensor(batch_labels_and_idx(data)[0], device=imgs.device)
        x = self.normalizer(imgs)
        if self._inner_batch is None:  # the fixed-point map uses the round's first batch
            self._inner_batch = (x.detach(), labels)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.step))
        params = [p for p in list(self.backbone.parameters()) + list(self.head.parameters())
                  if p.requires_grad]
        with optim_wrapper.optim_context(self):
            loss = ibau_outer_step(self.classifier(), params, self.delta, self._inner_batch,
                                   (x, labels), optim_wrapper, generator=g,
                                   portion=self.portion, K=self.K, inner_lr=self.inner_lr,
                                   l2_weight=self.l2_weight)
        self.step += 1
        self._round_losses.append(float(loss))
        return dict(loss=loss, delta_norm=self.delta.norm().detach())

    # evaluation --------------------------------------------------------------------------
    def probe_classifiers(self) -> Dict[str, Tuple[nn.Module, nn.Module]]:
        """I-BAU's own classifiers, once the head is fit: ``ibau_head`` = the unlearned encoder +
        its head, ``ibau_head_suspect`` = the suspect encoder + the head fit before unlearning
        (the heads take pooled features and L2-normalize them first, as they were fit)."""
        if not bool(self.head_ready):
            return {}
        return dict(ibau_head=(self.backbone, nn.Sequential(L2Normalize(), self.head)),
                    ibau_head_suspect=(self.suspect,
                                       nn.Sequential(L2Normalize(), self.head_suspect)))

    def defense_report(self) -> dict:
        """``ibau``: per-round outer loss and ``||delta||``, head fit accuracy, training time."""
        if not bool(self.head_ready):
            return {}
        return dict(ibau=dict(rounds=len(self.history['outer_loss']), **self.history,
                              head_train_acc=self.head_train_acc,
                              train_seconds=self.train_seconds))


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
        model = unwrap_model(runner)
        self._t0 = time.perf_counter()
        model.fit_head(runner.train_dataloader)

    def before_train_epoch(self, runner) -> None:
        unwrap_model(runner).start_round(runner.train_dataloader)

    def after_train_epoch(self, runner) -> None:
        model = unwrap_model(runner)
        model.end_round()
        model.train_seconds = round(time.perf_counter() - self._t0, 1)
