"""``attribute``: several attribution methods on one batch, sharing forward and backward passes.

One forward pass serves every single-pass method: the activations of the chosen layers are
captured, one ``torch.autograd.grad`` call gives the gradients for all CAM methods of all layers
and for saliency, and a second backward through the same graph, with guided ReLUs switched on,
gives guided backprop (and guided Grad-CAM). SmoothGrad, integrated gradients and occlusion need
passes of their own. The model's state is left as found: eval mode inside with every submodule's
flag restored after, parameter ``.grad`` never written, every hook removed; it also runs inside
``torch.inference_mode()`` and under autocast (maps are float32).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from tb_viz_plugin.methods.attribution.cams import (
    GRADIENT_CAMS,
    Cam,
    CamHead,
    check_cam_modules,
    default_layer,
    find_cam_head,
    upsample,
)
from tb_viz_plugin.methods.attribution.excitation import EXCITATION_METHODS, excitation_maps
from tb_viz_plugin.methods.attribution.gradients import (
    integrated_gradients_maps,
    max_abs_over_channels,
    smooth_grad_maps,
)
from tb_viz_plugin.methods.attribution.hooks import GuidedReLU, LayerCapture, trace_modules
from tb_viz_plugin.methods.attribution.perturbation import occlusion_maps
from tb_viz_plugin.methods.attribution.targets import Targets, check_targets, describe_targets, resolve_targets
from tb_viz_plugin.methods.layers import preserved_training_flags, resolve_layers

Layers = Optional[Union[str, Sequence[str]]]
_MULTI_PASS: Dict[str, Callable[..., torch.Tensor]] = {
    "smooth_grad": smooth_grad_maps,
    "integrated_gradients": integrated_gradients_maps,
    "occlusion": occlusion_maps,
}


def _keyword_options(function: Optional[Callable[..., Any]]) -> Tuple[str, ...]:
    if function is None:
        return ()
    parameters = inspect.signature(function).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class MethodInfo:
    """What a method is called, whether it reads a layer, whether its maps are signed, its options."""

    name: str
    title: str
    uses_layer: bool
    signed: bool
    options: Tuple[str, ...] = ()


METHODS: Dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("cam", "CAM", uses_layer=False, signed=True),
        MethodInfo("grad_cam", "Grad-CAM", uses_layer=True, signed=False),
        MethodInfo("grad_cam_plus_plus", "Grad-CAM++", uses_layer=True, signed=False),
        MethodInfo("layer_cam", "LayerCAM", uses_layer=True, signed=False),
        MethodInfo("guided_grad_cam", "Guided Grad-CAM", uses_layer=True, signed=False),
        MethodInfo("saliency", "Saliency", uses_layer=False, signed=False),
        MethodInfo("guided_backprop", "Guided backprop", uses_layer=False, signed=False),
        MethodInfo("smooth_grad", "SmoothGrad", False, False, _keyword_options(smooth_grad_maps)),
        MethodInfo("integrated_gradients", "Integrated gradients", False, True, _keyword_options(integrated_gradients_maps)),
        MethodInfo("occlusion", "Occlusion", False, True, _keyword_options(occlusion_maps)),
        MethodInfo("excitation_backprop", "Excitation backprop", uses_layer=True, signed=False),
        MethodInfo("contrastive_excitation_backprop", "c-MWP", uses_layer=True, signed=False),
    )
}
"""Every attribution method by name, in the order the grid shows them."""


def check_methods(methods: Union[str, Sequence[str]]) -> List[str]:
    """The method names, checked and de-duplicated (order kept).

    Raises:
        ValueError: no method, or an unknown name (the message lists the valid ones).

    Example:
        >>> check_methods(["grad_cam", "occlusion", "grad_cam"])
        ['grad_cam', 'occlusion']
    """
    names = [methods] if isinstance(methods, str) else list(methods)
    unknown = [name for name in names if name not in METHODS]
    if not names or unknown:
        raise ValueError(f"unknown attribution method(s) {unknown or names!r}; valid methods: {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def check_options(methods: Sequence[str], options: Optional[Mapping[str, Mapping[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    """Per-method options (``{"occlusion": {"window": 8}}``), checked against each method's keywords.

    Raises:
        ValueError: options for a method that is not requested, or an unknown option name.

    Example:
        >>> check_options(["occlusion"], {"occlusion": {"window": 8}})
        {'occlusion': {'window': 8}}
    """
    checked: Dict[str, Dict[str, Any]] = {}
    for name, given in (options or {}).items():
        if name not in methods:
            raise ValueError(f"options given for {name!r}, which is not among the methods {list(methods)}")
        unknown = sorted(set(given) - set(METHODS[name].options))
        if unknown:
            valid = ", ".join(METHODS[name].options) or "none"
            raise ValueError(f"unknown option(s) {unknown} for {name}; valid options: {valid}")
        checked[name] = dict(given)
    return checked


@dataclass(frozen=True)
class AttributionMap:
    """One method's maps for the batch: raw values ``(N, H, W)`` float32 at the input's resolution."""

    method: str
    layer: Optional[str]
    values: torch.Tensor

    @property
    def signed(self) -> bool:
        """Whether negative values carry meaning (CAM, integrated gradients, occlusion)."""
        return METHODS[self.method].signed

    @property
    def label(self) -> str:
        """Human-readable column title, e.g. ``"Grad-CAM @ layer4"``."""
        title = METHODS[self.method].title
        return f"{title} @ {self.layer}" if self.layer else title


@dataclass(frozen=True)
class Attribution:
    """What :func:`attribute` returns: the maps plus what the model said about each image."""

    maps: List[AttributionMap]
    probabilities: torch.Tensor
    """``(N, K)`` float32 softmax of the logits of the unchanged images."""
    targets: torch.Tensor
    """``(N,)`` the class index each image is explained for."""
    target: str
    """How the targets were chosen (``"predicted"``, ``"class_3"``, ``"given"``, a callable's name)."""
    layers: List[str]
    """The layers of the CAM-family methods (empty when none was requested)."""
    cam_head: Optional[CamHead] = None
    """Where CAM read the features and class weights (when ``"cam"`` was requested)."""

    def get(self, method: str, layer: Optional[str] = None) -> torch.Tensor:
        """The values of ``method`` (at ``layer``; default its first layer).

        Raises:
            KeyError: that method (and layer) was not computed.
        """
        for entry in self.maps:
            if entry.method == method and (layer is None or entry.layer == layer):
                return entry.values
        raise KeyError(f"no map for {method!r} at layer {layer!r}; computed: {[(m.method, m.layer) for m in self.maps]}")


@dataclass
class _SharedPass:
    logits: torch.Tensor
    targets: torch.Tensor
    layers: Dict[str, Tuple[torch.Tensor, torch.Tensor]]
    input_grad: Optional[torch.Tensor]
    guided_grad: Optional[torch.Tensor]
    cam_features: Optional[torch.Tensor]


def _shared_pass(
    model: nn.Module, x: torch.Tensor, names: Sequence[str], layers: Sequence[str], head: Optional[CamHead], targets: Targets
) -> _SharedPass:
    """One forward, one backward for layers and input, one guided backward: what single-pass methods need."""
    guided = "guided_backprop" in names or "guided_grad_cam" in names
    grad_layers = list(layers) if any(m in GRADIENT_CAMS or m == "guided_grad_cam" for m in names) else []
    wants_input = "saliency" in names
    differentiate = bool(grad_layers) or wants_input or guided
    with contextlib.ExitStack() as stack:
        capture = stack.enter_context(LayerCapture(model, grad_layers))
        features = stack.enter_context(LayerCapture(model, [head.pool] if head else [], capture="input"))
        guide = stack.enter_context(GuidedReLU()) if guided else None
        stack.enter_context(torch.enable_grad() if differentiate else torch.no_grad())
        x.requires_grad_(differentiate)
        logits = model(x)
    chosen = resolve_targets(targets, logits.detach().float())
    missing = [name for name in grad_layers if name not in capture.tensors]
    if missing:
        raise ValueError(f"layer(s) {missing} did not run during the forward pass of {type(model).__name__}")
    wrt = [capture.tensors[name] for name in grad_layers] + ([x] if wants_input else [])
    grads: Sequence[Optional[torch.Tensor]] = ()
    if wrt:
        score = logits.gather(1, chosen[:, None]).sum()
        grads = torch.autograd.grad(score, wrt, retain_graph=guided, allow_unused=True)
        unused = [name for name, grad in zip(grad_layers, grads) if grad is None]
        if unused:
            raise ValueError(f"the class scores do not depend on layer(s) {unused}")
    guided_grad = None
    if guide is not None:
        if not guide.relu_calls:
            raise ValueError(
                f"guided backpropagation found no ReLU in the forward pass of {type(model).__name__}, so it would "
                "equal the plain gradient; use 'saliency' instead"
            )
        guide.enabled = True
        (guided_grad,) = torch.autograd.grad(logits.gather(1, chosen[:, None]).sum(), x)
    return _SharedPass(
        logits=logits.detach(),
        targets=chosen,
        layers={name: (capture.tensors[name], grad) for name, grad in zip(grad_layers, grads)},
        input_grad=grads[-1] if wants_input else None,
        guided_grad=guided_grad,
        cam_features=features.tensors.get(head.pool) if head else None,
    )


def attribute(
    model: nn.Module,
    images: torch.Tensor,
    methods: Union[str, Sequence[str]] = ("grad_cam",),
    targets: Targets = "predicted",
    layers: Layers = None,
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Attribution:
    """Attribution maps of several methods for a batch of images, sharing passes where possible.

    Args:
        model: a classifier ``(N, C, H, W) -> (N, K)`` logits. Run in eval mode; every
            submodule's training flag is restored afterwards.
        images: ``(N, C, H, W)`` on the model's device (an inference tensor is fine).
        methods: names from :data:`METHODS`: ``cam``, ``grad_cam``, ``grad_cam_plus_plus``,
            ``layer_cam``, ``guided_grad_cam``, ``saliency``, ``guided_backprop``, ``smooth_grad``,
            ``integrated_gradients``, ``occlusion``, ``excitation_backprop``,
            ``contrastive_excitation_backprop`` (c-MWP).
        targets: the class to explain per image: ``"predicted"``, an int, ``(N,)`` indices (e.g.
            the true labels) or a callable ``logits -> (N,)``. Gradient methods use the logit,
            occlusion the softmax probability.
        layers: module name(s) for the CAM-family and excitation methods (one map per method and layer); default
            the last module whose output is a feature map larger than 1x1, not a pooling (found
            by a one-image forward pass). Names may omit a wrapper prefix (``"layer4"`` for
            ``"model.layer4"``).
        options: per-method keyword options: ``smooth_grad`` (samples, noise, seed),
            ``integrated_gradients`` (steps, baseline), ``occlusion`` (window, stride, baseline,
            max_memory_mb).

    Returns:
        An :class:`Attribution`: maps ``(N, H, W)`` float32 on the images' device (raw values,
        no normalisation), softmax probabilities ``(N, K)``, the targets ``(N,)``.

    Raises:
        ValueError: unknown methods/options, bad targets, images not 4-D, a layer whose output
            is not a feature map, guided methods on a network without ReLU.
        LayerNotFoundError: an unknown layer name (the message lists valid names).
        CamHeadError: ``cam`` on a network that does not end in global average pooling + Linear.

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> net = torchvision.models.resnet18()  # doctest: +SKIP
        >>> result = attribute(net, torch.randn(4, 3, 224, 224), ["grad_cam", "occlusion"])  # doctest: +SKIP
        >>> result.get("grad_cam").shape, result.layers  # doctest: +SKIP
        (torch.Size([4, 224, 224]), ['layer4'])
    """
    names = check_methods(methods)
    chosen_options = check_options(names, options)
    check_targets(targets)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a batch (N, C, H, W), got {shape}")
    layer_methods = [name for name in names if METHODS[name].uses_layer]
    if "cam" in names:
        check_cam_modules(model)
    with preserved_training_flags(model), torch.inference_mode(False), torch.enable_grad():
        x = images.detach().clone()  # a normal tensor even when the images are inference tensors
        calls, output = [], None
        if "cam" in names or (layer_methods and layers is None):
            calls, output = trace_modules(model, x[:1])
        if not layer_methods:
            layer_names: List[str] = []
        elif layers is None:
            layer_names = [default_layer(calls)]
        else:
            layer_names = resolve_layers(model, layers, accept=lambda module: True, what="module")
        head = find_cam_head(model, calls, output) if "cam" in names else None
        shared = _shared_pass(model, x, names, layer_names, head, targets)
        maps = _maps(model, x.detach(), names, layer_names, head, shared, chosen_options)
    return Attribution(
        maps=maps,
        probabilities=shared.logits.float().softmax(1),
        targets=shared.targets,
        target=describe_targets(targets),
        layers=layer_names,
        cam_head=head,
    )


def _maps(
    model: nn.Module,
    x: torch.Tensor,
    names: Sequence[str],
    layers: Sequence[str],
    head: Optional[CamHead],
    shared: _SharedPass,
    options: Dict[str, Dict[str, Any]],
) -> List[AttributionMap]:
    size = (x.shape[-2], x.shape[-1])
    cache: Dict[Tuple[str, str], torch.Tensor] = {}

    def layer_map(method: str, layer: str) -> torch.Tensor:
        if (method, layer) not in cache:
            activations, gradients = shared.layers[layer]
            cache[method, layer] = upsample(GRADIENT_CAMS[method]()(activations, gradients), size)
        return cache[method, layer]

    excitation = [name for name in names if name in EXCITATION_METHODS]  # one forward for both, all layers
    excited = excitation_maps(model, x, shared.targets, layers, excitation) if excitation else {}
    maps: List[AttributionMap] = []
    for name in names:
        if name in EXCITATION_METHODS:
            maps.extend(AttributionMap(name, layer, excited[name, layer]) for layer in layers)
        elif name == "guided_grad_cam":
            assert shared.guided_grad is not None
            guided = max_abs_over_channels(shared.guided_grad)
            maps.extend(AttributionMap(name, layer, layer_map("grad_cam", layer) * guided) for layer in layers)
        elif name in GRADIENT_CAMS:
            maps.extend(AttributionMap(name, layer, layer_map(name, layer)) for layer in layers)
        elif name == "cam":
            assert head is not None and shared.cam_features is not None
            weight = model.get_submodule(head.classifier).weight[shared.targets]
            maps.append(AttributionMap(name, None, upsample(Cam(weight)(shared.cam_features), size)))
        elif name in ("saliency", "guided_backprop"):
            grad = shared.input_grad if name == "saliency" else shared.guided_grad
            assert grad is not None
            maps.append(AttributionMap(name, None, max_abs_over_channels(grad)))
        else:
            values = _MULTI_PASS[name](model, x, shared.targets, **options.get(name, {}))
            maps.append(AttributionMap(name, None, values))
    return maps


# ------------------------------------------------------------------ one function per method


def cam(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted") -> torch.Tensor:
    """CAM (Zhou et al. 2016) for networks ending in global average pooling + ``nn.Linear``.

    ``sum_k w_ck A_k`` over the feature maps that enter the pooling, upsampled bilinearly; signed.

    Returns:
        ``(N, H, W)`` float32.

    Raises:
        CamHeadError: the network has no such head (the message names what is missing).

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> cam(torchvision.models.resnet18(), torch.randn(2, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([2, 224, 224])
    """
    return attribute(model, images, "cam", targets).maps[0].values


def grad_cam(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer`` (default: the last feature map before pooling).

    Returns:
        ``(N, H, W)`` float32, non-negative, bilinearly upsampled to the input size.

    Raises:
        LayerNotFoundError: an unknown layer name.

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> grad_cam(torchvision.models.resnet18(), torch.randn(2, 3, 224, 224), layer="layer4").shape  # doctest: +SKIP
        torch.Size([2, 224, 224])
    """
    return attribute(model, images, "grad_cam", targets, layer).maps[0].values


def grad_cam_plus_plus(
    model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None
) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018); arguments and result as :func:`grad_cam`.

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> grad_cam_plus_plus(torchvision.models.vgg11(), torch.randn(1, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([1, 224, 224])
    """
    return attribute(model, images, "grad_cam_plus_plus", targets, layer).maps[0].values


def layer_cam(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021); arguments and result as :func:`grad_cam`.

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> layer_cam(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224), layer="layer2").shape  # doctest: +SKIP
        torch.Size([1, 224, 224])
    """
    return attribute(model, images, "layer_cam", targets, layer).maps[0].values


def guided_grad_cam(
    model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None
) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop (max ``|.|`` over channels) times the upsampled Grad-CAM.

    Shares one forward pass for both factors. Arguments and result as :func:`grad_cam`.

    Raises:
        ValueError: the forward pass runs no ReLU.

    Example:
        >>> import torchvision  # doctest: +SKIP
        >>> guided_grad_cam(torchvision.models.resnet18(), torch.randn(1, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([1, 224, 224])
    """
    return attribute(model, images, "guided_grad_cam", targets, layer).maps[0].values


def saliency(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted") -> torch.Tensor:
    """Vanilla saliency (Simonyan et al. 2014): ``|d logit / d input|``, maximum over channels.

    Returns:
        ``(N, H, W)`` float32, non-negative.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> saliency(net, torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 16, 16])
    """
    return attribute(model, images, "saliency", targets).maps[0].values


def guided_backprop(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted") -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015), maximum ``|.|`` over channels.

    Every ReLU is guided, modules (``inplace=True`` included) and functional calls alike
    (see :class:`~tb_viz_plugin.methods.attribution.hooks.GuidedReLU`); captum and
    pytorch-grad-cam guide ``nn.ReLU`` modules only, so they differ on networks using ``F.relu``.

    Returns:
        ``(N, H, W)`` float32, non-negative.

    Raises:
        ValueError: the forward pass runs no ReLU.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> guided_backprop(net, torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 16, 16])
    """
    return attribute(model, images, "guided_backprop", targets).maps[0].values


def smooth_grad(
    model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", *, samples: int = 16, noise: float = 0.15, seed: int = 0
) -> torch.Tensor:
    """SmoothGrad; see :func:`~tb_viz_plugin.methods.attribution.gradients.smooth_grad_maps` for the options.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> smooth_grad(net, torch.randn(2, 3, 16, 16), samples=4).shape
        torch.Size([2, 16, 16])
    """
    options = {"smooth_grad": {"samples": samples, "noise": noise, "seed": seed}}
    return attribute(model, images, "smooth_grad", targets, options=options).maps[0].values


def integrated_gradients(
    model: nn.Module,
    images: torch.Tensor,
    targets: Targets = "predicted",
    *,
    steps: int = 32,
    baseline: Union[float, torch.Tensor] = 0.0,
) -> torch.Tensor:
    """Integrated gradients, summed over channels (signed); see
    :func:`~tb_viz_plugin.methods.attribution.gradients.integrated_gradients_maps`.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> integrated_gradients(net, torch.randn(2, 3, 16, 16), steps=8).shape
        torch.Size([2, 16, 16])
    """
    options = {"integrated_gradients": {"steps": steps, "baseline": baseline}}
    return attribute(model, images, "integrated_gradients", targets, options=options).maps[0].values


def occlusion(
    model: nn.Module,
    images: torch.Tensor,
    targets: Targets = "predicted",
    *,
    window: Optional[Union[int, Sequence[int]]] = None,
    stride: Optional[Union[int, Sequence[int]]] = None,
    baseline: Union[float, torch.Tensor] = 0.0,
    max_memory_mb: float = 1024.0,
) -> torch.Tensor:
    """Occlusion sensitivity: the drop of the target probability under a sliding ``baseline`` window.

    See :func:`~tb_viz_plugin.methods.attribution.perturbation.occlusion_maps` for the options.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> occlusion(net, torch.randn(2, 3, 16, 16), window=4, stride=2).shape
        torch.Size([2, 16, 16])
    """
    options = {"occlusion": {"window": window, "stride": stride, "baseline": baseline, "max_memory_mb": max_memory_mb}}
    return attribute(model, images, "occlusion", targets, options=options).maps[0].values
