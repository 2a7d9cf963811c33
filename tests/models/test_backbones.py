"""CIFAR backbones: VGG_CIFAR, SENet_CIFAR and PreActResNet."""
import pytest
import torch
import torch.nn as nn

import bmaiu_plugin  # noqa: F401  (registration)
from bmaiu_plugin.models.backbones import (PreActResNet, SEBasicBlock, SELayer, SENet_CIFAR,
                                          VGG_CIFAR)
from mmpretrain.registry import MODELS


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _forward(m: nn.Module, x: torch.Tensor):
    m.eval()
    with torch.no_grad():
        return m(x)


@pytest.fixture
def x32():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- registration
@pytest.mark.parametrize('name,cls', [('VGG_CIFAR', VGG_CIFAR), ('SENet_CIFAR', SENet_CIFAR),
                                      ('PreActResNet', PreActResNet)])
def test_registered_in_mmpretrain_models(name, cls):
    assert MODELS.get(name) is cls
    assert cls.__module__.startswith('bmaiu_plugin.models.backbones')
    built = MODELS.build(dict(type=name, depth=min(cls.arch_settings)))
    assert isinstance(built, cls)


def test_names_do_not_shadow_mmpretrain_backbones():
    # the mmpretrain classes of the same families keep their own names
    assert MODELS.get('VGG').__module__.startswith('mmpretrain')
    assert MODELS.get('SEResNet').__module__.startswith('mmpretrain')
    assert MODELS.get('ResNet_CIFAR').__module__.startswith('mmpretrain')


# ----------------------------------------------------------------------------- output shapes
@pytest.mark.parametrize('depth', [11, 13, 16, 19])
def test_vgg_output_shape(depth, x32):
    out = _forward(VGG_CIFAR(depth=depth), x32)
    assert isinstance(out, tuple) and len(out) == 1
    assert out[-1].shape == (2, 512, 1, 1)


@pytest.mark.parametrize('depth', [18, 34])
def test_senet_output_shape(depth, x32):
    out = _forward(SENet_CIFAR(depth=depth), x32)
    assert isinstance(out, tuple) and len(out) == 1
    assert out[-1].shape == (2, 512, 4, 4)


def test_vgg_all_stage_outputs_and_negative_indices(x32):
    net = VGG_CIFAR(depth=11, base_channels=8, out_indices=(0, 1, 2, 3, 4))
    shapes = [tuple(o.shape) for o in _forward(net, x32)]
    assert shapes == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2),
                      (2, 64, 1, 1)]
    assert VGG_CIFAR(depth=11, out_indices=(-1, )).out_indices == (4, )


def test_vgg_without_last_pool_keeps_2x2(x32):
    out = _forward(VGG_CIFAR(depth=11, base_channels=8, with_last_pool=False), x32)
    assert out[-1].shape == (2, 64, 2, 2)


def test_senet_all_stage_outputs(x32):
    net = SENet_CIFAR(depth=18, base_channels=8, out_indices=(0, 1, 2, -1))
    shapes = [tuple(o.shape) for o in _forward(net, x32)]
    assert shapes == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8), (2, 64, 4, 4)]


# ----------------------------------------------------------------------------- width / depth
@pytest.mark.parametrize('cfg,spatial', [(dict(type='VGG_CIFAR', depth=11), 1),
                                         (dict(type='VGG_CIFAR', depth=16), 1),
                                         (dict(type='SENet_CIFAR', depth=18), 4),
                                         (dict(type='SENet_CIFAR', depth=34), 4)])
@pytest.mark.parametrize('base', [8, 16])
def test_base_channels_sets_width(cfg, spatial, base, x32):
    net = MODELS.build(dict(cfg, base_channels=base))
    out = _forward(net, x32)
    assert out[-1].shape == (2, 8 * base, spatial, spatial)
    assert net.out_channels == 8 * base
    assert _params(net) < _params(MODELS.build(cfg))


def test_parameter_count_grows_with_depth():
    vgg = {d: _params(VGG_CIFAR(depth=d, base_channels=16)) for d in (11, 13, 16, 19)}
    assert vgg[11] < vgg[13] < vgg[16] < vgg[19]
    se18, se34 = (_params(SENet_CIFAR(depth=d, base_channels=16)) for d in (18, 34))
    assert se18 < se34


def test_full_width_parameter_counts():
    # exact counts at the default width (pins the architecture): the SE gates add ~1% to
    # ResNet-18's 11.17M
    assert _params(VGG_CIFAR(depth=11)) == 9_223_232
    assert _params(VGG_CIFAR(depth=16)) == 14_718_912
    assert _params(SENet_CIFAR(depth=18)) == 11_257_912
    assert _params(SENet_CIFAR(depth=34)) == 21_438_188


def test_senet_has_one_se_gate_per_block():
    for depth, blocks in ((18, 8), (34, 16)):
        net = SENet_CIFAR(depth=depth, base_channels=8)
        assert sum(isinstance(m, SEBasicBlock) for m in net.modules()) == blocks
        assert sum(isinstance(m, SELayer) for m in net.modules()) == blocks


