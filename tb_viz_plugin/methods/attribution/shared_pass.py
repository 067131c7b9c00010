"""The passes :func:`~tb_viz_plugin.methods.attribution.core.attribute` shares between methods.

One forward pass serves every single-pass method: the activations of the chosen layers are
captured, one ``torch.autograd.grad`` call gives the gradients for all CAM methods of all layers
and for saliency, and a second backward through the same graph, with guided ReLUs switched on,
gives guided backprop (and guided Grad-CAM). :func:`method_maps` turns that pass into the maps,
running the multi-pass methods (SmoothGrad, integrated gradients, occlusion) on their own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from tb_viz_plugin.methods.attribution.cams import GRADIENT_CAMS, Cam, CamHead, upsample
from tb_viz_plugin.methods.attribution.excitation import EXCITATION_METHODS, excitation_maps
from tb_viz_plugin.methods.attribution.gradients import max_abs_over_channels
from tb_viz_plugin.methods.attribution.hooks import GuidedReLU
from tb_viz_plugin.methods.attribution.registry import MULTI_PASS
from tb_viz_plugin.methods.attribution.result import AttributionMap
from tb_viz_plugin.methods.attribution.targets import Targets, resolve_targets
from tb_viz_plugin.methods.hooks import LayerHooks


@dataclass
class SharedPass:
    """What one forward (and its backward passes) computed: logits, targets, layer activations and gradients."""

    logits: torch.Tensor
    targets: torch.Tensor
    layers: Dict[str, Tuple[torch.Tensor, torch.Tensor]]
    input_grad: Optional[torch.Tensor]
    guided_grad: Optional[torch.Tensor]
    cam_features: Optional[torch.Tensor]


def shared_pass(
    model: nn.Module, x: torch.Tensor, names: Sequence[str], layers: Sequence[str], head: Optional[CamHead], targets: Targets
) -> SharedPass:
    """One forward, one backward for layers and input, one guided backward: what single-pass methods need."""
    guided = "guided_backprop" in names or "guided_grad_cam" in names
    grad_layers = list(layers) if any(m in GRADIENT_CAMS or m == "guided_grad_cam" for m in names) else []
    wants_input = "saliency" in names
    differentiate = bool(grad_layers) or wants_input or guided
    with contextlib.ExitStack() as stack:
        capture = stack.enter_context(LayerHooks(model, grad_layers, feature_maps=True, clone=True))
        features: Dict[str, torch.Tensor] = {}

        def keep(name: str, value: torch.Tensor) -> None:
            features[name] = value.detach().clone()

        stack.enter_context(LayerHooks(model, [head.pool] if head else [], keep, capture="input", feature_maps=True))
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
    return SharedPass(
        logits=logits.detach(),
        targets=chosen,
        layers={name: (capture.tensors[name], grad) for name, grad in zip(grad_layers, grads)},
        input_grad=grads[-1] if wants_input else None,
        guided_grad=guided_grad,
        cam_features=features.get(head.pool) if head else None,
    )


def method_maps(
    model: nn.Module,
    x: torch.Tensor,
    names: Sequence[str],
    layers: Sequence[str],
    head: Optional[CamHead],
    shared: SharedPass,
    options: Dict[str, Dict[str, Any]],
) -> List[AttributionMap]:
    """The maps of ``names`` (in order; one per layer for the CAM family) from the shared pass and their own passes."""
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
            values = MULTI_PASS[name](model, x, shared.targets, **options.get(name, {}))
            maps.append(AttributionMap(name, None, values))
    return maps
