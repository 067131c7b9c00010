"""DeepDream: what a layer sees in fixed probe images, amplified, epoch by epoch."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_normalization, check_positive, class_names_for
from tb_viz_plugin.callbacks.base import misconfiguration, resolve_activation_layers
from tb_viz_plugin.callbacks.probes import probe_captions
from tb_viz_plugin.log import make_tag, write_deepdream
from tb_viz_plugin.log.deepdream import KIND
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
            or a one-element list).
        num_images: number of probe images (ignored when ``indices`` is given).
        indices: explicit validation-set indices of the probe images.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (always the first
            and the last epoch).
        budget: the overhead allowed to the Trainer's tb-viz callbacks together, as a fraction of
            the training time (see ``VizCallback``); ``None`` = every epoch.
        octaves: scales, each 1.4x larger, the last the full image size.
        steps: gradient steps per octave.
        class_names: label names for captions; default the module's or the dataset's, if any.
        mean: per-channel mean the dataset normalised its images with (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the jitter (the callback's own generator).
        strict: re-raise errors instead of warning.
        name: appended to the tag, to tell this instance from another one at the same layer.

    Raises:
        MisconfigurationException: bad arguments (here), or at ``setup`` a layer that is not a module
            of the model (the message lists the valid names).

    Example:
        >>> from tb_viz_plugin.demo.data import CLASS_NAMES, MEAN, STD
        >>> callback = DeepDream("model.features.8", class_names=CLASS_NAMES, mean=MEAN, std=STD)
        >>> callback.layers, callback.state_key
        ('model.features.8', "DeepDream{'layers': 'model.features.8', 'probes': 4}")
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    _what = "DeepDream"

    def __init__(
        self,
        layers: Union[str, Sequence[str]],
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
    ) -> None:
        super().__init__(every_n_epochs, strict, num_images=num_images, indices=indices, name=name, budget=budget)
        check_positive("DeepDream", octaves=octaves, steps=steps)
        with misconfiguration("DeepDream"):
            layer = one_layer(layers, "DeepDream")
        if not isinstance(layer, str) or not layer:
            raise MisconfigurationException(f"DeepDream: layers must be a module name, got {layers!r}")
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
        return [make_tag(KIND, self._layer, name=self.name)]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        (self._layer,) = resolve_activation_layers("DeepDream", pl_module, self.layers, None)
        super().setup(trainer, pl_module, stage)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        images, labels, indices = self._load_probes(trainer, pl_module)
        captions = probe_captions(indices, None if labels is None else labels.tolist(),
                                  class_names_for(self.class_names, trainer, pl_module))  # fmt: skip
        with self._extra_pass(trainer, pl_module, grad=True):
            result = dream(pl_module, images, self._layer, octaves=self.octaves, steps=self.steps, seed=self.seed,
                           **self.normalization)  # fmt: skip
        self._write_later(trainer, self._what, write_deepdream, writer, result, trainer.global_step, captions=captions,
                          name=self.name)  # fmt: skip
