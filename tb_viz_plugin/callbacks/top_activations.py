"""TopActivations: each unit's strongest validation patches, streamed from the validation loop itself."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.base import check_layer_names, check_positive, misconfiguration
from tb_viz_plugin.callbacks.base import resolve_activation_layers
from tb_viz_plugin.callbacks.distributed import gather_shards
from tb_viz_plugin.callbacks.probes import validation_dataset
from tb_viz_plugin.callbacks.streaming import ValidationStream
from tb_viz_plugin.log import make_tag, write_top_activations
from tb_viz_plugin.log.top_activations import KIND, check_occlusion_options
from tb_viz_plugin.methods import LayerGeometry, TopActivationTracker, UnitTopK, Units, check_units, measure_layer
from tb_viz_plugin.methods import merge_top_k
from tb_viz_plugin.methods.attribution import top_k_occlusion
from tb_viz_plugin.methods.layers import model_device
from tb_viz_plugin.methods.model_io import IO, split_sample
from tb_viz_plugin.methods.model_display import display
from tb_viz_plugin.callbacks.base import claim_tags
from tb_viz_plugin.callbacks.model_check import ModelInfo, check_channels, convs_that_ran

if TYPE_CHECKING:
    from tb_viz_plugin.render import ToRGB


class TopActivations(ValidationStream):
    """Log, per chosen unit, the k validation patches that activate it most (the receptive-field crops).

    For each layer and unit (channel): the k validation samples whose maximum spatial activation of
    the unit is highest, each shown as the input crop of the unit's receptive field at the maximum,
    with the unit's upsampled activation outlined and its value drawn on it (rows = units,
    columns = rank). Ties go to the lower dataset index.

    Streamed from the validation loop's own forward passes: forward hooks are installed at
    validation epoch start and removed at its end (also when validation raises); no extra pass over
    the data, nothing during training batches. The running top-k is merged per batch on the model's
    device; memory is O(layers x units x k) whatever the size of the validation set, and only the crops
    of the current top-k are kept. The receptive field is measured once (first logged epoch) by the
    gradient of one unit with respect to the input, for any architecture.

    Under DDP each rank streams its shard; at validation epoch end every rank takes part in the same
    gather (``callbacks.distributed.gather_shards``), and rank 0 merges (a sample padded into two
    shards counts once) and logs: the result equals a single-process run on the same data. Logged at
    ``trainer.global_step`` under ``top_activations/<layer>[/<name>]``; skipped during the sanity check.

    Requirements: the validation step calls the model once per batch on the batch's images (the
    first tensor of the batch, or its ``"image"`` key), and ``pl_module(images)`` runs the network (to
    measure the receptive field); all validation images have one size.

    Args:
        layers: module names; any layer whose output is ``(N, C, H, W)``. ``None`` = the last ``Conv2d``.
        units: channels shown per layer: ``None`` = the first 16, ``n`` = the first n, or a list of indices.
        k: patches per unit.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (the first and the
            last epoch, sized to it; see ``callbacks.schedule`` for short fits).
        budget: the overhead allowed to the Trainer's tb-viz callbacks together, as a fraction of
            the training time (see ``VizCallback``); ``None`` = every epoch.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` (e.g. un-normalising);
            ``None`` = min-max per patch. Must be picklable (a module-level function) for DDP spawn.
        unit_occlusion: also compute, on rank 0 at the end of each logged epoch, the empirical
            receptive field of every logged patch (``methods.top_k_occlusion``, Zhou et al. 2015: an
            occluder slides over the patch, the unit's drop is its discrepancy map; the view
            overlays it with a toggle, and each layer's mean empirical size is shown next to the
            theoretical one). ``True`` for the defaults (an 8 x 8 grid over each patch, all k ranks)
            or a mapping of options: ``k`` (ranks per unit), ``window``, ``stride``, ``baseline``,
            ``threshold``, ``max_memory_mb``. Costs units x k x grid positions forward passes up
            to the layer per logged epoch.
        strict: re-raise errors instead of warning.
        name: appended to the tags, to tell this instance from another one on the same layers.
        io: how the model takes inputs (``methods.model_io.ModelIO`` or a dict): the validation
            batches' input key, a forward that takes a batch, how inputs are shown.

    Raises:
        MisconfigurationException: bad arguments (here, e.g. an unknown ``unit_occlusion`` option),
            or at ``setup`` a layer name that is not a module of the model (the message lists the
            valid names) or a unit index past a ``Conv2d``'s channels.

    Example:
        >>> callback = TopActivations(layers=["layer3", "layer4"], units=8, k=9)
        >>> callback.state_key
        "TopActivations{'layers': ['layer3', 'layer4'], 'units': 8, 'k': 9}"
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        units: Units = None,
        k: int = 9,
        every_n_epochs: Optional[int] = None,
        to_rgb: Optional["ToRGB"] = None,
        unit_occlusion: Union[bool, Mapping[str, Any]] = False,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, name=name, budget=budget, io=io)
        check_positive("TopActivations", k=k)
        with misconfiguration("TopActivations"):
            self._occlusion = check_occlusion_options(unit_occlusion)
        self.unit_occlusion = unit_occlusion
        if isinstance(units, int):
            check_positive("TopActivations", units=units)
        elif units is not None:
            units = list(units)
            if not units or not all(isinstance(u, int) and not isinstance(u, bool) and u >= 0 for u in units):
                raise MisconfigurationException(
                    f"TopActivations: units must be None, a count or a non-empty list of channel indices, got {units!r}"
                )
        self.layers = check_layer_names("TopActivations", layers)
        self.units = units
        self.k = k
        self.to_rgb = to_rgb
        self._resolved: List[str] = []
        self._geometry: Dict[str, LayerGeometry] = {}
        self._input_shape: Optional[Tuple[int, ...]] = None
        self._last_stream: Optional[Tuple[Any, TopActivationTracker]] = None  # (what it streams, tracker): reused

    @property
    @override
    def state_key(self) -> str:
        return self._key(layers=self.layers, units=self.units, k=self.k)

    @override
    def _planned_tags(self) -> List[str]:
        return [make_tag(KIND, layer, name=self.name) for layer in self._resolved]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._resolved = resolve_activation_layers("TopActivations", pl_module, self.layers, self.units, deepest=True)
        self._geometry, self._input_shape = {}, None
        super().setup(trainer, pl_module, stage)

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        if self.layers is None and self._resolved and self._resolved[0] not in info.shapes:
            # the last Conv2d defined may not run in eval mode (GoogLeNet's auxiliary heads): the last one that ran
            self._resolved = convs_that_ran(pl_module, info)[-1:] or self._resolved
            claim_tags(trainer, self, self._planned_tags())
        for layer in self._resolved:
            info.feature_map("TopActivations", layer)
        check_channels(trainer, "TopActivations", info, info.io.mean, info.io.std, self.to_rgb or info.io.to_rgb)

    # ------------------------------------------------------------------ streaming (see ValidationStream)

    _what = "top activations"
    _sizes_work = True  # its logs are sized to the budget (see callbacks.schedule)

    @override
    def _start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> TopActivationTracker:
        image, _ = split_sample(validation_dataset(trainer)[0], self._model_info(trainer, pl_module).io)
        shape = tuple(image.shape)
        if shape != self._input_shape:  # in float32 (no autocast): the field is a property of the architecture
            model = self._task_model(trainer, pl_module)
            self._geometry = {name: measure_layer(model, name, shape) for name in self._resolved}
            self._input_shape = shape
        units = {name: check_units(self.units, g.channels) for name, g in self._geometry.items()}
        key = (shape, {name: list(chosen) for name, chosen in units.items()}, self.k, model_device(pl_module))
        if self._last_stream is not None and self._last_stream[0] == key:
            tracker = self._last_stream[1]  # the last log's storage, not one allocation (and page fault) per epoch
            tracker.restart(pl_module)
            return tracker
        tracker = TopActivationTracker(pl_module, self._geometry, units, self.k, in_channels=shape[0])
        self._last_stream = (key, tracker)
        return tracker

    @override
    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._last_stream = None  # the storage lives as long as the fit

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_last_stream"] = None  # storage to reuse, not state: a copy allocates its own
        return state

    @override
    def _feed(self, trainer: "pl.Trainer", tracker: TopActivationTracker, batch: Any, images: torch.Tensor, ids: torch.Tensor) -> None:
        tracker.update(images, ids)

    @override
    def _finish(self, trainer: "pl.Trainer", tracker: TopActivationTracker) -> None:
        self._log(trainer, trainer.lightning_module, tracker.results(), self._sample_ids_kind())

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", results: Dict[str, UnitTopK], kind: str) -> None:
        merged = self._gather(trainer, pl_module, results)
        if not trainer.is_global_zero:
            return
        writer = self._writer(trainer)
        if writer is None:
            return
        occlusion = None
        if self._occlusion is not None:
            with self._extra_pass(trainer, pl_module):
                occlusion = {layer: top_k_occlusion(pl_module, top, **self._occlusion_options(top)).cpu()
                             for layer, top in merged.items()}  # fmt: skip
        to_rgb = display(self._model_info(trainer, pl_module).io, self.to_rgb)
        self._write_later(trainer, "logging top activations", write_top_activations, writer, merged, trainer.global_step,
                          to_rgb=to_rgb, sample_ids=kind, occlusion=occlusion, name=self.name)  # fmt: skip

    def _occlusion_options(self, top: UnitTopK) -> Dict[str, Any]:
        """The ``unit_occlusion`` options of this log: a log the budget sizes down occludes on a coarser grid.

        The default grid is 8 x 8 positions over each crop; at work scale ``s`` it is about
        ``8 sqrt(s)`` a side (at least 2), so its cost follows the scale. Given windows are kept.
        """
        options = dict(self._occlusion or {})
        scale = self._schedule.scale
        if scale < 1 and "window" not in options and "stride" not in options:
            side = max(2, round(8 * scale**0.5))
            options["window"] = tuple(max(1, -(-size // side)) for size in top.geometry.crop_size)
        return options

    @staticmethod
    def _gather(trainer: "pl.Trainer", pl_module: "pl.LightningModule", results: Dict[str, UnitTopK]) -> Dict[str, UnitTopK]:
        """Every rank's shard gathered (every rank calls the same collectives); merged on rank 0.

        All layers' fields travel together (see ``gather_shards``): the values, ids, positions,
        crops, maps and sample count of every layer.
        """
        if trainer.world_size == 1:
            return results
        shard = {f"{name}/{field}": getattr(top, field) for name, top in results.items() for field in UnitTopK.SHARDED}
        device = next(iter(results.values())).values.device
        shard.update({f"{name}/samples": torch.tensor([top.samples], device=device) for name, top in results.items()})
        shards = gather_shards(shard, trainer.world_size)
        if not trainer.is_global_zero:
            return {}
        merged = {}
        for name, top in results.items():
            parts = [
                dataclasses.replace(
                    top, samples=int(part[f"{name}/samples"]), **{f: part[f"{name}/{f}"] for f in UnitTopK.SHARDED}
                )
                for part in shards
            ]
            merged[name] = merge_top_k(parts)
        return merged
