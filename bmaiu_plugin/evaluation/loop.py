"""The linear-probe backdoor evaluation as an mmengine val/test loop.

SSL models have no ``predict`` mode, so the usual ``ValLoop`` cannot evaluate them.  This loop
evaluates what the model exposes (:class:`~bmaiu_plugin.defenses.base.BaseDefense`):

1. every encoder of ``probe_encoders()``: features of the clean labeled train split, the clean
   test split and the test split with each trigger stamped on the device (the evaluator's and the
   encoder's own), handed to :class:`BackdoorProbeMetric` (BA / ASR / PA);
2. every classifier of ``probe_classifiers()`` as it is, with the evaluator's triggers;
3. the diagnostics of :mod:`~bmaiu_plugin.evaluation.diagnostics` (BTS / CCS, trigger shifts,
   and DECREE's PL1 when ``pl1=dict(...)`` asks for it), and the residual-backdoor audit
   (:mod:`~bmaiu_plugin.evaluation.audit`) when ``audit=dict(...)`` asks for it;
4. the model's ``defense_report()``;

and writes ``metrics.json`` into the run's folder and, as the latest copy, the work dir
(:func:`~bmaiu_plugin.engine.results.publish`).
"""
import json
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.dist import all_reduce, get_rank, is_main_process
from mmengine.runner import ValLoop
from torch.utils.data import DataLoader

from ..engine.results import publish
from ..models.features import CIFAR10_MEAN, CIFAR10_STD, PixelNormalizer, pool_features
from ..registry import LOOPS
from ..triggers import build_trigger
from ..utils.data import batch_images, batch_labels_and_idx, collect_images, eval_mode, unwrap_model
from ..utils.errors import ConfigValueError
from ..utils.validate import check_choice, check_keys, check_number, clip
from .audit import audit_encoder, check_audit_cfg
from .diagnostics import (check_pl1_cfg, implant_diagnostics, pl1_report, shadow_images,
                          trigger_shift)
from .metric import CLEAN, PROBE_TRAIN, REFERENCE
from .probe import classifier_metrics

def model_normalizer(model: nn.Module, normalize: Optional[dict]) -> PixelNormalizer:
    """Normalization from the loop config, else from the model's data preprocessor."""
    if normalize is not None:
        return PixelNormalizer(**normalize)
    dp = getattr(model, 'data_preprocessor', None)
    mean, std = getattr(dp, 'mean', None), getattr(dp, 'std', None)
    if mean is not None and std is not None:
        return PixelNormalizer(mean.flatten().tolist(), std.flatten().tolist(),
                               bgr_to_rgb=bool(getattr(dp, '_channel_conversion', False)))
    return PixelNormalizer(CIFAR10_MEAN, CIFAR10_STD)


def diagnostic_normalizer(model: nn.Module, normalize: Optional[dict]) -> nn.Module:
    """The model's own ``normalizer`` (what it encodes with), else :func:`model_normalizer`."""
    norm = getattr(model, 'normalizer', None)
    return norm if isinstance(norm, nn.Module) else model_normalizer(model, normalize)


def default_probe_encoders(model: nn.Module) -> Dict[str, dict]:
    """``{'encoder': {'encoder': backbone}}`` for an mmpretrain model or a bare backbone."""
    if hasattr(model, 'probe_encoders'):
        return model.probe_encoders()
    if hasattr(model, 'backbone'):
        return {'encoder': dict(encoder=model.backbone)}
    return {'encoder': dict(encoder=model)}


