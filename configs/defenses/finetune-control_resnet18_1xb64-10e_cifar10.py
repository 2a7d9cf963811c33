# The fine-tuning-only control of the unlearning defenses (docs/methods.md, "Fine-tuning-only
# control"): the searched-trigger defense's data (10 % of the training split, unlabeled), epochs
# (10), batch (64), optimizer and clean-consistency loss u0 * mean[1 - cos(f(x), f0(x))], with no
# trigger terms and no trigger search.  What the defenses remove and this control keeps was
# removed by their trigger terms.
#   python tools/train.py configs/defenses/finetune-control_resnet18_1xb64-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
_base_ = ['../searched_trigger/searched-trigger_resnet18_1xb64-10e_cifar10.py']
model = dict(_delete_=True, type='FineTuneControl', backbone={{_base_.model.backbone}},
             mean={{_base_.model.mean}}, std={{_base_.model.std}},
             encoder_checkpoint=None, u0=1., freeze_bn=True, seed=0)
custom_hooks = []
