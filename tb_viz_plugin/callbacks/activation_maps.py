"""ActivationMaps: the feature maps that fixed probe images produce, epoch by epoch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_layer_names, check_positive, class_names_for
from tb_viz_plugin.callbacks.base import resolve_activation_layers
from tb_viz_plugin.callbacks.model_check import ModelInfo, caption_labels as _caption_labels, check_channels
from tb_viz_plugin.callbacks.probes import probe_captions
from tb_viz_plugin.methods.model_io import IO
from tb_viz_plugin.methods.model_display import display
from tb_viz_plugin.log import make_tag, write_activation_maps
from tb_viz_plugin.log.activation_maps import KIND
from tb_viz_plugin.methods import activation_maps

if TYPE_CHECKING:
    from tb_viz_plugin.render import ToRGB


class ActivationMaps(RankZeroCallback):
    """Log the feature maps of probe validation images at the end of validation epochs.

    The probe images are a fixed, evenly spaced selection of the validation set (kept in the
    checkpoint, so a resumed run shows the same images). For each layer and image, one grid: the
    image, then the ``units`` most active feature maps (largest mean activation over the probe
    images, most active first; the caption names them), each coloured white = 0, red > 0, blue < 0
    and scaled by its own largest absolute value. One extra forward pass on the probe images, on
    rank 0, in eval mode (flags restored after), no gradients. Logged at ``trainer.global_step``
    under ``activation_maps/<layer>[/<name>]``; skipped during the sanity check.

    Args:
        layers: module names; any layer whose output is ``(N, C, H, W)``. ``None`` = the first ``Conv2d``.
        num_images: number of probe images (ignored when ``indices`` is given).
        units: how many channels to show (the most active), or a list of channel indices.
        indices: explicit validation-set indices of the probe images.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (always the first
            and the last epoch).
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` (e.g. un-normalising);
            ``None`` = ``io``'s display, else min-max per image. Must be picklable (a module-level
            function) for DDP spawn.
        class_names: class names for captions; default the module's or the dataset's, if any.
        strict: re-raise errors instead of warning.
        name: appended to the tags, to tell this instance from another one on the same layers.
        io: how the model takes inputs (``methods.model_io.ModelIO`` or a dict of its fields).
        budget: the overhead allowed to the Trainer's tb-viz callbacks together, as a fraction of
            the training time (see ``VizCallback``); ``None`` = every epoch.

    Raises:
        MisconfigurationException: bad arguments (here), at ``setup`` a layer name that is not a
            module of the model (the message lists the valid names), before the first step a
            layer whose output is not a feature map or probe indices past the validation set.

    Example:
        >>> callback = ActivationMaps(layers=["features.0", "features.4"], num_images=4, units=8)
        >>> callback.state_key
        "ActivationMaps{'layers': ['features.0', 'features.4'], 'units': 8, 'probes': 4}"
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    _what = "logging activation maps"

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        num_images: int = 4,
        units: Union[int, Sequence[int]] = 16,
        indices: Optional[Sequence[int]] = None,
        every_n_epochs: Optional[int] = None,
        to_rgb: Optional["ToRGB"] = None,
        class_names: Optional[Sequence[str]] = None,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs, strict, num_images=num_images, indices=indices, name=name, budget=budget, io=io)
        if isinstance(units, int):
            check_positive("ActivationMaps", units=units)
        elif not list(units) or not all(isinstance(u, int) and u >= 0 for u in units):
            raise MisconfigurationException(f"ActivationMaps: units must be a count or channel indices, got {units!r}")
        self.layers = check_layer_names("ActivationMaps", layers)
        self.units = units if isinstance(units, int) else list(units)
        self.to_rgb = to_rgb
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self._resolved: List[str] = []

    @property
    @override
    def state_key(self) -> str:
        return self._key(layers=self.layers, units=self.units)

    @override
    def _planned_tags(self) -> List[str]:
        return [make_tag(KIND, layer, name=self.name) for layer in self._resolved]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        indices = None if isinstance(self.units, int) else self.units  # a count is never out of range
        self._resolved = resolve_activation_layers("ActivationMaps", pl_module, self.layers, indices)
        super().setup(trainer, pl_module, stage)

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        for layer in self._resolved:
            info.feature_map("ActivationMaps", layer)
        check_channels(trainer, "ActivationMaps", info, info.io.mean, info.io.std, self.to_rgb or info.io.to_rgb)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        images, labels, indices = self._load_probes(trainer, pl_module)
        info = self._model_info(trainer, pl_module)
        captions = probe_captions(indices, _caption_labels(labels, info),
                                  class_names_for(self.class_names, trainer, pl_module))  # fmt: skip
        model = self._task_model(trainer, pl_module)
        with self._extra_pass(trainer, pl_module):
            images = trainer.precision_plugin.convert_input(images)
            results = activation_maps(model, images, self._resolved, self.units)
        self._write_later(trainer, self._what, write_activation_maps, writer, images, results, trainer.global_step,
                          to_rgb=display(info.io, self.to_rgb), captions=captions, name=self.name)  # fmt: skip
