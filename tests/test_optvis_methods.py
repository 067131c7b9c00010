"""Optimisation-based visualization, piece by piece: parametrizations, transforms, objectives, the loop, DeepDream."""

import doctest
import importlib

import pytest
import torch
import torchvision
from torch import nn

from tb_viz_plugin.methods import LayerNotFoundError
from tb_viz_plugin.methods.optvis import (
    deepdream,
    evaluate,
    from_model_input,
    normalize_gradient,
    objectives as O,
    param as P,
    render,
    to_model_input,
    transform as T,
)
from tb_viz_plugin.methods.optvis.deepdream import octave_sizes

from tests.helpers import hook_count, tiny_net


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def net():
    return tiny_net(0).eval()


@pytest.mark.parametrize(
    "module",
    ["param", "transform", "objectives", "optimize", "deepdream"],
)
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"tb_viz_plugin.methods.optvis.{module}")
    result = doctest.testmod(mod, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# ------------------------------------------------------------------------------------------- param


@pytest.mark.parametrize("make", [P.pixel_image, P.fourier_image, P.pyramid_image])
def test_parametrizations_make_valid_images_from_our_generator(make):
    rng_before = torch.get_rng_state()
    params, image_fn = make(3, 20, generator=_gen(1))
    image = image_fn()
    assert image.shape == (3, 3, 20, 20) and 0 < image.min() and image.max() < 1
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is never drawn from
    assert torch.equal(make(3, 20, generator=_gen(1))[1](), image)  # seeded = reproducible
    assert not torch.equal(make(3, 20, generator=_gen(2))[1](), image)
    (grad,) = torch.autograd.grad(image.sum(), params[0])
    assert grad.abs().sum() > 0 and all(p.is_leaf and p.requires_grad for p in params)


def test_fourier_scaling_gives_natural_image_spectrum():
    """With the same white noise in every coefficient, 1/f scaling moves energy to low frequencies."""
    white = P.fourier_image(1, 64, generator=_gen(), sd=1.0, decay_power=0.0, decorrelate=False)[1]()
    pink = P.fourier_image(1, 64, generator=_gen(), sd=1.0, decay_power=1.0, decorrelate=False)[1]()
    assert high_frequency_fraction(pink) < 0.5 * high_frequency_fraction(white)


def test_pyramid_levels_and_colour_decorrelation():
    params, _ = P.pyramid_image(1, 20, octaves=5)
    assert [p.shape[-1] for p in params] == [20, 10, 5, 3]  # 20 / 16 < 2 px: dropped
    assert torch.equal(P.to_rgb(torch.zeros(1, 3, 2, 2), decorrelate=True), torch.full((1, 3, 2, 2), 0.5))
    mixed = P.to_rgb(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1), decorrelate=True).flatten()
    assert mixed.min() > 0.5  # the first decorrelated channel is luminance: it raises R, G and B together
    with pytest.raises(ValueError, match="n >= 1"):
        P.fourier_image(0, 8)


def high_frequency_fraction(images: torch.Tensor) -> float:
    """Fraction of spectral energy (mean removed) at radial frequencies above half Nyquist (0.25 cycles/px)."""
    images = images.detach() - images.detach().mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(images).abs() ** 2
    fy = torch.fft.fftfreq(images.shape[-2])[:, None]
    fx = torch.fft.fftfreq(images.shape[-1])[None, :]
    high = (fx**2 + fy**2).sqrt() > 0.25
    return float(power[..., high].sum() / power.sum())


# --------------------------------------------------------------------------------------- transform


def test_transforms_shapes_randomness_and_gradients():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    chain = T.compose(T.default_transforms(16))
    out_a, out_b = chain(x, _gen(5)), chain(x, _gen(5))
    assert torch.equal(out_a, out_b) and not torch.equal(out_a, chain(x, _gen(6)))
    (grad,) = torch.autograd.grad(out_a.sum(), x)
    assert grad.abs().sum() > 0  # differentiable end to end
    assert T.pad(3)(x, _gen()).shape[-1] == 22 and T.resize(7)(x, _gen()).shape[-2:] == (7, 7)
    assert torch.allclose(T.random_rotate(0.0)(x, _gen()), x, atol=1e-5)
    rotated = T.random_rotate(90.0)(x, _gen())
    assert not torch.allclose(rotated[0], x[0], atol=1e-2) and rotated.shape == x.shape


def test_jitter_is_a_shift():
    x = torch.arange(100.0).view(1, 1, 10, 10)
    for seed in range(5):
        out = T.jitter(3)(x, _gen(seed))
        dy, dx = divmod(int(out[0, 0, 0, 0]), 10)
        assert out.shape[-2:] == (7, 7) and 0 <= dy <= 3 and 0 <= dx <= 3
        assert torch.equal(out, x[..., dy : dy + 7, dx : dx + 7])


