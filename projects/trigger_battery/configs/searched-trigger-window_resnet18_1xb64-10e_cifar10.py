# Ablation of the searched-trigger search space: the random-place patch and the window member only
# (the shipped search space has all four members:
# configs/searched_trigger/searched-trigger-ensemble_resnet18_1xb64-10e_cifar10.py).
#   PYTHONPATH=.:tests python projects/trigger_battery/small_scale.py --families blend \
#       --defense \
#       projects/trigger_battery/configs/searched-trigger-window_resnet18_1xb64-10e_cifar10.py
_base_ = ['../../../configs/searched_trigger/searched-trigger_resnet18_1xb64-10e_cifar10.py']
model = dict(search_space=[dict(type='WindowPatchSearch', size=10, stride=6, img_size=32)])
