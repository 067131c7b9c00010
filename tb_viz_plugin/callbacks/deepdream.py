"""DeepDream: what a layer sees in fixed probe images, amplified, epoch by epoch."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_normalization, check_positive, class_names_for
from tb_viz_plugin.callbacks.base import claim_tags, misconfiguration, resolve_activation_layers
from tb_viz_plugin.methods import LayerNotFoundError
from tb_viz_plugin.methods.attribution.cams import default_layer
from tb_viz_plugin.callbacks.model_check import ModelInfo, caption_labels, check_channels
from tb_viz_plugin.callbacks.probes import probe_captions
from tb_viz_plugin.methods.model_io import IO
from tb_viz_plugin.log import make_tag, write_deepdream
from tb_viz_plugin.log.deepdream import KIND, shown_rgb
from tb_viz_plugin.methods import dream
from tb_viz_plugin.methods.layers import one_layer


class DeepDream(RankZeroCallback):
    """Log DeepDream images of probe validation images at validation epoch ends.

    The probe images are the shared deterministic selection (evenly spaced over the validation
    set, kept in the checkpoint). Each is dreamt at the layer (octaves, jitter, normalised gradient
    steps with the layer's activations as the gradient) and logged next to its original under
    ``deepdream/<layer>[/<name>]``, captioned with the layer's energy before and after. Gradients
    are taken with respect to the image only; the model's state, ``.grad`` and the global RNG are
    untouched. Runs on rank 0 (no collective) at ``trainer.global_step``.

    Args:
        layers: the module whose output is ``(N, C, H, W)``, e.g. ``"model.features.8"`` (a name
            or a one-element list); ``None`` = the last feature map before pooling (found before
            the first step).
        num_images: number of probe images (ignored when ``indices`` is given).
        indices: explicit validation-set indices of the probe images.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (the first and the
            last epoch, sized to it; see ``callbacks.schedule`` for short fits).
        budget: the overhead allowed to the Trainer's tb-viz callbacks together, as a fraction of
            the training time (see ``VizCallback``); ``None`` = every epoch.
        octaves: scales, each 1.4x larger, the last the full image size.
        steps: gradient steps per octave.
        class_names: label names for captions; default the module's or the dataset's, if any.
        mean: per-channel mean the dataset normalised its images with, one number per input
            channel (``None`` = ``io.mean``, else inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation (``None`` = ``io.std``).
        seed: seed of the jitter (the callback's own generator).
        strict: re-raise errors instead of warning.
        name: appended to the tag, to tell this instance from another one at the same layer.
        io: how the model takes inputs (``methods.model_io.ModelIO`` or a dict); images of other
            than 3 channels are shown with ``io.to_rgb`` (default grey, or the first three).

    Raises:
        MisconfigurationException: bad arguments (here), at ``setup`` a layer that is not a module
            of the model (the message lists the valid names), before the first step a layer whose
            output is not a feature map, ``mean``/``std`` of another length than the channels, or
            probe indices past the validation set.

    Example:
        >>> from tb_viz_plugin.demo.data import CLASS_NAMES, MEAN, STD
        >>> callback = DeepDream("model.features.8", class_names=CLASS_NAMES, mean=MEAN, std=STD)
        >>> callback.layers, callback.state_key
        ('model.features.8', "DeepDream{'layers': 'model.features.8', 'probes': 4}")
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    _what = "DeepDream"
    _sizes_work = True  # its logs are sized to the budget (see callbacks.schedule)

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        num_images: int = 4,
        indices: Optional[Sequence[int]] = None,
        every_n_epochs: Optional[int] = None,
        octaves: int = 3,
        steps: int = 10,
        class_names: Optional[Sequence[str]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        seed: int = 0,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs, strict, num_images=num_images, indices=indices, name=name, budget=budget, io=io)
        check_positive("DeepDream", octaves=octaves, steps=steps)
        with misconfiguration("DeepDream"):
            layer = one_layer(layers, "DeepDream")
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise MisconfigurationException(f"DeepDream: layers must be a module name or None, got {layers!r}")
        self.layers = layer
        self.octaves = octaves
        self.steps = steps
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.normalization = check_normalization("DeepDream", mean, std)
        self.seed = int(seed)
        self._layer = layer

    @property
    @override
    def state_key(self) -> str:
        return self._key(layers=self.layers)

    @override
    def _planned_tags(self) -> List[str]:
        return [] if self._layer is None else [make_tag(KIND, self._layer, name=self.name)]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if self.layers is not None:
            (self._layer,) = resolve_activation_layers("DeepDream", pl_module, self.layers, None)
        super().setup(trainer, pl_module, stage)

    def _normalization(self, info: ModelInfo) -> Dict[str, Any]:
        given = self.normalization
        return {"mean": given["mean"] or info.io.mean, "std": given["std"] or info.io.std}

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        if self.layers is None:
            with misconfiguration("DeepDream", LayerNotFoundError):
                self._layer = default_layer(info.calls)
            claim_tags(trainer, self, self._planned_tags())
        info.feature_map("DeepDream", self._layer)
        norm = self._normalization(info)
        check_channels(trainer, "DeepDream", info, norm["mean"], norm["std"], info.io.to_rgb)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        images, labels, indices = self._load_probes(trainer, pl_module)
        info = self._model_info(trainer, pl_module)
        captions = probe_captions(indices, caption_labels(labels, info),
                                  class_names_for(self.class_names, trainer, pl_module))  # fmt: skip
        norm = self._normalization(info)
        model = self._task_model(trainer, pl_module)
        with self._extra_pass(trainer, pl_module, grad=True):
            result = dream(model, images.float(), self._layer, octaves=self.octaves, steps=self._work(self.steps), seed=self.seed,
                           **norm)  # fmt: skip
        result = shown_rgb(result, info.io.to_rgb, **norm)
        self._write_later(trainer, self._what, write_deepdream, writer, result, trainer.global_step, captions=captions,
                          name=self.name)  # fmt: skip
