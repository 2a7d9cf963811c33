# mocov2_resnet18_1xb512-coslr-500e_cifar10.py for one GPU: views made on the device
# (DeviceMultiViewPreprocessor, same CIFAR-10 recipe), bf16 autocast, channels-last.
# See docs/speed.md.
_base_ = ['./mocov2_resnet18_1xb512-coslr-500e_cifar10.py']

# mean / std / to_rgb: the base's (cifar10_ssl.py)
data_preprocessor = dict(
    type='DeviceMultiViewPreprocessor',
    transforms='cifar10_ssl',  # = cifar10_ssl.py's view_pipeline (bmaiu_plugin.augment.PRESETS)
    num_views=2)
train_dataloader = dict(num_workers=8, pin_memory=True,
                        dataset=dict(pipeline=[dict(type='PackInputs')]))

optim_wrapper = dict(type='AutocastOptimWrapper', dtype='bfloat16')  # bf16 autocast, no scaler
custom_hooks = [dict(type='ChannelsLastHook')]
# torch.compile of the encoder + neck (see docs/speed.md before switching it on):
# custom_hooks = [dict(type='ChannelsLastHook'), dict(type='CompileModulesHook')]
