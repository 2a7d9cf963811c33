# DECREE (Feng et al., CVPR 2023; github.com/GiantSeaweed/DECREE, main.py): trigger inversion on
# an encoder and its PL1-norm (docs/methods.md, "DECREE and PL1").
# Takes any CIFAR ResNet-18 encoder (SimCLR / BYOL / MoCo v2; suspect, clean or defended): a
# plain state dict or safetensors file, or an mmengine checkpoint whose `backbone.*` is loaded (so
# a BMAIU / I-BAU work dir's epoch_N.pth gives the defended encoder), tensors only.
#   python tools/test.py configs/defenses/decree_resnet18_cifar10.py ENCODER_CKPT
# metrics.json: the usual probe (BA / ASR / PA) plus `PL1` = ||mask||_1 / (3 * H * W) of the
# smallest trigger found that collapses all shadow images onto one feature (small: backdoored)
# and `decree` (mask L1, final mean cosine, steps, time).  The shadow set is a seeded 10 % of
# each class of the CIFAR-10 test split (1,000 images), as the original; no labels are used by
# DECREE itself.  Budget as the original's CIFAR setting: up to 1000 epochs, batch 128, Adam lr
# 0.5 (0.1 from epoch 30, 0.05 from 50), thres 0.99, early stop after 10 epochs without a better
# mask.  `test_cfg.pl1.max_steps` caps it for a quick run.
_base_ = [
    '../_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/default_runtime.py',
]

# ---- the detector's input: the encoder (and clean unlabeled shadow images) ----
encoder_checkpoint = None  # required: positional ENCODER_CKPT or encoder_checkpoint=PATH

model = dict(type='ProbedEncoder', encoder_checkpoint=encoder_checkpoint)
test_cfg = dict(
    pl1=dict(shadow_ratio=0.1, epochs=1000, batch_size=128, lr=0.5,
             lr_milestones=[(30, 0.1), (50, 0.05)], thres=0.99, lam_init=1e-3, lam_min=1e-5,
             early_stop_patience=10, max_steps=None, seed=0))

# ---- EVALUATOR ONLY: the attacker's trigger, used by the probe, never seen by DECREE ----
# one of 'badencoder', 'estas', 'sslbackdoor', 'ctrl', 'multitarget' (or a list); None: BA only
evaluate_attack = 'badencoder'
