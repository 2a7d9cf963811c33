#!/usr/bin/env python
"""Throughput of the plugin's training steps and probe evaluation, against the device's peak.

For (a) the SimCLR pretraining step (and its two views alone), (b) one BMAIU step (stage 1
implant and stage 2 unlearn), (c) one BadEncoder attack step and (d) the linear-probe evaluation
(feature extraction + probe on cached features), it prints images/s on ``--device`` for up to
three paths doing the same math:

* ``device``: an mmengine-style step as the runner does it: a ``DataLoader`` over
  ``BackdoorCIFAR10`` whose pipeline only packs the uint8 image, then ``model.train_step`` (data
  preprocessor on the device: :class:`DeviceMultiViewPreprocessor` views for SimCLR, triggers
  stamped by the model for BMAIU/BadEncoder; optim wrapper; the loss read back as the runner's
  logging does).  For (d): the ``BackdoorProbeLoop`` extraction and ``BackdoorProbeMetric``.
* ``cpu``: (a) only: the same step with the views made by mmpretrain transforms in the
  ``DataLoader`` (``--workers`` processes) and ``SelfSupDataPreprocessor`` (the other tasks have
  no CPU transforms).
* ``bare``: plain PyTorch: the dataset as one uint8 tensor on the device, random batches by
  index, the same augmentation / trigger ops, modules and loss functions
  (:func:`~bmaiu_plugin.defenses.bmaiu.unlearning_losses`, BMAIU's implantation loss,
  :func:`~bmaiu_plugin.attacks.badencoder.badencoder_loss`; SimCLR's NT-Xent written out),
  ``torch.optim.SGD``; no DataLoader, no mmengine.

``img/cpu-s`` divides by the CPU time of the benchmark process (all its threads, not the
DataLoader workers): on a shared CPU it is steadier than wall time.  FLOPs per image come from
``torch.utils.flop_counter.FlopCounterMode`` on one bare step (forward + backward); TFLOP/s =
FLOPs per image x images/s.  The peak is known for H100/H200/A100 (dense bf16 with
``--amp bf16``, else TF32, which cuDNN convolutions use by default); on a CPU pass
``--peak-tflops`` or read the achieved numbers only.

Examples::

    python tools/benchmark.py --threads 1                   # CPU defaults: a minute or two
    mim run bmaiu_plugin benchmark --device cuda --width 64 --batch-size 512 --workers 8 \\
        --amp bf16 --channels-last --iters 20 --warmup 5 --out bench.json
"""
import argparse
import copy
import json
import os
import os.path as osp
import pickle
import platform
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

TASKS = ('simclr', 'views', 'bmaiu', 'badencoder', 'probe')
PATHS = ('device', 'cpu', 'bare')
#: Dense peak TFLOP/s by device-name fragment: (bf16, tf32).  First match wins.
GPU_PEAKS = (('H200', (989., 495.)), ('H100 PCIe', (756., 378.)), ('H100 NVL', (835., 418.)),
             ('H100', (989., 495.)), ('A100', (312., 156.)))
