"""The baseline defenses BMAIU is compared with, as registered models: CLP, I-BAU, DECREE.

Each wraps the tested functions of :mod:`bmaiu_plugin.defenses` into an mmengine model that the
plugin's tools run and that the :class:`~bmaiu_plugin.engine.BackdoorProbeLoop` evaluates:

* :class:`CLPDefense`: data-free channel pruning of the suspect encoder (``tools/test.py``).
* :class:`IBAUDefense`: I-BAU on encoder + linear head with the labeled clean fraction of the
  training data, inside mmengine's runner (``tools/train.py``).
* :class:`DecreeDetector`: DECREE trigger inversion and its PL1-norm on any encoder
  (``tools/test.py``); the ``decree=dict(...)`` option of the two defenses reports PL1 of the
  suspect and the defended encoder too.

**Evaluator-only trigger separation holds.**  None of these models takes the attacker's trigger
or target as an input: CLP uses the weights only, I-BAU its labeled clean data and its own
universal perturbation, DECREE clean shadow images.  The attacker's triggers exist only in the
probe loop's ``triggers`` (``evaluate_attack`` in a config).  I-BAU's head is scored with them
through :class:`~bmaiu_plugin.engine.defense_hooks.EvaluatorTriggersHook`, which lends them to the
model inside the evaluation only (``before_val``/``before_test``) and withdraws them after it.
"""
import time
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from ..defenses.clp import clp_prune
from ..defenses.decree import decree_invert
from ..defenses.ibau import EncoderClassifier, ibau_hypergradient, ibau_perturbation
from ..engine.loops import batch_images, batch_labels_and_idx
from ..evaluation.probe import (backdoor_metrics, check_probe_cfg, normalize_features,
                                train_linear_probe)
from ..registry import MODELS
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number
from .finetune_base import EncoderFinetuneBase, ProbedEncoder, frozen_copy

#: ``decree_invert`` settings a ``decree=dict(...)`` may hold, besides ``shadow_ratio``.
DECREE_KEYS = ('epochs', 'batch_size', 'lr', 'lr_milestones', 'thres', 'lam_init', 'lam_min',
               'lam_max', 'lam_patience', 'lam_reset_patience', 'early_stop_patience',
               'max_steps', 'seed')


def _positive(name: str, value, allow_zero: bool = False) -> float:
    """``float(value)``, checked finite and > 0 (>= 0 with ``allow_zero``)."""
    return check_number(name, value, 0, inclusive=(allow_zero, True))


def check_decree_cfg(cfg: Optional[dict]) -> Optional[dict]:
    """Validate a ``decree=dict(...)`` option; ``None`` or ``enable=False`` (off) give ``None``.

    Keys: ``enable`` (default True; lets a config carry the settings switched off, for
    ``--cfg-options model.decree.enable=True``), ``shadow_ratio`` (share of each test class used
    as DECREE's clean shadow set, in (0, 1]; the original: 0.1) and any of :data:`DECREE_KEYS`
    (:func:`~bmaiu_plugin.defenses.decree.decree_invert`'s budget and schedule).
    """
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise ConfigValueError(f'decree must be a dict of DECREE settings or None, got {cfg!r}')
    cfg = dict(cfg)
    if not cfg.pop('enable', True):
        return None
    unknown = sorted(set(cfg) - set(DECREE_KEYS) - {'shadow_ratio'})
    if unknown:
        raise ConfigValueError(f'unknown decree setting(s) {unknown}; allowed: enable, '
                               f'shadow_ratio, {", ".join(DECREE_KEYS)}')
    check_number('decree shadow_ratio', cfg.setdefault('shadow_ratio', 0.1), 0, 1,
                 inclusive=(False, True))
    for key in ('epochs', 'batch_size'):
        if key in cfg:
            check_number(f'decree {key}', cfg[key], 2 if key == 'batch_size' else 1,
                         integer=True)
    check_number('decree max_steps', cfg.get('max_steps'), 1, integer=True, optional=True)
    for key in ('lr', 'lam_init', 'lam_min', 'lam_max'):
        if key in cfg:
            _positive(f'decree {key}', cfg[key])
    if 'thres' in cfg:
        check_number('decree thres', cfg['thres'], 0, 1, inclusive=(False, True))
    if 'lr_milestones' in cfg:
        cfg['lr_milestones'] = tuple((int(e), float(v)) for e, v in cfg['lr_milestones'])
    return cfg


