# CLP (Zheng et al., ECCV 2022; github.com/rkteddy/channel-Lipschitzness-based-pruning,
# defense.py) on a CIFAR ResNet-18 encoder: data-free channel pruning (docs/methods.md, "CLP").
# Takes any SimCLR / BYOL / MoCo v2 CIFAR ResNet-18 encoder checkpoint (the backbone is the same).
#   python tools/test.py configs/defenses/clp_resnet18_u3_cifar10.py ENCODER_CKPT
#   (or: mim test bmaiu_plugin CONFIG --checkpoint ENCODER_CKPT)
# No training: the suspect encoder is loaded (tensors only), a copy is pruned (channels whose
# upper bound of the channel Lipschitz constant exceeds mean + u * std of their layer get BN
# weight and bias 0), and both are probed.  Outputs in the work dir: metrics.json (suspect /
# defended BA-ASR-PA and `clp`: pruned channels per layer) and defended_encoder.pth (the pruned
# backbone's state dict, e.g. for configs/defenses/decree_*.py or configs/eval/probe_*.py).
_base_ = [
    '../_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/default_runtime.py',
]

# ---- the defense's input: the suspect encoder (no data, no labels) ----
encoder_checkpoint = None  # required: positional ENCODER_CKPT or encoder_checkpoint=PATH

model = dict(
    type='CLPDefense',
    encoder_checkpoint=encoder_checkpoint,
    u=3.,          # the paper's and BackdoorBench's default
    u_sweep=[])    # e.g. [1, 2, 4, 5]: one more probed encoder `defended_u<v>` per value
# DECREE's PL1 of every probed encoder (off; test_cfg.pl1.enable=True): the original's CIFAR
# budget (10 % of each test class, up to 1000 epochs of batch 128)
test_cfg = dict(pl1=dict(enable=False, shadow_ratio=0.1, batch_size=128, max_steps=None))
custom_hooks = [dict(type='SaveDefendedEncoderHook', filename='defended_encoder.pth')]

# ---- EVALUATOR ONLY: the attacker's trigger, used by the probe, never seen by the defense ----
# one of 'badencoder', 'estas', 'sslbackdoor', 'ctrl', 'multitarget' (or a list)
evaluate_attack = 'badencoder'
