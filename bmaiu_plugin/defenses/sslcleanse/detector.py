"""SSL-Cleanse's detector (Zheng et al., ECCV 2024; github.com/UCF-ML-Research/SSL-Cleanse):
per-cluster trigger synthesis and a MAD outlier test.

On a small clean, unlabeled defense set, the frozen suspect encoder's features are clustered
(k-means); for every cluster taken as a target, a mask and pattern are synthesized (all clusters
in one batched optimisation, Neural-Cleanse lambda schedule, kNN success rate) so that stamped
images of the other clusters embed close to it; the smallest successful trigger of each cluster
is kept, and clusters whose trigger is an unusually small outlier (MAD anomaly index above
``threshold``) are flagged (:func:`sslcleanse_detect`).  Two departures from the released code,
both settable: every cluster keeps its own trigger, and ``mad_scale`` defaults to Neural Cleanse's
1.4826.  The step-by-step algorithm is in ``docs/sslcleanse.md``.

Nothing here knows the attacker's trigger or target: the only inputs are the suspect encoder and
clean images.
"""
import copy
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...models.features import pool_features
from ...utils.data import eval_mode
from ...utils.device import module_device
from ...utils.errors import ConfigValueError
from ...utils.validate import check_choice, check_number
from ..decree import _from_tanh_space, _to_tanh_space

__all__ = ['LambdaSchedule', 'mad_anomaly_index', 'kmeans_clusters', 'stamp_mask_pattern',
           'synthesize_cluster_triggers', 'sslcleanse_detect', 'REGULARIZERS', 'TARGETS',
           'KNN_MODES', 'NC_MAD_SCALE']

#: Neural Cleanse's consistency constant: ``1.4826 * MAD`` estimates a normal sigma.
NC_MAD_SCALE = 1.4826
REGULARIZERS = ('mask', 'mask_pattern')
TARGETS = ('member', 'center')
KNN_MODES = ('center', 'sample')


class LambdaSchedule:
    """Neural-Cleanse-style schedule of the mask-regularizer weight ``lam``.

    Call :meth:`update` once per round with whether the round's trigger reached the success
    threshold.

    Args:
        lam_init (float): Value ``lam`` is set to after ``patience`` consecutive successes while
            it is still 0.
        patience (int): Consecutive successes (failures) before ``lam`` goes up (down).
        multiplier (float): Factor ``> 1`` of each change.

    Attributes:
        lam (float): The current weight (0 until the first stretch of successes).
        went_up (bool): ``lam`` has been multiplied at least once.
        went_down (bool): ``lam`` has been divided at least once.  Early stopping waits for
            both, as Neural Cleanse does: the weight has then bracketed the success boundary.
    """

    def __init__(self, lam_init: float = 0.1, patience: int = 5, multiplier: float = 1.5):
        check_number('SSL-Cleanse lam_init', lam_init, 0, inclusive=(False, True))
        check_number('SSL-Cleanse lambda patience', patience, 1, integer=True)
        check_number('SSL-Cleanse lam_multiplier', multiplier, 1, inclusive=(False, True))
        self.lam_init, self.patience, self.multiplier = float(lam_init), int(patience), \
            float(multiplier)
        self.lam = 0.
        self.succ = self.fail = 0
        self.went_up = self.went_down = False

    def update(self, success: bool) -> float:
        """Record one round's outcome; return the (possibly changed) ``lam``."""
        if success:
            self.succ, self.fail = self.succ + 1, 0
        else:
            self.succ, self.fail = 0, self.fail + 1
        if self.lam == 0.:
            if self.succ >= self.patience:
                self.lam, self.succ = self.lam_init, 0
        elif self.succ >= self.patience:
            self.lam, self.succ, self.went_up = self.lam * self.multiplier, 0, True
        elif self.fail >= self.patience:
            self.lam, self.fail, self.went_down = self.lam / self.multiplier, 0, True
        return self.lam

    @property
    def settled(self) -> bool:
        """Whether ``lam`` has gone both up and down (early stopping may start)."""
        return self.went_up and self.went_down


