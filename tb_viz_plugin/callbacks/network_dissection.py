"""NetworkDissection: which units detect which concepts, streamed from the validation loop itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from tb_viz_plugin.callbacks.base import check_layer_names, check_positive, claim_tags, misconfiguration, resolve_activation_layers
from tb_viz_plugin.callbacks.model_check import ModelInfo, convs_that_ran
from tb_viz_plugin.callbacks.distributed import gather_shards
from tb_viz_plugin.callbacks.streaming import ValidationStream
from tb_viz_plugin.log import make_tag
from tb_viz_plugin.log.network_dissection import KIND, dissection_history, write_network_dissection
from tb_viz_plugin.methods import ColorConcepts, Dissection, DissectionCounts, DissectionTracker, TopImages
from tb_viz_plugin.methods import merge_top_images
from tb_viz_plugin.callbacks.probes import first_val_loader
from tb_viz_plugin.methods.concepts import concept_names, stack_masks
from tb_viz_plugin.methods.dissection import sample_stride
from tb_viz_plugin.methods.model_io import IO

if TYPE_CHECKING:
    from tb_viz_plugin.render import ToRGB

BatchMasks = Callable[[Any, torch.Tensor], torch.Tensor]
"""The user's masks of a validation batch: ``(batch, sample_ids) -> (N, K, H, W)`` bool, with ``.names``."""


