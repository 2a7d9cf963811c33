"""I-BAU: universal perturbation, implicit hypergradient vs finite differences, unlearning."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bmaiu_plugin.defenses.ibau import (EncoderClassifier, ibau_hypergradient, ibau_inner_map,
                                        ibau_perturbation, ibau_unlearn)
from bmaiu_plugin.models.features import PixelNormalizer
from bmaiu_plugin.utils.errors import ConfigValueError


def _classifier(seed: int = 0) -> EncoderClassifier:
    torch.manual_seed(seed)
    enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten())
    with torch.no_grad():  # non-trivial frozen BN statistics
        for bn in (enc[1], enc[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.)
    head = nn.Linear(8 * 4 * 4, 4)
    with torch.no_grad():
        head.weight.mul_(10)  # confident, with input gradients like a trained classifier's
    return EncoderClassifier(enc, head)


def _batches(n_batches: int = 4, b: int = 16, seed: int = 0, shape=(3, 8, 8), classes: int = 4,
             dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, *shape, generator=g, dtype=dtype),
             torch.randint(0, classes, (b,), generator=g)) for _ in range(n_batches)]


def _ce_vs_predictions(model, batches, delta):
    with torch.no_grad():
        xs = torch.cat([x for x, _ in batches])
        y_hat = model(xs).argmax(1)
        return float(F.cross_entropy(model(xs + delta), y_hat))


def test_perturbation_raises_loss_on_own_predictions():
    model = _classifier().train()  # must be evaluated in eval mode, and left as it was
    bn_before = copy.deepcopy(model.encoder[1].state_dict())
    batches = _batches()
    delta = ibau_perturbation(model, batches)
    assert delta.shape == (1, 3, 8, 8) and not delta.requires_grad
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.encoder[1].state_dict().items():
        assert torch.equal(v, bn_before[k]), k  # running stats untouched (eval mode)
    model.eval()
    before = _ce_vs_predictions(model, batches, torch.zeros_like(delta))
    after = _ce_vs_predictions(model, batches, delta)
    assert after > before + 1.0, (before, after)
    # a random perturbation of the same norm does much less
    g = torch.Generator().manual_seed(1)
    rand = torch.randn(delta.shape, generator=g)
    rand = rand / rand.norm() * delta.norm()
    assert _ce_vs_predictions(model, batches, rand) < before + 0.5 * (after - before)


def test_perturbation_with_pixel_normalizer():
    """0-255 pixel batches + a normalizer: delta is added after the normalization."""
    model = _classifier().eval()
    norm = PixelNormalizer([120.] * 3, [60.] * 3)
    pix = [((x * 60 + 120), y) for x, y in _batches()]
    d_pix = ibau_perturbation(model, pix, normalizer=norm)
    d_norm = ibau_perturbation(model, [(norm(x), y) for x, y in pix])
    torch.testing.assert_close(d_pix, d_norm)


# ---- hypergradient vs. a finite-difference reference on a linear model (float64) -----------

def _lin_logits(theta, x, c, d):
    w, b = theta[:c * d].reshape(c, d), theta[c * d:]
    return x.reshape(len(x), -1) @ w.T + b


def _np_ce(z, y):
    z = z - z.max(1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))


def _np_phi(delta, theta, x0, y0, c, d, inner_lr, l2):
    """Phi written by hand: delta - lr * (-(1/B) sum_i W^T (softmax_i - onehot_i) + 2 l2 delta)."""
    w = theta[:c * d].reshape(c, d)
    z = _lin_logits(theta, x0 + delta, c, d)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y0)), y0] -= 1
    grad_ce = (p @ w).mean(0)  # d CE / d delta (delta is shared by all samples)
    return delta - inner_lr * (-grad_ce.reshape(delta.shape) + 2 * l2 * delta)


def _fd_jac(fn, v, h=1e-6):
    cols = []
    for j in range(v.size):
        e = np.zeros_like(v)
        e.flat[j] = h
        cols.append(((np.asarray(fn(v + e)) - np.asarray(fn(v - e))) / (2 * h)).ravel())
    return np.stack(cols, 1)  # (out, in)


def _fd_hypergradient(theta, delta, x0, y0, xb, yb, mask, c, d, K, inner_lr, l2):
    phi_d = lambda dd: _np_phi(dd, theta, x0, y0, c, d, inner_lr, l2)  # noqa: E731
    phi_t = lambda tt: _np_phi(delta, tt, x0, y0, c, d, inner_lr, l2)  # noqa: E731
    lout = lambda tt, dd: _np_ce(_lin_logits(tt, xb + mask * dd, c, d), yb)  # noqa: E731
    j_d, j_t = _fd_jac(phi_d, delta), _fd_jac(phi_t, theta)
    g_d = _fd_jac(lambda dd: [lout(theta, dd)], delta)[0]
    g_t = _fd_jac(lambda tt: [lout(tt, delta)], theta)[0]
    v = np.zeros_like(g_d)
    for _ in range(K):
        v = j_d.T @ v + g_d
    return g_t + j_t.T @ v, g_t


def _linear_case(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        model[1].weight.mul_(4)
    (x0, y0), (xb, yb) = _batches(2, 5, seed, shape=(1, 2, 3), classes=3, dtype=torch.float64)
    delta = torch.randn(1, 1, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    return model, (x0, y0), (xb, yb), delta


@pytest.mark.parametrize('K,inner_lr', [(0, 0.1), (1, 0.1), (5, 0.1), (5, 1.0)])
def test_hypergradient_matches_finite_differences(K, inner_lr):
    model, (x0, y0), (xb, yb), delta = _linear_case()
    mask = torch.tensor([1., 0., 1., 1., 0.], dtype=torch.float64)
    params = list(model.parameters())
    hyper, loss = ibau_hypergradient(model, params, delta, (x0, y0), (xb, yb), K=K,
                                     inner_lr=inner_lr, perturb_mask=mask)
    got = torch.cat([h.flatten() for h in hyper]).numpy()
    theta = torch.cat([p.detach().flatten() for p in params]).numpy()
    m = mask.numpy().reshape(-1, 1, 1, 1)
    ref, direct = _fd_hypergradient(theta, delta.numpy(), x0.numpy(), y0.numpy(), xb.numpy(),
                                    yb.numpy(), m, 3, 6, K, inner_lr, 1e-3)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8)
    # the implicit term is really exercised (and resolved far above the FD error)
    rel = np.linalg.norm(ref - direct) / np.linalg.norm(direct)
    if K == 0:
        assert rel == 0
    else:
        assert rel > {1: 0.005, 5: 0.03}[K] * inner_lr / 0.1, rel
    assert float(loss) == pytest.approx(
        _np_ce(_lin_logits(theta, xb.numpy() + m * delta.numpy(), 3, 6), yb.numpy()))
    assert all(p.grad is None for p in params)  # accumulate=False writes nothing


def test_inner_map_is_one_gradient_step():
    model, (x0, y0), _, delta = _linear_case()
    theta = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    phi = ibau_inner_map(model, delta.clone().requires_grad_(True), x0, y0, create_graph=False)
    ref = _np_phi(delta.numpy(), theta, x0.numpy(), y0.numpy(), 3, 6, 0.1, 1e-3)
    np.testing.assert_allclose(phi.detach().numpy(), ref, rtol=1e-10, atol=1e-12)


def test_unlearn_steps_with_the_hypergradient():
    """With SGD(lr=1) the parameter updates are exactly minus the hypergradients, the inner map
    uses the first batch, and delta is the round's ibau_perturbation."""
    model, b0, b1, _ = _linear_case()
    batches = [b0, b1]
    ref_model = copy.deepcopy(model)
    delta = ibau_perturbation(ref_model, batches)
    for xb, yb in batches:
        hyper, _ = ibau_hypergradient(ref_model, list(ref_model.parameters()), delta, b0,
                                      (xb, yb), K=5)
        with torch.no_grad():
            for p, h in zip(ref_model.parameters(), hyper):
                p -= h
    opt = torch.optim.SGD(model.parameters(), lr=1.)
    out = ibau_unlearn(model, None, batches, rounds=1, portion=1.0, optimizer=opt)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out['delta'], delta)
    assert out['steps'] == 2 and len(out['outer_loss']) == 1


