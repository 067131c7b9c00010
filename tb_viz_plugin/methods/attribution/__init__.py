"""Where the network looks: CAM, the Grad-CAM family, input gradients and occlusion (pure torch).

Each method takes a batch ``(N, C, H, W)`` and per-image targets and returns raw maps ``(N, H, W)``
at input resolution on the model's device; :func:`attribute` computes several at once, sharing
forward and backward passes.

Modules: ``core`` (``attribute`` and one function per method), ``cams`` (the CAM family on one
base class), ``gradients`` (input-gradient methods), ``perturbation`` (occlusion), ``hooks``
(capturing layers, guided ReLUs, traced module calls), ``targets``.
"""

from tb_viz_plugin.methods.attribution.cams import CamHeadError, upsample
from tb_viz_plugin.methods.attribution.core import (
    METHODS,
    Attribution,
    AttributionMap,
    attribute,
    cam,
    check_methods,
    check_options,
    grad_cam,
    grad_cam_plus_plus,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    layer_cam,
    occlusion,
    saliency,
    smooth_grad,
)
from tb_viz_plugin.methods.attribution.excitation import (
    ExcitationRules,
    contrastive_excitation_backprop,
    excitation_backprop,
)
from tb_viz_plugin.methods.attribution.targets import Targets, check_targets

__all__ = [
    "METHODS",
    "Attribution",
    "AttributionMap",
    "CamHeadError",
    "ExcitationRules",
    "Targets",
    "attribute",
    "cam",
    "check_methods",
    "check_options",
    "check_targets",
    "contrastive_excitation_backprop",
    "excitation_backprop",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "layer_cam",
    "occlusion",
    "saliency",
    "smooth_grad",
    "upsample",
]
