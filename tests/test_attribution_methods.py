"""Attribution methods on tiny networks: shapes, shared passes, targets, errors, and the model left as found."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.demo.model import ShapesCNN
from tb_viz_plugin.methods import (
    ATTRIBUTION_METHODS,
    CamHeadError,
    LayerNotFoundError,
    attribute,
    cam,
    grad_cam,
    guided_backprop,
    occlusion,
    saliency,
    smooth_grad,
)
from tb_viz_plugin.methods.attribution.cams import Cam, GradCam
from tb_viz_plugin.methods.hooks import LayerHooks
from tb_viz_plugin.methods.attribution.perturbation import window_starts

from tests.helpers import hook_count, tiny_net

ALL = list(ATTRIBUTION_METHODS)
QUICK = {"smooth_grad": {"samples": 3}, "integrated_gradients": {"steps": 4}, "occlusion": {"window": 8, "stride": 4}}


def _images(n=3, size=16, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_every_method_gives_raw_maps_at_input_resolution():
    net = tiny_net(0)
    result = attribute(net, _images(), ALL, options=QUICK)
    assert [m.method for m in result.maps] == ALL
    assert result.layers == ["0.3"]  # the last feature map before the global pooling
    assert result.cam_head is not None and (result.cam_head.pool, result.cam_head.classifier) == ("0.4", "1")
    for entry in result.maps:
        assert entry.values.shape == (3, 16, 16) and entry.values.dtype == torch.float32, entry.method
        assert torch.isfinite(entry.values).all(), entry.method
        if not entry.signed:
            assert (entry.values >= 0).all(), entry.method
    assert torch.allclose(result.probabilities.sum(1), torch.ones(3))
    assert torch.equal(result.targets, result.probabilities.argmax(1))
    # the one-method functions give the same maps as the shared computation
    assert torch.allclose(grad_cam(net, _images()), result.get("grad_cam"), atol=1e-6)
    assert torch.allclose(saliency(net, _images()), result.get("saliency"), atol=1e-6)


def test_single_pass_methods_share_one_forward_and_two_backwards(monkeypatch):
    net = tiny_net(0)
    forwards = []
    net.register_forward_pre_hook(lambda module, inputs: forwards.append(inputs[0].shape[0]))
    backwards = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: backwards.append(1) or real_grad(*a, **k))
    shared = ["grad_cam", "grad_cam_plus_plus", "layer_cam", "guided_grad_cam", "saliency", "guided_backprop"]
    result = attribute(net, _images(), shared, layers=["0.1", "0.3"])
    assert forwards == [3] and len(backwards) == 2  # plain gradients for all, then the guided pass
    assert [(m.method, m.layer) for m in result.maps][:3] == [("grad_cam", "0.1"), ("grad_cam", "0.3"), ("grad_cam_plus_plus", "0.1")]
    net._forward_pre_hooks.clear()
    assert hook_count(net) == 0


def test_the_model_is_left_exactly_as_found():
    torch.manual_seed(0)
    net = ShapesCNN(width=4)
    net.train()
    net.features[0].eval()  # a submodule the user froze
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.5)
    grads = [p.grad for p in net.parameters()]
    flags = [m.training for m in net.modules()]
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    attribute(net, _images(2, 32), ALL, options=QUICK)
    assert [p.grad for p in net.parameters()] == grads and all(bool((g == 0.5).all()) for g in grads)
    assert [m.training for m in net.modules()] == flags
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in buffers.items())  # BatchNorm statistics
    assert torch.equal(torch.get_rng_state(), rng)  # SmoothGrad draws from its own generator
    assert hook_count(net) == 0


def test_inference_mode_and_bf16_autocast():
    net = tiny_net(0)
    expected = attribute(net, _images(), ["grad_cam", "guided_backprop"])
    with torch.inference_mode():
        images = _images()
        inside = attribute(net, images, ["grad_cam", "guided_backprop"])
    for a, b in zip(expected.maps, inside.maps):
        assert torch.allclose(a.values, b.values)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = attribute(net, _images(), ["grad_cam", "saliency", "occlusion"], options={"occlusion": {"window": 8}})
    for entry in low.maps:
        assert entry.values.dtype == torch.float32 and torch.isfinite(entry.values).all()
    a, b = expected.get("grad_cam").flatten(), low.get("grad_cam").flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95


def test_targets_predicted_fixed_given_and_callable():
    net = tiny_net(0)
    images = _images(4)
    predicted = attribute(net, images, "saliency").targets
    assert attribute(net, images, "saliency", targets=2).targets.tolist() == [2, 2, 2, 2]
    assert attribute(net, images, "saliency", targets=[0, 1, 2, 3]).targets.tolist() == [0, 1, 2, 3]
    second = attribute(net, images, "saliency", targets=lambda logits: logits.topk(2).indices[:, 1])
    assert not torch.equal(second.targets, predicted)
    assert not torch.allclose(saliency(net, images, targets=0), saliency(net, images, targets=1))
    for bad, match in [(7, r"\[0, 4\)"), ([0, 1], "one integer class index per image"), ("biggest", "'predicted'"),
                       (torch.zeros(4), "integer"), (1.5, "targets must be")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            attribute(net, images, "saliency", targets=bad)


def test_errors_name_what_is_wrong_and_the_valid_choices():
    net = tiny_net(0)
    with pytest.raises(ValueError, match=r"'gradcam'.*valid methods: cam, grad_cam"):
        attribute(net, _images(), ["gradcam"])
    with pytest.raises(ValueError, match=r"\['size'\] for occlusion; valid options: window, stride, baseline"):
        attribute(net, _images(), ["occlusion"], options={"occlusion": {"size": 3}})
    with pytest.raises(ValueError, match="not among the methods"):
        attribute(net, _images(), ["grad_cam"], options={"occlusion": {"window": 3}})
    with pytest.raises(LayerNotFoundError, match=r"no module named 'layer4'.*'0.0', '0.1'"):
        attribute(net, _images(), ["grad_cam"], layers="layer4")
    with pytest.raises(ValueError, match=r"output of layer '1' is \(3, 4\), not a feature map"):
        attribute(net, _images(), ["grad_cam"], layers="1")
    with pytest.raises(ValueError, match="images must be a batch"):
        attribute(net, torch.zeros(3, 16, 16), ["grad_cam"])


@pytest.mark.parametrize(
    "head,match",
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(8 * 16 * 16, 4)), "no nn.AdaptiveAvgPool2d"),
        (nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4)), r"fed by '1.0' \(AdaptiveAvgPool2d\), not by average pooling to 1x1"),
        (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)), r"fed by '1.3' \(ReLU\)"),
    ],
)
def test_cam_without_a_pooling_linear_head_says_what_is_missing(head, match):
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()), head)
    with pytest.raises(CamHeadError, match=match):
        cam(net, _images())
    assert hook_count(net) == 0
    grad_cam(net, _images())  # Grad-CAM needs no such head


def test_cam_decomposes_the_logit_and_matches_grad_cam_up_to_a_factor():
    net = tiny_net(0).eval()
    images = _images()
    with LayerHooks(net, ["0.3"], feature_maps=True, clone=True) as capture:
        logits = net(images)
    targets = logits.argmax(1)
    features = capture.tensors["0.3"]
    weight, bias = net[1].weight, net[1].bias
    layer_cam = Cam(weight[targets])(features)  # (N, h, w) at the layer's resolution
    assert torch.allclose(layer_cam.mean((1, 2)) + bias[targets], logits.gather(1, targets[:, None]).squeeze(1), atol=1e-5)
    gradients = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), features)[0]
    h, w = features.shape[-2:]
    assert torch.allclose(GradCam()(features, gradients) * h * w, layer_cam.clamp_min(0), atol=1e-5)
    assert cam(net, images).shape == (3, 16, 16)  # the public function: upsampled, signed


class FunctionalNet(nn.Module):
    """ReLUs called as functions (F.relu and Tensor.relu_), which module hooks cannot see."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.conv2, self.fc = nn.Conv2d(3, 6, 3), nn.Conv2d(6, 8, 3), nn.Linear(8, 4)

    def forward(self, x):
        x = self.conv2(F.relu(self.conv1(x))).relu_()
        return self.fc(x.mean((2, 3)))


