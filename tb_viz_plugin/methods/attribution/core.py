"""``attribute``: several attribution methods on one batch, sharing forward and backward passes; one function per method.

The passes are shared as :mod:`~tb_viz_plugin.methods.attribution.shared_pass` describes. The
model's state is left as found: eval mode inside with every submodule's flag restored after,
parameter ``.grad`` never written, every hook removed; it also runs inside
``torch.inference_mode()`` and under autocast (maps are float32).
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from tb_viz_plugin.methods.attribution.cams import check_cam_modules, default_layer, find_cam_head
from tb_viz_plugin.methods.attribution.hooks import trace_modules
from tb_viz_plugin.methods.attribution.registry import METHODS, check_methods, check_options
from tb_viz_plugin.methods.attribution.result import Attribution
from tb_viz_plugin.methods.attribution.shared_pass import method_maps, shared_pass
from tb_viz_plugin.methods.attribution.targets import Targets, check_targets, describe_targets
from tb_viz_plugin.methods.layers import preserved_training_flags, resolve_layers
from tb_viz_plugin.methods.model_io import scores

Layers = Optional[Union[str, Sequence[str]]]


def attribute(
    model: nn.Module,
    images: torch.Tensor,
    methods: Union[str, Sequence[str]] = ("grad_cam",),
    targets: Targets = "predicted",
    layers: Layers = None,
    options: Optional[Mapping[str, Mapping[str, Any]]] = None,
    task: str = "multiclass",
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
        task: what the outputs mean (see ``methods.model_io.scores``): ``"multiclass"`` (softmax),
            ``"multilabel"`` (a sigmoid per label), ``"regression"`` (the values), ``"binary"`` and
            ``"segmentation"`` (softmax of a ``TaskModel``'s two or K scores). Sets the
            probabilities and what occlusion compares.

    Returns:
        An :class:`Attribution`: maps ``(N, H, W)`` float32 on the images' device (raw values,
        no normalisation), softmax probabilities ``(N, K)``, the targets ``(N,)``.

    Raises:
        ValueError: unknown methods/options, bad targets, images not 4-D, a layer whose output
            is not a feature map, guided methods on a network without ReLU.
        LayerNotFoundError: an unknown layer name (the message lists valid names).
        CamHeadError: ``cam`` on a network that does not end in global average pooling + Linear.

    Example:
        >>> import torchvision
        >>> net = torchvision.models.resnet18()  # random weights: nothing is downloaded
        >>> result = attribute(net, torch.randn(2, 3, 64, 64), ["grad_cam", "occlusion"],
        ...                    options={"occlusion": {"window": 32}})
        >>> result.get("grad_cam").shape, result.layers
        (torch.Size([2, 64, 64]), ['layer4'])
    """
    names = check_methods(methods)
    chosen_options = check_options(names, options)
    if "occlusion" in names and task != "multiclass":
        chosen_options["occlusion"] = {"score": lambda outputs: scores(outputs, task), **chosen_options.get("occlusion", {})}
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
        shared = shared_pass(model, x, names, layer_names, head, targets)
        maps = method_maps(model, x.detach(), names, layer_names, head, shared, chosen_options)
    return Attribution(
        maps=maps,
        probabilities=scores(shared.logits, task),
        targets=shared.targets,
        target=describe_targets(targets),
        layers=layer_names,
        cam_head=head,
    )


# ------------------------------------------------------------------ one function per method


def cam(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted") -> torch.Tensor:
    """CAM (Zhou et al. 2016) for networks ending in global average pooling + ``nn.Linear``.

    ``sum_k w_ck A_k`` over the feature maps that enter the pooling, upsampled bilinearly; signed.

    Returns:
        ``(N, H, W)`` float32.

    Raises:
        CamHeadError: the network has no such head (the message names what is missing).

    Example:
        >>> import torchvision
        >>> cam(torchvision.models.resnet18(), torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 64, 64])
    """
    return attribute(model, images, "cam", targets).maps[0].values


def grad_cam(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at ``layer`` (default: the last feature map before pooling).

    Returns:
        ``(N, H, W)`` float32, non-negative, bilinearly upsampled to the input size.

    Raises:
        LayerNotFoundError: an unknown layer name.

    Example:
        >>> import torchvision
        >>> grad_cam(torchvision.models.resnet18(), torch.randn(2, 3, 64, 64), layer="layer3").shape
        torch.Size([2, 64, 64])
    """
    return attribute(model, images, "grad_cam", targets, layer).maps[0].values


def grad_cam_plus_plus(
    model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None
) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018); arguments and result as :func:`grad_cam`.

    Example:
        >>> import torchvision
        >>> grad_cam_plus_plus(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 64, 64])
    """
    return attribute(model, images, "grad_cam_plus_plus", targets, layer).maps[0].values


def layer_cam(model: nn.Module, images: torch.Tensor, targets: Targets = "predicted", layer: Optional[str] = None) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021); arguments and result as :func:`grad_cam`.

    Example:
        >>> import torchvision
        >>> layer_cam(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64), layer="layer2").shape
        torch.Size([1, 64, 64])
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
        >>> import torchvision
        >>> guided_grad_cam(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64)).shape
        torch.Size([1, 64, 64])
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
