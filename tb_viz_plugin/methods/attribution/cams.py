"""The class activation map family: CAM, Grad-CAM, Grad-CAM++, LayerCAM.

Every method weighs the channels of a layer's activations ``A`` (``(N, K, h, w)``) and sums them:
``map = sum_k w_k * A_k`` (then a ReLU, except for CAM). They differ only in the weights, the one
abstract step of :class:`CamMethod`. Maps are computed at the layer's resolution; bringing them to
the input's resolution is a separate step (:func:`upsample`). Also here: choosing the default
layer and finding the ``global average pooling -> Linear`` head that CAM needs.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.methods.attribution.hooks import ModuleCall, is_leaf
from tb_viz_plugin.methods.layers import LayerNotFoundError

_POOLING = (
    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d, nn.FractionalMaxPool2d,
)  # fmt: skip
_GLOBAL_AVERAGE = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)
_PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Identity)  # may sit between the pooling and the Linear
_EPS = 1e-6


class CamMethod(abc.ABC):
    """A CAM-family method: channel weights (the one abstract step), weighted sum, ReLU.

    Subclasses set ``name`` and implement :meth:`weights`. Inputs may be any float dtype
    (AMP); the maps are float32.

    Example:
        >>> a, g = torch.rand(2, 8, 7, 7), torch.randn(2, 8, 7, 7)
        >>> GradCam()(a, g).shape
        torch.Size([2, 7, 7])
    """

    name: ClassVar[str]
    signed: ClassVar[bool] = False
    """True for maps kept signed (no final ReLU)."""

    @abc.abstractmethod
    def weights(self, activations: torch.Tensor, gradients: Optional[torch.Tensor]) -> torch.Tensor:
        """Channel weights, ``(N, K, 1, 1)`` or per position ``(N, K, h, w)``, from float32 inputs."""

    def __call__(self, activations: torch.Tensor, gradients: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The maps ``(N, h, w)`` of activations ``(N, K, h, w)`` and the score's gradients (same shape)."""
        acts = activations.detach().float()
        grads = None if gradients is None else gradients.detach().float()
        maps = (self.weights(acts, grads) * acts).sum(1)
        return maps if self.signed else maps.clamp_min(0)


class GradCam(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): weights = spatial mean of the gradients."""

    name = "grad_cam"

    def weights(self, activations: torch.Tensor, gradients: Optional[torch.Tensor]) -> torch.Tensor:
        return _required(gradients, self.name).mean((2, 3), keepdim=True)


class GradCamPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhay et al. 2018), closed form of their eq. 19 (exponential score).

    ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3)`` (0 where ``g == 0``), weights = ``sum_ij alpha relu(g)``.
    """

    name = "grad_cam_plus_plus"

    def weights(self, activations: torch.Tensor, gradients: Optional[torch.Tensor]) -> torch.Tensor:
        grads = _required(gradients, self.name)
        squared = grads.pow(2)
        alpha = squared / (2 * squared + activations.sum((2, 3), keepdim=True) * squared * grads + _EPS)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (alpha * grads.clamp_min(0)).sum((2, 3), keepdim=True)


class LayerCam(CamMethod):
    """LayerCAM (Jiang et al. 2021): per-position weights = the positive part of the gradients."""

    name = "layer_cam"

    def weights(self, activations: torch.Tensor, gradients: Optional[torch.Tensor]) -> torch.Tensor:
        return _required(gradients, self.name).clamp_min(0)


class Cam(CamMethod):
    """CAM (Zhou et al. 2016): weights = the classifier's weight row of each image's target class.

    Kept signed (no ReLU). For a ``global average pooling -> Linear`` head, the spatial mean of the
    map at the layer's resolution plus the class bias is exactly the class logit.

    Args:
        class_weights: ``(N, K)``, the Linear's weight row of each image's target class.
    """

    name = "cam"
    signed = True

    def __init__(self, class_weights: torch.Tensor) -> None:
        self.class_weights = class_weights.detach().float()

    def weights(self, activations: torch.Tensor, gradients: Optional[torch.Tensor]) -> torch.Tensor:
        return self.class_weights[:, :, None, None]


def _required(gradients: Optional[torch.Tensor], name: str) -> torch.Tensor:
    if gradients is None:
        raise ValueError(f"{name} needs the gradients of the score with respect to the layer's activations")
    return gradients


GRADIENT_CAMS = {method.name: method for method in (GradCam, GradCamPlusPlus, LayerCam)}
"""The CAM methods computed from a layer's activations and gradients, by name."""