def test_functional_relus_are_guided_like_relu_modules():
    from captum.attr import GuidedBackprop

    functional = FunctionalNet()
    modules = nn.Sequential(functional.conv1, nn.ReLU(), functional.conv2, nn.ReLU(inplace=True),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), functional.fc)  # fmt: skip
    images = _images()
    ours = guided_backprop(functional, images, targets=1)
    reference = GuidedBackprop(modules).attribute(images.clone(), target=1).abs().amax(1)
    assert torch.allclose(ours, reference, atol=1e-6)
    assert not torch.allclose(ours, saliency(functional, images, targets=1))
    with pytest.raises(ValueError, match="no ReLU"):
        guided_backprop(nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.LazyLinear(2)), images)


def test_occlusion_windows_chunks_and_argument_checks():
    net = tiny_net(0)
    images = _images(2)
    assert list(window_starts(16, 6, 4)) == [0, 4, 8, 12]  # the last window is clipped at the border
    whole = occlusion(net, images, window=6, stride=4)
    one_by_one = occlusion(net, images, window=6, stride=4, max_memory_mb=1e-6)  # forces chunks of 1 image
    assert torch.allclose(whole, one_by_one, atol=1e-6)
    # covering the whole image with the baseline: every pixel's drop is p(x) - p(baseline image)
    full = occlusion(net, images, targets=0, window=16, baseline=0.0)
    probs = net(torch.cat([images, torch.zeros(1, 3, 16, 16)])).softmax(1)[:, 0]
    assert torch.allclose(full, (probs[:2] - probs[2])[:, None, None].expand(2, 16, 16), atol=1e-6)
    for kwargs, match in [(dict(window=20), "larger than the images"), (dict(window=4, stride=5), "must not exceed"),
                          (dict(window=0), "positive int"), (dict(max_memory_mb=0), "positive")]:  # fmt: skip
        with pytest.raises(ValueError, match=match):
            occlusion(net, images, **kwargs)