def mad_anomaly_index(values: Union[Sequence[float], torch.Tensor], threshold: float = 2.,
                      mad_scale: float = NC_MAD_SCALE) -> Dict[str, object]:
    """Median-absolute-deviation outlier test on per-cluster trigger sizes.

    Args:
        values (Sequence[float] | Tensor): One trigger size (regularizer) per cluster, ``>= 2``.
        threshold (float): A cluster is flagged when its index exceeds this. Defaults to 2.
        mad_scale (float): Consistency constant multiplying the raw MAD (1.4826 in Neural
            Cleanse; ``1.4826 / 0.6745`` in the released SSL-Cleanse code).

    Returns:
        dict: ``median``, ``mad`` (the scaled spread used), ``indices`` (list,
        ``(median - v_c) / mad``: positive for smaller-than-median triggers), ``anomaly_index``
        (the largest index, ``|min - median| / mad``), ``flagged`` (sorted cluster indices whose
        index exceeds ``threshold``).

    When more than half of the values are equal (e.g. several clusters where no trigger was
    found, all at 1.0) the MAD is 0 and every other value would be infinitely anomalous.  The
    spread then falls back to the mean absolute deviation from the median times 1.2533 (its
    normal-consistency constant; rescaled by ``mad_scale / 1.4826``), as the usual robust
    z-score does; if that is 0 too (all values equal), every index is 0.
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() < 2:
        raise ConfigValueError(f'the MAD test needs at least 2 values, got {v.numel()}')
    check_number('MAD test threshold', threshold, 0, inclusive=(False, True))
    check_number('MAD test mad_scale', mad_scale, 0, inclusive=(False, True))
    # the statistical median (mean of the two middle values for an even count), as numpy's
    med = float(np.median(v.numpy()))
    dev = (v - med).abs()
    mad = float(mad_scale) * float(np.median(dev.numpy()))
    if mad <= 0:
        mad = 1.2533 * float(mad_scale) / NC_MAD_SCALE * float(dev.mean())
    idx = (med - v) / mad if mad > 0 else torch.zeros_like(v)
    flagged = torch.nonzero(idx > float(threshold)).flatten().tolist()
    return dict(median=med, mad=mad, indices=idx.tolist(), anomaly_index=float(idx.max()),
                flagged=flagged)


def kmeans_clusters(feats: torch.Tensor, num_clusters: int, seed: int = 0, n_init: int = 30
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """k-means on unit-normalized features (sklearn, as the official detector).

    Args:
        feats (Tensor): ``(N, D)`` features.
        num_clusters (int): ``K >= 2``, at most ``N``.
        seed (int): ``random_state``.
        n_init (int): k-means restarts (the official: 30).

    Returns:
        tuple[Tensor, Tensor]: ``(N,)`` long labels and ``(K, D)`` unit-normalized centres.
    """
    from sklearn.cluster import KMeans
    n = feats.shape[0]
    if not 2 <= int(num_clusters) <= n:
        raise ConfigValueError(f'SSL-Cleanse needs 2 <= num_clusters <= number of images '
                               f'({n}), got {num_clusters}')
    x = F.normalize(feats.float().cpu(), dim=1).numpy().astype(np.float64)
    km = KMeans(n_clusters=int(num_clusters), n_init=int(n_init), random_state=int(seed)).fit(x)
    centers = F.normalize(torch.from_numpy(km.cluster_centers_).float(), dim=1)
    return torch.from_numpy(km.labels_).long(), centers


def stamp_mask_pattern(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor
                       ) -> torch.Tensor:
    """``(1 - m) * x + m * p`` on 0-255 pixel images (broadcasting over leading dims)."""
    return (1 - mask) * x.float() + mask * pattern


def _regularizer(mask: torch.Tensor, pattern: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-trigger regularizer of ``(K, 1, H, W)`` masks and ``(K, 3, H, W)`` 0-255 patterns."""
    if kind == 'mask':
        return mask.flatten(1).mean(1)
    return (mask * pattern / 255.).flatten(1).mean(1)


