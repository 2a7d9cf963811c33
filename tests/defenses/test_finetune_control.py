"""The fine-tuning-only control: the clean-consistency term of the unlearning defenses alone."""
import os.path as osp

import torch
from mmengine.config import Config

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.apis import finalize_config
from bmaiu_plugin.defenses import BaseDefense, FineTuneControl
from bmaiu_plugin.defenses.bmaiu import unlearning_losses
from bmaiu_plugin.registry import MODELS
from conftest import REPO_ROOT, randomize_bn

W8 = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
          norm_cfg=dict(type='BN'))


def _control(tmp_path, u0=1.):
    net = randomize_bn(MODELS.build(W8), seed=1)
    enc = str(tmp_path / 'enc.pth')
    torch.save(net.state_dict(), enc)
    model = FineTuneControl(backbone=W8, encoder_checkpoint=enc, u0=u0)
    model.init_weights()
    return model


def test_loss_is_the_unlearning_defenses_clean_term(tmp_path):
    model = _control(tmp_path, u0=2.)
    assert isinstance(model, BaseDefense)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 32, 32), generator=g, dtype=torch.uint8)
    with torch.no_grad():  # perturb the student so that the term is not zero
        for p in model.backbone.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    model.train()
    out = model.loss(x)
    ref = unlearning_losses(model.features, model.backbone, model.suspect, x, x, x[:1].expand(6,
                            -1, -1, -1), u0=2., u2=0., u3=0.)
    assert set(out) == {'loss_consistency'}
    assert torch.allclose(out['loss_consistency'], ref['loss_consistency'])
    assert out['loss_consistency'] > 0


def test_starts_at_zero_and_moves_only_through_weight_decay(tmp_path):
    model = _control(tmp_path)
    x = torch.randint(0, 256, (8, 3, 32, 32), generator=torch.Generator().manual_seed(1),
                      dtype=torch.uint8)
    model.train()
    loss = model.loss(x)['loss_consistency']
    assert abs(loss.item()) < 1e-6
    loss.backward()
    grads = [p.grad.abs().max().item() for p in model.backbone.parameters() if p.grad is not None]
    assert max(grads) < 1e-4


def test_configs_build_without_trigger_search(tmp_path):
    for name in ('finetune-control_resnet18_1xb64-10e_cifar10.py',
                 'finetune-control_resnet18-w16_1xb64-10e_cifar10.py'):
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'defenses', name))
        searched = Config.fromfile(osp.join(
            REPO_ROOT, 'configs', 'searched_trigger',
            name.replace('finetune-control', 'searched-trigger')))
        # the searched-trigger defense's budget
        assert cfg.train_cfg == searched.train_cfg and cfg.optim_wrapper == searched.optim_wrapper
        assert cfg.train_dataloader == searched.train_dataloader
        assert cfg.model.backbone == searched.model.backbone and cfg.custom_hooks == []
        net = MODELS.build(cfg.model.backbone)
        enc = str(tmp_path / 'e.pth')
        torch.save(net.state_dict(), enc)
        cfg.encoder_checkpoint = enc
        cfg = finalize_config(cfg)
        assert isinstance(MODELS.build(cfg.model), FineTuneControl)
