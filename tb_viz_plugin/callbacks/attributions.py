"""AttributionMaps: where the network looks (CAM, Grad-CAM family, saliency, occlusion...), epoch by epoch."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from typing_extensions import override

from tb_viz_plugin.callbacks.base import RankZeroCallback, check_layer_names, misconfiguration
from tb_viz_plugin.callbacks.probes import validation_dataset
from tb_viz_plugin.log import log_attributions
from tb_viz_plugin.methods import LayerNotFoundError, resolve_layers
from tb_viz_plugin.methods.attribution import attribute, check_methods, check_options, check_targets
from tb_viz_plugin.methods.attribution.cams import CamHeadError, check_cam_modules
from tb_viz_plugin.render.activations import ToRGB

DEFAULT_METHODS = ("grad_cam", "guided_grad_cam", "saliency", "occlusion")
"""Methods logged by default: they work on any CNN with ReLUs and cost one forward+backward plus occlusion."""


def _class_names(pl_module: "pl.LightningModule", dataset: Any) -> Optional[Sequence[str]]:
    """Class names the module (``class_names``) or the dataset (``classes``, ``class_names``) exposes."""
    for owner, attribute_name in ((pl_module, "class_names"), (dataset, "classes"), (dataset, "class_names")):
        names = getattr(owner, attribute_name, None)
        if isinstance(names, Sequence) and not isinstance(names, str):
            return [str(name) for name in names]
    return None


class AttributionMaps(RankZeroCallback):
    """Log attribution maps of fixed probe images at the end of validation epochs.

    Per step, one grid under ``attributions/<target>``: a row per probe image (the image, with its
    true class, predicted class and probability) and a column per method (and layer), each cell
    that method's map over the image. Maps are stored as single-channel PNGs normalised per map,
    their raw range in the manifest; colormap, opacity and overlay are chosen in the browser. The
    probe images are a fixed, evenly spaced selection of the validation set, saved in the
    checkpoint so a resumed run explains the same images.

    Runs on rank 0 only, on the unwrapped LightningModule, in eval mode (every submodule's flag
    restored), with the trainer's precision (autocast), outside inference mode (so it also runs
    under ``trainer.validate()``), gradients by ``torch.autograd.grad`` only, hooks removed after.
    The methods that can share one forward and backward pass share it.

    Args:
        methods: names from :data:`tb_viz_plugin.methods.ATTRIBUTION_METHODS`: ``cam``, ``grad_cam``,
            ``grad_cam_plus_plus``, ``layer_cam``, ``guided_grad_cam``, ``saliency``,
            ``guided_backprop``, ``smooth_grad``, ``integrated_gradients``, ``occlusion``.
        layer: module name(s) for the CAM-family methods; ``None`` = the last feature map before
            pooling (found on the first run and kept in the checkpoint).
        target: the class explained: ``"predicted"``, ``"label"`` (the true class), a class
            index, or a callable ``logits (N, K) -> (N,)`` indices.
        num_images: number of probe images (ignored when ``indices`` is given).
        indices: explicit validation-set indices of the probe images.
        class_names: class names for captions; default the LightningModule's ``class_names`` or
            the dataset's ``classes`` / ``class_names`` attribute, else ``"class 3"``.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` for display (e.g.
            un-normalising); ``None`` = min-max per image. Picklable (module-level) for DDP spawn.
        options: per-method options, e.g. ``{"occlusion": {"window": 16, "stride": 8}}``.
        every_n_epochs: log every n-th epoch.
        strict: re-raise errors instead of warning.

    Raises:
        MisconfigurationException: unknown methods or options, a bad target (here), or at
            ``setup`` a layer that is not a module of the model (the message lists the valid
            names) or ``cam`` for a model without average pooling and ``nn.Linear``.

    Example:
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[AttributionMaps(
        ...     methods=["grad_cam", "occlusion"], layer="layer4", num_images=6)])  # doctest: +SKIP
    """

    _what = "logging attribution maps"

    def __init__(
        self,
        methods: Union[str, Sequence[str]] = DEFAULT_METHODS,
        layer: Optional[Union[str, Sequence[str]]] = None,
        target: Union[str, int, Callable[[torch.Tensor], torch.Tensor]] = "predicted",
        num_images: int = 8,
        indices: Optional[Sequence[int]] = None,
        class_names: Optional[Sequence[str]] = None,
        to_rgb: Optional[ToRGB] = None,
        options: Optional[Mapping[str, Mapping[str, Any]]] = None,
        every_n_epochs: int = 1,
        strict: bool = False,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, num_images=num_images, indices=indices)
        with misconfiguration("AttributionMaps"):
            self.methods = check_methods(methods)
            self.options = check_options(self.methods, options)
            if isinstance(target, (list, tuple, torch.Tensor)):
                raise ValueError("target must be 'predicted', 'label', a class index or a callable, not per-image indices")
            if target != "label":
                check_targets(target)
        self.layer = check_layer_names("AttributionMaps", layer)
        self.target = target
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        self.to_rgb = to_rgb
        self._layers: Optional[List[str]] = None

    @property
    @override
    def state_key(self) -> str:
        target = self.target if isinstance(self.target, (str, int)) else getattr(self.target, "__name__", "callable")
        return self._generate_state_key(methods=tuple(self.methods), layer=self.layer, target=target)

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        with misconfiguration("AttributionMaps", LayerNotFoundError, CamHeadError):
            if self.layer is not None:
                self._layers = resolve_layers(pl_module, self.layer, accept=lambda module: True, what="module")
            if "cam" in self.methods:
                check_cam_modules(pl_module)
        super().setup(trainer, pl_module, stage)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", writer: Any) -> None:
        dataset = validation_dataset(trainer)
        images, labels, indices = self._probes.load(dataset, pl_module.device)
        if self.target == "label" and labels is None:
            raise ValueError("target='label' needs validation samples with integer labels")
        targets = labels if self.target == "label" else self.target
        with self._extra_pass(trainer, pl_module, grad=True):
            images = trainer.precision_plugin.convert_input(images)
            result = attribute(pl_module, images, self.methods, targets, self._layers, self.options)
        self._layers = result.layers or self._layers
        if self.target == "label":
            result = dataclasses.replace(result, target="label")
        log_attributions(
            writer,
            result,
            images,
            trainer.global_step,
            labels=labels,
            class_names=self.class_names or _class_names(pl_module, dataset),
            to_rgb=self.to_rgb,
            indices=indices,
        )

    @override
    def state_dict(self) -> Dict[str, Any]:
        return {**super().state_dict(), "layers": self._layers}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if state_dict.get("layers") and self.layer is None:
            self._layers = list(state_dict["layers"])
