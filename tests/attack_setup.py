"""The small real-data attack set-up shared by the attack and defense tests.

A width-8 CIFAR ResNet-18 briefly SimCLR-pretrained on five CIFAR-10 classes, attacks built from
their configs at a small budget, and the evaluator's probe metrics; see ``test_attack_asr.py``
for the scale and why.  The fixtures in ``conftest.py`` (``asr_data``,
``clean_encoder``, ``badencoder_suspect``) build each piece once per test run.
"""
import copy
import itertools
from types import SimpleNamespace
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.logging import MessageHub
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.runner import set_random_seed

import bmaiu_plugin  # noqa: F401  (registration)
from bmaiu_plugin.datasets import BackdoorCIFAR10
from bmaiu_plugin.evaluation.presets import attack_triggers
from bmaiu_plugin.evaluation.probe import backdoor_metrics, train_linear_probe
from bmaiu_plugin.models.features import CIFAR10_MEAN, CIFAR10_STD, PixelNormalizer, pool_features
from bmaiu_plugin.datasets.reference import dataset_arrays
from bmaiu_plugin.registry import DATASETS, MODELS
from bmaiu_plugin.triggers import build_trigger
from conftest import REPO_ROOT

SIMCLR_CONFIG = 'configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e-devaug_cifar10.py'
BADENCODER_CONFIG = 'configs/attacks/badencoder_resnet18_simclr_1xb256-20e_cifar10.py'
ESTAS_CONFIG = 'configs/attacks/estas_resnet18_simclr_1xb256-20e_cifar10.py'

#: CIFAR ResNet-18 at width 8: 64-d pooled features.
WIDTH = 8
TINY = dict(type='ResNet_CIFAR', depth=18, stem_channels=WIDTH, base_channels=WIDTH,
            norm_cfg=dict(type='BN'))
FEAT_DIM = 8 * WIDTH
#: The classes the attack configs target; pretraining and the downstream task use these.
CLASSES = (0, 1, 2, 3, 9)
NUM_PRETRAIN, NUM_PROBE, NUM_TEST = 5000, 2000, 1000
PRETRAIN = dict(steps=60, batch_size=128, lr=0.3, seed=0)
ATTACK = dict(steps=120, batch_size=64, lr=0.2, num_shadow=1024, seed=0)

#: Attack steps of the trigger-family configs (``configs/attacks/badencoder-<family>_*``): the
#: blend takes in 240 (``tests/attacks/test_trigger_families.py``).
FAMILY_STEPS = {'patch4': 120, 'patch14': 120, 'blend': 240}

_hub_names = itertools.count()


def family_config(family: str) -> str:
    """BadEncoder's config with the trigger of ``family`` (``patch4``, ``blend``, ...)."""
    return f'configs/attacks/badencoder-{family}_resnet18-w16_simclr_1xb256-10e_cifar10.py'


def load_config(rel: str) -> Config:
    """A repository config."""
    return Config.fromfile(f'{REPO_ROOT}/{rel}')


