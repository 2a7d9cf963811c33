"""The trigger-family battery: BadEncoder's fine-tuning takes with triggers that are not
BadEncoder's white square.

Each ``configs/attacks/badencoder-<family>_*`` config is BadEncoder with another trigger, target
truck.  At the scale of ``test_attack_asr.py`` (width-8 encoder briefly SimCLR-trained on five
real CIFAR-10 classes, 1,024 shadow images, lr 0.2, one CPU thread) the evaluator's ASR rises far
above the clean encoder's, with BA kept, for the patch and blend families.  Measured (ASR clean
-> attacked, BA clean -> attacked; 120 steps unless stated):

* ``patch4`` (4x4 seeded pattern, fixed corner): 16.1 -> 80.5, BA 43.7 -> 41.7;
* ``patch14`` (14x14 seeded pattern, random position): 13.2 -> 89.2, BA 43.7 -> 43.3;
* ``blend`` (noise at alpha 0.2): 13.1 -> 38.0 at 120 steps (BA 39.5), so it runs 240 steps:
  13.1 -> 89.5, BA 43.7 -> 43.4.

Not covered at this scale, because they did not take in 120 steps: ``warp`` (WaNet field, strength
1: 15.8 -> 14.6) and ``ctrl`` (CTRL's frequency trigger: 16.1 -> 16.3); their battery runs use
the width-16 encoder of the CPU study.
"""
import pytest

from attack_setup import FAMILY_STEPS, attack_before_after, family_config


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILY_STEPS))
def test_family_attack_raises_asr(asr_data, clean_encoder, family_suspect, family):
    before, after = attack_before_after(family_config(family), f'badencoder-{family}', asr_data,
                                        clean_encoder, family_suspect(family).model)
    assert after['ASR'] > 35. and after['ASR'] > before['ASR'] + 25., (before, after)
    assert after['BA'] > before['BA'] - 8., (before, after)
