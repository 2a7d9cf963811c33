#!/usr/bin/env python
"""The plugin's SimCLR step and linear-probe evaluation against the same work written with
lightly (https://github.com/lightly-ai/lightly), the SSL library users would otherwise pick.

Same backbone and projection neck (the modules of the plugin's SimCLR config, copied), batch,
image size, optimizer, temperature, data and torch threads.  Each side is timed the way its
users run it:

* SimCLR, ``plugin``: ``model.train_step`` of the quickstart's SimCLR config on a ``DataLoader``
  that only packs uint8 images; the two views are made on the device in one batch
  (``DeviceMultiViewPreprocessor``); channels-last, as the quickstart runs it (``--no-fast``:
  without; ``--bf16``: bf16 autocast too, where the device computes it natively).
* SimCLR, ``lightly``: a ``torchvision``-style dataset of PIL images, lightly's
  ``SimCLRTransform`` (per-sample PIL transforms with the same recipe: crop scale 0.2-1, flip,
  jitter 0.4/0.4/0.4/0.1 at p 0.8, grayscale 0.2, no blur), its ``NTXentLoss``, plain
  ``torch.optim.SGD``, fp32 as its examples do (``--peer-fast`` adds the plugin's switches to
  it, to separate the data path from the arithmetic).
* probe, ``plugin``: ``BackdoorProbeLoop``'s work: features of the probe's training images and
  of the clean and triggered test images, once each, then the linear probe on cached features.
* probe, ``lightly``: ``lightly.utils.benchmarking.LinearClassifier`` on the frozen encoder with
  a PyTorch Lightning ``Trainer`` (it encodes the training images in every epoch), then its
  test pass on the clean test images.

Prints images/s per side and the plugin / lightly ratio.  Without lightly installed the peer
rows are skipped (``pip install lightly``).  Example::

    python benchmarks/bench_peer.py --threads 2 --workers 0 2 --out peer.json
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))
from benchmark import (find_data_root, load_cfg, log_loss, time_steps,  # noqa: E402
                       write_synthetic_cifar)

#: The quickstart's SimCLR config (device views).
CFG = 'selfsup/simclr_resnet18-w16_1xb256-coslr-8e-devaug_cifar10.py'


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads (both sides)')
    p.add_argument('--batch-size', type=int, default=256, help='SimCLR images per step')
    p.add_argument('--iters', type=int, default=5, help='timed SimCLR steps per side')
    p.add_argument('--warmup', type=int, default=2, help='untimed SimCLR steps first')
    p.add_argument('--workers', type=int, nargs='+', default=[0, 2],
                   help='DataLoader worker counts to time (each side, each count)')
    p.add_argument('--no-fast', dest='fast', action='store_false',
                   help='plugin without channels-last')
    p.add_argument('--bf16', action='store_true',
                   help='bf16 autocast (where native) on the plugin and the --peer-fast peer')
    p.add_argument('--peer-fast', action='store_true',
                   help='also time lightly with the plugin\'s switches (channels-last, --bf16)')
    p.add_argument('--probe-train', type=int, default=5000, help='probe training images')
    p.add_argument('--probe-test', type=int, default=2000, help='probe test images')
    p.add_argument('--probe-epochs', type=int, default=None,
                   help='probe epochs (default: the config\'s evaluator)')
    p.add_argument('--skip', nargs='+', choices=['simclr', 'probe'], default=[])
    p.add_argument('--data-root', default=None, help='folder with cifar-10-batches-py/')
    p.add_argument('--out', default=None, help='write the results as JSON here')
    args = p.parse_args(argv)
    if args.iters < 1 or args.batch_size < 2 or min(args.workers) < 0:
        p.error('--iters >= 1, --batch-size >= 2 and --workers >= 0, please')
    return args


def have_lightly() -> bool:
    try:
        import lightly  # noqa: F401
    except ImportError:
        return False
    return True


class Data:
    """CIFAR-10 images (uint8, N x 3 x 32 x 32) and labels, read by the plugin's dataset."""

    def __init__(self, root: str):
        from mmpretrain.registry import DATASETS

        from bmaiu_plugin.datasets.reference import dataset_arrays
        self.root = root
        self.sets = {}
        for split in ('train', 'test'):
            ds = DATASETS.build(dict(type='BackdoorCIFAR10', data_root=root, check_md5=False,
                                     split=split, pipeline=[dict(type='PackInputs')]))
            self.sets[split] = ds
            setattr(self, split, dataset_arrays(ds))

    def plugin_set(self, split: str, n=None):
        ds = self.sets[split]
        return ds if n is None or n >= len(ds) else ds.get_subset(n)