def cifar_subset(root: str, split: str, num: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first ``num`` images of :data:`CLASSES` in ``split``.

    Returns:
        tuple[Tensor, Tensor]: uint8 ``(N, 3, 32, 32)`` images and ``(N,)`` labels.
    """
    labels = np.asarray(BackdoorCIFAR10(data_root=root, split=split, check_md5=False,
                                        pipeline=[]).get_gt_labels())
    keep = np.flatnonzero(np.isin(labels, CLASSES))[:num].tolist()
    return dataset_arrays(BackdoorCIFAR10(data_root=root, split=split, check_md5=False,
                                          indices=keep, pipeline=[]))


@torch.no_grad()
def encode(encoder: nn.Module, imgs: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """l2-normalized pooled features of pixel-space images, in eval mode."""
    norm = PixelNormalizer(CIFAR10_MEAN, CIFAR10_STD)
    was_training = encoder.training
    encoder.eval()
    feats = torch.cat([pool_features(encoder(norm(imgs[i:i + batch_size])))
                       for i in range(0, len(imgs), batch_size)])
    encoder.train(was_training)
    return F.normalize(feats, dim=1)


def fit_probe(encoder: nn.Module, data: SimpleNamespace) -> nn.Module:
    """The plugin's linear probe on the clean probe-training features."""
    return train_linear_probe(encode(encoder, data.probe_x), data.probe_y, num_classes=10,
                              seed=0)


def attack_metrics(encoder: nn.Module, data: SimpleNamespace, attack: str) -> Dict[str, dict]:
    """BA / ASR / ASR_all / PA of ``encoder`` for each evaluator trigger of ``attack``."""
    head = fit_probe(encoder, data)
    clean = encode(encoder, data.test_x)
    out = {}
    for entry in attack_triggers(attack):
        trigger = build_trigger(entry['trigger'])
        triggered = trigger(data.test_x, generator=torch.Generator().manual_seed(0))
        out[entry['name']] = backdoor_metrics(head, clean, data.test_y,
                                              encode(encoder, triggered), data.test_y,
                                              entry['target'])
    return out


def simclr_pretrain(imgs: torch.Tensor, steps: int, batch_size: int, lr: float,
                    seed: int) -> nn.Module:
    """A short SimCLR run (the device-view SimCLR config's model at width 8); the backbone."""
    cfg = load_config(SIMCLR_CONFIG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone = dict(TINY)
    model_cfg.neck.update(in_channels=FEAT_DIM, hid_channels=FEAT_DIM, out_channels=FEAT_DIM)
    model_cfg.data_preprocessor = dict(cfg.data_preprocessor, seed=seed)
    set_random_seed(seed)
    # single process: SyncBN becomes BN, as mmengine's runner does
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.init_weights()
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = lr
    optim = build_optim_wrapper(model, optim_cfg)
    # the views' random stream is keyed by the message hub's iteration, as in a runner
    hub = MessageHub.get_instance(f'attack_setup_{next(_hub_names)}')
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(imgs), generator=gen)
                       for _ in range(steps * batch_size // len(imgs) + 1)])
    model.train()
    for step in range(steps):
        hub.update_info('iter', step)
        model.train_step(dict(inputs=imgs[order[step * batch_size:(step + 1) * batch_size]]),
                         optim)
    return model.backbone


def build_from_config(config: str, encoder_checkpoint: str, root: str, num_items: int,
                      seed: int, edit: Optional[Callable] = None):
    """The config's fine-tuning model at width 8, prepared on its own training set.

    The training set is the config's (its pipeline included) cut to its first ``num_items``
    items, read from ``root``; ``model.prepare`` runs on it as ``PrepareModelHook`` does.
    ``edit(model_cfg)`` may change the model config before it is built.

    Returns:
        tuple: ``(cfg, model, dataset)``.
    """
    cfg = load_config(config)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.update(backbone=dict(TINY), encoder_checkpoint=encoder_checkpoint)
    if edit is not None:
        edit(model_cfg)
    set_random_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()  # loads encoder_checkpoint into the backbone and the frozen copies
    data_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    data_cfg.dataset.data_root = root
    data_cfg.indices = num_items
    dataset = DATASETS.build(data_cfg)
    model.prepare(dataset)
    return cfg, model, dataset


def training_batches(cfg: Config, model: nn.Module, dataset, lr: float, batch_size: int,
                     seed: int):
    """The config's optimizer at ``lr`` and an endless stream of seeded shuffled batches."""
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = lr
    optim = build_optim_wrapper(model, optim_cfg)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         drop_last=True, collate_fn=default_collate,
                                         generator=torch.Generator().manual_seed(seed))
    return optim, itertools.chain.from_iterable(itertools.repeat(loader))


def run_finetune_attack(config: str, encoder_checkpoint: str, root: str, steps: int,
                        batch_size: int, lr: float, num_shadow: int, seed: int,
                        edit: Optional[Callable] = None) -> nn.Module:
    """Build the config's attack model at width 8 (:func:`build_from_config`, the shadow set
    cut to ``num_shadow`` items, ``edit`` applied to the model config) and train it for
    ``steps`` steps."""
    cfg, model, shadow = build_from_config(config, encoder_checkpoint, root, num_shadow, seed,
                                           edit)
    optim, batches = training_batches(cfg, model, shadow, lr, batch_size, seed)
    model.train()
    for batch in itertools.islice(batches, steps):
        model.train_step(batch, optim)
    return model


def attack_before_after(config: str, attack: str, data, clean_encoder, attacked=None):
    """Probe metrics of the evaluator's ``attack`` trigger before and after the attack
    (``attacked``: the attacked model if it is already built, else it is built here)."""
    (entry,) = attack_triggers(attack)
    before = attack_metrics(clean_encoder.encoder, data, attack)[entry['name']]
    model = attacked if attacked is not None else \
        run_finetune_attack(config, clean_encoder.path, data.root, **ATTACK)
    # the attack's premise: the downstream probe takes the attacker's reference for a target
    ref_pred = fit_probe(clean_encoder.encoder, data)(
        encode(clean_encoder.encoder, model.references[0])).argmax(1)
    assert ref_pred.tolist() == [entry['target']], \
        f'the clean probe classifies the reference image as {ref_pred.tolist()}'
    after = attack_metrics(model.backbone, data, attack)[entry['name']]
    print(f'\n[{attack}] clean BA {before["BA"]:.2f} ASR {before["ASR"]:.2f} -> attacked '
          f'BA {after["BA"]:.2f} ASR {after["ASR"]:.2f}')
    return before, after
