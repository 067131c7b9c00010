"""ActivationMaps: the feature maps that fixed probe images produce, epoch by epoch."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_layer_names, check_positive, misconfiguration
from tb_viz_plugin.log import log_activation_maps
from tb_viz_plugin.methods import LayerNotFoundError, activation_layers
from tb_viz_plugin.methods.activations import Units, check_units
from tb_viz_plugin.render.activations import ToRGB


def resolve_activation_layers(
    owner: str,
    pl_module: "pl.LightningModule",
    layers: Optional[Union[str, Sequence[str]]],
    channels: Units,
    deepest: bool = False,
) -> List[str]:
    """Resolve ``layers`` (see ``activation_layers``) and check ``channels`` against those that are ``Conv2d``.

    Other layers' channel counts are known only when they run, and are checked then.

    Raises:
        MisconfigurationException: an unknown layer name (the message lists the valid ones) or a
            channel index past a ``Conv2d``'s ``out_channels``, naming ``owner``.
    """
    with misconfiguration(owner, LayerNotFoundError, ValueError):
        resolved = activation_layers(pl_module, layers, deepest=deepest)
        for name in resolved:
            module = pl_module.get_submodule(name)
            if isinstance(module, nn.Conv2d):
                check_units(channels, module.out_channels)
    return resolved


class ActivationMaps(RankZeroCallback):
    """Log the feature maps of probe validation images at the end of validation epochs.

    The probe images are a fixed, evenly spaced selection of the validation set (kept in the
    checkpoint, so a resumed run shows the same images). For each layer and image, one grid: the
    image, then the ``channels`` most active feature maps (largest mean activation over the probe
    images, most active first; the caption names them), each coloured white = 0, red > 0, blue < 0
    and scaled by its own largest absolute value. One extra forward pass on the probe images, on
    rank 0, in eval mode (flags restored after), no gradients. Logged at ``trainer.global_step``
    under ``activation_maps/<layer>``; skipped during the sanity check.

    Args:
        layers: module names; any layer whose output is ``(N, C, H, W)``. ``None`` = the first ``Conv2d``.
        num_images: number of probe images (ignored when ``indices`` is given).
        channels: how many channels to show (the most active), or a list of channel indices.
        indices: explicit validation-set indices of the probe images.
        every_n_epochs: log every n-th epoch.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` (e.g. un-normalising);
            ``None`` = min-max per image. Must be picklable (a module-level function) for DDP spawn.
        strict: re-raise errors instead of warning.

    Raises:
        MisconfigurationException: bad arguments (here), or at ``setup`` a layer name that is not a
            module of the model (the message lists the valid names).

    Example:
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[
        ...     ActivationMaps(layers=["features.0", "features.4"], num_images=4, channels=8)])  # doctest: +SKIP
    """

    _what = "logging activation maps"

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        num_images: int = 4,
        channels: Union[int, Sequence[int]] = 16,
        indices: Optional[Sequence[int]] = None,
        every_n_epochs: int = 1,
        to_rgb: Optional[ToRGB] = None,
        strict: bool = False,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, num_images=num_images, indices=indices)
        if isinstance(channels, int):
            check_positive("ActivationMaps", channels=channels)
        elif not list(channels) or not all(isinstance(c, int) and c >= 0 for c in channels):
            raise MisconfigurationException(f"ActivationMaps: channels must be a count or channel indices, got {channels!r}")
        self.layers = check_layer_names("ActivationMaps", layers)
        self.channels = channels if isinstance(channels, int) else list(channels)
        self.to_rgb = to_rgb
        self._resolved: list = []

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layers=self.layers)

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        indices = None if isinstance(self.channels, int) else self.channels  # a count is never out of range
        self._resolved = resolve_activation_layers("ActivationMaps", pl_module, self.layers, indices)
        super().setup(trainer, pl_module, stage)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        images, labels, indices = self._load_probes(trainer, pl_module)
        names = [
            f"val #{index}" + ("" if labels is None else f" (label {int(label)})")
            for index, label in zip(indices, labels if labels is not None else indices)
        ]
        with self._extra_pass(trainer, pl_module):
            log_activation_maps(
                writer,
                pl_module,
                images,
                trainer.global_step,
                self._resolved,
                channels=self.channels,
                to_rgb=self.to_rgb,
                names=names,
            )
