# Searched-trigger unlearning over a search space beyond patches (docs/searched_trigger.md):
# the random-place 10x10 patch of searched-trigger_resnet18_1xb64-10e_cifar10.py plus four
# bounded families searched beside it on the suspect (label-free, blind to the attack) and
# unlearned together, each image of a batch stamped with one of them:
#   * fixed-place 10x10 windows every 6 px (covers fixed patches of up to 5 px),
#   * a full-image mask and pattern of area <= 200 px (blends up to alpha ~0.2, any-shape patches),
#   * an additive perturbation with L-inf <= 16 (frequency triggers, faint blends),
#   * a smooth warp of at most ~1.4 px (WaNet-style warps).
#   mim train bmaiu_plugin configs/searched_trigger/searched-trigger-ensemble_resnet18_1xb64-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
_base_ = ['./searched-trigger_resnet18_1xb64-10e_cifar10.py']

model = dict(search_space=[
    dict(type='WindowPatchSearch', size=10, stride=6, img_size=32),
    dict(type='MaskPatternSearch', area=200, img_size=32),
    dict(type='AdditiveSearch', eps=16, img_size=32),
    dict(type='WarpSearch', k=4, strength=2),
])
