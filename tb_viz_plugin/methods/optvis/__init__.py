"""Optimisation-based visualization: activation maximization with regularizers, and DeepDream.

Lucid/Lucent's split, in pure torch: a parametrization (:mod:`.param`) makes images from
parameters, transforms (:mod:`.transform`) make them robust, an objective (:mod:`.objectives`)
scores them, and :func:`render` ascends its gradient; :func:`deepdream` starts from a real image.

Example:
    >>> from tb_viz_plugin.methods import optvis
    >>> g = torch.Generator().manual_seed(0)
    >>> targets = optvis.objectives.batched([optvis.objectives.class_logit(c) for c in range(6)])
    >>> out = optvis.render(model, targets, optvis.param.fourier_image(6, 64, generator=g),
    ...                     steps=64, mean=MEAN, std=STD, generator=g)  # doctest: +SKIP
    >>> out.images.shape  # doctest: +SKIP
    torch.Size([6, 3, 64, 64])
"""

from tb_viz_plugin.methods.optvis import objectives, param, transform
from tb_viz_plugin.methods.optvis.deepdream import deepdream, normalize_gradient
from tb_viz_plugin.methods.optvis.optimize import Rendered, evaluate, from_model_input, render, to_model_input

__all__ = [
    "Rendered",
    "deepdream",
    "evaluate",
    "from_model_input",
    "normalize_gradient",
    "objectives",
    "param",
    "render",
    "to_model_input",
    "transform",
]
