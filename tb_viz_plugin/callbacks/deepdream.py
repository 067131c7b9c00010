"""DeepDream: what a layer sees in fixed probe images, amplified, epoch by epoch."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.activation_maps import resolve_activation_layers
from tb_viz_plugin.callbacks.base import RankZeroCallback, check_normalization, check_positive
from tb_viz_plugin.log import log_deepdream


class DeepDream(RankZeroCallback):
    """Log DeepDream images of probe validation images at validation epoch ends.

    The probe images are the shared deterministic selection (evenly spaced over the validation
    set, kept in the checkpoint). Each is dreamt at ``layer`` (octaves, jitter, normalised gradient
    steps with the layer's activations as the gradient) and logged next to its original under
    ``deepdream/<layer>``, captioned with the layer's energy before and after. Gradients are taken
    with respect to the image only; the model's state, ``.grad`` and the global RNG are untouched.
    Runs on rank 0 (no collective) at ``trainer.global_step``.

    Args:
        layer: module name whose output is ``(N, C, H, W)``, e.g. ``"model.features.8"``.
        num_images: number of probe images (ignored when ``indices`` is given).
        indices: explicit validation-set indices of the probe images.
        every_n_epochs: log every n-th epoch.
        octaves: scales, each 1.4x larger, the last the full image size.
        steps: gradient steps per octave.
        class_names: label names for captions.
        mean: per-channel mean the dataset normalised its images with (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the jitter (the callback's own generator).
        strict: re-raise errors instead of warning.

    Raises:
        MisconfigurationException: bad arguments (here), or at ``setup`` a layer that is not a module
            of the model (the message lists the valid names).

    Example:
        >>> from tb_viz_plugin.demo.data import CLASS_NAMES, MEAN, STD
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[
        ...     DeepDream("model.features.8", class_names=CLASS_NAMES, mean=MEAN, std=STD)])  # doctest: +SKIP
    """

    _what = "DeepDream"

    def __init__(
        self,
        layer: str,
        num_images: int = 4,
        indices: Optional[Sequence[int]] = None,
        every_n_epochs: int = 1,
        octaves: int = 3,
        steps: int = 10,
        class_names: Optional[Sequence[str]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        seed: int = 0,
        strict: bool = False,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, num_images=num_images, indices=indices)
        check_positive("DeepDream", octaves=octaves, steps=steps)
        if not isinstance(layer, str) or not layer:
            raise MisconfigurationException(f"DeepDream: layer must be a module name, got {layer!r}")
        self.layer = layer
        self.octaves = octaves
        self.steps = steps
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.normalization = check_normalization("DeepDream", mean, std)
        self.seed = int(seed)

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(layer=self.layer)

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        resolve_activation_layers("DeepDream", pl_module, self.layer, None)
        super().setup(trainer, pl_module, stage)

    def _caption(self, index: int, label: Optional[int]) -> str:
        if label is None:
            return f"val #{index}"
        name = self.class_names[label] if self.class_names and 0 <= label < len(self.class_names) else f"label {label}"
        return f"val #{index} ({name})"

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        images, labels, indices = self._load_probes(trainer, pl_module)
        label_list = [None] * len(indices) if labels is None else [int(label) for label in labels]
        with self._extra_pass(trainer, pl_module, grad=True):
            log_deepdream(
                writer,
                pl_module,
                images,
                trainer.global_step,
                layer=self.layer,
                captions=[self._caption(i, label) for i, label in zip(indices, label_list)],
                octaves=self.octaves,
                steps=self.steps,
                seed=self.seed,
                **self.normalization,
            )
