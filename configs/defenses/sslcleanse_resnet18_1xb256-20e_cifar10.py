# SSL-Cleanse (Zheng et al., ECCV 2024; github.com/UCF-ML-Research/SSL-Cleanse,
# detector/core/detector.py and mitigator/core/) on a CIFAR ResNet-18 encoder: detector, then
# mitigator (docs/methods.md, "SSL-Cleanse"; docs/sslcleanse.md).
# Takes any SimCLR / BYOL / MoCo v2 CIFAR ResNet-18 encoder checkpoint (the backbone is the same).
#   python tools/train.py configs/defenses/sslcleanse_resnet18_1xb256-20e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
# Data: a seeded 10 % of the CIFAR-10 training split, unlabeled for the defense (labels only
# name each cluster's majority class in the logs).
# Detector (PrepareModelHook, before epoch 1): k-means (K = 10, n_init 30) of the suspect's
# features; per cluster a mask + pattern making other clusters' images embed like the cluster
# (Adam lr 0.1, betas 0.5/0.9, batch 32 per cluster, lambda 0 -> 0.1, x/÷1.5 after 5
# successful/failed rounds of 20 steps, success = 1-NN-to-centre ASR >= 0.99 on 1000 images,
# early stop 10 rounds / give up after 50); MAD anomaly index of the trigger sizes, threshold 2.
# Mitigator (20 epochs, as the paper): half of each batch stamped with a flagged cluster's
# trigger; 1 - cos(f'(stamped x), f(x)) against the frozen suspect f, BN frozen.
# Outputs: metrics.json (`suspect` / `defended` BA-ASR-PA, `anomaly_index`, `backdoor_detected`,
# `flagged_clusters`, `sslcleanse` per-cluster details), defended_encoder.pth, epoch_20.pth
# (which also holds every synthesized trigger).
_base_ = [
    '../_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar10_finetune.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/default_runtime.py',
]

# ---- the defense's inputs: the suspect encoder and 10 % of the (unlabeled) training data ----
encoder_checkpoint = None  # required: --cfg-options encoder_checkpoint=PATH
mitigate_epochs = 20

model = dict(
    type='SSLCleanse',
    encoder_checkpoint=encoder_checkpoint,
    detector=dict(
        num_clusters=10,          # CIFAR-10: the official elbow/silhouette choice
        images_per_cluster=200,   # members kept per cluster for the synthesis
        kmeans_n_init=30,
        rounds=1000, steps_per_round=20, batch_size=32, lr=0.1,
        lam_init=0.1, lam_multiplier=1.5, patience=5,
        success_threshold=0.99, check_images=1000, knn='center',
        regularizer='mask',       # 'mask_pattern' = the official detector.py's mean(m * p)
        target='member',          # 'center' = --target_center
        early_stop_patience=10, give_up_rounds=50,
        threshold=2., mad_scale=1.4826),  # 1.4826 / 0.6745 = the official utils.py's scaling
    mitigate='flagged',               # 'all': unlearn every cluster's trigger
    no_detection='most_anomalous',    # or 'skip' (then the encoder stays the suspect)
    trigger_fraction=0.5,
    unlearn_weight=1., consistency_weight=1.,
    center_features=False,
    freeze_bn=True,
    img_size=32,
    seed=0)

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=mitigate_epochs,
                 val_interval=mitigate_epochs)
custom_hooks = [
    dict(type='PrepareModelHook'),  # the detector
    dict(type='SaveDefendedEncoderHook', filename='defended_encoder.pth'),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=1))

# ---- EVALUATOR ONLY: the attacker's trigger, used by the probe, never seen by the defense ----
# one of 'badencoder', 'estas', 'sslbackdoor', 'ctrl', 'multitarget' (or a list)
evaluate_attack = 'badencoder'
