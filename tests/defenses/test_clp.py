"""CLP: UCLC scores against a hand SVD, outlier pruning, and the conv/BN pairing checks."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from bmaiu_plugin.defenses.clp import clp_prune, clp_scores, conv_bn_pairs
from bmaiu_plugin.utils.errors import ConfigValueError

OUTLIER = 5


def _net(scale_outlier: float = 50.) -> nn.Module:
    """conv(3->16)-BN-ReLU-conv(16->24)-BN with trained-looking BN parameters and stats."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                        nn.Conv2d(16, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in (net[1], net[4]):
            c = bn.num_features
            bn.weight.copy_(torch.rand(c, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(c, generator=g))
            bn.running_mean.copy_(torch.randn(c, generator=g))
            bn.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
        net[0].weight[OUTLIER] *= scale_outlier
    return net.eval()


def test_scores_match_hand_svd():
    net = _net()
    scores = clp_scores(net)
    assert list(scores) == ['1', '4']
    assert scores['1'].shape == (16,) and scores['4'].shape == (24,)
    conv, bn = net[0], net[1]
    for k in (0, 7, OUTLIER):
        w = conv.weight[k].detach().numpy().reshape(3, 9).astype(np.float64)
        s_max = np.linalg.svd(w, compute_uv=False)[0]
        gamma, var = bn.weight[k].item(), bn.running_var[k].item()
        expected = s_max * abs(gamma / np.sqrt(var))  # no eps, as the original
        assert scores['1'][k].item() == pytest.approx(expected, rel=1e-5)


def test_prune_removes_exactly_the_outlier_channel():
    net = _net()
    before = copy.deepcopy(net.state_dict())
    pruned = clp_prune(net, u=3)
    assert pruned == {'1': [OUTLIER], '4': []}
    after = net.state_dict()
    bn_w, bn_b = after['1.weight'], after['1.bias']
    assert bn_w[OUTLIER].item() == 0 and bn_b[OUTLIER].item() == 0
    keep = [i for i in range(16) if i != OUTLIER]
    assert torch.equal(bn_w[keep], before['1.weight'][keep])
    assert torch.equal(bn_b[keep], before['1.bias'][keep])
    # everything else (conv weights, running stats, the second layer) is untouched
    for name in before:
        if name not in ('1.weight', '1.bias'):
            assert torch.equal(after[name], before[name]), name


def test_threshold_is_mean_plus_u_unbiased_std():
    net = _net(scale_outlier=1.)  # no outlier: pick u so that exactly the top channel goes
    s = clp_scores(net)['4'].double()
    top2 = s.topk(2).values
    mu, sd = s.mean(), s.std()  # unbiased, torch's default
    u = float(((top2[0] + top2[1]) / 2 - mu) / sd)  # threshold between the two largest
    assert u > 0
    pruned = clp_prune(net, u=u)
    assert pruned['4'] == [int(s.argmax())]
    # the biased std would give a different (smaller) threshold: check the test discriminates
    assert float(mu + u * s.std(unbiased=False)) < float(top2[0])


def test_u_zero_prunes_above_mean_and_negative_u_raises():
    net = _net()
    s = clp_scores(net)['4']
    pruned = clp_prune(net, u=0)
    assert pruned['4'] == torch.nonzero(s > s.mean()).flatten().tolist()
    with pytest.raises(ConfigValueError, match='u must be'):
        clp_prune(_net(), u=-0.5)
    with pytest.raises(ConfigValueError, match='u must be'):
        clp_prune(_net(), u=float('nan'))
    with pytest.raises(ConfigValueError, match='u must be'):
        clp_prune(_net(), u='three')


def test_channel_mismatch_raises_clear_error():
    bad = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(6))
    with pytest.raises(ConfigValueError,
                       match=r"BatchNorm2d '1' \(6 channels\).*Conv2d before it, '0' \(8 output"):
        clp_scores(bad)
    with pytest.raises(ConfigValueError, match='cannot pair'):
        clp_prune(bad)
    orphan = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    with pytest.raises(ConfigValueError, match="'0' has no Conv2d before it"):
        clp_scores(orphan)


def test_pairs_mmpretrain_resnet_cifar():
    """Every BN of mmpretrain's ResNet_CIFAR-18 pairs with its conv (incl. downsample)."""
    from mmpretrain.models.backbones import ResNet_CIFAR
    torch.manual_seed(0)
    net = ResNet_CIFAR(depth=18)
    pairs = [(c, b) for c, _, b, _ in conv_bn_pairs(net)]
    assert len(pairs) == 1 + 8 * 2 + 3
    assert ('conv1', 'bn1') in pairs
    assert ('layer2.0.downsample.0', 'layer2.0.downsample.1') in pairs
    assert ('layer4.1.conv2', 'layer4.1.bn2') in pairs
    assert all(b == c.replace('conv', 'bn') or b == c[:-1] + '1' for c, b in pairs)
