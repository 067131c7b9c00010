"""The ``activation_maximization`` view: the optimised image of each target, captioned with its final value."""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch

from tb_viz_plugin.methods.optvis.maximize import OUTPUT, Maximization
from tb_viz_plugin.render import Panel, png_item, to_uint8


def image_arrays(images: torch.Tensor) -> List[np.ndarray]:
    """``(N, 3, H, W)`` images in ``[0, 1]`` to N ``uint8`` ``(H, W, 3)`` arrays.

    Example:
        >>> [a.shape for a in image_arrays(torch.rand(2, 3, 8, 6))]
        [(8, 6, 3), (8, 6, 3)]
    """
    return [to_uint8(image.detach().float().permute(1, 2, 0)) for image in images]


def panels(result: Maximization) -> Dict[str, Panel]:
    """The step of each group's tag (``OUTPUT`` for the class logits, else the layer): one item per target.

    Example:
        >>> from tb_viz_plugin.methods.optvis.maximize import TargetGroup
        >>> group = TargetGroup("output", "class logit (pre-softmax)", ["cat · logit"], ["cat"], torch.rand(1, 3, 8, 8),
        ...                     torch.tensor([2.5]))
        >>> panels(Maximization([group], "pyramid", 4, 8, 0.1))["output"].items[0].caption
        'cat · logit 2.5'
    """
    out = {}
    for group in result.groups:
        values = group.values.tolist()
        items = [
            png_item(array, f"{label} {value:.3g}", target=target, objective=value)
            for label, target, array, value in zip(group.labels, group.targets, image_arrays(group.images), values)
        ]
        meta = {"objective": group.objective, "param": result.param, "steps": result.steps, "size": result.size,
                "targets": result.count, "seconds": round(result.seconds, 2)}  # fmt: skip
        of = "" if group.what == OUTPUT else f" of {group.what}"
        out[group.what] = Panel(items, meta, f"Images optimised to maximise each {group.objective}{of}")
    return out
