"""FeatureInversion: what each layer keeps of fixed probe images, reconstructed epoch by epoch."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_layer_names, check_positive, class_names_for
from tb_viz_plugin.callbacks.base import claim_tags, misconfiguration
from tb_viz_plugin.callbacks.model_check import ModelInfo, convs_that_ran
from tb_viz_plugin.callbacks.probes import probe_captions
from tb_viz_plugin.log.feature_inversion import inversion_tag, write_feature_inversion
from tb_viz_plugin.methods import LayerNotFoundError, conv2d_layer_names, invert, resolve_layers
from tb_viz_plugin.methods.model_io import IO


def check_channel_stats(
    owner: str, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> Dict[str, Optional[List[float]]]:
    """``{"mean": [...], "std": [...]}`` as float lists (or ``None``): any channel count, one number per channel.

    Raises:
        MisconfigurationException: not numbers, a standard deviation <= 0, or lengths that differ.
    """
    checked: Dict[str, Optional[List[float]]] = {}
    for name, values in (("mean", mean), ("std", std)):
        try:
            checked[name] = None if values is None else [float(v) for v in values]
        except (TypeError, ValueError):
            raise MisconfigurationException(f"{owner}: {name} must be None or one number per channel, got {values!r}")
    lengths = {len(v) for v in checked.values() if v is not None}
    if len(lengths) > 1 or 0 in lengths or min(checked["std"] or [1.0]) <= 0:
        raise MisconfigurationException(
            f"{owner}: mean and std must be None or one number per input channel each (std > 0), got {mean!r}, {std!r}"
        )
    return checked


def resolve_named_layers(
    owner: str, pl_module: "pl.LightningModule", layers: Optional[Union[str, Sequence[str]]],
    default: Callable[[List[str]], List[str]],
) -> List[str]:  # fmt: skip
    """Full module names of ``layers`` (repeats dropped); ``None`` = ``default(the model's Conv2d names)``.

    Raises:
        MisconfigurationException: an unknown name (the message lists the valid ones), or no
            Conv2d for a default, naming ``owner``.
    """
    convs = conv2d_layer_names(pl_module)
    with misconfiguration(owner, LayerNotFoundError, ValueError):
        if layers is None and not convs:
            raise ValueError("the model has no Conv2d layer to default to: pass layers=[...]")
        return resolve_layers(pl_module, layers, accept=lambda module: True, what="layer",
                              default=lambda valid: default(convs))  # fmt: skip


class FeatureInversion(RankZeroCallback):
    """Log, for each probe image, the images reconstructed from its features at each layer.

    At every logged validation epoch each probe image is reconstructed from each layer's features
    (Mahendran & Vedaldi 2015: normalised feature distance plus a total-variation prior, from
    the same seeded noise every time), every image x layer in one batch. One row per probe image
    (original, then one reconstruction per layer) under ``feature_inversion/<layers joined by
    +>[/<name>]``; the step slider shows a layer's reconstruction sharpen or fade as the network
    trains. Inputs keep the model's size and channel count. Gradients with respect to the images
    only; weights, ``.grad``, BatchNorm statistics, flags and the global RNG are untouched. Runs
    on rank 0 (no collective) at ``trainer.global_step``.

    Args:
        layers: module names whose features are inverted; ``None`` = the first and the deepest ``Conv2d``.
        num_images: number of probe images (ignored when ``indices`` is given).
        indices: explicit validation-set indices of the probe images.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (the first and the
            last epoch, sized to it; see ``callbacks.schedule`` for short fits).
        steps: optimisation steps per logged epoch.
        class_names: label names for captions; default the module's or the dataset's, if any.
        mean: per-channel mean the dataset normalised its images with (``None`` = inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation.
        seed: seed of the starting noise (the callback's own generator).
        strict: re-raise errors instead of warning.
        name: appended to the tag, to tell this instance from another one on the same layers.

    Raises:
        MisconfigurationException: bad arguments (here), or at ``setup`` a layer that is not a module
            of the model (the message lists the valid names).

    Example:
        >>> from tb_viz_plugin.demo.data import MEAN, STD
        >>> callback = FeatureInversion(layers=["model.features.0", "model.features.12"], mean=MEAN, std=STD)
        >>> callback.state_key
        "FeatureInversion{'layers': ['model.features.0', 'model.features.12'], 'probes': 4}"
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    _what = "feature inversion"
    _sizes_work = True  # its logs are sized to the budget (see callbacks.schedule)

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        num_images: int = 4,
        indices: Optional[Sequence[int]] = None,
        every_n_epochs: Optional[int] = None,
        steps: int = 200,
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
        check_positive("FeatureInversion", steps=steps)
        self.layers = check_layer_names("FeatureInversion", layers)
        self.steps = steps
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.normalization = check_channel_stats("FeatureInversion", mean, std)
        self.seed = int(seed)
        self._layers: List[str] = []

    @property
    @override
    def state_key(self) -> str:
        return self._key(layers=self.layers)

    @override
    def _planned_tags(self) -> List[str]:
        return [inversion_tag(self._layers, self.name)]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        first_and_deepest = lambda convs: list(dict.fromkeys([convs[0], convs[-1]]))  # noqa: E731
        self._layers = resolve_named_layers("FeatureInversion", pl_module, self.layers, first_and_deepest)
        super().setup(trainer, pl_module, stage)

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        ran = convs_that_ran(pl_module, info)
        if self.layers is None and ran:  # defaults among the convs that run (not an auxiliary head)
            layers = list(dict.fromkeys([ran[0], ran[-1]]))
            if layers != self._layers:
                self._layers = layers
                claim_tags(trainer, self, self._planned_tags())

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        images, labels, indices = self._load_probes(trainer, pl_module)
        captions = probe_captions(indices, None if labels is None else labels.tolist(),
                                  class_names_for(self.class_names, trainer, pl_module))  # fmt: skip
        with self._extra_pass(trainer, pl_module, grad=True):
            result = invert(pl_module, images, self._layers, steps=self._work(self.steps), seed=self.seed, **self.normalization)
        self._write_later(trainer, self._what, write_feature_inversion, writer, result, trainer.global_step,
                          captions=captions, name=self.name)  # fmt: skip