class NetworkDissection(ValidationStream):
    """Log network dissection (Bau et al. 2017) of layers at validation epoch ends: which units detect which concepts.

    Each unit's activation, thresholded at its top ``quantile`` over the validation set and upsampled
    to the masks, is scored by IoU against every concept; units whose best IoU reaches
    ``iou_threshold`` are detectors (see ``methods.dissection``). Concepts: the 11 basic colours of
    every pixel (``ColorConcepts``, through ``to_rgb``), plus the user's ``masks``.

    Streamed from the validation loop's own forward passes: hooks installed at validation epoch
    start and removed at its end (also when validation raises); no second pass, no activation kept:
    memory O(layers x units x bins x concepts) plus ``top_k`` small images per unit. Under DDP
    every rank counts its shard, all ranks exchange their counts at epoch end and rank 0 sums them
    (exactly, see ``DissectionCounts.merge``) and logs ``network_dissection/<layer>[/<name>]``, with
    the detector counts of every logged epoch so far (kept in the callback's state).

    Requirements: the validation step calls the model once per batch on the batch's images (the
    first tensor of the batch, or its ``"image"`` key).

    Args:
        layers: module names with ``(N, C, H, W)`` outputs; ``None`` = the last ``Conv2d``.
        concepts: concept sources on the batch's images (callables ``images -> masks`` with
            ``.names``); ``None`` = ``[ColorConcepts(to_rgb)]``; ``[]`` = none.
        masks: the user's masks: ``masks(batch, sample_ids) -> (N, K, H, W)`` bool (``sample_ids``:
            dataset indices when the loader's order is known, else stream positions), with names in
            ``masks.names`` or ``mask_names`` (and categories in ``masks.categories``).
        mask_names: the names of the ``masks`` concepts.
        quantile: top quantile of each unit's activations that is its segmentation.
        iou_threshold: IoU from which a unit is a detector.
        top_k: top images per unit shown in the unit table.
        bins: histogram bins per unit (the threshold is within one bin of the exact quantile).
        num_samples: validation images counted per logged epoch, evenly spaced over the dataset
            (dataset indices ``0, s, 2s, ...`` where the loader's order is known, else the first
            ones of the stream); ``None`` = all. The cost of the counts grows with the images
            counted; the thresholds and IoUs are those of this subset (the same images every
            epoch), its quantile within the sampling error of the whole set's (see ``methods.dissection``).
        every_n_epochs: dissect every n-th epoch; ``None`` = the ``budget`` decides (the first and the
            last epoch, sized to it; see ``callbacks.schedule`` for short fits).
        to_rgb: inputs -> RGB in ``[0, 1]`` (for the colour concepts and the pictures).
        strict: re-raise errors instead of warning.
        name: appended to the tags.

    Raises:
        MisconfigurationException: bad arguments (here), or at ``setup`` a layer name that is not a
            module of the model (the message lists the valid names).

    Example:
        >>> callback = NetworkDissection(layers=["features.10"], iou_threshold=0.04)
        >>> callback.state_key
        "NetworkDissection{'layers': ['features.10'], 'quantile': 0.005, 'iou_threshold': 0.04}"
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    _what = "network dissection"
    _sizes_work = True  # its logs are sized to the budget (see callbacks.schedule)

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        concepts: Optional[Sequence[Callable[[torch.Tensor], torch.Tensor]]] = None,
        masks: Optional[BatchMasks] = None,
        mask_names: Optional[Sequence[str]] = None,
        quantile: float = 0.005,
        iou_threshold: float = 0.04,
        top_k: int = 4,
        bins: int = 256,
        num_samples: Optional[int] = 100,
        every_n_epochs: Optional[int] = None,
        to_rgb: Optional["ToRGB"] = None,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, name=name, budget=budget, io=io)
        check_positive("NetworkDissection", bins=bins)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise MisconfigurationException(f"NetworkDissection: top_k must be a non-negative integer, got {top_k!r}")
        if bins < 4 or bins % 2:
            raise MisconfigurationException(f"NetworkDissection: bins must be an even number >= 4, got {bins}")
        if num_samples is not None and (isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1):
            raise MisconfigurationException(f"NetworkDissection: num_samples must be a positive integer or None, got {num_samples!r}")
        if not 0 < quantile < 1 or not 0 <= iou_threshold <= 1:
            raise MisconfigurationException(
                f"NetworkDissection: quantile must be in (0, 1) and iou_threshold in [0, 1], got {quantile!r}, {iou_threshold!r}"
            )
        self.layers = check_layer_names("NetworkDissection", layers)
        self.concepts = list(concepts) if concepts is not None else [ColorConcepts(to_rgb=to_rgb)]
        self.masks = masks
        names: List[str] = []
        self._categories: List[str] = []
        with misconfiguration("NetworkDissection"):
            for source in self.concepts:
                found, categories = concept_names(source)
                names, self._categories = names + found, self._categories + categories
            if masks is not None:
                found, categories = concept_names(masks, mask_names)
                names, self._categories = names + found, self._categories + categories
        if not names:
            raise MisconfigurationException("NetworkDissection: no concepts: give concepts= or masks=")
        self.names = names
        self.quantile, self.iou_threshold, self.top_k, self.bins, self.to_rgb = quantile, iou_threshold, top_k, bins, to_rgb
        self.num_samples = num_samples
        self._stride, self._cap, self._counted = 1, None, 0
        self._resolved: List[str] = []
        self._history: Dict[str, List[Dict[str, Any]]] = {}

    @property
    @override
    def state_key(self) -> str:
        return self._key(layers=self.layers, quantile=self.quantile, iou_threshold=self.iou_threshold)

    @override
    def _planned_tags(self) -> List[str]:
        return [make_tag(KIND, layer, name=self.name) for layer in self._resolved]

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._resolved = resolve_activation_layers("NetworkDissection", pl_module, self.layers, None, deepest=True)
        super().setup(trainer, pl_module, stage)

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        ran = convs_that_ran(pl_module, info)
        if self.layers is None and ran and self._resolved != ran[-1:]:  # a default layer that never runs
            self._resolved = ran[-1:]
            claim_tags(trainer, self, self._planned_tags())

    # ------------------------------------------------------------------ streaming (see ValidationStream)

    @override
    def _start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> DissectionTracker:
        dataset = getattr(first_val_loader(trainer), "dataset", None)
        try:
            total: Optional[int] = len(dataset) if dataset is not None and self._order is not None else None
        except TypeError:  # an iterable dataset
            total = None
        counted = self.num_samples
        if counted is not None:
            counted = self._work(counted, least=16)  # a log the budget sizes down counts fewer images, evenly spaced
        self._stride = sample_stride(total, counted)
        self._cap = None if counted is None else -(-counted // trainer.world_size)
        self._counted = 0
        return DissectionTracker(
            pl_module, self._resolved, self.names, self._categories, quantile=self.quantile, bins=self.bins, top_k=self.top_k
        )

    @override
    def _batch_limit(self, trainer: "pl.Trainer") -> Optional[int]:
        """Every batch: the budget sizes a log by the images counted (``num_samples``), evenly spaced, instead."""
        return None

    @override
    def _feed(self, trainer: "pl.Trainer", tracker: DissectionTracker, batch: Any, images: torch.Tensor, ids: torch.Tensor) -> None:
        keep = (ids % self._stride == 0).nonzero()[:, 0]
        if self._cap is not None:
            keep = keep[: max(0, self._cap - self._counted)]
        if keep.numel() == 0:
            tracker.discard()
            return
        every = keep.numel() == ids.numel()
        if not every:
            tracker.select(keep)
        with torch.no_grad():
            parts = [source(images if every else images[keep]) for source in self.concepts]
            if self.masks is not None:
                masks = self.masks(batch, ids).to(images.device)
                parts.append(masks if every else masks[keep])
            tracker.update(stack_masks(parts), images if every else images[keep], ids if every else ids[keep])
        self._counted += keep.numel()

    @override
    def _finish(self, trainer: "pl.Trainer", tracker: DissectionTracker) -> None:
        self._log(trainer, tracker)

    def _log(self, trainer: "pl.Trainer", tracker: DissectionTracker) -> None:
        if trainer.world_size > 1:
            self._gather(trainer, tracker)
        if not trainer.is_global_zero:
            return
        results = {name: result.cpu() for name, result in tracker.results(self.iou_threshold).items()}
        for name, result in results.items():
            self._history.setdefault(name, []).append(dissection_history(result, trainer.global_step, trainer.current_epoch))
        writer = self._writer(trainer)
        if writer is not None:
            history = {name: [dict(entry) for entry in entries] for name, entries in self._history.items()}
            self._write_later(trainer, "logging network dissection", write_network_dissection, writer, results,
                              trainer.global_step, to_rgb=self.to_rgb, history=history, name=self.name)  # fmt: skip

    def _gather(self, trainer: "pl.Trainer", tracker: DissectionTracker) -> None:
        """Every rank's counts and top images exchanged (every rank calls the same collectives); summed into ``tracker``."""
        missing = [name for name in self._resolved if name not in tracker.counts]
        if missing:
            raise RuntimeError(f"no validation batch reached the layers {missing} on rank {trainer.global_rank}")
        shard: Dict[str, torch.Tensor] = {}
        for name, counts in tracker.counts.items():
            shard.update({f"{name}/counts/{key}": value for key, value in counts.state().items()})
            top = tracker.top.get(name)
            if top is not None:
                shard.update({f"{name}/top/{field}": getattr(top, field) for field in TopImages.FIELDS})
        shards = gather_shards(shard, trainer.world_size)
        for name, counts in tracker.counts.items():
            states = [{key[len(f"{name}/counts/") :]: v for key, v in part.items() if key.startswith(f"{name}/counts/")} for part in shards]
            merged = DissectionCounts(counts.units, counts.concepts, counts.categories, counts.bins, counts.quantile, counts.low.device)
            merged.merge(states)
            tracker.counts[name] = merged
            if tracker.top.get(name) is not None:
                parts = [TopImages(*(part[f"{name}/top/{field}"] for field in TopImages.FIELDS)) for part in shards]
                tracker.top[name] = merge_top_images(parts, self.top_k)

    @override
    def state_dict(self) -> Dict[str, Any]:
        return {"history": {name: [dict(entry) for entry in entries] for name, entries in self._history.items()}}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._history = {name: [dict(entry) for entry in entries] for name, entries in state_dict.get("history", {}).items()}



