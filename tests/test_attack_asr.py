"""The encoder fine-tuning attacks raise the attacker's ASR on a short real-data run.

What is shown: BadEncoder and ESTAS, built from their configs
(``configs/attacks/badencoder_resnet18_simclr_1xb256-20e_cifar10.py`` and
``configs/attacks/estas_resnet18_simclr_1xb256-20e_cifar10.py``: trigger, reference, loss
weights, frozen BN, ``frozen_target``, shadow data and its pipeline, optimizer), implant their
backdoor into a clean encoder: the evaluator's ASR (``attack_triggers(name)``, the plugin's
linear probe on l2-normalized features) rises from 10-14 % to about 50 % in 60 steps.

Scale, on one CPU thread (about 75 s for the file on a busy 2-core machine):

* encoder: the CIFAR ResNet-18 at width 8 (64-d features), briefly SimCLR-pretrained here (the
  ``-devaug`` SimCLR config's model and device-side views, 60 steps of 128 images, lr 0.3) on
  5,000 real CIFAR-10 training images of classes {0, 1, 2, 3, 9}: the classes every attack
  config targets (9 for BadEncoder / ESTAS, 0-3 for the multi-target attack, 0 for SSL-Backdoor
  and CTRL).  A random encoder would not do: the attacks pull triggered images onto a reference
  image's embedding, which is only worth something if the probe can recognize a truck.
* downstream task: the same five classes (probe on 2,000 training images, 10 epochs; test on
  1,000 test images); the clean encoder's BA is about 44 % (chance 20 %).
* attack: the config's shadow set (a seeded 10 % of the training set) cut to its first 1,024
  images, batch 64, 60 steps at lr 0.2 (the configs' 0.01 at batch 256 implants nothing in a
  few dozen steps).  The reference (the config's seeded truck of the shadow set) is one the
  clean probe classifies as a truck, which the test checks first: with other shadow sizes the
  seeded truck can be one the weak encoder takes for another class, and ASR then cannot rise.

The multi-target BadEncoder (4 HTBA triggers, all four per step, 120 steps at lr 0.2) pulls every
trigger toward its reference, but only one of the four reaches a high ASR at this scale (see its
test; 80 steps at lr 0.3 gave 20.8, 99.3, 32.2 and 17.0).  Tried and not better: the triggers at
four distinct corners (15.3, 95.0, 32.2, 36.2), and five references per target, whose mean the
weak probe classifies even less often as the target (28.9, 31.0, 12.2, 9.1; with distinct
corners 94.4, 47.4, 9.5, 26.0).

Not covered, because they did not take at a test-feasible scale (numbers in each case: ASR of the
attacked encoder vs. the clean one, same probe):

* SSL-Backdoor and CTRL (data poisoning, the whole target class poisoned): no effect in
  SimCLR runs of 40-160 steps on 10, 3 or 2 classes, nor when continuing the pretrained encoder
  for 60 steps on poisoned vs. clean data (SSL-Backdoor ASR 19.9 vs. 18.4, CTRL 17.4 vs. 18.9).
"""
import copy
import itertools
from types import SimpleNamespace
from typing import Dict, Tuple

import numpy as np
import pytest
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
from bmaiu_plugin.evaluation.probe import (PixelNormalizer, backdoor_metrics, pool_features,
                                           train_linear_probe)
from bmaiu_plugin.models.finetune_base import CIFAR10_MEAN, CIFAR10_STD
from bmaiu_plugin.models.reference import dataset_arrays
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

