"""SSL-Cleanse (Zheng et al., ECCV 2024; github.com/UCF-ML-Research/SSL-Cleanse) as an encoder
fine-tuning defense: detector + mitigator.

**Detector** (once, before training: :meth:`SSLCleanse.prepare`, called by
:class:`~bmaiu_plugin.engine.hooks.PrepareModelHook`):
:func:`~bmaiu_plugin.defenses.sslcleanse.detector.sslcleanse_detect` on the defense data.  Its
result (every cluster's trigger, the anomaly indices, the flagged and kept clusters) lives in
*buffers*, so ``--resume`` and ``tools/test.py`` on a checkpoint reuse it.

**Mitigator** (the training loss): ``f`` = the frozen suspect, ``f'`` = ``backbone``.  Each image
is stamped with probability ``trigger_fraction`` with one of the kept triggers, and its ``f'``
features are pulled to the ``f`` features of the clean image::

    d(x)             = 1 - cos(f'(stamp(x)), sg[f(x)])
    loss_unlearn     = unlearn_weight     * sum_{x stamped}     d(x) / B
    loss_consistency = consistency_weight * sum_{x not stamped} d(x) / B

**Kept triggers**: those of the flagged clusters (``mitigate='flagged'``); when none is flagged,
``no_detection`` picks the most anomalous cluster's trigger (default) or none (``'skip'``);
``mitigate='all'`` keeps every cluster's.  ``metrics.json`` reports which
(``backdoor_detected``, ``mitigated_clusters``, ``mitigation``).

The attacker's trigger and target are never inputs of this model: only the evaluator
(``evaluate_attack`` -> ``val_cfg.triggers``) knows the attack.
"""
import time
from typing import Dict, Optional

import torch
from mmengine.dist import broadcast, get_rank, get_world_size
from mmengine.logging import MMLogger

from ...datasets.reference import dataset_arrays
from ...models.finetune_base import cosine
from ...registry import MODELS
from ...triggers.base import BaseTrigger
from ...utils.errors import ConfigValueError
from ...utils.validate import check_choice, check_number
from ..base import BaseDefense
from .detector import NC_MAD_SCALE, _check_budgets, sslcleanse_detect, stamp_mask_pattern

#: Detector settings: the official README's values where it gives them (lr 0.1, batch 32,
#: lam 0.1, success 0.99, 1000 kNN samples, up to 1000 epochs with early stopping), K = 10 for
#: CIFAR-10 (the official cluster notebook).  One "round" = ``steps_per_round`` Adam steps.
DETECTOR_DEFAULTS = dict(
    num_clusters=10, images_per_cluster=200, kmeans_n_init=30, rounds=1000, steps_per_round=20,
    batch_size=32, lr=0.1, lam_init=0.1, lam_multiplier=1.5, patience=5, success_threshold=0.99,
    regularizer='mask', target='member', knn='center', check_images=1000,
    early_stop_patience=10, early_stop_ratio=0.99, give_up_rounds=50, threshold=2.,
    mad_scale=NC_MAD_SCALE, chunk=1024)

MITIGATE = ('flagged', 'all')
NO_DETECTION = ('most_anomalous', 'skip')


