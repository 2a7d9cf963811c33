# Linear-probe backdoor evaluation (BA / ASR / PA) of a PreAct ResNet-18 encoder; see
# probe_resnet18_cifar10.py.  Also the default config of `backdoorbench export`.
_base_ = ['./probe_resnet18_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