#: Configs the steps are built from (relative to configs/).
CFG_SIMCLR_DEV = 'selfsup/simclr_resnet18_1xb512-coslr-200e-devaug_cifar10.py'
CFG_SIMCLR_CPU = 'selfsup/simclr_resnet18_1xb512-coslr-500e_cifar10.py'
CFG_BMAIU = 'bmaiu_simclr_cifar10.py'
CFG_BADENCODER = 'attacks/badencoder_resnet18_simclr_1xb256-20e_cifar10.py'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:i]'")
    p.add_argument('--width', type=int, default=16,
                   help='ResNet-18 stem/base channels (64: the paper encoder)')
    p.add_argument('--batch-size', type=int, default=64, help='images per step')
    p.add_argument('--iters', type=int, default=3, help='timed steps per path')
    p.add_argument('--warmup', type=int, default=1, help='untimed steps before timing')
    p.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    p.add_argument('--amp', choices=['bf16'], default=None, help='bf16 autocast')
    p.add_argument('--channels-last', action='store_true', help='channels_last weights/inputs')
    p.add_argument('--compile', action='store_true',
                   help='torch.compile the encoder modules (backbone, neck, frozen copies)')
    p.add_argument('--tasks', nargs='+', choices=TASKS, default=list(TASKS))
    p.add_argument('--paths', nargs='+', choices=PATHS, default=list(PATHS))
    p.add_argument('--probe-train', type=int, default=2048, help='(d) probe training images')
    p.add_argument('--probe-test', type=int, default=1024,
                   help='(d) test images (each extracted clean and with one trigger)')
    p.add_argument('--peak-tflops', type=float, default=None,
                   help='peak TFLOP/s for the %%-of-peak column (auto for known GPUs)')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--data-root', default=None,
                   help='folder with cifar-10-batches-py/ ($BMAIU_DATA_ROOT, data/cifar10; '
                   'random uint8 images if absent)')
    p.add_argument('--out', default=None, help='write the results as JSON here')
    args = p.parse_args(argv)
    if args.iters < 1 or args.batch_size < 2:
        p.error('--iters must be >= 1 and --batch-size >= 2')
    return args


