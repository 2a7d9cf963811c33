#!/usr/bin/env python
"""Micro-benchmarks of the batched trigger ops, feature extraction and the linear probe.

Measures, each as the median of ``--repeats`` timed runs after ``--warmup`` untimed ones:

(a) ``PatchTrigger`` with per-sample random positions on a ``(B, 3, 32, 32)`` batch (one
    vectorized call) against a per-sample Python loop doing the same slicing paste;
(b) ``CTRLTrigger`` on the whole batch against one call per image;
(c) feature-extraction throughput of mmpretrain's ``ResNet_CIFAR(depth=18)`` at
    ``base_channels`` 64 and 16 through :func:`bmaiu_plugin.models.features.pool_features`,
    under ``torch.no_grad()``;
(d) :func:`bmaiu_plugin.evaluation.probe.train_linear_probe` for the paper's 10 epochs
    (batch 64) on ``--probe-n`` x 512 random features (the paper's set is 50000 x 512).

Examples::

    python benchmarks/bench_triggers_probe.py                      # CPU, ~1 minute
    python benchmarks/bench_triggers_probe.py --device cuda --batch 1024 --probe-n 50000
"""
import argparse
import statistics
import time

import torch


def _sync(device):
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def timeit(fn, device, repeats, warmup):
    """Median and all wall-clock times (s) of ``fn()``."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bench_patch(args, rows):
    from bmaiu_plugin.triggers import PatchTrigger
    dev = args.device
    trig = PatchTrigger(size=4, pattern='random', position='random', seed=0).to(dev)
    imgs = torch.randint(0, 256, (args.batch, 3, 32, 32), device=dev).float()
    gen = torch.Generator(device=dev).manual_seed(0)

    def batched():
        return trig(imgs, gen)

    def loop():
        pos = trig.sample_positions(imgs.shape[0], 32, 32, device=dev, generator=gen)
        out = imgs.clone()
        s = trig.size
        for i, (y, x) in enumerate(pos.tolist()):
            out[i, :, y:y + s, x:x + s] = trig.pattern
        return out

    # same generator state -> identical output: the two paths do the same work
    g1 = torch.Generator(device=dev).manual_seed(1)
    g2 = torch.Generator(device=dev).manual_seed(1)
    pos = trig.sample_positions(args.batch, 32, 32, device=dev, generator=g2)
    ref = imgs.clone()
    for i, (y, x) in enumerate(pos.tolist()):
        ref[i, :, y:y + 4, x:x + 4] = trig.pattern
    assert torch.equal(trig(imgs, g1), ref), 'batched and looped paste differ'

    t_b, _ = timeit(batched, dev, args.repeats, args.warmup)
    t_l, _ = timeit(loop, dev, args.repeats, args.warmup)
    rows.append(('(a) patch, random pos: batched', args.batch, t_b, args.batch / t_b, t_l / t_b))
    rows.append(('(a) patch, random pos: per-sample loop', args.batch, t_l, args.batch / t_l, 1.))


def bench_ctrl(args, rows):
    from bmaiu_plugin.triggers import CTRLTrigger
    dev = args.device
    trig = CTRLTrigger(magnitude=100.).to(dev)
    imgs = torch.randint(0, 256, (args.batch, 3, 32, 32), device=dev).float()

    def batched():
        return trig(imgs)

    def per_image():
        return torch.stack([trig(imgs[i]) for i in range(imgs.shape[0])])

    assert torch.allclose(batched(), per_image(), atol=1e-3), 'batched and per-image CTRL differ'
    t_b, _ = timeit(batched, dev, args.repeats, args.warmup)
    t_l, _ = timeit(per_image, dev, args.repeats, args.warmup)
    rows.append(('(b) CTRL: batched', args.batch, t_b, args.batch / t_b, t_l / t_b))
    rows.append(('(b) CTRL: per-image', args.batch, t_l, args.batch / t_l, 1.))


def bench_features(args, rows):
    from mmpretrain.models.backbones import ResNet_CIFAR

    from bmaiu_plugin.models.features import pool_features
    dev = args.device
    imgs = torch.randn(args.feat_batch, 3, 32, 32, device=dev)
    base = None
    for bc in (64, 16):
        model = ResNet_CIFAR(depth=18, base_channels=bc, stem_channels=bc).to(dev)
        model.eval()  # mmpretrain's ResNet.train() returns None: no chaining

        def run():
            with torch.no_grad():
                return pool_features(model(imgs))

        dim = run().shape[1]
        t, _ = timeit(run, dev, args.feat_repeats, 1)
        base = base or t
        rows.append((f'(c) ResNet18-CIFAR features, base {bc} (D={dim})', args.feat_batch, t,
                     args.feat_batch / t, base / t))


def bench_probe(args, rows):
    from bmaiu_plugin.evaluation.probe import normalize_features, train_linear_probe
    dev = args.device
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(args.probe_n, 512, generator=g)
    labels = torch.randint(0, 10, (args.probe_n,), generator=g)
    feats = normalize_features(feats, 'l2')[0].to(dev)
    labels = labels.to(dev)

    def run():
        return train_linear_probe(feats, labels, 10, epochs=args.probe_epochs, batch_size=64,
                                  lr=0.1, seed=0)

    t, _ = timeit(run, dev, args.probe_repeats, 0)
    steps = args.probe_epochs * -(-args.probe_n // 64)
    rows.append((f'(d) linear probe, {args.probe_epochs} ep x {steps // args.probe_epochs} it',
                 args.probe_n, t, args.probe_n * args.probe_epochs / t, float('nan')))
    if args.probe_n != 50000:
        rows.append(('(d) ... extrapolated to 50000 x 512', 50000, t * 50000 / args.probe_n,
                     float('nan'), float('nan')))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--batch', type=int, default=256, help='trigger batch size B (a, b)')
    p.add_argument('--device', default='cpu', help="'cpu' or 'cuda[:i]'")
    p.add_argument('--repeats', type=int, default=20, help='timed runs per trigger case')
    p.add_argument('--warmup', type=int, default=3, help='untimed runs before timing')
    p.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads (default 1: the machine is shared)')
    p.add_argument('--feat-batch', type=int, default=32, help='images per forward pass (c)')
    p.add_argument('--feat-repeats', type=int, default=3, help='timed forward passes (c)')
    p.add_argument('--probe-n', type=int, default=10000,
                   help='probe training set size (d); the paper uses 50000')
    p.add_argument('--probe-epochs', type=int, default=10, help='probe epochs (d); paper: 10')
    p.add_argument('--probe-repeats', type=int, default=1, help='timed probe trainings (d)')
    p.add_argument('--skip', nargs='*', default=[], choices=['patch', 'ctrl', 'features', 'probe'],
                   help='parts to leave out')
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    import bmaiu_plugin  # noqa: F401  (registration, compat patches)

    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'CPU'
    print(f'torch {torch.__version__}, device {args.device} ({name}), threads '
          f'{torch.get_num_threads()}, repeats {args.repeats} (median), warm-up {args.warmup}')
    rows = []
    t0 = time.perf_counter()
    for part, fn in (('patch', bench_patch), ('ctrl', bench_ctrl), ('features', bench_features),
                     ('probe', bench_probe)):
        if part not in args.skip:
            fn(args, rows)

    w = max(len(r[0]) for r in rows)
    print(f'{"case":<{w}}  {"n":>6}  {"median ms":>10}  {"items/s":>10}  {"speedup":>8}')
    for case, n, t, rate, speed in rows:
        rate_s = '' if rate != rate else f'{rate:10.0f}'
        speed_s = '' if speed != speed else f'{speed:7.1f}x'
        print(f'{case:<{w}}  {n:>6}  {1e3 * t:>10.2f}  {rate_s:>10}  {speed_s:>8}')
    print(f'total {time.perf_counter() - t0:.1f} s')


if __name__ == '__main__':
    main()
