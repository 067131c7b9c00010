"""Excitation backprop and c-MWP: the rules against hand computations, conservation, batch-norm folding,
residual sums, users' models, and the model left as found. TorchRay comparisons: test_excitation_peers.py."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.demo.model import ShapesCNN
from tb_viz_plugin.methods.attribution import attribute, contrastive_excitation_backprop, excitation_backprop
from tb_viz_plugin.methods.attribution.excitation import ExcitationRules, excitation_signals

from tests.helpers import hook_count, tiny_net

BOTH = ["excitation_backprop", "contrastive_excitation_backprop"]


def _images(n=3, size=16, channels=3, seed=0):
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _excite(weight, x, signal):
    """The rule by hand: x * W+^T (signal / (W+ x)) for ``y = W x`` with x >= 0, on the last dimension."""
    positive = weight.clamp_min(0)
    total = x @ positive.T
    return x * (torch.where(total > 0, signal / total, 0) @ positive)


def test_the_rules_equal_a_hand_computation_on_a_conv_pool_linear_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 5, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)).eval()
    x = torch.rand(2, 4, 3, 3) + 0.1
    targets = torch.tensor([0, 2])
    signals = excitation_signals(net, x, targets, ["1"], BOTH)
    # by hand: relu output r (N, 5, 3, 3); pooled p = mean(r); logits = W2 p + b2
    r = net[1](net[0](x))
    p = r.mean((2, 3))
    top = F.one_hot(targets, 3).float()
    weight = net[4].weight
    at_pool = _excite(weight, p, top)
    at_pool_dual = _excite(-weight, p, top)
    # average pooling: each position gets r_hw / (9 p) of its channel's signal
    for method, signal in (("excitation_backprop", at_pool), ("contrastive_excitation_backprop", at_pool - at_pool_dual)):
        expected = (r * torch.where(p > 0, signal / (9 * p), 0)[:, :, None, None]).sum(1)
        assert torch.allclose(signals[method, "1"], expected, atol=1e-6), method
    assert torch.allclose(signals["excitation_backprop", "1"].sum((1, 2)), torch.ones(2), atol=1e-6)


def test_the_signal_is_conserved_down_the_demo_cnn():
    net = ShapesCNN(width=4).eval()
    layers = ["features.2", "features.7", "features.11", "features"]
    signals = excitation_signals(net, _images(2, 32), torch.tensor([0, 3]), layers, BOTH)
    for layer in layers:
        assert torch.allclose(signals["excitation_backprop", layer].sum((1, 2)), torch.ones(2), atol=1e-5), layer
        assert (signals["excitation_backprop", layer] >= 0).all(), layer
        # target minus dual: both conserve their unit of signal, so the contrast sums to 0
        assert signals["contrastive_excitation_backprop", layer].sum((1, 2)).abs().max() < 1e-5, layer


def _fold_batch_norms(net: ShapesCNN) -> ShapesCNN:
    """The same function with every conv + BatchNorm pair folded into one conv (BatchNorm -> Identity)."""
    folded = copy.deepcopy(net)
    features = folded.features
    for i in range(len(features) - 1):
        conv, norm = features[i], features[i + 1]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            merged = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
            with torch.no_grad():
                merged.weight.copy_(conv.weight * scale[:, None, None, None])
                merged.bias.copy_(norm.bias - norm.running_mean * scale)
            features[i], features[i + 1] = merged, nn.Identity()
    return folded.eval()


def test_batch_norm_is_folded_into_the_conv_it_follows_sign_included():
    torch.manual_seed(0)
    net = ShapesCNN(width=4).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for norm in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):  # signed scales, shifted statistics
            norm.weight.copy_(torch.randn(norm.weight.shape, generator=generator))
            norm.running_mean.copy_(0.1 * torch.randn(norm.running_mean.shape, generator=generator))
            norm.running_var.copy_(0.5 + torch.rand(norm.running_var.shape, generator=generator))
    assert (net.features[5].weight < 0).any()
    folded = _fold_batch_norms(net)
    images = _images(2, 32)
    assert torch.allclose(net(images), folded(images), atol=1e-5)
    targets = torch.tensor([1, 2])
    # conv outputs too: captured through a clone, the fold still applies
    layers = ["features.2", "features.4", "features.6", "features"]
    ours = excitation_signals(net, images, targets, layers, BOTH)
    reference = excitation_signals(folded, images, targets, layers, BOTH)
    for key, values in ours.items():
        assert torch.allclose(values, reference[key], atol=1e-7, rtol=1e-4), key
    # the signal at a conv's output is the signal at its batch norm's output
    at_norm = excitation_signals(net, images, targets, ["features.5"], ["excitation_backprop"])
    assert torch.allclose(at_norm["excitation_backprop", "features.5"], ours["excitation_backprop", "features.4"])


class Residual(nn.Module):
    """conv -> ReLU -> conv, plus the input: written as ``+=`` or as ``+``."""

    def __init__(self, inplace_sum: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)
        self.inplace_sum = inplace_sum

    def forward(self, x):
        x = F.relu(self.stem(x))
        out = self.conv2(F.relu(self.conv1(x)))
        if self.inplace_sum:
            out += x
        else:
            out = x + out
        return self.fc(F.relu(out).mean((2, 3)))


def test_residual_sums_split_the_signal_by_each_branch_share():
    images = _images()
    targets = torch.tensor([0, 1, 3])
    inplace, plain = Residual(True).eval(), Residual(False).eval()
    assert torch.allclose(inplace(images), plain(images), atol=1e-6)
    with ExcitationRules():
        stem = F.relu(plain.stem(images))
        stem.requires_grad_(True)
        branch = plain.conv2(F.relu(plain.conv1(stem)))
        total = stem + branch
        logits = plain.fc(F.relu(total).mean((2, 3)))
    top = F.one_hot(targets, 4).float()
    at_sum, at_stem, at_branch = torch.autograd.grad(logits, [total, stem, branch], top, retain_graph=True)
    share = stem / total
    assert torch.allclose(at_branch, at_sum * (1 - share), atol=1e-6)
    # the stem gets its share directly plus what the branch passes back to it
    (via_branch,) = torch.autograd.grad(branch, stem, at_branch)
    assert torch.allclose(at_stem, at_sum * share + via_branch, atol=1e-6)
    a = excitation_signals(inplace, images, targets, ["conv1", "stem"], BOTH)
    b = excitation_signals(plain, images, targets, ["conv1", "stem"], BOTH)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert torch.allclose(a["excitation_backprop", "stem"].sum((1, 2)), torch.ones(3), atol=1e-5)


@pytest.mark.parametrize(
    "name,net,channels",
    [
        ("silu", nn.Sequential(nn.Conv2d(3, 16, 3), nn.SiLU(), nn.Conv2d(16, 16, 3), nn.GELU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)), 3),
        ("grey", nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 6, 3), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)), 1),
        ("rgba-flatten-head", nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 3, stride=2),
                                            nn.ReLU(), nn.Flatten(), nn.Linear(2 * 7 * 7, 3)), 4),
        ("conv-head", nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 3, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 3),
    ],
)  # fmt: skip
def test_users_models(name, net, channels):
    torch.manual_seed(0)
    for module in net.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    images = _images(2, 16, channels)
    result = attribute(net.eval(), images, ["grad_cam"] + BOTH, layers=["0", "2"])
    for entry in result.maps:
        assert entry.values.shape == (2, 16, 16) and entry.values.dtype == torch.float32, (name, entry.label)
        assert torch.isfinite(entry.values).all(), (name, entry.label)
    for layer in ("0", "2"):
        assert (result.get("contrastive_excitation_backprop", layer) >= 0).all()
        assert result.get("excitation_backprop", layer).abs().amax((1, 2)).min() > 0, (name, layer)


def test_frozen_models_inference_mode_float64_and_autocast():
    net = tiny_net(0).eval()
    expected = attribute(net, _images(), BOTH, layers="0.1")
    frozen = tiny_net(0).eval().requires_grad_(False)
    with torch.inference_mode():
        images = _images()
        inside = attribute(frozen, images, BOTH, layers="0.1")
    with torch.no_grad():
        one = excitation_backprop(frozen, _images(), layer="0.1")
    assert torch.allclose(expected.get("excitation_backprop"), one, atol=1e-6)
    for a, b in zip(expected.maps, inside.maps):
        assert torch.allclose(a.values, b.values, atol=1e-6), a.method
    double = attribute(tiny_net(0).double().eval(), _images().double(), BOTH, layers="0.1")
    for a, b in zip(expected.maps, double.maps):
        assert b.values.dtype == torch.float32 and torch.allclose(a.values, b.values, atol=1e-5), a.method
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = contrastive_excitation_backprop(net, _images(), targets=expected.targets, layer="0.1")
    assert torch.allclose(low, expected.get("contrastive_excitation_backprop"), atol=1e-6)  # computed in float32


def test_the_model_and_torch_are_left_exactly_as_found():
    net = ShapesCNN(width=4)
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = True
    net.train()
    net.features[0].eval()
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.5)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    functions = (F.conv2d, F.linear, F.batch_norm, F.adaptive_avg_pool2d, torch.Tensor.add_, torch.Tensor.__add__)
    rng = torch.get_rng_state()
    attribute(net, _images(2, 32), BOTH, layers=["features.4", "features"])
    assert all(bool((p.grad == 0.5).all()) for p in net.parameters())
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert [m.training for m in net.modules()] == flags
    assert all(m.inplace for m in net.modules() if isinstance(m, nn.ReLU))
    assert (F.conv2d, F.linear, F.batch_norm, F.adaptive_avg_pool2d, torch.Tensor.add_, torch.Tensor.__add__) == functions
    assert torch.equal(torch.get_rng_state(), rng) and hook_count(net) == 0
    # outside the pass, backward is the ordinary gradient again
    x = _images(1, 32).requires_grad_(True)
    (grad,) = torch.autograd.grad(net.eval()(x)[0, 0], x)
    assert grad.abs().sum() > 0 and not torch.allclose(grad, grad.clamp_min(0))


def test_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="no convolution or linear layer"):
        attribute(nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten()), _images(), "excitation_backprop", layers="0")
    with pytest.raises(ValueError, match=r"output of layer '1' is \(3, 4\), not a feature map"):
        attribute(tiny_net(0), _images(), "contrastive_excitation_backprop", layers="1")
    with pytest.raises(ValueError, match="classifier output of shape"):
        excitation_signals(nn.Conv2d(3, 2, 3), _images(), torch.tensor([0, 1, 0]), [""], BOTH)
    with pytest.raises(ValueError, match="unknown excitation method"):
        excitation_signals(tiny_net(0), _images(), torch.tensor([0, 1, 0]), ["0.1"], ["ebp"])