def _loader_arrays(dataloader):
    """All ``(images uint8 (N, 3, H, W), labels (N,))`` of a dataloader, on the CPU."""
    imgs, labels = [], []
    for batch in dataloader:
        imgs.append(batch_images(batch).cpu())
        labels.append(torch.tensor(batch_labels_and_idx(batch)[0]))
    if not imgs:
        raise ConfigValueError('the evaluation dataloader is empty')
    return torch.cat(imgs), torch.cat(labels)


def shadow_images(images: torch.Tensor, labels: torch.Tensor, ratio: float,
                  seed: int = 0) -> torch.Tensor:
    """A seeded, class-stratified ``ratio`` of ``images`` (DECREE's clean shadow set).

    Args:
        images (Tensor): ``(N, 3, H, W)`` images.
        labels (Tensor): ``(N,)`` classes (used only to stratify the sample).
        ratio (float): Share of each class to keep (at least one image per class).
        seed (int): Seed of the choice.

    Returns:
        Tensor: The chosen images, in dataset order.
    """
    g = torch.Generator().manual_seed(int(seed))
    keep = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        k = max(1, int(round(ratio * len(idx))))
        keep.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return images[torch.sort(torch.cat(keep)).values]


class DecreeReport:
    """Mixin: PL1-norm (DECREE) of the model's encoders, for ``probe_diagnostics``.

    The host model sets ``self.decree_cfg`` (see :func:`check_decree_cfg`) and has ``normalizer``
    and ``step`` (for the device) as :class:`EncoderFinetuneBase` does.
    """

    decree_cfg: Optional[dict] = None

    def decree_report(self, encoders: Dict[str, nn.Module], images: torch.Tensor,
                      labels: torch.Tensor) -> dict:
        """Run DECREE on each encoder with the same shadow set.

        Args:
            encoders (dict[str, nn.Module]): Name -> encoder.
            images (Tensor): The clean test images (pixel space), from which the class-stratified
                shadow set is drawn.
            labels (Tensor): Their classes (for the stratification only).

        Returns:
            dict: ``PL1`` (a number for a single encoder named ``'encoder'``, else one per name)
            and ``decree`` (per encoder: ``l1`` = DECREE's mask L1 over 3 channels, ``mask_l1`` =
            the 2-D mask's sum, ``found``, ``mean_cos`` of the stamped shadow set, ``clean_cos``,
            ``steps``, ``epochs``, ``seconds``, ``shadow_images``).
        """
        cfg = dict(self.decree_cfg)
        ratio = cfg.pop('shadow_ratio')
        seed = int(cfg.get('seed', 0))
        shadow = shadow_images(images, labels, ratio, seed)
        pl1, details = {}, {}
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            res = decree_invert(enc, shadow, self.normalizer, device=self.step.device,
                                logger=_every(20, f'DECREE [{name}] '), **cfg)
            pl1[name] = round(res['pl1'], 5)
            details[name] = dict(l1=round(res['l1'], 2), mask_l1=round(res['l1'] / 3, 2),
                                 found=bool(res['found']), mean_cos=round(res['mean_cos'], 4),
                                 clean_cos=round(res['clean_cos'], 4), steps=res['steps'],
                                 epochs=res['epochs'],
                                 seconds=round(time.perf_counter() - t0, 1),
                                 shadow_images=len(shadow))
        if list(encoders) == ['encoder']:
            return dict(PL1=pl1['encoder'], decree=details['encoder'])
        return dict(PL1=pl1, decree=details)


def _every(n: int, prefix: str):
    """A progress logger that forwards one line in ``n`` to the current MMLogger."""
    count = [0]

    def log(line: str) -> None:
        if count[0] % n == 0:
            MMLogger.get_current_instance().info(prefix + line)
        count[0] += 1
    return log


def _u_name(u: float) -> str:
    return f'{u:g}'