class PILSet(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10`` hands a transform: a PIL image and its label."""

    def __init__(self, images, labels, transform, n=None):
        n = len(images) if n is None else min(n, len(images))
        self.images = images[:n].permute(0, 2, 3, 1).numpy()
        self.labels = labels[:n].tolist()
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def forever(loader):
    while True:
        yield from loader


def build_plugin(fast: bool, bf16: bool = False):
    """The SimCLR model and optim wrapper of ``CFG`` (``fast``: channels-last, as the
    quickstart; ``bf16``: bf16 autocast where native)."""
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS

    from bmaiu_plugin.apis import apply_speed_switches
    from bmaiu_plugin.engine.perf import to_channels_last
    cfg = load_cfg(CFG)
    cfg.channels_last, cfg.bf16_autocast = fast, bf16
    apply_speed_switches(cfg)
    torch.manual_seed(0)
    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    if fast:
        to_channels_last(model)
    model.train()
    return cfg, model, build_optim_wrapper(model, cfg.optim_wrapper)


def bench_simclr(args, data: Data, rows: list) -> None:
    from mmengine.dataset import default_collate
    from torch.utils.data import DataLoader
    B = args.batch_size
    cfg, model, ow = build_plugin(args.fast, args.bf16)
    opt_cfg = {k: v for k, v in cfg.optim_wrapper.optimizer.items() if k != 'type'}
    temp = float(cfg.model.head.temperature)
    base_modules = copy.deepcopy(torch.nn.ModuleDict(dict(backbone=model.backbone,
                                                          neck=model.neck)))
    train = data.plugin_set('train')

    def add(side, workers, secs, note):
        ips = args.iters * B / secs
        rows.append(dict(task='simclr', side=side, workers=workers, images_per_s=ips,
                         ms_per_step=1e3 * secs / args.iters, note=note))
        print(f'  simclr  {side:<16} workers={workers}  {ips:8.1f} img/s', flush=True)

    for w in args.workers:
        dl = DataLoader(train, batch_size=B, shuffle=True, num_workers=w, drop_last=True,
                        collate_fn=default_collate, persistent_workers=w > 0)
        it = forever(dl)
        secs, _ = time_steps(lambda it=it: log_loss(model.train_step(next(it), ow)), args.iters,
                             args.warmup, torch.device('cpu'))
        bf16 = bool(getattr(ow, 'autocast', False))
        add('plugin', w, secs, f'device views; channels-last {"on" if args.fast else "off"}; '
            f'bf16 autocast {"on" if bf16 else "off"}')
    if not have_lightly():
        print('  simclr  lightly: skipped (pip install lightly)', flush=True)
        return
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform
    mean = [v / 255. for v in cfg.data_preprocessor.mean]
    std = [v / 255. for v in cfg.data_preprocessor.std]
    transform = SimCLRTransform(input_size=32, cj_prob=0.8, cj_strength=0.5, min_scale=0.2,
                                random_gray_scale=0.2, gaussian_blur=0.0,
                                normalize=dict(mean=mean, std=std))
    peer_set = PILSet(*data.train, transform)
    for fast in ([False, True] if args.peer_fast else [False]):
        torch.manual_seed(0)
        peer = copy.deepcopy(base_modules).train()
        if fast:
            peer.to(memory_format=torch.channels_last)
        criterion = NTXentLoss(temperature=temp)
        opt = torch.optim.SGD(peer.parameters(), **opt_cfg)
        for w in args.workers:
            dl = DataLoader(peer_set, batch_size=B, shuffle=True, num_workers=w, drop_last=True,
                            persistent_workers=w > 0)
            it = forever(dl)

            def step(it=it):
                (x0, x1), _ = next(it)
                if fast:
                    x0, x1 = (x.contiguous(memory_format=torch.channels_last) for x in (x0, x1))
                with torch.autocast('cpu', dtype=torch.bfloat16, enabled=fast and bf16):
                    z0 = peer['neck'](peer['backbone'](x0))[0]
                    z1 = peer['neck'](peer['backbone'](x1))[0]
                loss = criterion(z0.float(), z1.float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return float(loss.detach())
            secs, _ = time_steps(step, args.iters, args.warmup, torch.device('cpu'))
            add('lightly' + ('+fast' if fast else ''), w, secs,
                'SimCLRTransform (PIL, per sample) + NTXentLoss, fp32'
                + (', channels-last' if fast else '') + (', bf16 autocast' if fast and bf16
                                                         else ''))


def bench_probe(args, data: Data, rows: list) -> None:
    """The probe evaluation of one encoder: plugin (cached features) vs lightly."""
    from mmengine.dataset import default_collate
    from mmpretrain.registry import METRICS
    from torch.utils.data import DataLoader

    from bmaiu_plugin.evaluation.metric import CLEAN, PROBE_TRAIN
    from bmaiu_plugin.evaluation.presets import expand_attacks
    from bmaiu_plugin.models.features import PixelNormalizer, pool_features
    from bmaiu_plugin.triggers import build_trigger
    from bmaiu_plugin.utils.data import batch_images, batch_labels_and_idx
    cfg, model, _ = build_plugin(False)  # evaluation: float32, as the probe loop
    encoder = model.backbone
    encoder.eval()  # mmpretrain's ResNet.train() returns None: not chained
    ev = cfg.val_evaluator.to_dict()
    if args.probe_epochs:
        ev['epochs'] = args.probe_epochs
    dp = cfg.data_preprocessor
    norm = PixelNormalizer(list(dp.mean), list(dp.std))
    attack = expand_attacks('badencoder')[0]
    trig = build_trigger(attack['trigger'])
    n_tr, n_te, batch = args.probe_train, args.probe_test, 512

    def feats(x):
        return pool_features(encoder(norm(x))).float()

    mk = lambda ds: DataLoader(ds, batch_size=batch, shuffle=False,  # noqa: E731
                               collate_fn=default_collate)
    tr_dl, te_dl = mk(data.plugin_set('train', n_tr)), mk(data.plugin_set('test', n_te))

    @torch.no_grad()
    def plugin_eval():
        metric = METRICS.build(dict(ev))
        for d in tr_dl:
            labels, idx = batch_labels_and_idx(d)
            metric.process(None, [dict(feat=v, label=y, set=PROBE_TRAIN, idx=i) for v, y, i
                                  in zip(feats(batch_images(d)), labels, idx)])
        gen = torch.Generator().manual_seed(0)
        for d in te_dl:
            imgs = batch_images(d)
            labels, idx = batch_labels_and_idx(d)
            for name, x in ((CLEAN, imgs), ('badencoder', trig(imgs, generator=gen))):
                metric.process(None, [dict(feat=v, label=y, set=name, idx=i,
                                           target=attack['target'])
                                      for v, y, i in zip(feats(x), labels, idx)])
        with torch.enable_grad():
            return metric.compute_metrics(metric.results)

    t0 = time.perf_counter()
    res = plugin_eval()
    secs = time.perf_counter() - t0
    n_img = n_tr + 2 * n_te
    rows.append(dict(task='probe', side='plugin', workers=0, images_per_s=n_img / secs,
                     seconds=secs, note=f'{n_tr} train + {n_te} clean + {n_te} triggered test '
                     f'images encoded once, {ev["epochs"]} probe epochs on cached features; '
                     f'BA {res.get("BA", float("nan")):.2f}'))
    print(f'  probe   plugin            {secs:8.1f} s  ({n_img / secs:.1f} img/s)', flush=True)
    if not have_lightly():
        print('  probe   lightly: skipped (pip install lightly)', flush=True)
        return
    import logging
    import warnings

    import pytorch_lightning as pl
    warnings.filterwarnings('ignore', module='pytorch_lightning')
    for name in ('pytorch_lightning', 'lightning.pytorch', 'lightning_fabric'):
        logging.getLogger(name).setLevel(logging.ERROR)
    from lightly.utils.benchmarking import LinearClassifier
    from torchvision import transforms as T

    class Encoder(torch.nn.Module):
        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone

        def forward(self, x):
            return pool_features(self.backbone(x))

    to_tensor = T.Compose([T.ToTensor(), T.Normalize([v / 255. for v in dp.mean],
                                                     [v / 255. for v in dp.std])])
    tr = DataLoader(PILSet(*data.train, to_tensor, n_tr), batch_size=ev['batch_size'],
                    shuffle=True, drop_last=False)
    te = DataLoader(PILSet(*data.test, to_tensor, n_te), batch_size=batch)
    clf = LinearClassifier(Encoder(copy.deepcopy(encoder)), batch_size_per_device=ev['batch_size'],
                           lr=ev['lr'], feature_dim=feats(torch.zeros(1, 3, 32, 32)).shape[1],
                           num_classes=10, topk=(1, ))
    trainer = pl.Trainer(max_epochs=ev['epochs'], accelerator='cpu', devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    t0 = time.perf_counter()
    trainer.fit(clf, tr)
    out = trainer.validate(clf, te, verbose=False)
    secs = time.perf_counter() - t0
    n_img = n_tr * ev['epochs'] + n_te
    top1 = next((v for k, v in (out[0] if out else {}).items() if 'top1' in k), float('nan'))
    rows.append(dict(task='probe', side='lightly', workers=0, images_per_s=(n_tr + n_te) / secs,
                     seconds=secs, note=f'LinearClassifier + Trainer, {ev["epochs"]} epochs '
                     f'(encodes {n_img} images); clean test only; top-1 {100 * top1:.2f}'))
    print(f'  probe   lightly           {secs:8.1f} s', flush=True)


def print_table(rows: list) -> None:
    print(f'{"task":<8}{"side":<15}{"workers":>8}{"img/s":>10}{"seconds":>9}  '
          f'{"plugin x":>11}  note')
    for r in rows:
        peer = [p for p in rows if p['task'] == r['task'] and p['side'] == 'plugin'
                and p['workers'] == r['workers']]
        ratio = (peer[0]['images_per_s'] / r['images_per_s']
                 if peer and r['side'] != 'plugin' else None)
        if r['task'] == 'probe' and r['side'] != 'plugin':  # same images, time ratio
            ratio = r['seconds'] / peer[0]['seconds'] if peer else None
        secs = f'{r["seconds"]:.1f}' if 'seconds' in r else ''
        print(f'{r["task"]:<8}{r["side"]:<15}{r["workers"]:>8}{r["images_per_s"]:>10.1f}'
              f'{secs:>9}  {"" if ratio is None else f"{ratio:.2f}x":>11}  {r["note"]}')


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import bmaiu_plugin  # noqa: F401
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    root = find_data_root(args.data_root)
    synthetic = root is None
    if synthetic:
        root = write_synthetic_cifar(tempfile.mkdtemp(prefix='bmaiu_peer_'))
    data = Data(root)
    versions = dict(torch=torch.__version__, threads=torch.get_num_threads(),
                    cpus=os.cpu_count(), data='synthetic' if synthetic else root)
    if have_lightly():
        import lightly
        versions['lightly'] = lightly.__version__
    print('bench_peer: ' + ', '.join(f'{k}={v}' for k, v in versions.items()), flush=True)
    rows: list = []
    if 'simclr' not in args.skip:
        bench_simclr(args, data, rows)
    if 'probe' not in args.skip:
        bench_probe(args, data, rows)
    print()
    print_table(rows)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(meta=versions, args=vars(args), rows=rows), f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