def test_smooth_grad_uses_its_own_seeded_generator():
    net = tiny_net(0)
    images = _images()
    rng = torch.get_rng_state()
    a = smooth_grad(net, images, samples=3, seed=1)
    assert torch.equal(a, smooth_grad(net, images, samples=3, seed=1))
    assert not torch.equal(a, smooth_grad(net, images, samples=3, seed=2))
    assert torch.allclose(smooth_grad(net, images, samples=2, noise=0.0), saliency(net, images))
    assert torch.equal(torch.get_rng_state(), rng)


def test_layers_modified_in_place_later_are_captured_as_they_were():
    def net(inplace):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(inplace=inplace), nn.Conv2d(6, 6, 3), nn.ReLU(inplace=inplace),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))  # fmt: skip

    images = _images()
    for layer in ("0", "2"):  # conv outputs that the next ReLU overwrites in place
        expected = attribute(net(False), images, ["grad_cam", "layer_cam"], layers=layer)
        got = attribute(net(True), images, ["grad_cam", "layer_cam"], layers=layer)
        for a, b in zip(expected.maps, got.maps):
            assert torch.allclose(a.values, b.values, atol=1e-6), (layer, a.method)


def test_default_layer_is_the_last_feature_map_before_pooling():
    import torchvision

    from tb_viz_plugin.demo.model import ShapesModule
    from tb_viz_plugin.methods.attribution.cams import default_layer
    from tb_viz_plugin.methods.attribution.hooks import trace_modules

    for model, expected in [(torchvision.models.resnet18(), "layer4"), (torchvision.models.vgg11(), "features"),
                            (ShapesModule(), "model.features")]:  # fmt: skip
        calls, _ = trace_modules(model.eval(), torch.zeros(1, 3, 64, 64))
        assert default_layer(calls) == expected
        assert hook_count(model) == 0
