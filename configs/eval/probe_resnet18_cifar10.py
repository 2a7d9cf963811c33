# Linear-probe backdoor evaluation of any CIFAR ResNet-18 encoder checkpoint (BA / ASR / PA):
#   mim test bmaiu_plugin configs/eval/probe_resnet18_cifar10.py --checkpoint PATH \
#       --cfg-options evaluate_attack=badencoder
#   (or: python tools/test.py configs/eval/probe_resnet18_cifar10.py PATH --cfg-options ...)
# PATH: an mmengine checkpoint of an SSL model, a plain state dict or a .safetensors file
# (loaded as tensors only).  evaluate_attack: 'badencoder' | 'estas' | 'sslbackdoor' | 'ctrl' |
# 'multitarget' (or a list); none reports BA only.
_base_ = [
    '../_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/default_runtime.py',
]
encoder_checkpoint = None  # required
evaluate_attack = None
model = dict(type='ProbedEncoder', encoder_checkpoint=encoder_checkpoint)
