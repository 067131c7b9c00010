"""What :func:`~tb_viz_plugin.methods.attribution.core.attribute` returns: the maps and what the model said."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional

import torch

from tb_viz_plugin.methods.attribution.cams import CamHead
from tb_viz_plugin.methods.attribution.registry import METHODS


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

    @property
    def predicted(self) -> torch.Tensor:
        """``(N,)`` the predicted class of each image (argmax of the probabilities)."""
        return self.probabilities.argmax(1)

    @property
    def confidence(self) -> torch.Tensor:
        """``(N,)`` the probability of each image's predicted class."""
        return self.probabilities.max(1).values

    def cpu(self) -> "Attribution":
        """The same result with every tensor detached on the CPU (what the writers take)."""
        maps = [dataclasses.replace(m, values=m.values.detach().cpu()) for m in self.maps]
        return dataclasses.replace(
            self, maps=maps, probabilities=self.probabilities.detach().cpu(), targets=self.targets.detach().cpu()
        )
