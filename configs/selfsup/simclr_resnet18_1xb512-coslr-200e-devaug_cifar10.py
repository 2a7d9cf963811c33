# SimCLR, CIFAR ResNet-18, batch 512, lr 0.06 (SGD, 10-epoch warm-up + cosine), 200 epochs, for
# one GPU: the views are made on the device (DeviceMultiViewPreprocessor, the cifar10_ssl recipe
# of ../_base_/datasets/cifar10_ssl.py as batched tensor ops), the forward pass runs under bf16
# autocast, weights and views are channels-last.  See docs/speed.md.
#   mim train bmaiu_plugin configs/selfsup/simclr_resnet18_1xb512-coslr-200e-devaug_cifar10.py
_base_ = ['./simclr_resnet18_1xb512-coslr-500e_cifar10.py']

# the dataset only packs the uint8 image; the preprocessor makes the two views on the device
# mean / std / to_rgb: the base's (cifar10_ssl.py)
data_preprocessor = dict(
    type='DeviceMultiViewPreprocessor',
    transforms='cifar10_ssl',  # = cifar10_ssl.py's view_pipeline (bmaiu_plugin.augment.PRESETS)
    num_views=2)
train_dataloader = dict(num_workers=8, pin_memory=True,
                        dataset=dict(pipeline=[dict(type='PackInputs')]))

# speed switches (each can be turned off independently)
optim_wrapper = dict(type='AutocastOptimWrapper', dtype='bfloat16')  # bf16 autocast, no scaler
custom_hooks = [dict(type='ChannelsLastHook')]
# torch.compile of the encoder + neck (see docs/speed.md before switching it on):
# custom_hooks = [dict(type='ChannelsLastHook'), dict(type='CompileModulesHook')]

max_epochs = 200
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 10, by_epoch=True, begin=10,
         end=max_epochs, eta_min=0.),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