def test_random_scale_and_blur():
    x = torch.rand(1, 3, 20, 20)
    assert T.random_scale(0.5, 0.5)(x, _gen()).shape[-1] == 10
    with pytest.raises(ValueError):
        T.random_scale(1.2, 1.1)
    checker = (torch.arange(16).view(1, -1) + torch.arange(16).view(-1, 1)) % 2
    checker = checker.float().expand(1, 3, 16, 16)
    blurred = T.gaussian_blur(checker, 1.0)
    assert blurred.std() < 0.1 * checker.std() and torch.allclose(blurred.mean(), checker.mean(), atol=1e-3)


# -------------------------------------------------------------------------------------- objectives


def test_objective_arithmetic_names_and_layers():
    acts = {O.OUTPUT: torch.tensor([[1.0, 4.0], [2.0, 8.0]]), "a": torch.ones(2, 3, 4, 4)}
    combined = 2 * O.class_logit(1) - O.channel("a", 0) + 0.5
    assert torch.equal(combined(acts), torch.tensor([7.5, 15.5]))
    assert combined.layers == {"a"} and combined.name == "2*(logit 1) - a:0 + 0.5"
    assert torch.equal(sum([O.class_logit(0), O.class_logit(1)])(acts), torch.tensor([5.0, 10.0]))
    assert torch.equal((-O.class_logit(0))(acts), torch.tensor([-1.0, -2.0]))
    with pytest.raises(TypeError):
        O.class_logit(0) * O.class_logit(1)


def test_objective_values():
    maps = torch.arange(2 * 2 * 3 * 3.0).view(2, 2, 3, 3)
    acts = {"c": maps, O.INPUT: torch.zeros(2, 3, 4, 4)}
    assert torch.equal(O.channel("c", 1)(acts), maps[:, 1].mean((1, 2)))
    assert torch.equal(O.neuron("c", 1)(acts), maps[:, 1, 1, 1])
    assert torch.allclose(O.energy("c")(acts), 0.5 * (maps**2).mean((1, 2, 3)))
    assert torch.allclose(O.l2()(acts), torch.full((2,), 0.25))
    assert torch.equal(O.total_variation()(acts), torch.zeros(2))
    with pytest.raises(IndexError, match=r"output of 'c' has shape \(2, 2, 3, 3\); index 5 is out of range"):
        O.channel("c", 5)(acts)


def test_batched_scores_image_i_with_objective_i():
    acts = {O.OUTPUT: torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])}
    objective = O.batched([O.class_logit(2), O.class_logit(0), O.class_logit(1) + O.class_logit(2)])
    assert torch.equal(objective(acts), torch.tensor([3.0, 4.0, 17.0]))
    assert objective.batch_size == 3
    with pytest.raises(ValueError, match="3 and 2"):
        objective + O.batched([O.class_logit(0)] * 2)


# ---------------------------------------------------------------------------------------- the loop


def test_render_raises_the_objective_and_leaves_the_model_alone(net):
    net[0][0].train()  # a submodule left in train mode by the user must stay so
    flags = [m.training for m in net.modules()]
    rng_before = torch.get_rng_state()
    objective = O.batched([O.class_logit(c) for c in range(4)])
    params = P.fourier_image(4, 24, generator=_gen())
    start = evaluate(net, objective, params[1]().detach())
    result = render(net, objective, params, steps=8, lr=0.1, generator=_gen())
    assert result.images.shape == (4, 3, 24, 24) and not result.images.requires_grad
    assert (result.values > start).all(), (start, result.values)
    assert torch.allclose(result.values, evaluate(net, objective, result.images), atol=1e-5)
    assert all(p.grad is None for p in net.parameters())
    assert [m.training for m in net.modules()] == flags and hook_count(net) == 0
    assert torch.equal(torch.get_rng_state(), rng_before)
    net[0][0].eval()


def test_batched_targets_do_not_interact(net):
    """One optimisation of N images equals N separate ones (each image's gradient is its own)."""
    start = torch.randn(2, 3, 16, 16, generator=_gen(3)) * 0.1

    def pixels(init):
        leaf = init.clone().requires_grad_(True)
        return [leaf], lambda: torch.sigmoid(leaf)

    both = render(net, O.batched([O.class_logit(0), O.class_logit(3)]), pixels(start), steps=5, transforms=())
    alone = render(net, O.class_logit(3), pixels(start[1:]), steps=5, transforms=())
    assert torch.allclose(both.images[1:], alone.images, atol=1e-5)


