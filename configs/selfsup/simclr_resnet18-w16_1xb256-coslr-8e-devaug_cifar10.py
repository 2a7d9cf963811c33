# simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py with the fast paths (the quickstart's SimCLR):
# the views made by the data preprocessor (DeviceMultiViewPreprocessor, batched tensor ops, same
# recipe) instead of mmpretrain transforms in the dataloader workers; channels-last weights.
# The CPU-scale counterpart of simclr_resnet18_1xb512-coslr-200e-devaug_cifar10.py; docs/speed.md.
_base_ = ['./simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py']

# mean / std / to_rgb: the base's (cifar10_ssl.py)
data_preprocessor = dict(
    type='DeviceMultiViewPreprocessor',
    transforms='cifar10_ssl',  # = cifar10_ssl.py's view_pipeline (bmaiu_plugin.augment.PRESETS)
    num_views=2)
train_dataloader = dict(dataset=dict(pipeline=[dict(type='PackInputs')]))
# ChannelsLastHook (bmaiu_plugin/engine/perf.py); add bf16_autocast = True where bf16 pays (GPUs,
# some CPUs: tools/benchmark.py --amp bf16 tells)
channels_last = True
