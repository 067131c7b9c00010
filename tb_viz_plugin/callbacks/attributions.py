"""AttributionMaps: where the network looks (CAM, Grad-CAM family, saliency, occlusion...), epoch by epoch."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_layer_names, claim_tags, class_names_for
from tb_viz_plugin.callbacks.base import misconfiguration
from tb_viz_plugin.callbacks.model_check import ModelInfo, check_channels, task_class_names
from tb_viz_plugin.methods.model_io import IO, labels_as_classes
from tb_viz_plugin.methods.model_display import display
from pytorch_lightning.utilities import rank_zero_warn
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tb_viz_plugin.log import attribution_tag, write_attributions
from tb_viz_plugin.log.attributions import check_faithfulness_options, faithfulness_tags
from tb_viz_plugin.methods import LayerNotFoundError, resolve_layers
from tb_viz_plugin.methods.attribution import (
    DEFAULT_METHODS,
    METHODS,
    attribute,
    check_methods,
    check_options,
    check_targets,
    describe_targets,
    faithfulness_scores,
)
from tb_viz_plugin.methods.attribution.cams import CamHeadError, check_cam_modules

if TYPE_CHECKING:
    from tb_viz_plugin.render import ToRGB

_GUIDED = ("guided_grad_cam", "guided_backprop")


class AttributionMaps(RankZeroCallback):
    """Log attribution maps of fixed probe images at the end of validation epochs.

    Per step, one grid under ``attributions/<layers>/<target>[/<name>]`` (``<layers>`` is
    ``input`` when no method reads a layer): a row per probe image (the image, with its true
    class, predicted class and probability) and a column per method (and layer), each cell that
    method's map over the image. Maps are stored as single-channel PNGs normalised per map, their
    raw range in the manifest; colormap, opacity and overlay are chosen in the browser. The probe
    images are a fixed, evenly spaced selection of the validation set, saved in the checkpoint so
    a resumed run explains the same images.

    Runs on rank 0 only, on the unwrapped LightningModule, in eval mode (every submodule's flag
    restored), with the trainer's precision (autocast), outside inference mode (so it also runs
    under ``trainer.validate()``), gradients by ``torch.autograd.grad`` only, hooks removed after.
    The methods that can share one forward and backward pass share it.

    Args:
        methods: names from :data:`tb_viz_plugin.methods.ATTRIBUTION_METHODS`: ``cam``, ``grad_cam``,
            ``grad_cam_plus_plus``, ``layer_cam``, ``guided_grad_cam``, ``saliency``,
            ``guided_backprop``, ``smooth_grad``, ``integrated_gradients``, ``occlusion``.
        layers: module name(s) for the CAM-family methods; ``None`` = the last feature map before
            pooling (found on the first run and kept in the checkpoint).
        target: the class explained: ``"predicted"``, ``"label"`` (the true class), a class
            index, or a callable ``logits (N, K) -> (N,)`` indices.
        num_images: number of probe images (ignored when ``indices`` is given).
        indices: explicit validation-set indices of the probe images.
        class_names: class names for captions; default the LightningModule's ``class_names`` or
            the dataset's ``class_names`` / ``classes`` attribute, else ``"class 3"``.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` for display (e.g.
            un-normalising); ``None`` = ``io.to_rgb``, else min-max per image. Picklable
            (module-level) for DDP spawn.
        options: per-method options, e.g. ``{"occlusion": {"window": 16, "stride": 8}}``.
        faithfulness: also score every map (``methods.faithfulness_scores``: deletion and
            insertion AUC, Petsiuk et al. 2018, and a random map as the baseline), shown per
            method in the view and logged as ordinary TensorBoard scalars
            ``tb_viz/faithfulness/<method>/deletion`` (and ``insertion``; ``random`` for the
            baseline; ``/<name>`` appended when given), curves beside the loss. ``True`` for 16
            steps, or options ``steps``, ``seed``, ``max_memory_mb``. Costs 2 x (methods + 1) x
            (steps + 1) forward passes of the probe images per logged epoch.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (the first and the
            last epoch, sized to it; see ``callbacks.schedule`` for short fits).
        budget: the overhead allowed to the Trainer's tb-viz callbacks together, as a fraction of
            the training time (see ``VizCallback``); ``None`` = every epoch.
        strict: re-raise errors instead of warning.
        name: appended to the tag, to tell this instance from another one with the same layers and
            target (e.g. other methods or probe images).
        io: how the model takes inputs and gives outputs (``methods.model_io.ModelIO`` or a dict):
            the task decides what is explained (a sigmoid per label, the regressed value, a
            segmentation class over its predicted pixels).

    Raises:
        MisconfigurationException: unknown methods or options (also of ``faithfulness``), a bad
            target (here), or at
            ``setup`` a layer that is not a module of the model (the message lists the valid
            names) or ``cam`` for a model without average pooling and ``nn.Linear``; before the
            first step a class target out of range, ``target="label"`` without labels, probe
            indices past the validation set. Default guided methods on a network without ReLU are
            dropped with one warning.

    Example:
        >>> callback = AttributionMaps(methods=["grad_cam", "occlusion"], layers="layer4", num_images=6)
        >>> callback.methods, callback.layers
        (['grad_cam', 'occlusion'], 'layer4')
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    _what = "logging attribution maps"
    _sizes_work = True  # its logs are sized to the budget (see callbacks.schedule)

    def __init__(
        self,
        methods: Union[str, Sequence[str]] = DEFAULT_METHODS,
        layers: Optional[Union[str, Sequence[str]]] = None,
        target: Union[str, int, Callable[[torch.Tensor], torch.Tensor]] = "predicted",
        num_images: int = 8,
        indices: Optional[Sequence[int]] = None,
        class_names: Optional[Sequence[str]] = None,
        to_rgb: Optional["ToRGB"] = None,
        options: Optional[Mapping[str, Mapping[str, Any]]] = None,
        faithfulness: Union[bool, Mapping[str, Any]] = False,
        every_n_epochs: Optional[int] = None,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs, strict, num_images=num_images, indices=indices, name=name, budget=budget, io=io)
        with misconfiguration("AttributionMaps"):
            self.methods = check_methods(methods)
            self.options = check_options(self.methods, options)
            self._scoring = check_faithfulness_options(faithfulness)
            if isinstance(target, (list, tuple, torch.Tensor)):
                raise ValueError("target must be 'predicted', 'label', a class index or a callable, not per-image indices")
            if target != "label":
                check_targets(target)
        self.faithfulness = faithfulness
        self.layers = check_layer_names("AttributionMaps", layers)
        self.target = target
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        self.to_rgb = to_rgb
        self._layers: Optional[List[str]] = None
        self._given_methods = methods is not DEFAULT_METHODS
        self._run_methods = list(self.methods)

    @property
    @override
    def state_key(self) -> str:
        target = self.target if isinstance(self.target, (str, int)) else getattr(self.target, "__name__", "callable")
        return self._key(methods=tuple(self.methods), layers=self.layers, target=target)

    def _target_name(self) -> str:
        return "label" if self.target == "label" else describe_targets(self.target)

    @override
    def _planned_tags(self) -> List[str]:
        uses_layer = any(METHODS[method].uses_layer for method in self.methods)
        if uses_layer and self._layers is None:
            return []  # the default layer is found on the first run (and claimed then)
        return [attribution_tag(self._layers if uses_layer else [], self._target_name(), self.name)]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        with misconfiguration("AttributionMaps", LayerNotFoundError, CamHeadError):
            if self.layers is not None:
                self._layers = resolve_layers(pl_module, self.layers, accept=lambda module: True, what="module")
            if "cam" in self.methods:
                check_cam_modules(pl_module)
        super().setup(trainer, pl_module, stage)

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        owner = "AttributionMaps"
        task = info.io.task
        if self.target == "label" and (not info.has_labels or task not in ("multiclass", "binary")):
            why = "the validation samples have no labels" if not info.has_labels else f"a {task} model's labels are not class indices"
            raise MisconfigurationException(
                f"{owner}: target='label' needs class labels, but {why}; use target='predicted' or a class index"
                + ("" if info.has_labels else " (or name the label key with io=ModelIO(labels='<key>'))")
            )
        if isinstance(self.target, int) and not 0 <= self.target < info.outputs:
            raise MisconfigurationException(
                f"{owner}: target={self.target} is out of range for a model with {info.outputs} outputs; "
                f"give a class index in [0, {info.outputs})"
            )
        guided = [m for m in self.methods if m in _GUIDED]
        self._run_methods = list(self.methods)
        if guided and not info.relu:
            if self._given_methods and len(guided) == len(self.methods):
                raise MisconfigurationException(
                    f"{owner}: {guided} need ReLUs, and the forward pass of {type(pl_module).__name__} runs none; "
                    "use methods such as 'grad_cam', 'saliency' or 'occlusion'"
                )
            self._run_methods = [m for m in self.methods if m not in _GUIDED]
            rank_zero_warn(
                f"{owner}: {guided} dropped: the forward pass of {type(pl_module).__name__} runs no ReLU (guided "
                f"backpropagation would equal the plain gradient); logging {self._run_methods}",
                category=UserWarning,
            )
        check_channels(trainer, owner, info, info.io.mean, info.io.std, self.to_rgb or info.io.to_rgb)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        images, labels, indices = self._load_probes(trainer, pl_module)
        count = self._work(images.shape[0])  # a log the budget sizes down explains the first probe images only
        images, labels, indices = images[:count], None if labels is None else labels[:count], list(indices)[:count]
        info = self._model_info(trainer, pl_module)
        labels = labels_as_classes(labels, info.io.task)
        if self.target == "label" and labels is None:
            raise ValueError("target='label' needs validation samples with integer labels")
        targets = labels if self.target == "label" else self.target
        model = self._task_model(trainer, pl_module)
        with self._extra_pass(trainer, pl_module, grad=True):
            images = trainer.precision_plugin.convert_input(images)
            result = attribute(model, images, self._run_methods, targets, self._layers, self.options, task=info.io.task)
        scores = None
        if self._scoring is not None:
            with self._extra_pass(trainer, pl_module):
                scores = faithfulness_scores(model, images, result, **self._scoring).cpu()
        self._layers = result.layers or self._layers
        result = dataclasses.replace(result.cpu(), target=self._target_name())
        tags = [attribution_tag(result.layers, result.target, self.name)]
        claim_tags(trainer, self, tags + ([] if scores is None else faithfulness_tags(scores.columns, self.name)))
        self._write_later(
            trainer,
            self._what,
            write_attributions,
            writer,
            result,
            images,
            trainer.global_step,
            labels=None if labels is None else labels.cpu(),
            class_names=task_class_names(info, class_names_for(self.class_names, trainer, pl_module)),
            to_rgb=display(info.io, self.to_rgb),
            indices=indices,
            faithfulness=scores,
            name=self.name,
        )

    @override
    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "layers": self._layers}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("layers") and self.layers is None:
            self._layers = list(state_dict["layers"])