def test_a_channels_last_model_optimises_the_same(net):
    """Gradients arrive in the model's memory layout; the update must not depend on it."""

    class ChannelsLast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.contiguous(memory_format=torch.channels_last))

    objective = O.batched([O.class_logit(0), O.class_logit(2)])
    plain = render(net, objective, P.pixel_image(2, 16, generator=_gen()), steps=3, transforms=())
    last = render(ChannelsLast(), objective, P.pixel_image(2, 16, generator=_gen()), steps=3, transforms=())
    assert torch.allclose(plain.images, last.images, atol=1e-5)


def test_render_checks_its_arguments(net):
    with pytest.raises(ValueError, match="batched for 2 images"):
        render(net, O.batched([O.class_logit(0)] * 2), P.pixel_image(3, 8), steps=1)
    with pytest.raises(ValueError, match="periodic blur"):
        render(net, O.class_logit(0), P.fourier_image(1, 8), steps=1, blur_every=2)
    with pytest.raises(LayerNotFoundError, match="no module named 'features.9'.*'0.0'"):
        render(net, O.channel("features.9", 0), P.pixel_image(1, 8), steps=1)
    assert hook_count(net) == 0


def test_layer_names_of_a_wrapped_network_work(net):
    """``"0.2"`` names ``"0.0.2"`` when the network is wrapped (like a LightningModule's ``self.model``)."""
    wrapped = nn.Sequential(net)
    objective = O.channel("0.2", 1) + O.channel("0.0.2", 1)
    acts = evaluate(wrapped, objective, torch.rand(1, 3, 8, 8, generator=_gen()))
    assert torch.allclose(acts, 2 * evaluate(wrapped, O.channel("0.0.2", 1), torch.rand(1, 3, 8, 8, generator=_gen())))


def test_periodic_blur_smooths_pixels(net):
    objective = O.class_logit(1)
    sharp = render(net, objective, P.pixel_image(1, 24, sd=1.0, generator=_gen()), steps=4, transforms=())
    smooth = render(net, objective, P.pixel_image(1, 24, sd=1.0, generator=_gen()), steps=4, transforms=(),
                    blur_every=2)  # fmt: skip
    tv = O.total_variation()
    assert tv({O.INPUT: smooth.images}) < 0.7 * tv({O.INPUT: sharp.images})


def test_render_works_in_inference_mode_with_normalisation(net):
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(from_model_input(to_model_input(x, mean, std), mean, std), x, atol=1e-6)
    with torch.inference_mode():  # e.g. inside trainer.validate()
        with pytest.raises(ValueError, match="outside inference mode"):
            render(net, O.class_logit(2), P.pixel_image(1, 12), steps=2)
        with torch.inference_mode(False):
            image_param = P.pixel_image(1, 12)
        result = render(net, O.class_logit(2), image_param, steps=2, mean=mean, std=std)
    assert result.values.isfinite().all()


def test_a_224px_torchvision_model_works():
    """Image size is independent of any training resolution: a 224² ImageNet-style network."""
    model = torchvision.models.squeezenet1_1(weights=None).eval()
    objective = O.batched([O.channel("features.12", 0), O.neuron("features.6", 5)])
    result = render(model, objective, P.fourier_image(2, 224, generator=_gen()), steps=1, generator=_gen(),
                    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))  # fmt: skip
    assert result.images.shape == (2, 3, 224, 224) and hook_count(model) == 0


# --------------------------------------------------------------------------------------- DeepDream


def test_normalize_gradient_and_octaves():
    grad = torch.randn(3, 3, 8, 8) * torch.tensor([1e-6, 1.0, 1e3]).view(3, 1, 1, 1)
    assert torch.allclose(normalize_gradient(grad).abs().mean((1, 2, 3)), torch.ones(3))
    assert octave_sizes(64, 48, 3, 1.4) == [(33, 24), (46, 34), (64, 48)]


def test_deepdream_amplifies_the_layer_and_keeps_the_original(net):
    images = torch.rand(2, 3, 24, 24, generator=_gen(4))
    copy = images.clone()
    rng_before = torch.get_rng_state()
    dream = deepdream(net, images, "0.2", octaves=2, steps=4, generator=_gen())
    before = evaluate(net, O.energy("0.2"), images)
    assert dream.images.shape == images.shape and 0 <= dream.images.min() and dream.images.max() <= 1
    assert (dream.values > before * 1.05).all(), (before, dream.values)
    assert torch.equal(images, copy) and hook_count(net) == 0 and all(p.grad is None for p in net.parameters())
    assert torch.equal(torch.get_rng_state(), rng_before)
    with pytest.raises(LayerNotFoundError):
        deepdream(net, images, "nope")
