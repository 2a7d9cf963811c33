"""I-BAU: Implicit Backdoor Adversarial Unlearning (Zeng et al., ICLR 2022), for a classifier.

For SSL encoders the classifier is ``F = head(pool(encoder(x_n)))`` with ``x_n`` the normalized
input (:class:`EncoderClassifier`). I-BAU solves

    min_theta  max_delta  mean_i CE(F_theta(x_i + delta), y_i)

with one *universal* perturbation ``delta`` of one image's shape, living in the normalized input
space (added after the normalization, never clamped). Each round:

1. :func:`ibau_perturbation`: ``delta`` from 0 by SGD (lr 10) over one pass of the clean data on
   ``-CE(F(x + delta), y_hat) + 1e-3 * ||delta||^2``, ``y_hat`` being the model's current
   predictions on ``x``.
2. For each batch: the implicit hypergradient of the outer loss
   ``L_out = CE(F(x_b + P_b(delta)), y_b)`` (``P_b`` adds ``delta`` to ``int(portion * B)``
   random samples) through the fixed point ``delta = Phi(delta, theta)`` of the inner map
   ``Phi = delta - 0.1 * grad_delta[-CE(F(x_0 + delta), y_0) + 1e-3 * ||delta||^2]`` (first batch,
   true labels): ``v <- (dPhi/ddelta)^T v + grad_delta L_out`` for ``K`` iterations from
   ``v = 0``, then ``grad_theta L_out + (dPhi/dtheta)^T v`` is accumulated into ``.grad`` and the
   outer optimizer (Adam) steps. See :func:`ibau_hypergradient`.

The model stays in ``eval()`` mode throughout (BN statistics frozen). All the work is on tensors.
"""
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..evaluation.probe import pool_features
from ..utils.device import module_device
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number

__all__ = ['EncoderClassifier', 'ibau_perturbation', 'ibau_inner_map', 'ibau_hypergradient',
           'ibau_unlearn']

Batch = Tuple[torch.Tensor, torch.Tensor]
ModelFn = Callable[[torch.Tensor], torch.Tensor]
Normalizer = Optional[Callable[[torch.Tensor], torch.Tensor]]


class EncoderClassifier(nn.Module):
    """``head(pool_features(encoder(x)))``: an SSL encoder with a linear probe as a classifier.

    Args:
        encoder (nn.Module): The backbone; its output (tensor or tuple of stages) is pooled with
            :func:`~bmaiu_plugin.evaluation.probe.pool_features`.
        head (nn.Module): The classifier on the ``(B, D)`` features (e.g. ``nn.Linear``).
        feature_norm (str, optional): ``'l2'`` to L2-normalize the features before the head
            (if the probe was trained that way), or ``None``.

    The input is the *normalized* image (what the encoder takes), so that I-BAU's ``delta`` is
    added after the normalization, as in the original code.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, feature_norm: Optional[str] = None):
        super().__init__()
        if feature_norm not in (None, 'l2'):
            raise ConfigValueError(f"feature_norm must be None or 'l2', got {feature_norm!r}")
        self.encoder = encoder
        self.head = head
        self.feature_norm = feature_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = pool_features(self.encoder(x))
        if self.feature_norm == 'l2':
            feats = F.normalize(feats, dim=1)
        return self.head(feats)


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


def _check_positive(**values) -> None:
    for name, v in values.items():
        check_number(f'I-BAU {name}', v, 0, inclusive=(False, True))


class _EvalMode:
    """Put an ``nn.Module`` model in ``eval()`` for the block; restore its mode afterwards."""

    def __init__(self, model_fn):
        self.module = model_fn if isinstance(model_fn, nn.Module) else None

    def __enter__(self):
        if self.module is not None:
            self.was_training = self.module.training
            self.module.eval()

    def __exit__(self, *exc):
        if self.module is not None:
            self.module.train(self.was_training)


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
    _check_positive(lr=lr, passes=passes)
    check_number('I-BAU l2_weight', l2_weight, 0)
    dev = module_device(model_fn, device)
    batches = _as_reiterable(batches)
    delta = None
    with _EvalMode(model_fn):
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
    _check_positive(rounds=rounds, outer_lr=outer_lr, inner_lr=inner_lr, pert_lr=pert_lr)
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
    with _EvalMode(model_fn):
        for r in range(int(rounds)):
            delta = ibau_perturbation(model_fn, batches, normalizer=normalizer, lr=pert_lr,
                                      l2_weight=l2_weight, device=dev)
            inner_batch = None
            losses = []
            for batch in batches:
                x, y = _prepare(batch, normalizer, dev)
                if inner_batch is None:
                    inner_batch = (x, y)  # the inner map uses the first batch, true labels
                b = x.shape[0]
                n_pert = int(float(portion) * b)
                pmask = torch.zeros(b)
                pmask[torch.randperm(b, generator=g)[:n_pert]] = 1.
                optimizer.zero_grad(set_to_none=True)
                _, loss = ibau_hypergradient(model_fn, params, delta, inner_batch, (x, y), K=K,
                                             inner_lr=inner_lr, l2_weight=l2_weight,
                                             perturb_mask=pmask, accumulate=True)
                optimizer.step()
                steps += 1
                losses.append(float(loss))
            history['outer_loss'].append(sum(losses) / len(losses))
            history['delta_norm'].append(float(delta.norm()))
            if logger is not None:
                logger(f"I-BAU round {r}: outer loss {history['outer_loss'][-1]:.4f}, "
                       f"|delta| {history['delta_norm'][-1]:.3f}")
    return dict(delta=delta.cpu(), steps=steps, **history)