@MODELS.register_module()
class SSLCleanse(BaseDefense):
    """The SSL-Cleanse defense (detector + mitigator).

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        detector (dict): Overrides of :data:`DETECTOR_DEFAULTS` (see
            :func:`~bmaiu_plugin.defenses.sslcleanse.detector.sslcleanse_detect` and
            :func:`~bmaiu_plugin.defenses.sslcleanse.detector.synthesize_cluster_triggers`).
        mitigate (str): ``'flagged'`` or ``'all'`` (see the module docstring).
        no_detection (str): ``'most_anomalous'`` or ``'skip'``: what ``mitigate='flagged'``
            does when no cluster is flagged.
        trigger_fraction (float): Share of each batch stamped with a kept trigger (paper: 0.5).
        unlearn_weight (float): Weight of the stamped images' term.
        consistency_weight (float): Weight of the clean images' term.
        center_features (bool): Compute the loss cosines on features minus the suspect's mean
            feature over the defense data (as BMAIU's option, for weak encoders whose features
            share a large common direction).
        img_size (int): Side of the (square) images; fixes the shape of the trigger buffers.
        **kwargs: :class:`EncoderFinetuneBase` arguments (``encoder_checkpoint``, ``freeze_bn``,
            ``mean``, ``std``, ``seed``).
    """

    def __init__(self, backbone: dict, detector: Optional[dict] = None,
                 mitigate: str = 'flagged', no_detection: str = 'most_anomalous',
                 trigger_fraction: float = 0.5, unlearn_weight: float = 1.,
                 consistency_weight: float = 1., center_features: bool = False,
                 img_size: int = 32, **kwargs):
        super().__init__(backbone, frozen_copies=('suspect',), **kwargs)
        det = dict(DETECTOR_DEFAULTS)
        unknown = set(detector or {}) - set(det)
        if unknown:
            raise ConfigValueError(f'unknown SSL-Cleanse detector settings {sorted(unknown)}; '
                                   f'known: {sorted(det)}')
        det.update(detector or {})
        check_number('SSL-Cleanse num_clusters', det['num_clusters'], 2, integer=True)
        for key in ('threshold', 'mad_scale', 'lam_init'):
            check_number(f'SSL-Cleanse {key}', det[key], 0, inclusive=(False, True))
        check_number('SSL-Cleanse lam_multiplier', det['lam_multiplier'], 1,
                     inclusive=(False, True))
        check_number('SSL-Cleanse patience', det['patience'], 1, integer=True)
        _check_budgets(**{k: det[k] for k in (
            'rounds', 'steps_per_round', 'batch_size', 'images_per_cluster', 'check_images',
            'kmeans_n_init', 'success_threshold', 'lr', 'regularizer', 'target', 'knn',
            'early_stop_patience', 'give_up_rounds', 'early_stop_ratio', 'chunk')})
        check_choice('SSL-Cleanse mitigate', mitigate, MITIGATE)
        check_choice('SSL-Cleanse no_detection', no_detection, NO_DETECTION)
        check_number('SSL-Cleanse trigger_fraction', trigger_fraction, 0, 1,
                     inclusive=(False, True))
        check_number('SSL-Cleanse unlearn_weight', unlearn_weight, 0)
        check_number('SSL-Cleanse consistency_weight', consistency_weight, 0)
        check_number('SSL-Cleanse img_size', img_size, 1, integer=True)
        self.detector_cfg = det
        self.mitigate, self.no_detection = mitigate, no_detection
        self.trigger_fraction = float(trigger_fraction)
        self.unlearn_weight = float(unlearn_weight)
        self.consistency_weight = float(consistency_weight)
        self.center_features = bool(center_features)
        self.img_size = int(img_size)
        #: mean suspect feature of the defense data (recomputed identically on resume)
        self.feature_center: Optional[torch.Tensor] = None
        k, s = int(det['num_clusters']), self.img_size
        self.register_buffer('detected', torch.zeros((), dtype=torch.long))
        self.register_buffer('trigger_masks', torch.zeros(k, 1, s, s))
        self.register_buffer('trigger_patterns', torch.zeros(k, 3, s, s))
        for name in ('trigger_reg', 'trigger_mask_l1', 'trigger_asr', 'anomaly_indices'):
            self.register_buffer(name, torch.zeros(k))
        for name in ('trigger_found', 'flagged', 'kept', 'cluster_sizes'):
            self.register_buffer(name, torch.zeros(k, dtype=torch.long))
        self.register_buffer('cluster_label', torch.full((k, ), -1, dtype=torch.long))
        self.register_buffer('detect_seconds', torch.zeros(()))

    # detector ------------------------------------------------------------------------------
    def prepare(self, dataset) -> None:
        """Run the detector on the defense data, unless a checkpoint already holds its result.

        Also sets the feature centre when ``center_features`` (recomputed on every start: it
        is a pure function of the data and the frozen suspect).
        """
        run = not int(self.detected)
        if not (run or self.center_features):
            return
        imgs, labels = dataset_arrays(dataset)
        if tuple(imgs.shape[-2:]) != (self.img_size, self.img_size):
            raise ConfigValueError(
                f'SSL-Cleanse img_size={self.img_size} but the defense images are '
                f'{imgs.shape[-2]}x{imgs.shape[-1]}: set model.img_size')
        feats = None
        if self.center_features or get_rank() == 0:
            feats = self.encode_batched(self.suspect, imgs)
        if self.center_features:
            self.feature_center = feats.mean(0).to(self.step.device)
        if run:
            self.detect(imgs, labels, feats)

    @torch.no_grad()
    def detect(self, imgs: torch.Tensor, labels: Optional[torch.Tensor] = None,
               feats: Optional[torch.Tensor] = None) -> dict:
        """Run the detector on ``(N, 3, H, W)`` 0-255 images and store its result in buffers.

        Args:
            imgs (Tensor): The clean defense images.
            labels (Tensor, optional): Their labels (-1 = none); used only to log which class
                each cluster mostly holds.
            feats (Tensor, optional): Their suspect features, if already computed.

        Returns:
            dict: The result of
            :func:`~bmaiu_plugin.defenses.sslcleanse.detector.sslcleanse_detect` on
            rank 0 (the only rank that runs it; the others receive its buffers), ``None`` on the
            other ranks.
        """
        logger = MMLogger.get_current_instance()
        cfg = dict(self.detector_cfg)
        res = None
        t0 = time.perf_counter()
        if get_rank() == 0:  # other ranks receive rank 0's result below
            res = self._run_detector(imgs, labels, feats, logger)
        self.detect_seconds.fill_(time.perf_counter() - t0)
        if get_world_size() > 1:
            for name in ('trigger_masks', 'trigger_patterns', 'trigger_reg', 'trigger_mask_l1',
                         'trigger_asr', 'anomaly_indices', 'trigger_found', 'flagged', 'kept',
                         'cluster_sizes', 'cluster_label', 'detect_seconds'):
                broadcast(getattr(self, name), src=0)
        self.detected.fill_(1)
        logger.info('SSL-Cleanse detector: ' + str(self.detection_summary()))
        if not self.flagged.any():
            logger.warning(
                'SSL-Cleanse: no cluster flagged (anomaly index '
                f'{float(self.anomaly_indices.max()):.2f} <= {cfg["threshold"]}); '
                + ('no trigger unlearned (no_detection=skip)' if not self.kept.any() else
                   f'unlearning cluster(s) {self._kept_list()} ({self.mitigation})'))
        return res

    def _run_detector(self, imgs, labels, feats, logger) -> dict:
        cfg = dict(self.detector_cfg)
        k = int(cfg['num_clusters'])
        with torch.enable_grad():
            res = sslcleanse_detect(self.suspect, imgs, self.normalizer, seed=self.seed,
                                    device=self.step.device, feats=feats, logger=logger.info,
                                    **cfg)
        dev = self.step.device
        self.trigger_masks.copy_(res['mask'].to(dev))
        self.trigger_patterns.copy_(res['pattern'].to(dev))
        for name, key in (('trigger_reg', 'reg'), ('trigger_mask_l1', 'mask_l1'),
                          ('trigger_asr', 'asr'), ('anomaly_indices', 'indices')):
            getattr(self, name).copy_(torch.tensor(res[key], dtype=torch.float32))
        self.trigger_found.copy_(torch.tensor(res['found'], dtype=torch.long))
        self.cluster_sizes.copy_(torch.tensor(res['cluster_sizes'], dtype=torch.long))
        flagged = torch.zeros(k, dtype=torch.long)
        flagged[res['flagged']] = 1
        self.flagged.copy_(flagged)
        if labels is not None and (labels >= 0).any():
            for j in range(k):
                lab = labels[res['labels'] == j]
                lab = lab[lab >= 0]
                if len(lab):
                    self.cluster_label[j] = int(torch.mode(lab).values)
        self.kept.copy_(self._choose_kept(flagged, self.anomaly_indices.cpu()))
        return res

    def _choose_kept(self, flagged: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        if self.mitigate == 'all':
            return torch.ones_like(flagged)
        if flagged.any() or self.no_detection == 'skip':
            return flagged.clone()
        kept = torch.zeros_like(flagged)
        kept[int(indices.argmax())] = 1
        return kept

    @property
    def mitigation(self) -> str:
        """How the kept triggers were chosen: ``'flagged'``, ``'all'``, ``'most_anomalous'``
        or ``'skip'``."""
        if self.mitigate == 'all':
            return 'all'
        return 'flagged' if bool(self.flagged.any()) else self.no_detection

    def _kept_list(self):
        return torch.nonzero(self.kept).flatten().tolist()

    def detection_summary(self) -> dict:
        """The detector's result as plain Python values (for logs and ``metrics.json``)."""
        if not int(self.detected):
            return {}
        r4 = lambda t: [round(float(v), 4) for v in t]  # noqa: E731
        out = dict(
            backdoor_detected=bool(self.flagged.any()),
            anomaly_index=round(float(self.anomaly_indices.max()), 4),
            anomaly_threshold=float(self.detector_cfg['threshold']),
            flagged_clusters=torch.nonzero(self.flagged).flatten().tolist(),
            mitigated_clusters=self._kept_list(),
            mitigation=self.mitigation,
            sslcleanse=dict(
                detect_seconds=round(float(self.detect_seconds), 1),
                anomaly_indices=r4(self.anomaly_indices),
                trigger_reg=r4(self.trigger_reg),
                regularizer=self.detector_cfg['regularizer'],
                mask_l1=[round(float(v), 1) for v in self.trigger_mask_l1],
                trigger_found=[bool(v) for v in self.trigger_found],
                trigger_asr=r4(self.trigger_asr),
                cluster_sizes=self.cluster_sizes.tolist(),
                cluster_majority_label=self.cluster_label.tolist()))
        return out

    # mitigator -----------------------------------------------------------------------------
    def _cos(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.feature_center is None:
            return cosine(a, b)
        c = self.feature_center.to(a)
        return cosine(a - c, b - c)

    def stamp(self, imgs: torch.Tensor, generator: torch.Generator, fraction: float = 1.):
        """Stamp kept triggers on a share of ``imgs``.

        Returns:
            tuple[Tensor, Tensor]: The images (float, 0-255) and a ``(B,)`` bool tensor of
            which were stamped (all ``False`` when no trigger is kept).
        """
        x = imgs.float()
        kept = torch.nonzero(self.kept).flatten()
        if kept.numel() == 0:
            return x, torch.zeros(len(x), dtype=torch.bool, device=x.device)
        which = kept[torch.randint(len(kept), (len(x), ), generator=generator,
                                   device=x.device)]
        xt = stamp_mask_pattern(x, self.trigger_masks[which], self.trigger_patterns[which])
        on = torch.rand(len(x), generator=generator, device=x.device) < fraction
        return torch.where(on[:, None, None, None], xt, x), on

    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        if not int(self.detected):
            raise RuntimeError('SSL-Cleanse detector has not run: add PrepareModelHook to '
                               'custom_hooks')
        gen = self.step_generator(imgs.device)
        xs, on = self.stamp(imgs, gen, self.trigger_fraction)
        f_new = self.features(self.backbone, xs)
        with torch.no_grad():
            f_old = self.features(self.suspect, imgs)
        d = 1 - self._cos(f_new, f_old)
        on = on.to(d.dtype)
        b = len(d)
        return dict(loss_unlearn=self.unlearn_weight * (d * on).sum() / b,
                    loss_consistency=self.consistency_weight * (d * (1 - on)).sum() / b)

    # evaluation ----------------------------------------------------------------------------
    def preparation_summary(self) -> dict:
        """What :class:`~bmaiu_plugin.engine.hooks.PrepareModelHook` logs: the detection."""
        return self.detection_summary()

    def defense_report(self) -> dict:
        """The detector's result (:meth:`detection_summary`), for ``metrics.json``."""
        return self.detection_summary()

    def probe_encoders(self) -> Dict[str, dict]:
        """The suspect ``f`` and the defended ``f'``, for the probe loop.

        Once a trigger is kept for mitigation, both carry it as their own target-less trigger
        ``synth_trigger`` (each image stamped with one kept trigger, drawn per image): the
        evaluator reports ``synth_trigger_shift_suspect`` / ``synth_trigger_shift_defended``,
        mean ``cos(f(x + t_i), f(x))``, close to 1 once the mitigator has unlearned them
        (:func:`~bmaiu_plugin.evaluation.diagnostics.trigger_shift`).
        """
        own = []
        if int(self.detected) and bool(self.kept.any()):
            own = [dict(name='synth_trigger', trigger=_KeptTriggers(self), target=None)]
        return dict(suspect=dict(encoder=self.suspect, triggers=own),
                    defended=dict(encoder=self.backbone, triggers=own))


class _KeptTriggers(BaseTrigger):
    """The kept triggers of an :class:`SSLCleanse` as one trigger: ``t(x, generator)``."""

    def __init__(self, model: SSLCleanse):
        super().__init__()
        self.__dict__['model'] = model  # not a submodule: no cycle in the module tree

    def forward(self, imgs: torch.Tensor, generator=None) -> torch.Tensor:
        return self.model.stamp(imgs, generator)[0]
