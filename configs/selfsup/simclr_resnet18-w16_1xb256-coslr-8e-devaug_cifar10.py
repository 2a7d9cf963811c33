# simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py with the fast paths (the quickstart's SimCLR):
# the views made by the data preprocessor (DeviceMultiViewPreprocessor, batched tensor ops, same
# recipe) instead of mmpretrain transforms in the dataloader workers, bf16 autocast where the
# CPU or GPU computes bf16 natively (float32 elsewhere) and channels-last weights.  The CPU-scale
# counterpart of simclr_resnet18_1xb512-coslr-200e-devaug_cifar10.py.  See docs/speed.md.
_base_ = ['./simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py']

# mean / std / to_rgb: the base's (cifar10_ssl.py)
data_preprocessor = dict(
    type='DeviceMultiViewPreprocessor',
    transforms='cifar10_ssl',  # = cifar10_ssl.py's view_pipeline (bmaiu_plugin.augment.PRESETS)
    num_views=2)
train_dataloader = dict(dataset=dict(pipeline=[dict(type='PackInputs')]))
# AutocastOptimWrapper (native bf16 only) and ChannelsLastHook (bmaiu_plugin/engine/perf.py)
bf16_autocast = True
channels_last = True