@MODELS.register_module()
class CLPDefense(DecreeReport, EncoderFinetuneBase):
    """CLP (Zheng et al., ECCV 2022): data-free Channel-Lipschitzness-based pruning of an encoder.

    After :meth:`init_weights` has loaded the suspect encoder, ``backbone`` is a copy of it pruned
    with :func:`~bmaiu_plugin.defenses.clp.clp_prune` (channels whose UCLC exceeds
    ``mean + u * std`` of their layer get BN weight and bias 0).  There is no training: evaluate
    with ``tools/test.py CONFIG ENCODER_CKPT``.

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        u (float): Threshold in standard deviations, > 0. The paper's default: 3.
        u_sweep (Sequence[float]): Further thresholds; one more defended encoder per value,
            probed as ``defended_u<value>`` (BackdoorBench sweeps 0..10).
        decree (dict, optional): DECREE settings (:func:`check_decree_cfg`) to also report the
            PL1-norm of the suspect and the defended encoder; ``None`` or ``enable=False``: off.
        **kwargs: :class:`EncoderFinetuneBase` arguments (``encoder_checkpoint``, ``mean``,
            ``std``, ``seed``, ...).
    """

    def __init__(self, backbone: dict, u: float = 3., u_sweep: Sequence[float] = (),
                 decree: Optional[dict] = None, **kwargs):
        kwargs.setdefault('freeze_bn', False)
        super().__init__(backbone, frozen_copies=('suspect',), **kwargs)
        self.u = _positive('CLP u', u)
        if isinstance(u_sweep, (int, float)) or u_sweep is None:
            raise ConfigValueError(f'CLP u_sweep must be a list of numbers > 0, got {u_sweep!r}')
        sweep = []
        for v in u_sweep:
            v = _positive('CLP u_sweep value', v)
            if v != self.u and v not in sweep:
                sweep.append(v)
        self.u_sweep = sweep
        self.sweep = nn.ModuleDict({_u_name(v).replace('.', '_'): frozen_copy(self.backbone)
                                    for v in sweep})
        self.decree_cfg = check_decree_cfg(decree)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.pruned: Optional[Dict[str, Dict[str, List[int]]]] = None
        self.clp_seconds = 0.

    def init_weights(self):
        """Load the suspect encoder, then prune the defended copies."""
        super().init_weights()
        self.apply_clp()

    @torch.no_grad()
    def apply_clp(self) -> None:
        """(Re)build every defended encoder from the suspect and prune it (idempotent)."""
        t0 = time.perf_counter()
        state = self.suspect.state_dict()
        self.backbone.load_state_dict(state)
        self.pruned = {_u_name(self.u): clp_prune(self.backbone, self.u)}
        for v in self.u_sweep:
            enc = self.sweep[_u_name(v).replace('.', '_')]
            enc.load_state_dict(state)
            self.pruned[_u_name(v)] = clp_prune(enc, v)
        self.clp_seconds = time.perf_counter() - t0

    def loss(self, imgs, data_samples=None):
        raise RuntimeError('CLP is data-free and has no training: evaluate it with '
                           'tools/test.py CONFIG ENCODER_CKPT')

    def defended_state_dict(self) -> Dict[str, torch.Tensor]:
        """The pruned encoder's (``u``) backbone state dict."""
        if self.pruned is None:
            self.apply_clp()
        return self.backbone.state_dict()

    def probe_encoders(self) -> Dict[str, dict]:
        """``suspect``, ``defended`` (pruned with ``u``) and ``defended_u<v>`` per sweep value."""
        if self.pruned is None:
            self.apply_clp()
        out = dict(suspect=dict(encoder=self.suspect), defended=dict(encoder=self.backbone))
        for v in self.u_sweep:
            out[f'defended_u{_u_name(v)}'] = dict(encoder=self.sweep[_u_name(v).replace('.', '_')])
        return out

    def _prune_summary(self, pruned: Dict[str, List[int]]) -> dict:
        channels = {name: m.num_features for name, m in self.suspect.named_modules()
                    if isinstance(m, nn.BatchNorm2d)}
        n = sum(len(v) for v in pruned.values())
        total = sum(channels[k] for k in pruned)
        return dict(pruned_channels=n, channels=total,
                    pruned_share=round(100. * n / max(total, 1), 3),
                    layers_pruned=sum(1 for v in pruned.values() if v), layers=len(pruned))

    @torch.no_grad()
    def probe_diagnostics(self, dataloader, normalizer) -> dict:
        """``clp``: what was pruned (per layer and in total, per ``u``) and the time it took;
        with ``decree``, ``PL1`` / ``decree`` of the suspect and the defended encoder."""
        if self.pruned is None:
            self.apply_clp()
        main = self.pruned[_u_name(self.u)]
        out = dict(u=self.u, **self._prune_summary(main),
                   per_layer={k: len(v) for k, v in main.items()},
                   seconds=round(self.clp_seconds, 3))
        if self.u_sweep:
            out['sweep'] = {k: self._prune_summary(v) for k, v in self.pruned.items()}
        report = dict(clp=out)
        if self.decree_cfg is not None:
            images, labels = _loader_arrays(dataloader)
            with torch.enable_grad():
                report.update(self.decree_report(dict(suspect=self.suspect,
                                                      defended=self.backbone), images, labels))
        return report