def test_se_layer_gates_channels():
    se = SELayer(16, ratio=4)
    x = torch.rand(2, 16, 5, 5)
    y = se(x)
    assert y.shape == x.shape
    gate = y / x  # one gate in (0, 1) per sample and channel, constant over space
    assert torch.allclose(gate, gate[..., :1, :1].expand_as(gate), atol=1e-5)
    assert (gate > 0).all() and (gate < 1).all()
    assert SELayer(4, ratio=16).fc1.out_channels == 1  # never squeezed to zero channels


def test_vgg_without_norm_has_conv_bias_and_no_bn(x32):
    net = VGG_CIFAR(depth=11, base_channels=8, norm_cfg=None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d))
    assert _forward(net, x32)[-1].shape == (2, 64, 1, 1)


@pytest.mark.parametrize('cls,kwargs', [(VGG_CIFAR, dict(depth=12)),
                                        (SENet_CIFAR, dict(depth=50))])
def test_invalid_depth_raises(cls, kwargs):
    with pytest.raises(KeyError):
        cls(**kwargs)


def test_invalid_out_index_raises():
    with pytest.raises(ValueError):
        SENet_CIFAR(depth=18, base_channels=8, out_indices=(4, ))


# ----------------------------------------------------------------------------- freezing
def test_senet_frozen_stages_and_norm_eval():
    net = SENet_CIFAR(depth=18, base_channels=8, frozen_stages=1)
    net.train()
    for m in (net.conv1, net.norm1, net.layer1):
        assert all(not p.requires_grad for p in m.parameters())
    assert not net.norm1.training and not net.layer1.training
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert net.layer2.training

    net = SENet_CIFAR(depth=18, base_channels=8, norm_eval=True)
    net.train()
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert all(p.requires_grad for p in net.parameters())


def test_vgg_frozen_stages_and_norm_eval():
    net = VGG_CIFAR(depth=11, base_channels=8, frozen_stages=2)
    net.train()
    for name in ('layer1', 'layer2'):
        stage = getattr(net, name)
        assert not stage.training
        assert all(not p.requires_grad for p in stage.parameters())
    assert net.layer3.training and all(p.requires_grad for p in net.layer3.parameters())

    net = VGG_CIFAR(depth=11, base_channels=8, norm_eval=True)
    net.train()
    assert not any(m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_senet_zero_init_residual():
    net = SENet_CIFAR(depth=18, base_channels=8, zero_init_residual=True)
    net.init_weights()
    blocks = [m for m in net.modules() if isinstance(m, SEBasicBlock)]
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)


def test_backward_reaches_every_parameter(x32):
    for net in (VGG_CIFAR(depth=11, base_channels=8), SENet_CIFAR(depth=18, base_channels=8)):
        net.train()
        net(x32)[-1].mean().backward()
        assert all(p.grad is not None for p in net.parameters())


# ------------------------------------------------------------------------------ PreActResNet
def test_preact_resnet18_is_backdoorbenchs_preactresnet18():
    """Names, order and shapes of BackdoorBench's ``preactresnet18`` (without its head), and
    the same function: 11,166,016 backbone parameters (11,171,146 with the 10-class head)."""
    from bmaiu_plugin.interop.bb_procedure import bb_generate_cls_model
    from bmaiu_plugin.models.features import pool_features
    net = PreActResNet(depth=18)
    bb = bb_generate_cls_model('preactresnet18', 10)
    ours = net.state_dict()
    theirs = {k: v for k, v in bb.state_dict().items() if not k.startswith('linear.')}
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    assert sum(p.numel() for p in net.parameters()) == 11_166_016
    assert sum(p.numel() for p in bb.parameters()) == 11_171_146
    from conftest import randomize_bn
    randomize_bn(bb, seed=0)
    theirs = {k: v for k, v in bb.state_dict().items() if not k.startswith('linear.')}
    net.load_state_dict(theirs)
    net.eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(bb.linear(pool_features(net(x))), bb(x), atol=1e-5)


def test_preact_resnet_stages_widths_and_freezing():
    net = PreActResNet(depth=34, base_channels=8, out_indices=(0, 1, 2, -1), frozen_stages=2)
    outs = net(torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 8, 32, 32), (2, 16, 16, 16), (2, 32, 8, 8),
                                              (2, 64, 4, 4)]
    assert [len(getattr(net, f'layer{i}')) for i in range(1, 5)] == [3, 4, 6, 3]
    net.train()
    assert not net.conv1.weight.requires_grad and not net.layer2[0].bn1.training
    assert all(not p.requires_grad for p in net.layer2.parameters())
    assert all(p.requires_grad for p in net.layer3.parameters()) and net.layer3.training
    with pytest.raises(KeyError, match='invalid depth 50'):
        PreActResNet(depth=50)