_hub_names = itertools.count()


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
    hub = MessageHub.get_instance(f'test_attack_asr_{next(_hub_names)}')
    gen = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(imgs), generator=gen)
                       for _ in range(steps * batch_size // len(imgs) + 1)])
    model.train()
    for step in range(steps):
        hub.update_info('iter', step)
        model.train_step(dict(inputs=imgs[order[step * batch_size:(step + 1) * batch_size]]),
                         optim)
    return model.backbone


def run_finetune_attack(config: str, encoder_checkpoint: str, root: str, steps: int,
                        batch_size: int, lr: float, num_shadow: int, seed: int) -> nn.Module:
    """Build the config's attack model at width 8 and train it for ``steps`` steps.

    The shadow set is the config's training set (its pipeline included) cut to its first
    ``num_shadow`` items; the references are chosen from it as ``ReferenceSetHook`` does.
    """
    cfg = load_config(config)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.update(backbone=dict(TINY), encoder_checkpoint=encoder_checkpoint)
    set_random_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()  # loads encoder_checkpoint into the backbone and the frozen teacher
    shadow_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    shadow_cfg.dataset.data_root = root
    shadow_cfg.indices = num_shadow
    shadow = DATASETS.build(shadow_cfg)
    model.prepare_reference(shadow)
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = lr
    optim = build_optim_wrapper(model, optim_cfg)
    loader = torch.utils.data.DataLoader(shadow, batch_size=batch_size, shuffle=True,
                                         drop_last=True, collate_fn=default_collate,
                                         generator=torch.Generator().manual_seed(seed))
    model.train()
    epochs = itertools.chain.from_iterable(itertools.repeat(loader))
    for batch in itertools.islice(epochs, steps):
        model.train_step(batch, optim)
    return model


@pytest.fixture(scope='module')
def data(cifar_root) -> SimpleNamespace:
    """Real CIFAR-10 images of :data:`CLASSES`: pretraining, probe-training and test sets."""
    train_x, train_y = cifar_subset(cifar_root, 'train', NUM_PRETRAIN)
    test_x, test_y = cifar_subset(cifar_root, 'test', NUM_TEST)
    return SimpleNamespace(root=cifar_root, pretrain_x=train_x, probe_x=train_x[:NUM_PROBE],
                           probe_y=train_y[:NUM_PROBE], test_x=test_x, test_y=test_y)


@pytest.fixture(scope='module')
def clean_encoder(data, tmp_path_factory) -> SimpleNamespace:
    """The briefly SimCLR-pretrained clean encoder: the module and its state-dict file.

    Pretrained on one torch thread, like the tests themselves (conftest's autouse fixture is
    function-scoped, so it is not active yet here): the float results, and so the measured
    numbers, do not depend on the machine's core count.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        encoder = simclr_pretrain(data.pretrain_x, **PRETRAIN)
    finally:
        torch.set_num_threads(threads)
    path = str(tmp_path_factory.mktemp('clean_encoder') / 'encoder.pth')
    torch.save(encoder.state_dict(), path)
    return SimpleNamespace(encoder=encoder, path=path)


def attack_before_after(config: str, attack: str, data: SimpleNamespace,
                        clean_encoder: SimpleNamespace) -> Tuple[dict, dict]:
    """Probe metrics of the evaluator's ``attack`` trigger before and after the attack."""
    (entry,) = attack_triggers(attack)
    before = attack_metrics(clean_encoder.encoder, data, attack)[entry['name']]
    model = run_finetune_attack(config, clean_encoder.path, data.root, **ATTACK)
    # the attack's premise: the downstream probe takes the attacker's reference for a target
    ref_pred = fit_probe(clean_encoder.encoder, data)(
        encode(clean_encoder.encoder, model.references[0])).argmax(1)
    assert ref_pred.tolist() == [entry['target']], \
        f'the clean probe classifies the reference image as {ref_pred.tolist()}'
    after = attack_metrics(model.backbone, data, attack)[entry['name']]
    return before, after


def test_badencoder_raises_asr(data, clean_encoder):
    """BadEncoder (10x10 white square at (21, 21) -> truck, BadEncoder's loss).

    Measured: ASR 10.6 -> 94.2 %, BA 43.7 -> 41.9 %.  At half the steps (60) the outcome depended
    on the CPU's float kernels (52 % on one machine, 32 % on another); 120 steps take on both.
    """
    before, after = attack_before_after(BADENCODER_CONFIG, 'badencoder', data, clean_encoder)
    assert after['ASR'] > 35. and after['ASR'] > before['ASR'] + 25., (before, after)
    assert after['BA'] > before['BA'] - 8., (before, after)


def test_estas_raises_asr(data, clean_encoder):
    """ESTAS (6x6 white square at ratio 0.9 stamped after augmentation, frozen target).

    Measured: ASR 12.4 -> 93.3 %, BA 43.7 -> 42.3 %.
    """
    before, after = attack_before_after(ESTAS_CONFIG, 'estas', data, clean_encoder)
    assert after['ASR'] > 35. and after['ASR'] > before['ASR'] + 25., (before, after)
    assert after['BA'] > before['BA'] - 8., (before, after)


def test_multitarget_implants_each_trigger_toward_its_reference(data, clean_encoder):
    """Multi-target BadEncoder (HTBA triggers 10-13 at 8x8, bottom-right -> classes 0-3, all four
    in every step: ``badencoder-multitarget4_*``), 240 steps at lr 0.2.

    Every trigger is pulled toward its own reference's embedding (mean cosine of triggered
    non-target test images to the anchor, per target: 0.72 -> 0.98, 0.69 -> 0.99, 0.62 -> 0.96,
    0.61 -> 0.98), and every trigger whose reference the clean probe recognizes as its target
    implants: measured per-target ASR before -> after 19.5 -> 6.1 (reference not recognized),
    10.4 -> 74.8, 13.6 -> 99.6, 11.0 -> 97.4; BA 43.7 -> 44.1.  A trigger whose reference the
    weak encoder's probe puts in another class cannot raise the probe's ASR
    (``tools/analysis/implant_check.py`` shows it on the width-16 encoders of docs/results.md).
    """
    config = 'configs/attacks/badencoder-multitarget4_resnet18-w16_simclr_1xb64-10e_cifar10.py'
    before = attack_metrics(clean_encoder.encoder, data, 'multitarget')
    model = run_finetune_attack(config, clean_encoder.path, data.root,
                                **dict(ATTACK, steps=240))
    after = attack_metrics(model.backbone, data, 'multitarget')
    presets = attack_triggers('multitarget')
    cos = []
    for i, trigger in enumerate(model.triggers):
        # the attack's triggers are the evaluator's presets 0-3
        assert presets[i]['target'] == model.reference_info[i]['class_index'] == i
        nt = data.test_y != i
        row = []
        for enc in (clean_encoder.encoder, model.backbone):
            anchor = F.normalize(encode(enc, model.references[i]).mean(0, keepdim=True), dim=1)
            trig = encode(enc, trigger(data.test_x[nt], generator=torch.Generator()))
            row.append((trig @ anchor.T).mean().item())
        cos.append(row)
    asr = [(before[f'target{i}']['ASR'], after[f'target{i}']['ASR']) for i in range(4)]
    assert all(a > b + 0.2 and a > 0.85 for b, a in cos), cos
    probe = fit_probe(clean_encoder.encoder, data)
    recognized = [i for i in range(4) if probe(
        encode(clean_encoder.encoder, model.references[i])).argmax(1).tolist() == [i]]
    assert len(recognized) >= 2, recognized
    assert all(asr[i][1] > asr[i][0] + 50. for i in recognized), (recognized, asr)
    assert after['target0']['BA'] > before['target0']['BA'] - 8., (before, after)