@MODELS.register_module()
class IBAUDefense(DecreeReport, EncoderFinetuneBase):
    """I-BAU (Zeng et al., ICLR 2022) on an SSL encoder + linear head, in mmengine's runner.

    ``F = head(l2norm(pool(backbone(x_n))))``.  The training data is the defender's *labeled*
    clean fraction (``RatioSubset``, 10 % by default in the configs).  With
    :class:`~bmaiu_plugin.engine.defense_hooks.IBAUHook`:

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
        decree (dict, optional): DECREE settings to also report PL1 (suspect and unlearned).
        img_size (int): Image side, to size the head from one dummy forward pass.
        **kwargs: :class:`EncoderFinetuneBase` arguments (``encoder_checkpoint``, ``mean``,
            ``std``, ``seed``, ...). BN parameters are trained (``freeze_bn=False``).
    """

    def __init__(self, backbone: dict, num_classes: int = 10,
                 head: dict = dict(epochs=10, batch_size=64, lr=0.1), K: int = 5,
                 inner_lr: float = 0.1, pert_lr: float = 10., l2_weight: float = 1e-3,
                 portion: float = 0.01, decree: Optional[dict] = None, img_size: int = 32,
                 **kwargs):
        kwargs.setdefault('freeze_bn', False)
        super().__init__(backbone, frozen_copies=('suspect',), **kwargs)
        check_number('I-BAU num_classes', num_classes, 2, integer=True)
        check_number('I-BAU K', K, 0, integer=True)
        self.inner_lr = _positive('I-BAU inner_lr', inner_lr)
        self.pert_lr = _positive('I-BAU pert_lr', pert_lr)
        self.l2_weight = _positive('I-BAU l2_weight', l2_weight, allow_zero=True)
        check_number('I-BAU portion', portion, 0, 1)
        unknown = set(head) - {'epochs', 'batch_size', 'lr', 'momentum', 'weight_decay'}
        if unknown:
            raise ConfigValueError(f'unknown I-BAU head setting(s) {sorted(unknown)}; allowed: '
                                   'epochs, batch_size, lr, momentum, weight_decay')
        check_probe_cfg(head, 'I-BAU head')
        check_number('I-BAU img_size', img_size, 1, integer=True)
        self.head_cfg = dict(head)
        self.K, self.portion, self.num_classes = K, float(portion), num_classes
        self.decree_cfg = check_decree_cfg(decree)
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
        self._eval_triggers: Optional[list] = None
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
        b = len(x)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.step))
        pmask = torch.zeros(b)
        pmask[torch.randperm(b, generator=g)[:int(self.portion * b)]] = 1.
        params = [p for p in list(self.backbone.parameters()) + list(self.head.parameters())
                  if p.requires_grad]
        with optim_wrapper.optim_context(self):
            optim_wrapper.zero_grad()
            _, loss = ibau_hypergradient(self.classifier(), params, self.delta.to(x.device),
                                         self._inner_batch, (x, labels), K=self.K,
                                         inner_lr=self.inner_lr, l2_weight=self.l2_weight,
                                         perturb_mask=pmask, accumulate=True)
            optim_wrapper.step()
        self.step += 1
        self._round_losses.append(float(loss))
        return dict(loss=loss, delta_norm=self.delta.norm().detach())

    # evaluation --------------------------------------------------------------------------
    def set_evaluator_triggers(self, triggers: Optional[list]) -> None:
        """Called by ``EvaluatorTriggersHook`` around an evaluation only (never in training)."""
        self._eval_triggers = triggers

    def defended_state_dict(self) -> Dict[str, torch.Tensor]:
        """The unlearned encoder's backbone state dict."""
        return self.backbone.state_dict()

    def probe_encoders(self) -> Dict[str, dict]:
        """``suspect`` (as loaded) and ``defended`` (the unlearned encoder) for a fresh probe."""
        return dict(suspect=dict(encoder=self.suspect), defended=dict(encoder=self.backbone))

    @torch.no_grad()
    def head_metrics(self, images: torch.Tensor, labels: torch.Tensor, encoder: nn.Module,
                     head: nn.Module, triggers: Sequence[dict], batch_size: int = 256) -> dict:
        """BA, and ASR / ASR_all / PA per trigger, of the classifier ``head . encoder`` itself.

        The result has the probe metric's form (``BA``, ``<trigger>/ASR``, ...), so that
        ``metrics.json`` shows it as one more entry beside the probed encoders.
        """
        dev = self.step.device
        clf = self.classifier(encoder, head)
        gen = torch.Generator(device=dev).manual_seed(0)

        def logits(x):
            return torch.cat([clf(self.normalizer(x[i:i + batch_size].to(dev))).cpu()
                              for i in range(0, len(x), batch_size)])

        clean = logits(images)
        out = dict(BA=100. * (clean.argmax(1) == labels).float().mean().item())
        for t in triggers:
            if t['target'] < 0:  # 'auto' targets need a model's reference set: not I-BAU's
                continue
            trig = t['trigger'].to(dev)
            stamped = torch.cat([trig(images[i:i + batch_size].to(dev), generator=gen).cpu()
                                 for i in range(0, len(images), batch_size)])
            m = backdoor_metrics(nn.Identity(), clean, labels, logits(stamped), labels,
                                 t['target'])
            out.update({f"{t['name']}/{k}": m[k] for k in ('ASR', 'ASR_all', 'PA')})
            out[f"{t['name']}/target"] = t['target']
        return out

    @torch.no_grad()
    def probe_diagnostics(self, dataloader, normalizer) -> dict:
        """The I-BAU classifier's own numbers on the test split, before and after unlearning.

        * ``ibau_head``: the unlearned encoder + its head; ``ibau_head_suspect``: the suspect
          encoder + the head fit before unlearning.  The attacker's triggers come from the probe
          loop (lent by ``EvaluatorTriggersHook``); without them only BA is reported.
        * ``ibau``: per-round outer loss and ``||delta||``, head fit accuracy, training time.
        * with ``decree``: ``PL1`` / ``decree`` of the suspect and the unlearned encoder.
        """
        report = {}
        need_data = bool(self.head_ready) or self.decree_cfg is not None
        images, labels = _loader_arrays(dataloader) if need_data else (None, None)
        if bool(self.head_ready):
            trigs = list(self._eval_triggers or [])
            report['ibau_head'] = self.head_metrics(images, labels, self.backbone, self.head,
                                                    trigs)
            report['ibau_head_suspect'] = self.head_metrics(images, labels, self.suspect,
                                                            self.head_suspect, trigs)
            report['ibau'] = dict(rounds=len(self.history['outer_loss']), **self.history,
                                  head_train_acc=self.head_train_acc,
                                  train_seconds=self.train_seconds)
        if self.decree_cfg is not None:
            with torch.enable_grad():
                report.update(self.decree_report(dict(suspect=self.suspect,
                                                      defended=self.backbone), images, labels))
        return report


