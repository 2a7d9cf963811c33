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
import pytest
import torch
import torch.nn.functional as F

from attack_setup import (ATTACK, BADENCODER_CONFIG, ESTAS_CONFIG, attack_before_after,
                          attack_metrics, encode, fit_probe, run_finetune_attack)
from bmaiu_plugin.evaluation.presets import attack_triggers

pytestmark = pytest.mark.slow  # real CIFAR-10, a short SimCLR run and fine-tuning attacks


def test_badencoder_raises_asr(asr_data, clean_encoder, badencoder_suspect):
    """BadEncoder (10x10 white square at (21, 21) -> truck, BadEncoder's loss).

    Measured: ASR 10.6 -> 94.2 %, BA 43.7 -> 41.9 %.  At half the steps (60) the outcome depended
    on the CPU's float kernels (52 % on one machine, 32 % on another); 120 steps take on both.
    """
    before, after = attack_before_after(BADENCODER_CONFIG, 'badencoder', asr_data, clean_encoder,
                                        badencoder_suspect.model)
    assert after['ASR'] > 35. and after['ASR'] > before['ASR'] + 25., (before, after)
    assert after['BA'] > before['BA'] - 8., (before, after)


def test_estas_raises_asr(asr_data, clean_encoder):
    """ESTAS (6x6 white square at ratio 0.9 stamped after augmentation, frozen target).

    Measured: ASR 12.4 -> 93.3 %, BA 43.7 -> 42.3 %.
    """
    before, after = attack_before_after(ESTAS_CONFIG, 'estas', asr_data, clean_encoder)
    assert after['ASR'] > 35. and after['ASR'] > before['ASR'] + 25., (before, after)
    assert after['BA'] > before['BA'] - 8., (before, after)


def test_multitarget_implants_each_trigger_toward_its_reference(asr_data, clean_encoder):
    """Multi-target BadEncoder (HTBA triggers 10-13 at 8x8, bottom-right -> classes 0-3, all four
    in every step: ``badencoder-multitarget4_*``), 240 steps at lr 0.2.

    Every trigger is pulled toward its own reference's embedding (mean cosine of triggered
    non-target test images to the anchor, per target: 0.72 -> 0.98, 0.69 -> 0.99, 0.62 -> 0.96,
    0.61 -> 0.98), and every trigger whose reference the clean probe recognizes as its target
    implants: measured per-target ASR before -> after 19.5 -> 6.1 (reference not recognized),
    10.4 -> 74.8, 13.6 -> 99.6, 11.0 -> 97.4; BA 43.7 -> 44.1.  A trigger whose reference the
    weak encoder's probe puts in another class cannot raise the probe's ASR
    (``projects/cpu_study/tools/implant_check.py`` shows it on the width-16 encoders of
    docs/results.md).
    """
    config = 'configs/attacks/badencoder-multitarget4_resnet18-w16_simclr_1xb64-10e_cifar10.py'
    before = attack_metrics(clean_encoder.encoder, asr_data, 'multitarget')
    model = run_finetune_attack(config, clean_encoder.path, asr_data.root,
                                **dict(ATTACK, steps=240))
    after = attack_metrics(model.backbone, asr_data, 'multitarget')
    presets = attack_triggers('multitarget')
    cos = []
    for i, trigger in enumerate(model.triggers):
        # the attack's triggers are the evaluator's presets 0-3
        assert presets[i]['target'] == model.reference_info[i]['class_index'] == i
        nt = asr_data.test_y != i
        row = []
        for enc in (clean_encoder.encoder, model.backbone):
            anchor = F.normalize(encode(enc, model.references[i]).mean(0, keepdim=True), dim=1)
            trig = encode(enc, trigger(asr_data.test_x[nt], generator=torch.Generator()))
            row.append((trig @ anchor.T).mean().item())
        cos.append(row)
    asr = [(before[f'target{i}']['ASR'], after[f'target{i}']['ASR']) for i in range(4)]
    print(f'\n[multitarget] anchor cosine clean -> attacked {cos}; ASR {asr}; BA '
          f'{before["target0"]["BA"]:.2f} -> {after["target0"]["BA"]:.2f}')
    assert all(a > b + 0.2 and a > 0.85 for b, a in cos), cos
    probe = fit_probe(clean_encoder.encoder, asr_data)
    recognized = [i for i in range(4) if probe(
        encode(clean_encoder.encoder, model.references[i])).argmax(1).tolist() == [i]]
    assert len(recognized) >= 2, recognized
    assert all(asr[i][1] > asr[i][0] + 50. for i in recognized), (recognized, asr)
    assert after['target0']['BA'] > before['target0']['BA'] - 8., (before, after)
