"""Figures of a pipeline, as PNG (matplotlib, Agg backend).

* :func:`plot_tsne`: t-SNE of clean and triggered test embeddings, before and after a defense
  (paper Figure 3); the embeddings come from :func:`encode_clean_triggered`.
* :func:`plot_sweep`: metrics against a swept BMAIU weight (Figures 4-6: BTS / CCS against u1,
  BA / ASR / PA against u2 and u3).
* :func:`plot_heatmap`: per-target ASR of a multi-target attack under each defense (Tables 1, 2
  and 5 as a picture).

:func:`make_figures` draws all of them that a pipeline's finished runs allow.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, TextIO

import numpy as np

from ..models.features import CIFAR10_MEAN, CIFAR10_STD
from .report import RunIndex, collect_runs, is_own_trigger, sweep_value

#: CIFAR-10 mean / std on the 0-255 scale (the configs' ``mean`` / ``std``).


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


# ------------------------------------------------------------------------------------------
# embeddings (evaluation: reading the attacker's trigger preset is allowed here)
# ------------------------------------------------------------------------------------------
def encode_clean_triggered(checkpoint: str, backbone: dict, attack: str, num_images: int = 500,
                           data_root: Optional[str] = None, seed: int = 0,
                           batch_size: int = 250, trigger_index: int = 0,
                           mean: Sequence[float] = CIFAR10_MEAN,
                           std: Sequence[float] = CIFAR10_STD) -> Dict[str, np.ndarray]:
    """Encode ``num_images`` CIFAR-10 test images clean and with the attacker's trigger.

    The encoder is loaded as tensors only (:func:`bmaiu_plugin.utils.checkpoint.
    load_encoder_weights`); the trigger is the evaluator's preset of ``attack``
    (:mod:`bmaiu_plugin.evaluation.presets`).  The images are a seeded random subset of the
    test split; random trigger positions come from a generator with the same seed.

    Args:
        checkpoint (str): Encoder file (mmengine checkpoint, state dict or safetensors).
        backbone (dict): The backbone config the file matches.
        attack (str): Attack preset name (``'badencoder'``, ``'ctrl'``, ...).
        num_images (int): Test images to encode.
        data_root (str, optional): Folder holding ``cifar-10-batches-py/``; defaults to
            ``$BMAIU_DATA_ROOT`` or ``data/cifar10``.
        seed (int): Seed of the subset and of random trigger positions.
        batch_size (int): Images per forward pass.
        trigger_index (int): Which of the preset's triggers (multi-target presets have 10).
        mean (Sequence[float]): Normalization mean, 0-255 scale.
        std (Sequence[float]): Normalization std, 0-255 scale.

    Returns:
        dict: ``clean`` and ``triggered`` ``(N, D)`` float32 features, ``labels`` ``(N,)``,
        ``target`` (the trigger's target class).
    """
    import torch
    from mmpretrain.registry import MODELS

    import bmaiu_plugin  # noqa: F401  (registers the plugin's backbones and triggers)
    from bmaiu_plugin.datasets import BackdoorCIFAR10, dataset_arrays
    from bmaiu_plugin.evaluation.presets import attack_triggers
    from bmaiu_plugin.models.features import PixelNormalizer, pool_features
    from bmaiu_plugin.triggers import build_trigger
    from bmaiu_plugin.utils.checkpoint import load_encoder_weights

    encoder = MODELS.build(dict(backbone))
    load_encoder_weights(encoder, checkpoint)
    encoder.eval()
    preset = attack_triggers(attack)[trigger_index]
    trigger = build_trigger(preset['trigger'])
    norm = PixelNormalizer(mean, std)
    ds = BackdoorCIFAR10(data_root=data_root, check_md5=False, split='test', pipeline=[])
    n = min(num_images, len(ds))
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), n, replace=False))
    x, labels = dataset_arrays(ds, indices=idx.tolist())
    labels = labels.numpy()
    gen = torch.Generator().manual_seed(seed)
    clean, trig = [], []
    with torch.no_grad():
        for b in range(0, n, batch_size):
            xb = x[b:b + batch_size]
            clean.append(pool_features(encoder(norm(xb.float()))).float())
            tb = trigger(xb, generator=gen)
            trig.append(pool_features(encoder(norm(tb.float()))).float())
    return dict(clean=torch.cat(clean).numpy(), triggered=torch.cat(trig).numpy(),
                labels=labels, target=int(preset['target']))


# ------------------------------------------------------------------------------------------
# plots from plain data
# ------------------------------------------------------------------------------------------
def tsne_2d(features: np.ndarray, seed: int = 0, perplexity: float = 30.) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init, seeded) of ``(N, D)`` features."""
    from sklearn.manifold import TSNE
    n = len(features)
    perplexity = float(min(perplexity, max(2., (n - 1) / 3.)))
    return TSNE(n_components=2, perplexity=perplexity, init='pca', random_state=seed,
                learning_rate='auto').fit_transform(np.asarray(features, dtype=np.float32))


def plot_tsne(panels: Sequence[dict], path: str, ncols: int = 2, seed: int = 0) -> str:
    """t-SNE panels of clean (coloured by class) and triggered (black) embeddings.

    Args:
        panels (list[dict]): ``dict(title=str, clean=(N, D), triggered=(M, D), labels=(N,))``;
            each panel is embedded on its own.
        path (str): PNG to write.
        ncols (int): Panels per row (2: before / after a defense).
        seed (int): t-SNE seed.

    Returns:
        str: ``path``.
    """
    plt = _pyplot()
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis('off')
    # one colour band per class index, ticks at the band centres
    from matplotlib.colors import BoundaryNorm
    norm = BoundaryNorm(np.arange(-0.5, 10.5), 10)
    for ax, p in zip(axes.flat, panels):
        clean, trig = np.asarray(p['clean']), np.asarray(p['triggered'])
        emb = tsne_2d(np.concatenate([clean, trig]), seed=seed)
        c, t = emb[:len(clean)], emb[len(clean):]
        # triggered points underneath and faint, so that a collapsed (backdoored) cluster shows
        # as a dark blob without hiding the clean classes drawn on top of it; black, which no
        # class has (tab10's class 7 is grey)
        ax.scatter(t[:, 0], t[:, 1], c='k', marker='x', s=10, linewidths=0.6, alpha=0.35,
                   zorder=1, label='triggered')
        sc = ax.scatter(c[:, 0], c[:, 1], c=np.asarray(p['labels']), cmap='tab10',
                        norm=norm, s=9, alpha=0.85, linewidths=0, zorder=2)
        ax.set_title(p.get('title', ''), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(loc='best', fontsize=7, markerscale=1.5, framealpha=0.6)
    bar = fig.colorbar(sc, ax=axes.ravel().tolist(), shrink=0.6, ticks=range(10))
    bar.set_label('class (clean images)')
    return _save(fig, path)


def plot_sweep(xs: Sequence[float], series: Dict[str, Sequence[Optional[float]]], path: str,
               xlabel: str, ylabel: str = '', title: str = '') -> str:
    """Line plot of several metrics against one swept value (points sorted by ``xs``).

    Args:
        xs (Sequence[float]): The swept values.
        series (dict): ``{metric: values}`` (``None`` = missing point).
        path (str): PNG to write.
        xlabel (str): X axis label (the swept option).
        ylabel (str): Y axis label.
        title (str): Title.

    Returns:
        str: ``path``.
    """
    plt = _pyplot()
    order = np.argsort(np.asarray(xs, dtype=float))
    x = np.asarray(xs, dtype=float)[order]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, ys in series.items():
        y = np.array([np.nan if v is None else v for v in ys], dtype=float)[order]
        ax.plot(x, y, marker='o', label=name)
    if len(x) and x.min() > 0 and x.max() / x.min() >= 20:
        ax.set_xscale('log')
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_heatmap(matrix, row_labels: Sequence[str], col_labels: Sequence[str], path: str,
                 title: str = '', vmax: float = 100.) -> str:
    """Annotated heatmap (e.g. ASR per attack target x defense); NaN cells stay blank.

    Args:
        matrix (array-like): ``(len(row_labels), len(col_labels))`` values.
        row_labels (Sequence[str]): Row names (targets).
        col_labels (Sequence[str]): Column names (defenses).
        path (str): PNG to write.
        title (str): Title.
        vmax (float): Top of the colour scale.

    Returns:
        str: ``path``.
    """
    plt = _pyplot()
    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(col_labels), 1.0 + 0.45 * len(row_labels)))
    im = ax.imshow(np.ma.masked_invalid(m), cmap='Reds', vmin=0, vmax=vmax, aspect='auto')
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels), rotation=30, ha='right',
                  fontsize=8)
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels), fontsize=8)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if not np.isnan(m[i, j]):
                ax.text(j, i, f'{m[i, j]:.1f}', ha='center', va='center', fontsize=7,
                        color='white' if m[i, j] > 0.6 * vmax else 'black')
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label='ASR (%)')
    return _save(fig, path)


