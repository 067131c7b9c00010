"""Our maps against captum and pytorch-grad-cam (same layer, target, upsampling): Pearson >= 0.999 per image.

On torchvision's resnet18 and vgg11 with random weights (nothing downloaded) and on the trained demo
model. pytorch-grad-cam normalises each map to [0, 1] (an affine change Pearson ignores) and calls
``model.eval()``: every model here is already in eval mode.
"""

import warnings

import pytest
import torch
import torchvision
from captum.attr import (
    GuidedBackprop,
    GuidedGradCam,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Occlusion,
    Saliency,
)
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from tb_viz_plugin.methods import attribute

pytestmark = pytest.mark.slow  # the trained demo model and torchvision models through three libraries

METHODS = ["grad_cam", "grad_cam_plus_plus", "layer_cam", "guided_grad_cam", "saliency", "guided_backprop",
           "integrated_gradients", "occlusion"]  # fmt: skip
IG_STEPS = 4
MIN_PEARSON = 0.999

# name -> (model factory, input size, layers compared, occlusion window, stride)
MODELS = {
    "resnet18": (lambda: torchvision.models.resnet18(), 64, ["layer4", "layer3"], 32, 16),
    "vgg11": (lambda: torchvision.models.vgg11(), 32, ["features.10"], 16, 16),
    "demo": (None, 64, ["features", "features.10"], 16, 8),
}


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of ``(N, H, W)`` maps: 1 where both are constant, 0 where only one is."""
    a, b = a.detach().flatten(1).double(), b.detach().flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    flat_a, flat_b = a.norm(dim=1) < 1e-12, b.norm(dim=1) < 1e-12
    correlation = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-300)
    return torch.where(flat_a | flat_b, (flat_a & flat_b).double(), correlation)


@pytest.fixture(scope="module", params=list(MODELS))
def case(request):
    """(model, images, our Attribution, layers, window, stride) for one model, computed once."""
    factory, size, layers, window, stride = MODELS[request.param]
    torch.manual_seed(0)
    if factory is None:
        model = request.getfixturevalue("trained_demo")["model"].model  # the trained ShapesCNN
        val_set = request.getfixturevalue("trained_demo")["val_set"]
        images = torch.stack([val_set[i][0] for i in (0, 150, 300)])
    else:
        model = factory()
        images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    model.eval()
    options = {"integrated_gradients": {"steps": IG_STEPS}, "occlusion": {"window": window, "stride": stride}}
    ours = attribute(model, images, METHODS, layers=layers, options=options)
    return model, images, ours, layers, window, stride


def _check(name, ours, reference):
    correlation = pearson(ours, reference)
    assert (correlation >= MIN_PEARSON).all(), f"{name}: Pearson {correlation.tolist()}"


@pytest.mark.parametrize("peer_class,method", [(GradCAM, "grad_cam"), (GradCAMPlusPlus, "grad_cam_plus_plus"), (LayerCAM, "layer_cam")])
def test_cam_family_matches_pytorch_grad_cam(case, peer_class, method):
    model, images, ours, layers, _, _ = case
    targets = [ClassifierOutputTarget(int(t)) for t in ours.targets]
    for layer in layers:
        with peer_class(model, [model.get_submodule(layer)]) as peer:
            reference = torch.from_numpy(peer(images.clone(), targets))
        _check(f"{method} @ {layer}", ours.get(method, layer), reference)


def test_grad_cam_and_guided_grad_cam_match_captum(case):
    model, images, ours, layers, _, _ = case
    size = images.shape[-2:]
    for layer in layers:
        module = model.get_submodule(layer)
        layer_maps = LayerGradCam(model, module).attribute(images.clone(), target=ours.targets, relu_attributions=True)
        _check(f"grad_cam @ {layer}", ours.get("grad_cam", layer), LayerAttribution.interpolate(layer_maps, size, "bilinear")[:, 0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # captum announces its ReLU hooks
            guided = GuidedGradCam(model, module).attribute(images.clone(), target=ours.targets, interpolate_mode="bilinear")
        _check(f"guided_grad_cam @ {layer}", ours.get("guided_grad_cam", layer), guided.abs().amax(1))


def test_input_gradient_methods_match_captum(case):
    model, images, ours, _, _, _ = case
    targets = ours.targets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check("saliency", ours.get("saliency"), Saliency(model).attribute(images.clone(), target=targets, abs=True).amax(1))
        _check("guided_backprop", ours.get("guided_backprop"), GuidedBackprop(model).attribute(images.clone(), target=targets).abs().amax(1))
        integrated = IntegratedGradients(model).attribute(images.clone(), target=targets, n_steps=IG_STEPS, method="gausslegendre")
    _check("integrated_gradients", ours.get("integrated_gradients"), integrated.sum(1))


def test_occlusion_matches_captum_on_the_softmax(case):
    model, images, ours, _, window, stride = case
    probabilities = torch.nn.Sequential(model, torch.nn.Softmax(dim=1))
    with torch.no_grad():
        reference = Occlusion(probabilities).attribute(
            images.clone(), sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=0.0,
            target=ours.targets, perturbations_per_eval=32,
        )  # fmt: skip
    # captum spreads the drop over the channels of the window: every channel carries the same value
    _check("occlusion", ours.get("occlusion"), reference[:, 0])
    assert torch.allclose(ours.get("occlusion"), reference[:, 0], atol=1e-5)
