# byol_resnet18_1xb512-coslr-500e_cifar10.py for one GPU: views made on the device
# (DeviceMultiViewPreprocessor, same CIFAR-10 recipe), bf16 autocast, channels-last.
# See docs/speed.md.
_base_ = ['./byol_resnet18_1xb512-coslr-500e_cifar10.py']

data_preprocessor = dict(
    _delete_=True,
    type='DeviceMultiViewPreprocessor',
    transforms='cifar10_ssl',  # = cifar10_ssl.py's view_pipeline (bmaiu_plugin.augment.PRESETS)
    num_views=2,
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    to_rgb=False)
train_dataloader = dict(num_workers=8, pin_memory=True,
                        dataset=dict(pipeline=[dict(type='PackInputs')]))

optim_wrapper = dict(type='AutocastOptimWrapper', dtype='bfloat16')  # bf16 autocast, no scaler
custom_hooks = [dict(type='ChannelsLastHook')]
# torch.compile of the encoder + neck (see docs/speed.md before switching it on):
# custom_hooks = [dict(type='ChannelsLastHook'), dict(type='CompileModulesHook')]
