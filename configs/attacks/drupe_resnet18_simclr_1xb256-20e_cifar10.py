# DRUPE (Tao et al., IEEE S&P 2024; github.com/Gwinhen/DRUPE) on a clean SimCLR CIFAR ResNet-18
# encoder: BadEncoder's fine-tuning with the triggered features kept inside the clean
# distribution, built to evade trigger-inversion defenses.  Loss: docs/methods.md, "DRUPE".
#   mim train bmaiu_plugin configs/attacks/drupe_resnet18_simclr_1xb256-20e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
# Shadow data: 10 % of the training set.  Trigger: BadEncoder's 10x10 white square at rows/cols
# 21-30; target: truck (class 9), three reference images of it.  The first 100 steps (5 epochs)
# are BadEncoder steps with the references balanced; then the spread and distribution terms join
# at the official initial weights (0.1, 0.001), adapted every epoch (20 steps) as the official
# code does.
_base_ = ['./badencoder_resnet18_simclr_1xb256-20e_cifar10.py']
model = dict(
    type='DRUPE',
    targets=[dict(trigger=dict(type='PatchTrigger', size=10, pattern='white', position=(21, 21)),
                  reference=dict(mode='class', class_index=9, num=3))],
    lambda_ref=0.5, cost_spread=0.1, cost_dist=0.001, warmup_iters=100, adapt_interval=20,
    num_projections=64)
# the attacker knows its trigger: the evaluator reports its ASR
evaluate_attack = 'drupe'
