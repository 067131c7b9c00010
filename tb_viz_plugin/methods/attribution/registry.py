"""Every attribution method by name: what it is called, whether it reads a layer, its sign, its options."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from tb_viz_plugin.methods.attribution.gradients import integrated_gradients_maps, smooth_grad_maps
from tb_viz_plugin.methods.attribution.perturbation import occlusion_maps

MULTI_PASS: Dict[str, Callable[..., torch.Tensor]] = {
    "smooth_grad": smooth_grad_maps,
    "integrated_gradients": integrated_gradients_maps,
    "occlusion": occlusion_maps,
}
"""The methods that need passes of their own, by name: ``fn(model, images, targets, **options) -> (N, H, W)``."""


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


DEFAULT_METHODS = ("grad_cam", "guided_grad_cam", "saliency", "occlusion")
"""Methods logged by default: they work on any CNN with ReLUs and cost one forward+backward plus occlusion."""