def _check_budgets(**kw) -> None:
    for name in ('rounds', 'steps_per_round', 'batch_size', 'images_per_cluster',
                 'check_images', 'kmeans_n_init', 'chunk'):
        if name in kw:
            check_number(f'SSL-Cleanse {name}', kw[name], 1, integer=True)
    for name in ('success_threshold', 'early_stop_ratio'):
        if name in kw:
            check_number(f'SSL-Cleanse {name}', kw[name], 0, 1, inclusive=(False, True))
    if 'lr' in kw:
        check_number('SSL-Cleanse lr', kw['lr'], 0, inclusive=(False, True))
    for name, options in (('regularizer', REGULARIZERS), ('target', TARGETS),
                          ('knn', KNN_MODES)):
        if name in kw:
            check_choice(f'SSL-Cleanse {name}', kw[name], options)
    for name in ('early_stop_patience', 'give_up_rounds'):
        if name in kw:
            check_number(f'SSL-Cleanse {name}', kw[name], 1, integer=True, optional=True)


def synthesize_cluster_triggers(features: Callable[[torch.Tensor], torch.Tensor],
                                images: torch.Tensor,
                                labels: torch.Tensor,
                                feats: torch.Tensor,
                                centers: torch.Tensor,
                                *,
                                rounds: int = 1000,
                                steps_per_round: int = 20,
                                batch_size: int = 32,
                                lr: float = 0.1,
                                lam_init: float = 0.1,
                                lam_multiplier: float = 1.5,
                                patience: int = 5,
                                success_threshold: float = 0.99,
                                regularizer: str = 'mask',
                                target: str = 'member',
                                knn: str = 'center',
                                check_images: int = 1000,
                                early_stop_patience: Optional[int] = 10,
                                early_stop_ratio: float = 0.99,
                                give_up_rounds: Optional[int] = 50,
                                chunk: int = 1024,
                                seed: int = 0,
                                device: Union[str, torch.device] = 'cpu',
                                logger: Optional[Callable[[str], None]] = None
                                ) -> Dict[str, object]:
    """Synthesize one trigger per cluster, all clusters in one batched optimisation.

    Args:
        features (callable): Pixel images ``(B, 3, H, W)`` on ``device`` -> ``(B, D)`` features
            of the frozen suspect encoder (gradients flow to the input only).
        images (Tensor): ``(N, 3, H, W)`` 0-255 images (the per-cluster subsample).
        labels (Tensor): ``(N,)`` cluster index of every image, in ``[0, K)``.
        feats (Tensor): ``(N, D)`` suspect features of ``images`` (targets, ``knn='sample'``).
        centers (Tensor): ``(K, D)`` cluster centres (unit-normalized), for ``target='center'``
            and ``knn='center'``.
        rounds (int): Maximum rounds ("epochs" of the official code: 1000).
        steps_per_round (int): Adam steps between two success checks / lambda updates.
        batch_size (int): Stamped images per cluster and step (the official README: 32).
        lr (float): Adam learning rate (README: 0.1).
        lam_init, lam_multiplier, patience: :class:`LambdaSchedule` settings (README: 0.1,
            1.5, 5).
        success_threshold (float): kNN attack success rate a round must reach (README: 0.99).
        regularizer (str): ``'mask'`` (mean of ``m``) or ``'mask_pattern'`` (official
            ``detector.py``: mean of ``m * p / 255``).
        target (str): ``'member'`` (feature of a random member of the cluster, the official
            default) or ``'center'`` (``--target_center``).
        knn (str): ``'center'`` (nearest cluster centre, ``--knn_center``) or ``'sample'``
            (nearest image of the subsample).
        check_images (int): Other-cluster images stamped per cluster for the success check
            (README ``knn_sample_num``: 1000); capped by the smallest other-cluster pool.
        early_stop_patience (int, optional): Stop a cluster after this many rounds without a
            ``1 - early_stop_ratio`` relative improvement of its best regularizer, once found
            (official: 10). ``None`` disables it.
        early_stop_ratio (float): See ``early_stop_patience`` (official: 0.99).
        give_up_rounds (int, optional): Stop a cluster with no successful round after this many
            rounds (official: 50). ``None`` disables it.
        chunk (int): Images per forward pass in the success checks.
        seed (int): Seed of the initialisation, the batches and the check sets.
        device (str | torch.device): Where to optimise.
        logger (callable, optional): Called with progress lines.

    Returns:
        dict: Per-cluster results, index = cluster: ``mask`` (Tensor ``(K, 1, H, W)`` in
        [0, 1], CPU), ``pattern`` (``(K, 3, H, W)`` in [0, 255]), ``reg`` (list: best
        regularizer, 1.0 where not found), ``mask_l1`` (list: ``sum(m)`` over the ``H x W``
        pixels of the kept mask), ``found`` (list[bool]), ``asr`` (list: kNN success rate of
        the kept trigger), ``lam`` (list: final lambda), ``rounds`` (list: rounds run).
    """
    _check_budgets(rounds=rounds, steps_per_round=steps_per_round, batch_size=batch_size,
                   check_images=check_images, success_threshold=success_threshold, lr=lr,
                   early_stop_ratio=early_stop_ratio, chunk=chunk,
                   regularizer=regularizer, target=target, knn=knn,
                   early_stop_patience=early_stop_patience, give_up_rounds=give_up_rounds)
    device = torch.device(device)
    n, c, h, w = images.shape
    k = int(centers.shape[0])
    labels = labels.long().cpu()
    g = torch.Generator().manual_seed(int(seed))
    members = [torch.nonzero(labels == j).flatten() for j in range(k)]
    others = [torch.nonzero(labels != j).flatten() for j in range(k)]
    if any(len(m) == 0 for m in members) or any(len(o) == 0 for o in others):
        raise ConfigValueError('SSL-Cleanse needs every cluster non-empty and at least two '
                               'clusters with images')
    n_check = min(int(check_images), min(len(o) for o in others))
    check_idx = torch.stack([o[torch.randperm(len(o), generator=g)[:n_check]] for o in others])
    x_all = images.to(device).float()
    z_all = F.normalize(feats.float(), dim=1).to(device)
    ctr = F.normalize(centers.float(), dim=1).to(device)
    lab_dev = labels.to(device)

    mask_t = _to_tanh_space(torch.rand(k, 1, h, w, generator=g)).to(device).requires_grad_(True)
    pat_t = _to_tanh_space(torch.rand(k, c, h, w, generator=g)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([mask_t, pat_t], lr=float(lr), betas=(0.5, 0.9))

    def trigger(sel: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return _from_tanh_space(mask_t[sel]), 255. * _from_tanh_space(pat_t[sel])

    def nearest(z: torch.Tensor) -> torch.Tensor:
        z = F.normalize(z, dim=1)
        if knn == 'center':
            return (z @ ctr.T).argmax(1)
        return lab_dev[(z @ z_all.T).argmax(1)]

    @torch.no_grad()
    def check(sel: torch.Tensor) -> torch.Tensor:
        """kNN success rate of the current triggers of clusters ``sel``: ``(len(sel),)``."""
        m, p = trigger(sel)
        idx = check_idx[sel.cpu()].to(device)  # (a, n_check)
        hits = []
        flat = idx.flatten()
        owner = torch.arange(len(sel), device=device).repeat_interleave(n_check)
        for i in range(0, len(flat), int(chunk)):
            o = owner[i:i + chunk]
            x = stamp_mask_pattern(x_all[flat[i:i + chunk]], m[o], p[o])
            hits.append(nearest(features(x).float()) == sel[o])
        return torch.cat(hits).float().view(len(sel), n_check).mean(1)

    scheds = [LambdaSchedule(lam_init, patience, lam_multiplier) for _ in range(k)]
    best_reg = [math.inf] * k
    best_asr = [0.] * k
    best_m = [None] * k
    best_p = [None] * k
    last_m: List[Optional[torch.Tensor]] = [None] * k
    last_p: List[Optional[torch.Tensor]] = [None] * k
    stop_ref = [math.inf] * k
    no_improve = [0] * k
    run_rounds = [0] * k
    active = list(range(k))
    for rnd in range(int(rounds)):
        sel = torch.tensor(active, device=device)
        lam = torch.tensor([scheds[j].lam for j in active], device=device)
        a = len(active)
        for _ in range(int(steps_per_round)):
            src = torch.stack([others[j][torch.randint(len(others[j]), (batch_size,),
                                                      generator=g)] for j in active])
            if target == 'member':
                tgt_idx = torch.stack([members[j][torch.randint(len(members[j]), (batch_size,),
                                                                generator=g)] for j in active])
                z_t = z_all[tgt_idx.to(device)]  # (a, B, D)
            else:
                z_t = ctr[sel][:, None].expand(a, batch_size, -1)
            m, p = trigger(sel)
            x = stamp_mask_pattern(x_all[src.to(device)], m[:, None], p[:, None])
            z = features(x.flatten(0, 1)).float().view(a, batch_size, -1)
            nmse = (2 - 2 * F.cosine_similarity(z, z_t, dim=-1)).mean(1)  # (a,)
            loss = (nmse + lam * _regularizer(m, p, regularizer)).sum()
            # gradients of the triggers only: nothing is written into the encoder's .grad
            opt.zero_grad(set_to_none=True)
            mask_t.grad, pat_t.grad = torch.autograd.grad(loss, [mask_t, pat_t])
            opt.step()
        asr = check(sel).tolist()
        with torch.no_grad():
            m, p = trigger(sel)
            reg = _regularizer(m, p, regularizer).tolist()
        still = []
        for i, j in enumerate(active):
            run_rounds[j] = rnd + 1
            ok = asr[i] >= float(success_threshold)
            if ok and reg[i] < best_reg[j]:
                best_reg[j], best_asr[j] = reg[i], asr[i]
                best_m[j], best_p[j] = m[i].detach().cpu(), p[i].detach().cpu()
            scheds[j].update(ok)
            if best_reg[j] < math.inf:
                if best_reg[j] < stop_ref[j] * float(early_stop_ratio):
                    stop_ref[j], no_improve[j] = best_reg[j], 0
                else:
                    no_improve[j] += 1
            done = (early_stop_patience is not None and best_reg[j] < math.inf
                    and scheds[j].settled and no_improve[j] >= int(early_stop_patience)) or \
                (give_up_rounds is not None and best_reg[j] == math.inf
                 and rnd + 1 >= int(give_up_rounds))
            if done or rnd + 1 == int(rounds):
                last_m[j], last_p[j] = m[i].detach().cpu(), p[i].detach().cpu()
                if best_reg[j] == math.inf:
                    best_asr[j] = asr[i]
            else:
                still.append(j)
        if logger is not None and (rnd % 10 == 0 or not still):
            logger(f'SSL-Cleanse round {rnd + 1}: {len(still)}/{k} clusters active; best reg '
                   + ', '.join('-' if r == math.inf else f'{r:.4f}' for r in best_reg))
        active = still
        if not active:
            break

    found = [r < math.inf for r in best_reg]
    masks = torch.stack([best_m[j] if found[j] else last_m[j] for j in range(k)])
    patterns = torch.stack([best_p[j] if found[j] else last_p[j] for j in range(k)])
    return dict(mask=masks, pattern=patterns,
                reg=[r if f else 1.0 for r, f in zip(best_reg, found)],
                mask_l1=masks.flatten(1).sum(1).tolist(), found=found, asr=best_asr,
                lam=[s.lam for s in scheds], rounds=run_rounds)


def sslcleanse_detect(encoder: nn.Module,
                      images: torch.Tensor,
                      normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]],
                      *,
                      num_clusters: int = 10,
                      images_per_cluster: int = 200,
                      kmeans_n_init: int = 30,
                      threshold: float = 2.,
                      mad_scale: float = NC_MAD_SCALE,
                      seed: int = 0,
                      device: Optional[Union[str, torch.device]] = None,
                      feature_fn: Callable[[object], torch.Tensor] = pool_features,
                      feats: Optional[torch.Tensor] = None,
                      logger: Optional[Callable[[str], None]] = None,
                      **synthesis) -> Dict[str, object]:
    """Run SSL-Cleanse's detector on ``encoder``.

    The encoder is put in ``eval()`` for the run (its mode is restored afterwards) and only the
    triggers receive gradients.

    Args:
        encoder (nn.Module): The suspect encoder (output: a tensor or a tuple of stage outputs,
            turned into ``(B, D)`` by ``feature_fn``).
        images (Tensor): ``(N, 3, H, W)`` clean defense images, uint8 or float in [0, 255].
        normalizer (callable, optional): 0-255 pixels -> the encoder's input; ``None``: the
            encoder takes pixels.
        num_clusters (int): k-means ``K`` (CIFAR-10: 10, chosen by the elbow/silhouette sweep
            of the official notebook).
        images_per_cluster (int): Members of each cluster kept for the synthesis (seeded).
        kmeans_n_init (int): k-means restarts (official: 30).
        threshold (float): Anomaly-index threshold (2).
        mad_scale (float): See :func:`mad_anomaly_index`.
        seed (int): Seed of k-means, the subsample and the synthesis.
        device (str | torch.device, optional): Defaults to the encoder's device.
        feature_fn (callable): Encoder output -> ``(B, D)`` features.
        feats (Tensor, optional): Precomputed ``(N, D)`` features of ``images`` (not recomputed).
        logger (callable, optional): Progress lines.
        **synthesis: Settings of :func:`synthesize_cluster_triggers` (``rounds``,
            ``steps_per_round``, ``batch_size``, ``lr``, ``lam_init``, ...).

    Returns:
        dict: The :func:`synthesize_cluster_triggers` results, the
        :func:`mad_anomaly_index` results (``median``, ``mad``, ``indices``, ``anomaly_index``,
        ``flagged``), ``detected`` (bool: any cluster flagged), ``threshold``, ``labels``
        (``(N,)`` cluster of every image), ``centers`` (``(K, D)``), ``cluster_sizes`` (list,
        over all ``N`` images) and ``subset`` (``(M,)`` indices of the images used for the
        synthesis).
    """
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
        raise ConfigValueError(
            'SSL-Cleanse needs images as a (N, 3, H, W) tensor of 0-255 pixels, got '
            f'{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}')
    if not 2 <= int(num_clusters) <= images.shape[0]:
        raise ConfigValueError(f'SSL-Cleanse needs 2 <= num_clusters <= number of images '
                               f'({images.shape[0]}), got {num_clusters}')
    check_number('SSL-Cleanse images_per_cluster', images_per_cluster, 1, integer=True)
    check_number('SSL-Cleanse kmeans_n_init', kmeans_n_init, 1, integer=True)
    check_number('SSL-Cleanse threshold', threshold, 0, inclusive=(False, True))
    _check_budgets(**synthesis)
    device = module_device(encoder, device)
    if isinstance(normalizer, nn.Module):
        normalizer = copy.deepcopy(normalizer).to(device)
    norm = normalizer if normalizer is not None else (lambda t: t)
    chunk = int(synthesis.get('chunk', 1024))

    def features(pix: torch.Tensor) -> torch.Tensor:
        return feature_fn(encoder(norm(pix)))

    with eval_mode(encoder):
        if feats is None:
            with torch.no_grad():
                feats = torch.cat([features(images[i:i + chunk].to(device).float()).float().cpu()
                                   for i in range(0, len(images), chunk)])
        labels, centers = kmeans_clusters(feats, num_clusters, seed=seed, n_init=kmeans_n_init)
        rng = torch.Generator().manual_seed(int(seed))
        subset = torch.cat([idx[torch.randperm(len(idx), generator=rng)[:int(images_per_cluster)]]
                            for idx in (torch.nonzero(labels == j).flatten()
                                        for j in range(int(num_clusters)))]).sort().values
        res = synthesize_cluster_triggers(
            features, images[subset], labels[subset], feats[subset], centers,
            seed=seed, device=device, logger=logger, **synthesis)
    res.update(mad_anomaly_index(res['reg'], threshold=threshold, mad_scale=mad_scale))
    res.update(detected=bool(res['flagged']), threshold=float(threshold), labels=labels,
               centers=centers, subset=subset,
               cluster_sizes=torch.bincount(labels, minlength=int(num_clusters)).tolist())
    return res