def _save(fig, path: str) -> str:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    _pyplot().close(fig)
    return path


# ------------------------------------------------------------------------------------------
# from a pipeline's runs
# ------------------------------------------------------------------------------------------
def step_backbone(step) -> dict:
    """The backbone config of a step (its config with its ``--cfg-options`` applied)."""
    from mmengine.config import Config
    cfg = Config.fromfile(step.config)
    cfg.merge_from_dict({k: v for k, v in step.cfg_options.items()
                         if k.startswith('model.backbone.')})
    return cfg.model.backbone.to_dict()


def _tsne_figures(cfg, steps, out_dir: str, opts: dict, log) -> List[str]:
    from .runner import step_checkpoint
    by_name = {s.name: s for s in steps}
    first_seed = steps[0].seed if steps else None  # one figure: the first seed's encoders
    written = []
    for d in opts.get('defenses', ['bmaiu']):
        groups: Dict[str, List[dict]] = {}
        for s in steps:
            if s.defense != d or s.kind != 'defense' or s.seed != first_seed:
                continue
            before, after = by_name.get(s.upstream), s
            ck_b, ck_a = step_checkpoint(before), step_checkpoint(after)
            if not ck_b or not ck_a:
                log(f'figures: no t-SNE for {s.name} (needs the checkpoints of {before.name} '
                    'and of the defense)')
                continue
            attack = cfg.attacks[s.attack]['evaluate']
            attack = attack if isinstance(attack, str) else attack[0]
            names = [(cfg.get(sec) or {}).get(k, {}).get('name', k)
                     for sec, k in (('ssl', s.ssl), ('attacks', s.attack), ('defenses', d))]
            try:
                for tag, st, ck in (('after the attack', before, ck_b),
                                    (f'after {names[2]}', after, ck_a)):
                    feats = encode_clean_triggered(
                        ck, step_backbone(st), attack, num_images=opts.get('num_images', 500),
                        data_root=opts.get('data_root'), seed=opts.get('seed', 0))
                    groups.setdefault(s.ssl, []).append(dict(
                        key=s.attack, title=f'{names[0]} / {names[1]}: {tag}', **feats))
            except Exception as e:  # a figure must not take the report down
                log(f'figures: t-SNE for {s.name} failed: {type(e).__name__}: {e}')
                groups.get(s.ssl, [])[:] = [p for p in groups.get(s.ssl, [])
                                            if p['key'] != s.attack]
        for ssl, panels in groups.items():
            if panels:
                written.append(plot_tsne(panels, osp.join(out_dir, f'tsne_{ssl}_{d}.png'),
                                         seed=opts.get('seed', 0)))
    return written


