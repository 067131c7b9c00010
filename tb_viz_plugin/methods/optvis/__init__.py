"""Optimisation-based visualization: activation maximization with regularizers, and DeepDream.

Lucid/Lucent's split, in pure torch: a parametrization (:mod:`.param`) makes images from
parameters, transforms (:mod:`.transform`) make them robust, an objective (:mod:`.objectives`)
scores them, and :func:`render` ascends its gradient; :func:`deepdream` starts from a real image.
:func:`activation_maximization` and :func:`dream` are what the two views compute.
:func:`invert` reconstructs images from a layer's features (``feature_inversion`` view),
:func:`texture` and :func:`style_transfer` match Gram matrices (``neural_style`` view).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from tb_viz_plugin.methods import optvis
    >>> net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # 6 "classes"
    >>> g = torch.Generator().manual_seed(0)
    >>> targets = optvis.objectives.batched([optvis.objectives.class_logit(c) for c in range(6)])
    >>> out = optvis.render(net, targets, optvis.param.fourier_image(6, 32, generator=g), steps=4, generator=g)
    >>> out.images.shape
    torch.Size([6, 3, 32, 32])
"""

from tb_viz_plugin.methods.optvis import objectives, param, transform
from tb_viz_plugin.methods.optvis.deepdream import Dream, deepdream, dream, normalize_gradient
from tb_viz_plugin.methods.optvis.inversion import Inversion, invert
from tb_viz_plugin.methods.optvis.maximize import Maximization, TargetGroup, activation_maximization
from tb_viz_plugin.methods.optvis.optimize import Rendered, evaluate, from_model_input, render, to_model_input
from tb_viz_plugin.methods.optvis.style import Stylized, Texture, gram, style_transfer, texture

__all__ = [
    "Dream",
    "Inversion",
    "Maximization",
    "Rendered",
    "Stylized",
    "TargetGroup",
    "Texture",
    "activation_maximization",
    "deepdream",
    "dream",
    "evaluate",
    "from_model_input",
    "gram",
    "invert",
    "normalize_gradient",
    "objectives",
    "param",
    "render",
    "style_transfer",
    "texture",
    "to_model_input",
    "transform",
]