@MODELS.register_module()
class DecreeDetector(DecreeReport, ProbedEncoder):
    """DECREE (Feng et al., CVPR 2023) on any encoder: its PL1-norm, beside the usual probe.

    ``tools/test.py CONFIG ENCODER_CKPT`` loads the encoder (tensors only; an mmengine checkpoint
    of a defense gives its ``backbone.*``, i.e. the defended encoder), probes it (BA / ASR / PA)
    and inverts a trigger with :func:`~bmaiu_plugin.defenses.decree.decree_invert` on a
    class-stratified clean shadow subset of the test split.  ``metrics.json`` gets ``PL1`` (small:
    a tiny trigger collapses the encoder, a sign of a backdoor) and ``decree`` (mask L1, final
    cosine, steps, time).

    Args:
        backbone (dict): Encoder config; must match the checkpoint.
        decree (dict): DECREE settings (:func:`check_decree_cfg`); ``{}`` = the original's
            CIFAR settings (10 % of each test class, up to 1000 epochs, early stop).
        **kwargs: :class:`ProbedEncoder` arguments (``encoder_checkpoint``, ``mean``, ``std``).
    """

    def __init__(self, backbone: dict, decree: Optional[dict] = None, **kwargs):
        super().__init__(backbone, **kwargs)
        self.decree_cfg = check_decree_cfg(dict(decree or {}))
        if self.decree_cfg is None:
            raise ConfigValueError('DecreeDetector runs DECREE: decree.enable cannot be False')

    def probe_diagnostics(self, dataloader, normalizer) -> dict:
        images, labels = _loader_arrays(dataloader)
        return self.decree_report(dict(encoder=self.backbone), images, labels)
