"""invert, texture and style_transfer on small and users' models: shapes, one batch, any channels, no side effects."""

import pytest
import torch
import torchvision
from torch import nn

from tb_viz_plugin.methods import LayerNotFoundError, invert, style_transfer, texture
from tb_viz_plugin.methods.optvis.style import gram

from tests.helpers import tiny_net


def _head_net(channels: int, size: int = 16) -> nn.Module:
    """Convs then a fixed-size head (flatten + Linear): only inputs of ``size`` pixels go through."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(6, 8, 3, stride=2, padding=1),
        nn.ReLU(), nn.Flatten(), nn.Linear(8 * (size // 2) ** 2, 3),
    ).eval()  # fmt: skip


class _Calls:
    """Counts forward passes of a model and the batch sizes they saw."""

    def __init__(self, model: nn.Module) -> None:
        self.sizes: list = []
        self.handle = model.register_forward_pre_hook(lambda module, args: self.sizes.append(len(args[0])))


def test_every_image_and_layer_is_one_batch_of_one_pass_per_step():
    net = _head_net(3)
    calls = _Calls(net)
    result = invert(net, torch.rand(3, 3, 16, 16), ["0", "2"], steps=5)
    calls.handle.remove()
    assert result.reconstructions.shape == (3, 2, 3, 16, 16) and result.distances.shape == (3, 2)
    assert result.layers == ["0", "2"] and result.pixel_errors.shape == (3, 2)
    optimisation = [size for size in calls.sizes if size == 6]  # 3 images x 2 layers
    assert len(optimisation) == 5 + 2  # every step, the final values, the final distances; the targets: one pass of 3
    assert sorted(set(calls.sizes)) == [3, 6] and calls.sizes.count(3) == 1


@pytest.mark.parametrize("channels", [1, 5])
def test_any_channel_count_and_a_fixed_size_head(channels):
    net = _head_net(channels)
    images = torch.rand(2, channels, 16, 16)
    inverted = invert(net, images, "2", steps=3, param="fourier", mean=[0.5] * channels, std=[0.2] * channels)
    assert inverted.reconstructions.shape == (2, 1, channels, 16, 16) and inverted.originals.shape == images.shape
    textured = texture(net, images, ["1", "3"], steps=3)
    assert textured.textures.shape == images.shape
    stylized = style_transfer(net, images, images.flip(0), "3", "1", steps=3)
    assert stylized.results.shape == images.shape and stylized.styles.shape == images.shape


def test_non_square_inputs_keep_their_size():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    assert invert(net, torch.rand(1, 3, 12, 20), "1", steps=2).reconstructions.shape == (1, 1, 3, 12, 20)
    assert texture(net, torch.rand(1, 3, 12, 20), "1", steps=2, param="pixel").textures.shape == (1, 3, 12, 20)


def test_torchvision_resnet_with_random_weights():
    net = torchvision.models.resnet18(weights=None, num_classes=4).eval()
    images = torch.rand(2, 3, 32, 32)
    result = invert(net, images, ["conv1", "layer1", "layer2.0.conv2"], steps=3)
    assert result.reconstructions.shape == (2, 3, 3, 32, 32) and torch.isfinite(result.distances).all()
    stylized = style_transfer(net, images, images[:1], "layer2", ["relu", "layer1"], steps=2)
    assert torch.isfinite(stylized.style_loss).all()


def test_model_state_grad_and_global_rng_untouched():
    net = tiny_net(0)
    net.train()
    net[0][2].eval()  # a frozen submodule keeps its flag
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    with torch.inference_mode():  # a Lightning validation loop
        images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
        invert(net, images, ["0.0", "0.2"], steps=2)
        texture(net, images, "0.1", steps=2)
        style_transfer(net, images, images, "0.2", "0.1", steps=2)
    assert torch.equal(rng, torch.get_rng_state())
    assert all(p.grad is None for p in net.parameters())
    assert net.training and not net[0][2].training and net[0][0].training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_a_seed_gives_the_same_reconstruction():
    net = tiny_net(0).eval()
    images = torch.rand(2, 3, 16, 16)
    first, second = (invert(net, images, "0.2", steps=3, seed=4) for _ in range(2))
    assert torch.equal(first.reconstructions, second.reconstructions)
    assert not torch.equal(first.reconstructions, invert(net, images, "0.2", steps=3, seed=5).reconstructions)


def test_gram_matches_its_definition():
    features = torch.randn(2, 3, 4, 5)
    flat = features.flatten(2)
    expected = torch.stack([f @ f.t() for f in flat]) / 20
    assert torch.allclose(gram(features), expected, atol=1e-5)


def test_mistakes_are_named():
    net = tiny_net(0)
    with pytest.raises(LayerNotFoundError):
        invert(net, torch.rand(1, 3, 16, 16), "nope", steps=1)
    with pytest.raises(ValueError, match="named twice"):
        invert(net, torch.rand(1, 3, 16, 16), ["0.0", "0.0"], steps=1)
    with pytest.raises(ValueError, match="param must be one of"):
        invert(net, torch.rand(1, 3, 16, 16), "0.0", steps=1, param="wavelet")
    with pytest.raises(ValueError, match="not a feature map"):
        texture(net, torch.rand(1, 3, 16, 16), "1", steps=1)
    with pytest.raises(ValueError, match="style must be"):
        style_transfer(net, torch.rand(2, 3, 16, 16), torch.rand(3, 3, 16, 16), "0.2", "0.0", steps=1)
    with pytest.raises(ValueError, match="steps must be"):
        texture(net, torch.rand(1, 3, 16, 16), "0.0", steps=0)