def test_unlearn_portion_zero_is_plain_gradient_descent():
    """int(portion * B) = 0 perturbed samples (e.g. the original 0.01 on a batch < 100)."""
    model, b0, _, _ = _linear_case()
    ref = copy.deepcopy(model)
    ibau_unlearn(model, None, [b0], rounds=1, portion=0.01,
                 optimizer=torch.optim.SGD(model.parameters(), lr=1.))
    loss = F.cross_entropy(ref(b0[0]), b0[1])
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for p, q, g in zip(model.parameters(), ref.parameters(), grads):
        torch.testing.assert_close(p, q - g)


def test_unlearn_reduces_adversarial_loss_and_keeps_bn_frozen():
    model = _classifier()
    batches = _batches()
    model.eval()
    delta0 = ibau_perturbation(model, batches)
    xs = torch.cat([x for x, _ in batches])
    ys = torch.cat([y for _, y in batches])
    with torch.no_grad():
        loss_before = float(F.cross_entropy(model(xs + delta0), ys))
    model.train()
    params_before = [p.detach().clone() for p in model.parameters()]
    stats_before = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    out = ibau_unlearn(model, None, batches, rounds=3, outer_lr=1e-2, portion=1.0)
    assert model.training  # mode restored
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), params_before))
    for k, v in stats_before.items():
        assert torch.equal(model.state_dict()[k], v), k
    model.eval()
    with torch.no_grad():
        loss_after = float(F.cross_entropy(model(xs + delta0), ys))
    assert loss_after < loss_before - 0.3, (loss_before, loss_after)
    assert len(out['outer_loss']) == 3 and out['steps'] == 12
    assert out['delta'].shape == (1, 3, 8, 8)


def test_bad_settings_raise():
    model = _classifier()
    with pytest.raises(ConfigValueError, match='portion'):
        ibau_unlearn(model, None, _batches(1), portion=1.5)
    with pytest.raises(ConfigValueError, match='rounds'):
        ibau_unlearn(model, None, _batches(1), rounds=0)
    with pytest.raises(ConfigValueError, match='at least one batch'):
        ibau_perturbation(model, [])
    with pytest.raises(ConfigValueError, match='needs params'):
        ibau_unlearn(lambda x: x, None, _batches(1))
