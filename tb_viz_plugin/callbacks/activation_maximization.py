"""ActivationMaximization: the image each class (or unit) wants to see, epoch by epoch."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_normalization, check_positive, class_names_for
from tb_viz_plugin.callbacks.base import resolve_activation_layers
from tb_viz_plugin.log import make_tag, write_activation_maximization
from tb_viz_plugin.log.activation_maximization import KIND
from tb_viz_plugin.methods import activation_maximization
from tb_viz_plugin.callbacks.model_check import ModelInfo, check_channels, task_class_names
from tb_viz_plugin.methods.model_io import IO
from tb_viz_plugin.log.activation_maximization import shown_rgb
from tb_viz_plugin.methods.optvis.maximize import MAX_CLASSES, OUTPUT, PARAMETRIZATIONS


class ActivationMaximization(RankZeroCallback):
    """Log images optimised to maximise class logits (and unit activations) at validation epoch ends.

    All targets are rendered as ONE batch (one image per target) from the same seeded start at
    every logged epoch, so the step slider shows how each class's "ideal image" sharpens as the
    network trains. Images are parametrized as a multi-scale pyramid with decorrelated colour and
    made robust with jitter, scale and rotation (see :mod:`tb_viz_plugin.methods.optvis`).
    Gradients are taken with respect to the image only (``torch.autograd.grad``): weights, their
    ``.grad``, BatchNorm statistics, training flags and the global RNG are untouched. Runs on rank 0
    (no collective), at ``trainer.global_step``, under ``activation_maximization/output`` (the
    classes) and ``activation_maximization/<layer>`` (each layer's units), ``/<name>`` appended
    when given; captions give the target's name and its final objective value.

    Args:
        classes: output indices to maximise (pre-softmax logits); ``None`` = every output (at most
            64); ``[]`` = none.
        units: ``{layer name: [channel, ...]}``: also maximise these channels' mean activations.
        steps: optimisation steps per logged epoch.
        size: image side in pixels, or ``(height, width)``; ``None`` = the validation images' size
            (a network with a fixed-size head needs it; the transforms keep it).
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (the first and the
            last epoch, sized to it; see ``callbacks.schedule`` for short fits).
        budget: the overhead allowed to the Trainer's tb-viz callbacks together, as a fraction of
            the training time (see ``VizCallback``); ``None`` = every epoch.
        class_names: output names for captions; default the module's or the dataset's, if any.
        mean: per-channel mean the model's inputs are normalised with, one number per input channel
            (``None`` = ``io.mean``, else inputs in [0, 1]).
        std: per-channel standard deviation of that normalisation (``None`` = ``io.std``).
        param: ``"pyramid"`` (multi-scale octaves), ``"fourier"`` (1/f spectrum) or ``"pixel"``.
        seed: seed of the initial images and transforms (the callback's own generator).
        strict: re-raise errors instead of warning.
        name: appended to the tags, to tell this instance from another one (e.g. another ``param``).
        io: how the model takes inputs and gives outputs (``methods.model_io.ModelIO`` or a dict);
            images have the model's channel count, shown with ``io.to_rgb`` when given.

    Raises:
        MisconfigurationException: bad arguments (here), at ``setup`` a layer that is not a module
            of the model (the message lists the valid names) or a unit past its channel count;
            before the first step a class past the model's outputs, ``mean``/``std`` of another
            length than the input channels, or a regression/segmentation model's classes=None.

    Example:
        >>> from tb_viz_plugin.demo.data import CLASS_NAMES, MEAN, STD
        >>> callback = ActivationMaximization(class_names=CLASS_NAMES, mean=MEAN, std=STD,
        ...                                   units={"model.features.8": [0, 1, 2]})
        >>> callback.units, callback.param
        ({'model.features.8': [0, 1, 2]}, 'pyramid')
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    _what = "activation maximization"
    _sizes_work = True  # its logs are sized to the budget (see callbacks.schedule)

    def __init__(
        self,
        classes: Optional[Sequence[int]] = None,
        units: Optional[Mapping[str, Sequence[int]]] = None,
        steps: int = 64,
        size: Optional[Union[int, Tuple[int, int]]] = None,
        every_n_epochs: Optional[int] = None,
        class_names: Optional[Sequence[str]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        param: str = "pyramid",
        seed: int = 0,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, name=name, budget=budget, io=io)
        owner = "ActivationMaximization"
        check_positive(owner, steps=steps)
        if size is not None:
            sides = (size, size) if isinstance(size, int) else tuple(size)
            check_positive(owner, **{f"size[{i}]": side for i, side in enumerate(sides)})
        if classes is not None:
            classes = list(classes)
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in classes):
                raise MisconfigurationException(
                    f"{owner}: classes must be None or output indices >= 0, got {classes!r}"
                )
        checked: Dict[str, List[int]] = {}
        for layer, indices in dict(units or {}).items():
            indices = list(indices) if not isinstance(indices, (str, bytes)) else []
            if not isinstance(layer, str) or not indices or not all(isinstance(u, int) and u >= 0 for u in indices):
                raise MisconfigurationException(
                    f"{owner}: units must map layer names to non-empty lists of channel indices, got {units!r}"
                )
            checked[layer] = indices
        if classes == [] and not checked:
            raise MisconfigurationException(f"{owner}: nothing to render; give classes and/or units")
        if param not in PARAMETRIZATIONS:
            raise MisconfigurationException(f"{owner}: param must be one of {sorted(PARAMETRIZATIONS)}, got {param!r}")
        self.classes = classes
        self.units = checked
        self.steps = steps
        self.size = size
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.normalization = check_normalization(owner, mean, std)
        self.param = param
        self.seed = int(seed)
        self._resolved: Dict[str, List[int]] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._key(classes=self.classes, layers=sorted(self.units))

    @override
    def _planned_tags(self) -> List[str]:
        groups = ([] if self.classes == [] else [OUTPUT]) + list(self._resolved)
        return [make_tag(KIND, what, name=self.name) for what in groups]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._resolved = {}
        for layer, indices in self.units.items():
            owner = f"ActivationMaximization, units[{layer!r}]"
            (path,) = resolve_activation_layers(owner, pl_module, layer, indices)
            self._resolved[path] = indices
        super().setup(trainer, pl_module, stage)

    def _normalization(self, info: ModelInfo) -> Dict[str, Any]:
        given = self.normalization
        return {"mean": given["mean"] or info.io.mean, "std": given["std"] or info.io.std}

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        owner = "ActivationMaximization"
        norm = self._normalization(info)
        check_channels(trainer, owner, info, norm["mean"], norm["std"], info.io.to_rgb)
        if self.classes and max(self.classes) >= info.outputs:
            raise MisconfigurationException(
                f"{owner}: class {max(self.classes)} is out of range for a model with {info.outputs} outputs; "
                f"give classes in [0, {info.outputs})"
            )
        if self.classes is None and info.outputs > MAX_CLASSES:
            raise MisconfigurationException(
                f"{owner}: the model has {info.outputs} outputs; pass classes=[...] with at most {MAX_CLASSES}"
            )
        for layer in self._resolved:
            info.feature_map(f"{owner}, units[{layer!r}]", layer)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        info = self._model_info(trainer, pl_module)
        norm = self._normalization(info)
        model = self._task_model(trainer, pl_module)
        names = task_class_names(info, class_names_for(self.class_names, trainer, pl_module))
        with self._extra_pass(trainer, pl_module, grad=True):
            result = activation_maximization(
                model,
                classes=list(range(info.outputs)) if self.classes is None else self.classes,
                class_names=names,
                units=self._resolved,
                steps=self._work(self.steps),
                size=self.size or info.size,
                param=self.param,
                seed=self.seed,
                channels=info.channels,
                **norm,
            )
        result = shown_rgb(result, info.io.to_rgb, **norm)
        self._write_later(trainer, self._what, write_activation_maximization, writer, result, trainer.global_step,
                          name=self.name)  # fmt: skip