# ---------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], iters: int, warmup: int,
               device: torch.device):
    """``(wall s, CPU s of this process)`` of ``iters`` calls of ``step`` after ``warmup``
    untimed ones."""
    for _ in range(warmup):
        step()
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call (matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


def peak_tflops(device: torch.device, amp: Optional[str], override: Optional[float]):
    """``(peak TFLOP/s or None, description)``."""
    if override:
        return override, f'{override:g} TFLOP/s (--peak-tflops)'
    if device.type != 'cuda':
        return None, 'unknown for a CPU (pass --peak-tflops)'
    name = torch.cuda.get_device_name(device)
    for frag, (bf16, tf32) in GPU_PEAKS:
        if frag in name:
            if amp == 'bf16':
                return bf16, f'{name}: {bf16:g} TFLOP/s dense bf16'
            return tf32, f'{name}: {tf32:g} TFLOP/s dense TF32 (fp32 convs use TF32)'
    return None, f'unknown for {name} (pass --peak-tflops)'


def config_dir() -> str:
    """``configs/`` next to this script's folder (repo or installed ``.mim``)."""
    here = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs')
    if osp.isdir(here):
        return here
    import bmaiu_plugin
    return osp.join(osp.dirname(bmaiu_plugin.__file__), '.mim', 'configs')


def load_cfg(rel: str):
    from mmengine.config import Config
    return Config.fromfile(osp.join(config_dir(), rel))


def set_width(model_cfg: dict, width: int) -> None:
    """CIFAR ResNet-18 at ``width`` stem/base channels; SSL neck sized as the w16 configs."""
    model_cfg['backbone'].update(stem_channels=width, base_channels=width)
    if 'neck' in model_cfg:
        model_cfg['neck'].update(in_channels=8 * width, hid_channels=8 * width,
                                 out_channels=128 if width >= 64 else 64)


def find_data_root(arg: Optional[str]) -> Optional[str]:
    ok = lambda r: r and osp.isfile(osp.join(r, 'cifar-10-batches-py', 'test_batch'))  # noqa
    repo = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data', 'cifar10')
    for cand in (arg, os.environ.get('BMAIU_DATA_ROOT'), 'data/cifar10', repo):
        if ok(cand):
            return osp.abspath(cand)
    if arg:
        raise SystemExit(f'error: no cifar-10-batches-py/ in {arg}')
    return None


def write_synthetic_cifar(root: str, per_batch: int = 1024, seed: int = 0) -> str:
    """A CIFAR-10-format folder of random uint8 images (5 x ``per_batch`` train, 1 test)."""
    folder = osp.join(root, 'cifar-10-batches-py')
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']
    for name in names:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(osp.join(folder, name), 'wb') as f:
            pickle.dump({'data': data, 'labels': labels}, f, protocol=2)
    with open(osp.join(folder, 'batches.meta'), 'wb') as f:
        pickle.dump({'label_names': [f'c{i}' for i in range(10)]}, f, protocol=2)
    return root


class Bench:
    """Shared state: arguments, device, data, perf switches, result rows."""

    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.B = args.batch_size
        self.amp = torch.bfloat16 if args.amp == 'bf16' else None
        root = find_data_root(args.data_root)
        self.synthetic = root is None
        if root is None:
            root = write_synthetic_cifar(tempfile.mkdtemp(prefix='bmaiu_bench_'))
        self.root = root
        self.rows: List[Dict] = []
        self._datasets = {}
        self.peak, self.peak_desc = peak_tflops(self.device, args.amp, args.peak_tflops)

    # data ------------------------------------------------------------------------------
    def dataset(self, pipeline: list, split: str = 'train', indices=None):
        """The split's first ``indices`` images (all of them when it has fewer)."""
        from mmpretrain.registry import DATASETS
        key = (json.dumps(pipeline, sort_keys=True, default=str), split, indices)
        if key not in self._datasets:
            ds = DATASETS.build(dict(type='BackdoorCIFAR10', data_root=self.root,
                                     check_md5=False, split=split, pipeline=pipeline))
            self._datasets[key] = ds if indices is None or indices >= len(ds) else \
                ds.get_subset(indices)
        return self._datasets[key]

    def loader(self, dataset, shuffle: bool = True, drop_last: bool = True):
        """An endless iterator of ``default_collate`` batches."""
        from mmengine.dataset import default_collate
        from torch.utils.data import DataLoader
        w = self.args.workers
        dl = DataLoader(dataset, batch_size=self.B, shuffle=shuffle, num_workers=w,
                        collate_fn=default_collate, drop_last=drop_last,
                        persistent_workers=w > 0, pin_memory=self.device.type == 'cuda')

        def forever():
            while True:
                yield from dl
        return forever()

    def arrays(self, dataset):
        """``(N, 3, H, W)`` uint8 images and labels of a dataset, on the device."""
        from bmaiu_plugin.datasets.reference import dataset_arrays
        x, y = dataset_arrays(dataset)
        return x.to(self.device), y.to(self.device)

    # perf switches ---------------------------------------------------------------------
    def optim_wrapper(self, model, optimizer_cfg: dict):
        from mmengine.optim import build_optim_wrapper
        kind = 'AutocastOptimWrapper' if self.amp is not None else 'OptimWrapper'
        cfg = dict(type=kind, optimizer=copy.deepcopy(dict(optimizer_cfg)))
        if self.amp is not None:
            cfg['dtype'] = 'bfloat16'
        return build_optim_wrapper(model, cfg)

    def prepare(self, model):
        """Model on the device, channels-last if asked (as ``ChannelsLastHook``)."""
        from bmaiu_plugin.engine.perf import to_channels_last
        model.to(self.device)
        if self.args.channels_last:
            to_channels_last(model)
        return model

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                              enabled=self.amp is not None)

    def compile(self, model, names) -> None:
        """``--compile``: compile the named submodules in place (``nn.Module.compile``, as
        ``CompileModulesHook``; state-dict keys unchanged)."""
        if self.args.compile:
            from bmaiu_plugin.engine.perf import compile_modules
            compile_modules(model, names)

    def cl(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.args.channels_last \
            else x

    # results ---------------------------------------------------------------------------
    def run(self, task: str, path: str, step: Callable, images_per_step: int,
            flops_per_image: float, steps: Optional[int] = None, warmup: Optional[int] = None,
            note: str = '') -> None:
        iters = self.args.iters if steps is None else steps
        warm = self.args.warmup if warmup is None else warmup
        secs, cpu_secs = time_steps(step, iters, warm, self.device)
        ips = iters * images_per_step / secs
        tflops = flops_per_image * ips / 1e12
        self.rows.append(dict(
            task=task, path=path, images_per_s=ips, ms_per_step=1e3 * secs / iters,
            images_per_cpu_s=iters * images_per_step / max(cpu_secs, 1e-9),
            images_per_step=images_per_step, gflop_per_image=flops_per_image / 1e9,
            tflops=tflops, pct_peak=100. * tflops / self.peak if self.peak else None,
            note=note))
        print(f'  {task:<14} {path:<7} {ips:10.1f} img/s  {1e3 * secs / iters:9.1f} ms/step',
              flush=True)


def log_loss(losses: dict) -> float:
    """Read the losses back as the runner's logging does (one host sync per step)."""
    return float(sum(float(v.detach()) if torch.is_tensor(v) else float(v)
                     for k, v in losses.items() if 'loss' in k))


# ------------------------------------------------------------------------ (a) SimCLR
def bench_simclr(b: Bench) -> None:
    from mmpretrain.registry import MODELS

    from bmaiu_plugin.augment import build_view_pipeline, resolve_views
    dev_cfg, cpu_cfg = load_cfg(CFG_SIMCLR_DEV), load_cfg(CFG_SIMCLR_CPU)
    model_cfg = copy.deepcopy(dev_cfg.model.to_dict())
    set_width(model_cfg, b.args.width)
    torch.manual_seed(0)
    base = MODELS.build(dict(model_cfg, data_preprocessor=dev_cfg.data_preprocessor.to_dict()))
    opt_cfg = dev_cfg.optim_wrapper.optimizer.to_dict()
    temp = float(model_cfg['head']['temperature'])

    # bare step (also the FLOP count)
    train = b.dataset([dict(type='PackInputs')])
    x_all, _ = b.arrays(train)
    bare = b.prepare(copy.deepcopy(base))
    bare.train()
    counts, pipes = resolve_views(dev_cfg.data_preprocessor.transforms,
                                  dev_cfg.data_preprocessor.get('num_views'))
    pipeline = build_view_pipeline(pipes[0])
    mean = bare.data_preprocessor.mean.view(1, -1, 1, 1)
    std = bare.data_preprocessor.std.view(1, -1, 1, 1)
    opt = torch.optim.SGD(bare.parameters(), **{k: v for k, v in opt_cfg.items() if k != 'type'})
    gen = torch.Generator(device=b.device).manual_seed(0)
    B = b.B
    encode = lambda v: bare.neck(bare.backbone(v))[0]  # noqa: E731
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(b.device)

    def bare_step():
        idx = torch.randint(0, len(x_all), (B, ), device=b.device, generator=gen)
        views = pipeline(x_all[idx].float().repeat(counts[0], 1, 1, 1), gen)
        views = b.cl((views - mean) / std)
        with b.autocast():
            z = encode(views)
        z = F.normalize(z.float(), dim=1)
        sim = (z @ z.t()).fill_diagonal_(float('-inf')) / temp
        loss = F.cross_entropy(sim, target)  # NT-Xent over the 2B - 1 others
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    flops = count_flops(bare_step) / B
    b.compile(bare, ('backbone', 'neck'))
    paths = b.args.paths if 'simclr' in b.args.tasks else ()
    if 'device' in paths:
        model = b.prepare(copy.deepcopy(base))
        b.compile(model, ('backbone', 'neck'))
        model.train()
        ow = b.optim_wrapper(model, opt_cfg)
        it = b.loader(train)
        b.run('simclr', 'device', lambda: log_loss(model.train_step(next(it), ow)), B, flops)
    if 'cpu' in paths:
        cpu_cfg_model = dict(model_cfg, data_preprocessor=cpu_cfg.data_preprocessor.to_dict())
        torch.manual_seed(0)
        model = b.prepare(MODELS.build(cpu_cfg_model))
        model.load_state_dict(base.state_dict())
        b.compile(model, ('backbone', 'neck'))
        model.train()
        ow = b.optim_wrapper(model, opt_cfg)
        it = b.loader(b.dataset(cpu_cfg.train_dataloader.dataset.pipeline.copy()))
        b.run('simclr', 'cpu', lambda: log_loss(model.train_step(next(it), ow)), B, flops,
              note=f'{b.args.workers} workers')
    if 'bare' in paths:
        b.run('simclr', 'bare', bare_step, B, flops)
    if 'views' in b.args.tasks:
        bench_views(b, bare, pipeline, counts[0], x_all, train, cpu_cfg)


def bench_views(b: Bench, model, pipeline, n_views: int, x_all, train, cpu_cfg) -> None:
    """The two SimCLR views alone (no network): what each path costs per image."""
    from mmpretrain.registry import MODELS
    B, paths = b.B, b.args.paths
    if 'device' in paths:
        dp = copy.deepcopy(model.data_preprocessor)
        it = b.loader(train)
        b.run('simclr-views', 'device', lambda: dp(next(it), True)['inputs'][0], B, 0.,
              note='loader + DeviceMultiViewPreprocessor')
    if 'cpu' in paths:
        dp = MODELS.build(cpu_cfg.data_preprocessor.to_dict()).to(b.device)
        it = b.loader(b.dataset(cpu_cfg.train_dataloader.dataset.pipeline.copy()))
        b.run('simclr-views', 'cpu', lambda: dp(next(it), True)['inputs'][0], B, 0.,
              note=f'loader with mmpretrain transforms, {b.args.workers} workers')
    if 'bare' in paths:
        gen = torch.Generator(device=b.device).manual_seed(0)

        def views():
            idx = torch.randint(0, len(x_all), (B, ), device=b.device, generator=gen)
            return pipeline(x_all[idx].float().repeat(n_views, 1, 1, 1), gen)
        b.run('simclr-views', 'bare', views, B, 0., note='augment ops on a resident tensor')


# ------------------------------------------------------------------------- (b) BMAIU
def _finetune_model(b: Bench, rel: str, data):
    from mmpretrain.registry import MODELS
    cfg = load_cfg(rel)
    model_cfg = copy.deepcopy(cfg.model.to_dict())
    model_cfg['encoder_checkpoint'] = None
    set_width(model_cfg, b.args.width)
    torch.manual_seed(0)
    model = b.prepare(MODELS.build(model_cfg))
    model.prepare(data)  # what PrepareModelHook does before training
    return model, cfg.optim_wrapper.optimizer.to_dict()


def bench_bmaiu(b: Bench) -> None:
    from bmaiu_plugin.defenses.bmaiu import unlearning_losses
    from bmaiu_plugin.models.features import pool_features
    from bmaiu_plugin.models.finetune_base import sample_rows
    data = b.dataset([dict(type='PackInputs')], indices=5000)  # the config's 10 % share
    base, opt_cfg = _finetune_model(b, CFG_BMAIU, data)
    x_all, _ = b.arrays(data)
    B = b.B
    for stage in (1, 2):
        name = f'bmaiu-{"implant" if stage == 1 else "unlearn"}'
        bare = copy.deepcopy(base)
        if stage == 2:
            bare.start_unlearning()
        bare.train()
        opt = torch.optim.SGD([p for p in bare.parameters() if p.requires_grad],
                              **{k: v for k, v in opt_cfg.items() if k != 'type'})
        gen = torch.Generator(device=b.device).manual_seed(0)
        ref_all = bare.reference.to(b.device)

        def feats(encoder, x, bare=bare):
            return pool_features(encoder(b.cl(bare.normalizer(x))))

        def bare_step(stage=stage, bare=bare, opt=opt, gen=gen, ref_all=ref_all, feats=feats):
            x = x_all[torch.randint(0, len(x_all), (B, ), device=b.device, generator=gen)]
            ref = sample_rows(ref_all, B, gen)
            xe = bare.custom_trigger(x, generator=gen)
            with b.autocast():
                if stage == 1:
                    losses = bare.implant_losses(x, xe, ref)
                else:
                    losses = unlearning_losses(feats, bare.backbone, bare.teacher, x, xe, ref,
                                               bare.u0, bare.u2, bare.u3)
                loss = sum(v for k, v in losses.items() if k.startswith('loss'))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        flops = count_flops(bare_step) / B
        b.compile(bare, ('backbone', 'suspect', 'teacher'))
        if 'device' in b.args.paths:
            model = copy.deepcopy(base)
            if stage == 2:
                model.start_unlearning()
            b.compile(model, ('backbone', 'suspect', 'teacher'))
            model.train()
            ow = b.optim_wrapper(model, opt_cfg)
            it = b.loader(data)
            b.run(name, 'device',
                  lambda m=model, it=it, ow=ow: log_loss(m.train_step(next(it), ow)), B, flops)
        if 'bare' in b.args.paths:
            b.run(name, 'bare', bare_step, B, flops)


# -------------------------------------------------------------------- (c) BadEncoder
def bench_badencoder(b: Bench) -> None:
    from bmaiu_plugin.attacks.badencoder import badencoder_loss
    from bmaiu_plugin.models.features import pool_features
    data = b.dataset([dict(type='PackInputs')], indices=5000)  # the config's 10 % shadow set
    base, opt_cfg = _finetune_model(b, CFG_BADENCODER, data)
    x_all, _ = b.arrays(data)
    B = b.B
    bare = copy.deepcopy(base)
    bare.train()
    opt = torch.optim.SGD([p for p in bare.parameters() if p.requires_grad],
                          **{k: v for k, v in opt_cfg.items() if k != 'type'})
    gen = torch.Generator(device=b.device).manual_seed(0)
    refs = [r.to(b.device) for r in bare.references]

    def feats(key, x):
        return pool_features(getattr(bare, key)(b.cl(bare.normalizer(x))))

    def bare_step():
        x = x_all[torch.randint(0, len(x_all), (B, ), device=b.device, generator=gen)]
        with b.autocast():
            f = feats('backbone', x)
            with torch.no_grad():
                f_t = feats('teacher', x)
            trig_f, anchors, refs_s, refs_t = [], [], [], []
            for trig, ref in zip(bare.triggers, refs):
                trig_f.append(feats('backbone', trig(x, generator=gen)))
                flip = torch.rand(len(ref), generator=gen, device=b.device) < 0.5
                refs_s.append(feats('backbone', torch.where(flip[:, None, None, None],
                                                            ref.flip(-1), ref)))
                with torch.no_grad():
                    refs_t.append(feats('teacher', ref))
                anchors.append((refs_t[-1] if bare.frozen_target else refs_s[-1]).mean(
                    0, keepdim=True))
            loss = sum(badencoder_loss(trig_f, anchors, refs_s, refs_t, f, f_t, bare.lambda1,
                                       bare.lambda2).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    flops = count_flops(bare_step) / B
    b.compile(bare, ('backbone', 'teacher'))
    if 'device' in b.args.paths:
        model = copy.deepcopy(base)
        b.compile(model, ('backbone', 'teacher'))
        model.train()
        ow = b.optim_wrapper(model, opt_cfg)
        it = b.loader(data)
        b.run('badencoder', 'device', lambda: log_loss(model.train_step(next(it), ow)), B, flops)
    if 'bare' in b.args.paths:
        b.run('badencoder', 'bare', bare_step, B, flops)


# ---------------------------------------------------------------------- (d) probe
def bench_probe(b: Bench) -> None:
    """Features of ``probe_train`` + 2 x ``probe_test`` images and a 10-epoch probe."""
    from mmpretrain.registry import METRICS, MODELS

    from bmaiu_plugin.utils.data import batch_images, batch_labels_and_idx
    from bmaiu_plugin.evaluation.metric import CLEAN, PROBE_TRAIN
    from bmaiu_plugin.evaluation.presets import expand_attacks
    from bmaiu_plugin.evaluation.probe import (backdoor_metrics, normalize_features,
                                               train_linear_probe)
    from bmaiu_plugin.models.features import PixelNormalizer, pool_features
    from bmaiu_plugin.triggers import build_trigger
    cfg = load_cfg(CFG_SIMCLR_DEV)
    bb_cfg = copy.deepcopy(cfg.model.backbone.to_dict())
    bb_cfg.update(stem_channels=b.args.width, base_channels=b.args.width)
    torch.manual_seed(0)
    encoder = b.prepare(MODELS.build(bb_cfg))
    encoder.eval()
    dp = cfg.data_preprocessor
    norm = PixelNormalizer(list(dp.mean), list(dp.std)).to(b.device)
    attack = expand_attacks('badencoder')[0]
    trig = build_trigger(attack['trigger']).to(b.device)
    ev = cfg.val_evaluator.to_dict()
    n_tr, n_te = b.args.probe_train, b.args.probe_test
    tr_set = b.dataset([dict(type='PackInputs')], 'train', indices=n_tr)
    te_set = b.dataset([dict(type='PackInputs')], 'test', indices=n_te)
    batch = 512  # the probe dataloaders' batch

    def feats(x):
        with b.autocast():
            return pool_features(encoder(b.cl(norm(x)))).float()

    n_images = n_tr + 2 * n_te
    per_img = count_flops(lambda: feats(torch.zeros(8, 3, 32, 32, device=b.device))) / 8
    probe_flops = count_flops(lambda: train_linear_probe(
        torch.randn(n_tr, feats(torch.zeros(1, 3, 32, 32, device=b.device)).shape[1]),
        torch.randint(0, 10, (n_tr, )), 10, epochs=1, batch_size=ev['batch_size'],
        lr=ev['lr'])) * ev['epochs']
    flops = (per_img * n_images + probe_flops) / n_images
    if b.args.compile:
        encoder.compile()

    if 'device' in b.args.paths:
        from mmengine.dataset import default_collate
        from torch.utils.data import DataLoader
        mk = lambda ds: DataLoader(ds, batch_size=batch, shuffle=False,  # noqa: E731
                                   num_workers=b.args.workers, collate_fn=default_collate,
                                   pin_memory=b.device.type == 'cuda')
        tr_dl, te_dl = mk(tr_set), mk(te_set)
        metric_cfg = dict(ev)

        @torch.no_grad()
        def device_eval():
            metric = METRICS.build(metric_cfg)
            for data in tr_dl:
                labels, idx = batch_labels_and_idx(data)
                f = feats(batch_images(data).to(b.device)).cpu()
                metric.process(None, [dict(feat=v, label=y, set=PROBE_TRAIN, idx=i)
                                      for v, y, i in zip(f, labels, idx)])
            gen = torch.Generator(device=b.device).manual_seed(0)
            for data in te_dl:
                imgs = batch_images(data).to(b.device)
                labels, idx = batch_labels_and_idx(data)
                for name, x in ((CLEAN, imgs), ('badencoder', trig(imgs, generator=gen))):
                    f = feats(x).cpu()
                    metric.process(None, [dict(feat=v, label=y, set=name, idx=i,
                                               target=attack['target'])
                                          for v, y, i in zip(f, labels, idx)])
            with torch.enable_grad():
                return metric.compute_metrics(metric.results)

        b.run('probe', 'device', device_eval, n_images, flops, steps=1, warmup=0,
              note=f'{n_tr} train + 2x{n_te} test images, probe on CPU features')
    if 'bare' in b.args.paths:
        x_tr, y_tr = b.arrays(tr_set)
        x_te, y_te = b.arrays(te_set)

        def bare_eval():
            with torch.no_grad():
                f_tr = torch.cat([feats(x_tr[i:i + batch]) for i in range(0, n_tr, batch)])
                gen = torch.Generator(device=b.device).manual_seed(0)
                f_te = torch.cat([feats(x_te[i:i + batch]) for i in range(0, n_te, batch)])
                f_tg = torch.cat([feats(trig(x_te[i:i + batch], generator=gen))
                                  for i in range(0, n_te, batch)])
            f_tr, stats = normalize_features(f_tr, 'l2')
            head = train_linear_probe(f_tr, y_tr, 10, epochs=ev['epochs'],
                                      batch_size=ev['batch_size'], lr=ev['lr'])
            nf = lambda f: normalize_features(f, 'l2', stats)[0]  # noqa: E731
            return backdoor_metrics(head, nf(f_te), y_te, nf(f_tg), y_te, attack['target'])

        b.run('probe', 'bare', bare_eval, n_images, flops, steps=1, warmup=0,
              note='probe on device features')


# ------------------------------------------------------------------------------ main
def print_table(b: Bench) -> None:
    rows = b.rows
    bare = {r['task']: r['images_per_s'] for r in rows if r['path'] == 'bare'}
    dev = {r['task']: r['images_per_s'] for r in rows if r['path'] == 'device'}
    hdr = (f'{"task":<16}{"path":<8}{"img/s":>10}{"img/cpu-s":>11}{"ms/step":>10}'
           f'{"GFLOP/img":>11}{"TFLOP/s":>10}{"% peak":>8}{"x bare":>8}{"x dev":>7}')
    print(hdr)
    print('-' * len(hdr))
    for r in rows:
        pct = f'{r["pct_peak"]:.2f}' if r['pct_peak'] and r['tflops'] else '-'
        gf = f'{r["gflop_per_image"]:.3f}' if r['tflops'] else '-'
        tf = f'{r["tflops"]:.4f}' if r['tflops'] else '-'
        xb = r['images_per_s'] / bare[r['task']] if r['task'] in bare else None
        xd = r['images_per_s'] / dev[r['task']] if r['task'] in dev else None
        print(f'{r["task"]:<16}{r["path"]:<8}{r["images_per_s"]:>10.1f}'
              f'{r["images_per_cpu_s"]:>11.1f}{r["ms_per_step"]:>10.1f}'
              f'{gf:>11}{tf:>10}{pct:>8}'
              f'{"" if xb is None else f"{xb:.2f}":>8}{"" if xd is None else f"{xd:.2f}":>7}')


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import bmaiu_plugin  # noqa: F401  (registration, compat patches)
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    b = Bench(args)
    dev_name = torch.cuda.get_device_name(b.device) if b.device.type == 'cuda' else \
        (platform.processor() or platform.machine())
    meta = dict(torch=torch.__version__, device=str(b.device), device_name=dev_name,
                threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                data='synthetic uint8' if b.synthetic else b.root, width=args.width,
                batch_size=args.batch_size, iters=args.iters, warmup=args.warmup,
                workers=args.workers, amp=args.amp, channels_last=args.channels_last,
                compile=args.compile, peak=b.peak_desc)
    print('benchmark: ' + ', '.join(f'{k}={v}' for k, v in meta.items()), flush=True)
    t0 = time.perf_counter()
    for task, fn in (('simclr', bench_simclr), ('bmaiu', bench_bmaiu),
                     ('badencoder', bench_badencoder), ('probe', bench_probe)):
        if task in args.tasks or (task == 'simclr' and 'views' in args.tasks):
            fn(b)
    meta['total_s'] = round(time.perf_counter() - t0, 1)
    print()
    print_table(b)
    print(f'peak: {b.peak_desc}; total {meta["total_s"]} s')
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(dict(meta=meta, rows=b.rows), f, indent=2)
        print(f'written {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