def make_figures(cfg, steps: Sequence, out_dir: str, stream: Optional[TextIO] = None,
                 tsne: bool = True) -> List[str]:
    """Draw every figure the pipeline's finished runs allow.

    * ``tsne_<ssl>_<defense>.png`` for each defense named in ``figures.tsne.defenses``
      (default ``['bmaiu']``) whose runs and their attacks left checkpoints;
    * ``sweep_<study>.png`` for each study with a ``sweep``;
    * ``heatmap_<study>.png`` for each ``per_target`` study.

    Args:
        cfg (Config): The pipeline config (``figures`` holds the options).
        steps (list[Step]): Its plan.
        out_dir (str): Where the PNGs go.
        stream (TextIO, optional): Where notes about skipped figures go.
        tsne (bool): Draw the t-SNE figures (they encode images: the slow part).

    Returns:
        list[str]: The files written.
    """
    from .runner import studies_of

    def log(msg):
        if stream is not None:
            print(msg, file=stream, flush=True)
    fig_cfg = cfg.get('figures') or {}
    index = RunIndex(collect_runs(steps))
    written = []
    for name, st in studies_of(cfg).items():
        ssls = st.get('ssl') or list(cfg.ssl)
        ssls = [ssls] if isinstance(ssls, str) else list(ssls)
        attacks = st.get('attacks') or list(cfg.attacks)
        attacks = [attacks] if isinstance(attacks, str) else list(attacks)
        defenses = st.get('defenses')
        defenses = list(cfg.get('defenses') or {}) if defenses is None else (
            [defenses] if isinstance(defenses, str) else list(defenses))
        sweep = st.get('sweep')
        if sweep:
            metrics = list(sweep.get('metrics') or ('BA', 'ASR', 'PA'))
            xs, series = [], {k: [] for k in metrics}
            for s in ssls:
                for a in attacks:
                    for d in defenses:
                        run = index.get(s, a, d)
                        if run is None:
                            continue
                        xs.append(float(sweep_value(run, sweep['key'], sweep.get('default'))))
                        after = index.attack_stats(s, a, d)
                        for k in metrics:
                            v = after[k] if k in after else index.value_stats(s, a, d, k)
                            series[k].append(None if v is None else v.mean)
            if xs:
                written.append(plot_sweep(
                    xs, series, osp.join(out_dir, f'sweep_{name}.png'), xlabel=sweep['key'],
                    ylabel='%' if set(metrics) <= {'BA', 'ASR', 'PA'} else '',
                    title=st.get('title', name)))
        if st.get('table') == 'per_target':
            for s in ssls:
                for a in attacks:
                    groups = ['none'] + defenses
                    cells = {d: index.trigger_stats(s, a, d) for d in groups}
                    ref = next((c for c in cells.values() if c), None)
                    if ref is None:
                        continue
                    trigs = [t for t in ref if not is_own_trigger(t)]
                    matrix = [[None if cells[d].get(t, {}).get('ASR') is None
                               else cells[d][t]['ASR'].mean for d in groups] for t in trigs]
                    labels = [f'Target {ref[t]["target"]}' if ref[t]['target'] is not None
                              else t for t in trigs]
                    cols = [(cfg.get('defenses') or {}).get(d, {}).get('name', d)
                            if d != 'none' else 'None' for d in groups]
                    suffix = '' if len(ssls) * len(attacks) == 1 else f'_{s}_{a}'
                    written.append(plot_heatmap(
                        matrix, labels, cols, osp.join(out_dir, f'heatmap_{name}{suffix}.png'),
                        title=st.get('title', name)))
    if tsne and fig_cfg.get('tsne', {}) is not None:
        written += _tsne_figures(cfg, steps, out_dir, dict(fig_cfg.get('tsne') or {}), log)
    return written
