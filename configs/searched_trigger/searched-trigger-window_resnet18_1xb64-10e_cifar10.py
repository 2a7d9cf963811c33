# The searched-trigger recipe with its fixed-place window member beside the random-place patch:
# one 10x10 pattern per window of a 6-pixel grid, each pasted at its own place, searched
# together (WindowPatchSearch).  A trigger implanted at one place fires only there; every
# 5x5 patch lies inside some window.  The lighter of the search-space configs (the ensemble
# adds the mask, additive and warp members, searched-trigger-ensemble_*).
#   mim train bmaiu_plugin configs/searched_trigger/searched-trigger-window_resnet18_1xb64-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
_base_ = ['./searched-trigger_resnet18_1xb64-10e_cifar10.py']

model = dict(search_space=[dict(type='WindowPatchSearch', size=10, stride=6, img_size=32)])