@LOOPS.register_module()
class BackdoorProbeLoop(ValLoop):
    """Validate or test an encoder with a linear probe: BA, ASR, PA per trigger.

    Args:
        runner (Runner): The runner.
        dataloader (DataLoader | dict): The labeled **test** split (images as uint8 tensors, no
            augmentation).
        evaluator (dict | list): Must contain a ``BackdoorProbeMetric``.
        probe_dataloader (DataLoader | dict): The labeled split the probe is trained on.
        triggers (list[dict]): The attacker's triggers, known to the evaluator only:
            ``dict(name=str, trigger=dict(type=...), target=int)``.  A model's own triggers
            (e.g. BMAIU's custom one) come from ``model.probe_encoders()``; the classifiers of
            ``model.probe_classifiers()`` are scored with these (``target >= 0`` only).
        normalize (dict, optional): ``dict(mean=..., std=...)`` on the 0-255 scale; defaults to
            the model's data preprocessor's.
        mode (str): ``'val'`` or ``'test'`` (which hooks are called).
        metrics_file (str): File name written in the work dir (rank 0).
        seed (int): Seed of random trigger positions at test time.
        fp16 (bool): Autocast feature extraction.
        pl1 (dict, optional): DECREE's PL1-norm of probed encoders
            (:func:`~bmaiu_plugin.evaluation.diagnostics.check_pl1_cfg`): ``enable``,
            ``shadow_ratio``, ``encoders`` (default: every probed encoder) and
            ``decree_invert`` settings; ``None`` or ``enable=False``: off.
        audit (dict, optional): The residual-backdoor audit of probed encoders
            (:func:`~bmaiu_plugin.evaluation.audit.check_audit_cfg`): ``enable``, ``encoders``
            (default: every probed encoder) and the inversion budget; each audited encoder's
            entry gets ``audit_ASR`` and ``audit_collapse``, the details go to ``audit``.
            ``None`` or ``enable=False``: off.
    """

    def __init__(self, runner, dataloader: Union[DataLoader, dict], evaluator,
                 probe_dataloader: Union[DataLoader, dict], triggers: Sequence[dict] = (),
                 normalize: Optional[dict] = None, mode: str = 'val',
                 metrics_file: str = 'metrics.json', seed: int = 0, fp16: bool = False,
                 pl1: Optional[dict] = None, audit: Optional[dict] = None):
        super().__init__(runner, dataloader, evaluator, fp16=fp16)
        if isinstance(probe_dataloader, dict):
            probe_dataloader = runner.build_dataloader(probe_dataloader, seed=runner.seed)
        self.probe_dataloader = probe_dataloader
        for i, t in enumerate(triggers):
            check_keys(f'probe loop triggers.{i}', t, ('name', 'trigger', 'target'),
                       'an evaluator trigger key')
            if 'name' not in t or 'trigger' not in t:
                raise ConfigValueError(f'probe loop triggers.{i} needs a name and a trigger')
            check_number(f'probe loop triggers.{i}.target', t.get('target', -1), -1,
                         integer=True)
        self.triggers = [dict(name=t['name'], trigger=build_trigger(t['trigger']),
                              target=int(t.get('target', -1))) for t in triggers]
        names = [t['name'] for t in self.triggers]
        if len(set(names)) != len(names) or set(names) & {PROBE_TRAIN, CLEAN, REFERENCE}:
            raise ConfigValueError(f'trigger names must be unique and not reserved: {names}')
        check_choice('probe loop mode', mode, ('val', 'test'))
        self._check_triggers_fit()
        self.normalize_cfg = normalize
        self.mode = mode
        self.metrics_file = metrics_file
        self.seed = seed
        self.pl1_cfg = check_pl1_cfg(pl1, 'probe loop pl1')
        self.audit_cfg = check_audit_cfg(audit, 'probe loop audit')

    @staticmethod
    def check_cfg(cfg: dict, config, path: str) -> None:
        """Pre-flight (:func:`~bmaiu_plugin.utils.validate.check_config`): the ``pl1`` and
        ``audit`` settings."""
        check_pl1_cfg(cfg.get('pl1'), f'{path}.pl1')
        check_audit_cfg(cfg.get('audit'), f'{path}.audit')

    def _check_triggers_fit(self) -> None:
        """Check every evaluator trigger against the test images' size, before any run."""
        dataset = getattr(self.dataloader, 'dataset', None)
        if not self.triggers or dataset is None:
            return
        if len(dataset) == 0:
            raise ConfigValueError('the probe loop\'s test dataloader has no images')
        # the stored image (no pipeline run, no random numbers drawn); file datasets: skipped
        info = dataset.get_data_info(0) if hasattr(dataset, 'get_data_info') else {}
        img = info.get('img') if isinstance(info, dict) else None
        if getattr(img, 'ndim', 0) == 3:
            for t in self.triggers:
                try:
                    t['trigger'].check_image_size(*img.shape[:2])
                except ConfigValueError as e:
                    raise ConfigValueError(f'evaluator trigger {clip(t["name"])}: {e}') from None

    # feature extraction ---------------------------------------------------------------
    def _features(self, encoder: nn.Module, norm: nn.Module, imgs: torch.Tensor) -> torch.Tensor:
        with torch.autocast(imgs.device.type, enabled=self.fp16):
            return pool_features(encoder(norm(imgs))).float().cpu()

    @torch.no_grad()
    def _extract(self, encoder: nn.Module, norm: nn.Module, triggers: List[dict],
                 reference: Optional[torch.Tensor]) -> int:
        device = next(encoder.parameters()).device

        def metric_in(_, samples):
            self.evaluator.process(data_samples=samples)
        n = 0
        for data_batch in self.probe_dataloader:
            imgs = batch_images(data_batch).to(device)
            labels, idx = batch_labels_and_idx(data_batch)
            feats = self._features(encoder, norm, imgs)
            metric_in(None, [dict(feat=f, label=y, set=PROBE_TRAIN, idx=i)
                             for f, y, i in zip(feats, labels, idx)])
            n += len(labels)
        gen = torch.Generator(device=device).manual_seed(self.seed * 1000 + get_rank())
        for it, data_batch in enumerate(self.dataloader):
            self.runner.call_hook(f'before_{self.mode}_iter', batch_idx=it, data_batch=data_batch)
            imgs = batch_images(data_batch).to(device)
            labels, idx = batch_labels_and_idx(data_batch)
            for name, trig, target in [(CLEAN, None, -1)] + [
                    (t['name'], t['trigger'], t['target']) for t in triggers]:
                x = imgs if trig is None else trig.to(device)(imgs, generator=gen)
                feats = self._features(encoder, norm, x)
                metric_in(None, [dict(feat=f, label=y, set=name, idx=i, target=target)
                                 for f, y, i in zip(feats, labels, idx)])
                n += len(labels)
            self.runner.call_hook(f'after_{self.mode}_iter', batch_idx=it,
                                  data_batch=data_batch, outputs=None)
        if reference is not None:  # on every rank: the gather zips equal-length parts
            feats = self._features(encoder, norm, reference.to(device))
            metric_in(None, [dict(feat=f, label=-1, set=REFERENCE, idx=i)
                             for i, f in enumerate(feats)])
        return n

    def _evaluate_encoder(self, model: nn.Module, spec: dict) -> dict:
        encoder = spec['encoder']
        norm = model_normalizer(model, self.normalize_cfg).to(next(encoder.parameters()).device)
        # the encoder's own target-less triggers are not scored (see diagnostics.trigger_shift)
        own = [t for t in spec.get('triggers') or [] if t.get('target', -1) is not None]
        with eval_mode(encoder):
            self._extract(encoder, norm, list(self.triggers) + own, spec.get('reference'))
        size = torch.tensor(sum(len(m.results) for m in self.evaluator.metrics[:1]))
        all_reduce(size)  # padded samplers give every rank the same count
        return self.evaluator.evaluate(int(size.item()))

    def _test_images(self, cache: dict):
        """All ``(images, labels)`` of the test dataloader (read once, on the CPU)."""
        if 'test' not in cache:
            cache['test'] = collect_images(self.dataloader, labels=True)
        return cache['test']

    @staticmethod
    def _chosen(cfg: dict, specs: Dict[str, dict], what: str) -> List[str]:
        names = cfg.get('encoders') or list(specs)
        missing = [n for n in names if n not in specs]
        if missing:
            raise ConfigValueError(f'probe loop {what}.encoders {missing} are not probed; the '
                                   f'model probes {list(specs)}')
        return names

    def _pl1(self, model: nn.Module, specs: Dict[str, dict], cache: dict) -> dict:
        names = self._chosen(self.pl1_cfg, specs, 'pl1')
        images, labels = self._test_images(cache)
        return pl1_report({n: specs[n]['encoder'] for n in names}, images, labels,
                          self.pl1_cfg, diagnostic_normalizer(model, self.normalize_cfg))

    def _audit(self, model: nn.Module, specs: Dict[str, dict], report: dict,
               cache: dict) -> dict:
        """Audit the chosen encoders: inversions on a seeded ``shadow_ratio`` of the probe's
        training images (labels unused), the probe trained on those images, the inverted
        triggers scored on the test split."""
        cfg = self.audit_cfg
        names = self._chosen(cfg, specs, 'audit')
        if 'probe' not in cache:
            cache['probe'] = collect_images(self.probe_dataloader, labels=True)
        probe = cache['probe']
        shadow = shadow_images(*probe, cfg['shadow_ratio'], cfg['seed'])
        test = self._test_images(cache)
        norm = diagnostic_normalizer(model, self.normalize_cfg)
        details = {}
        for name in names:
            encoder = specs[name]['encoder']
            with torch.enable_grad():
                res = audit_encoder(encoder, norm.to(next(encoder.parameters()).device), shadow,
                                    probe, test, cfg)
            details[name] = res
            report[name].update(audit_ASR=res['asr'], audit_collapse=res['collapse'])
        return dict(audit=details)

    def run(self) -> dict:
        """Evaluate everything the model exposes; write and return the metrics."""
        self.runner.call_hook(f'before_{self.mode}')
        self.runner.call_hook(f'before_{self.mode}_epoch')
        model = unwrap_model(self.runner)
        specs = default_probe_encoders(model)
        report, flat, cache = {}, {}, {}
        for name, spec in specs.items():
            metrics = self._evaluate_encoder(model, spec)
            report[name] = metrics
            flat.update({f'{name}/{k}': v for k, v in metrics.items()})
        classifiers = model.probe_classifiers() if hasattr(model, 'probe_classifiers') else {}
        if classifiers:
            images, labels = self._test_images(cache)
            norm = diagnostic_normalizer(model, self.normalize_cfg)
            for name, (encoder, head) in classifiers.items():
                metrics = classifier_metrics(encoder, head, images, labels, self.triggers, norm)
                report[name] = metrics
                flat.update({f'{name}/{k}': v for k, v in metrics.items()})
        diag = {}
        own = [t for s in specs.values() for t in s.get('triggers') or []]
        if own:
            images, _ = self._test_images(cache)
            norm = diagnostic_normalizer(model, self.normalize_cfg)
            seed = int(getattr(model, 'seed', 0))
            diag.update(implant_diagnostics(specs, images, norm, seed))
            diag.update(trigger_shift(specs, images, norm, seed))
        if self.pl1_cfg is not None:
            diag.update(self._pl1(model, specs, cache))
        if self.audit_cfg is not None:
            diag.update(self._audit(model, specs, report, cache))
        if hasattr(model, 'defense_report'):
            diag.update(model.defense_report())
        report.update(diag)
        flat.update(diag)
        summary = summarize(report)
        if is_main_process():
            self.write_metrics(summary)
        self.runner.logger.info('backdoor probe: ' + json.dumps(summary))
        self.runner.call_hook(f'after_{self.mode}_epoch', metrics=flat)
        self.runner.call_hook(f'after_{self.mode}')
        return flat

    def write_metrics(self, summary: dict) -> None:
        """Write ``summary`` into the run's folder and publish it as the work dir's latest."""
        def dump(path):
            with open(path, 'w') as f:
                json.dump(summary, f, indent=2)
        path = publish(self.runner, self.metrics_file, dump)
        print(f'[bmaiu_plugin] metrics written to {path}:\n{json.dumps(summary, indent=2)}',
              flush=True)


def _encoder_summary(m: dict) -> dict:
    names = sorted({k.split('/')[0] for k in m if '/' in k})
    out = {'BA': m['BA']}
    for key in ('ASR', 'PA', 'ASR_all', 'target'):
        vals = [m[f'{n}/{key}'] for n in names]
        if vals:
            out[key] = vals[0] if len(vals) == 1 else vals
    if names:
        out['triggers'] = names[0] if len(names) == 1 else names
    for key in ('reference_class', 'audit_ASR', 'audit_collapse'):
        if key in m:
            out[key] = m[key]
    return {k: (round(v, 4 if k == 'audit_collapse' else 2) if isinstance(v, float) else
                [round(x, 2) for x in v] if isinstance(v, list) and v and isinstance(v[0], float)
                else v) for k, v in out.items()}


def summarize(report: dict) -> dict:
    """``metrics.json`` content: flat for one encoder, one entry per encoder otherwise."""
    encs = {k: v for k, v in report.items() if isinstance(v, dict) and 'BA' in v}
    extra = {k: v for k, v in report.items() if k not in encs}
    if list(encs) == ['encoder']:
        return {**_encoder_summary(encs['encoder']), **extra}
    return {**{k: _encoder_summary(v) for k, v in encs.items()}, **extra}