def upsample(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, h, w)`` maps to ``size`` (half-pixel centres, ``align_corners=False``).

    The convention of ``cv2.resize`` (pytorch-grad-cam) and of captum's ``interpolate(..., "bilinear")``.

    Example:
        >>> upsample(torch.rand(2, 7, 7), (224, 224)).shape
        torch.Size([2, 224, 224])
    """
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=tuple(size), mode="bilinear", align_corners=False).squeeze(1)


def default_layer(calls: Sequence[ModuleCall]) -> str:
    """The last module (in completion order) whose output is a 4-D feature map larger than 1x1, not a pooling.

    For torchvision's ResNet this is ``layer4``, for VGG ``features``, for the demo's CNN
    ``features``: the layer that feeds the final pooling.

    Args:
        calls: a traced forward pass (:func:`~tb_viz_plugin.methods.attribution.hooks.trace_modules`).

    Raises:
        LayerNotFoundError: no module outputs such a feature map.

    Example:
        >>> from tb_viz_plugin.methods.attribution.hooks import trace_modules
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> default_layer(trace_modules(net, torch.randn(1, 3, 8, 8))[0])
        '1'
    """
    for call in reversed(calls):
        out = call.output
        if (
            call.name
            and isinstance(out, torch.Tensor)
            and out.dim() == 4
            and out.shape[-2] * out.shape[-1] > 1
            and not isinstance(call.module, _POOLING)
        ):
            return call.name
    raise LayerNotFoundError(
        "no module of the model outputs a feature map (N, C, H, W) larger than 1x1, so there is no default "
        "layer for the CAM methods; pass a layer name"
    )


class CamHeadError(ValueError):
    """The model does not end in ``global average pooling -> Linear``, which CAM needs."""


@dataclass(frozen=True)
class CamHead:
    """Where CAM reads: the global-average-pooling module (its input is the feature map) and the Linear."""

    pool: str
    classifier: str


def _head_error(model: nn.Module, problem: str) -> CamHeadError:
    return CamHeadError(
        f"CAM needs a network ending in global average pooling followed by one nn.Linear (as ResNet and the "
        f"demo's ShapesCNN do), but in {type(model).__name__} {problem}. Grad-CAM ('grad_cam') needs no such "
        "head and equals CAM up to a positive factor where the head exists."
    )


def check_cam_modules(model: nn.Module) -> None:
    """Fail early (before any forward pass) when ``model`` has no average pooling or no ``nn.Linear`` at all.

    Raises:
        CamHeadError: naming what is missing.
    """
    modules = list(model.modules())
    if not any(isinstance(m, _GLOBAL_AVERAGE) for m in modules):
        raise _head_error(model, "there is no nn.AdaptiveAvgPool2d / nn.AvgPool2d module")
    if not any(isinstance(m, nn.Linear) for m in modules):
        raise _head_error(model, "there is no nn.Linear module")


def find_cam_head(model: nn.Module, calls: Sequence[ModuleCall], output: Any) -> CamHead:
    """Check that the traced forward pass ends in ``global average pooling -> (Flatten/Dropout) -> Linear``.

    Args:
        model: the network (for messages).
        calls: its traced forward pass.
        output: the output of that pass.

    Returns:
        The names of the pooling module and of the Linear.

    Raises:
        CamHeadError: the output is not a Linear's output, the Linear is not fed by a global
            average pooling to 1x1, or the sizes do not match; the message says which.

    Example:
        >>> from tb_viz_plugin.methods.attribution.hooks import trace_modules
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        >>> find_cam_head(net, *trace_modules(net, torch.randn(1, 3, 8, 8)))
        CamHead(pool='1', classifier='3')
    """
    leaves: List[ModuleCall] = [c for c in calls if is_leaf(c.module)]
    if not leaves or leaves[-1].output is not output or not isinstance(leaves[-1].module, nn.Linear):
        last = f"{leaves[-1].name!r} ({type(leaves[-1].module).__name__})" if leaves else "none"
        raise _head_error(model, f"the output does not come straight from an nn.Linear (the last module run is {last})")
    classifier = leaves[-1]
    position = len(leaves) - 2
    while position >= 0 and isinstance(leaves[position].module, _PASS_THROUGH):
        position -= 1
    pool = leaves[position] if position >= 0 else None
    pooled = pool.output if pool is not None else None
    if (
        pool is None
        or not isinstance(pool.module, _GLOBAL_AVERAGE)
        or not isinstance(pooled, torch.Tensor)
        or pooled.dim() != 4
        or tuple(pooled.shape[-2:]) != (1, 1)
    ):
        feeder = f"{pool.name!r} ({type(pool.module).__name__})" if pool is not None else "nothing"
        raise _head_error(
            model, f"the nn.Linear {classifier.name!r} is fed by {feeder}, not by average pooling to 1x1"
        )
    if classifier.module.in_features != pooled.shape[1]:
        raise _head_error(
            model,
            f"the pooling {pool.name!r} gives {pooled.shape[1]} channels but the nn.Linear "
            f"{classifier.name!r} takes {classifier.module.in_features} features",
        )
    return CamHead(pool=pool.name, classifier=classifier.name)
