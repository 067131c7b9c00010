"""Embeddings: how the representation organises a fixed set of validation samples, epoch by epoch."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.data import IterableDataset, RandomSampler
from typing_extensions import override

from tb_viz_plugin.callbacks.base import VizCallback, class_names_for, misconfiguration
from tb_viz_plugin.callbacks.distributed import gather_shards
from tb_viz_plugin.callbacks.probes import ProbeImages, evenly_spaced, first_val_loader, load_shrunk, validation_dataset
from tb_viz_plugin.log import make_tag, write_embeddings
from tb_viz_plugin.log.embeddings import KIND
from tb_viz_plugin.methods import EmbeddingCapture, LayerNotFoundError, embed
from tb_viz_plugin.methods.embeddings import METHODS
from tb_viz_plugin.methods.layers import one_layer
from tb_viz_plugin.callbacks.base import claim_tags
from tb_viz_plugin.callbacks.model_check import ModelInfo, say_once
from tb_viz_plugin.methods.attribution.cams import default_layer
from tb_viz_plugin.methods.embeddings.capture import last_linear
from tb_viz_plugin.methods.model_io import IO, labels_as_classes
from tb_viz_plugin.methods.model_display import display

if TYPE_CHECKING:
    from tb_viz_plugin.render import ToRGB

THUMB_SIDE = 48
"""The longest side the samples are kept at for their thumbnails (the sprite's largest tile)."""
_MAX_SAMPLES = 100_000  # the Projector's limit


def _batch_indices(trainer: "pl.Trainer") -> List[List[int]]:
    """The dataset indices of every batch the validation loop will run on this rank, in order.

    Relies on a validation loader that does not shuffle (Lightning's recommendation; under DDP it
    uses a ``DistributedSampler(shuffle=False)``): its batch sampler is replayed here.

    Raises:
        RuntimeError: an iterable-style dataset or a shuffling sampler (rows cannot be mapped to samples).
    """
    loader = first_val_loader(trainer)
    sampler = getattr(loader, "sampler", None)
    batch_sampler = getattr(loader, "batch_sampler", None)
    if isinstance(getattr(loader, "dataset", None), IterableDataset) or batch_sampler is None:
        raise RuntimeError(
            "Embeddings needs a map-style validation dataset with a batch sampler: the rows of each batch "
            "are matched to dataset indices"
        )
    inner = getattr(batch_sampler, "sampler", sampler)
    if isinstance(inner, RandomSampler) or getattr(inner, "shuffle", False):
        raise RuntimeError(
            "Embeddings needs a validation dataloader that does not shuffle (shuffle=False): the rows of "
            "each batch are matched to dataset indices, the same samples every epoch"
        )
    limit = trainer.num_val_batches[0] if isinstance(trainer.num_val_batches, list) else trainer.num_val_batches
    limit = int(limit) if math.isfinite(limit) else None
    return [list(map(int, batch)) for batch in itertools.islice(batch_sampler, limit)]


class Embeddings(VizCallback):
    """Log the embedding of a fixed set of validation samples at the end of validation epochs.

    Features are captured by a forward hook during the validation loop's own passes (no extra
    forward pass), for ``num_samples`` validation samples evenly spaced over the dataset (the same
    samples every epoch, kept in the checkpoint), together with the predicted class (argmax of the
    last ``nn.Linear``), the true label and a thumbnail. Under DDP every rank captures its shard and
    rank 0 logs the gathered set. Each logged epoch gets (tag ``embeddings/<layer>``, or
    ``embeddings/<last Linear>.input`` by default, ``/<name>`` appended when given; at
    ``trainer.global_step``):

    - a 2-D map (PCA, or t-SNE with scikit-learn) aligned to the previous epoch's map, with k-NN
      accuracy and silhouette, shown by the "CNN viz" tab as a scatter plot whose step slider
      animates the epochs;
    - the full features for TensorBoard's Projector (3-D PCA, t-SNE, UMAP), one entry per epoch.

    The validation dataloader must not shuffle (its batch sampler is replayed to know which rows
    are which samples; checked). Only the first validation dataloader is used. Logged when
    validation runs in an epoch selected by ``every_n_epochs`` (also under ``trainer.validate()``).

    Args:
        layers: the module whose output is embedded (a name or a one-element list; 4-D outputs are
            averaged over space); ``None`` = the input of the last ``nn.Linear`` (the penultimate
            features), or for a network without ``nn.Linear`` its last feature map, globally pooled.
        num_samples: validation samples embedded (evenly spaced over the dataset), at most 100,000.
        every_n_epochs: log every n-th epoch; ``None`` = the ``budget`` decides (always the first
            and the last epoch).
        budget: the overhead allowed to the Trainer's tb-viz callbacks together, as a fraction of
            the training time (see ``VizCallback``); ``None`` = every epoch.
        method: ``"pca"`` (default, torch, ~0.1 s for 2,000 x 512) or ``"tsne"`` (scikit-learn, optional;
            ~15 s per logged epoch for 2,000 x 512 on one CPU core).
        class_names: names of the classes; default the module's or the dataset's, if any.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` for the thumbnails (e.g.
            un-normalising); ``None`` = each thumbnail stretched to its own min-max range.
        projector: also write the full features for TensorBoard's Projector.
        strict: re-raise errors instead of warning.
        name: appended to the tag, to tell this instance from another one on the same layer.
        io: how the model takes inputs and gives outputs (``methods.model_io.ModelIO`` or a dict);
            predicted classes are shown for multiclass models only.

    Attributes:
        tag: the tb-viz tag written (known after ``setup``); the Projector's tensors are ``<tag>:<step>``.

    Raises:
        MisconfigurationException: bad arguments (here), ``method="tsne"`` without scikit-learn, or
            at ``setup`` a layer name that is not a module of the model (the message lists them), before
            the first step a shuffling validation dataloader.

    Example:
        >>> callback = Embeddings(num_samples=500, class_names=["cat", "dog"])
        >>> callback.num_samples, callback.method
        (500, 'pca')
        >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=[callback])  # doctest: +SKIP
    """

    def __init__(
        self,
        layers: Optional[Union[str, Sequence[str]]] = None,
        num_samples: int = 1000,
        every_n_epochs: Optional[int] = None,
        method: str = "pca",
        class_names: Optional[Sequence[str]] = None,
        to_rgb: Optional["ToRGB"] = None,
        projector: bool = True,
        strict: bool = False,
        name: Optional[str] = None,
        budget: Optional[float] = 0.05,
        io: IO = None,
    ) -> None:
        super().__init__(every_n_epochs=every_n_epochs, strict=strict, name=name, budget=budget, io=io)
        with misconfiguration("Embeddings"):
            self.layers = one_layer(layers, "Embeddings")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not 1 <= num_samples <= _MAX_SAMPLES:
            raise MisconfigurationException(
                f"Embeddings: num_samples must be an integer from 1 to {_MAX_SAMPLES}, got {num_samples!r}"
            )
        if method not in METHODS:
            raise MisconfigurationException(f"Embeddings: method must be one of {METHODS}, got {method!r}")
        if method == "tsne":
            try:
                import sklearn.manifold  # noqa: F401
            except ImportError as err:
                raise MisconfigurationException(
                    "Embeddings: method='tsne' needs scikit-learn (`pip install scikit-learn`); or use method='pca'"
                ) from err
        self.num_samples = num_samples
        self.method = method
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.to_rgb = to_rgb
        self.projector = bool(projector)
        self._probes = ProbeImages(num_samples)
        self._capture: Optional[EmbeddingCapture] = None
        self._plan: Optional[Dict[int, Tuple[List[int], List[int], int]]] = None
        self._previous: Optional[Tuple[List[int], List[List[float]]]] = None
        self._thumbs: Optional[Tuple[List[int], torch.Tensor, Optional[torch.Tensor]]] = None
        self.tag = ""

    @property
    @override
    def state_key(self) -> str:
        return self._key(layers=self.layers, num_samples=self.num_samples)

    @override
    def _planned_tags(self) -> List[str]:
        return [self.tag] if self.tag else []

    @override
    def state_dict(self) -> Dict[str, Any]:
        previous = None if self._previous is None else {"indices": self._previous[0], "points": self._previous[1]}
        return {"probes": self._probes.state_dict(), "previous": previous}

    @override
    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self._probes.load_state_dict(state_dict.get("probes", {}))
        previous = state_dict.get("previous")
        if previous:
            self._previous = ([int(i) for i in previous["indices"]], [list(map(float, p)) for p in previous["points"]])

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self._capture, self.tag = None, ""
        if self.layers is not None or last_linear(pl_module) is not None:
            with misconfiguration("Embeddings", LayerNotFoundError):
                self._capture = EmbeddingCapture(pl_module, self.layers)
            self.tag = make_tag(KIND, self._capture.source, name=self.name)
        super().setup(trainer, pl_module, stage)

    @override
    def _check_model(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", info: ModelInfo) -> None:
        super()._check_model(trainer, pl_module, info)
        loader = first_val_loader(trainer)
        inner = getattr(getattr(loader, "batch_sampler", None), "sampler", getattr(loader, "sampler", None))
        if isinstance(inner, RandomSampler) or getattr(inner, "shuffle", False):
            raise MisconfigurationException(
                "Embeddings: the validation dataloader shuffles; give it shuffle=False (the rows of each batch "
                "are matched to dataset indices, the same samples every epoch)"
            )
        if self.layers is None and info.head is not None and self._capture is not None and self._capture.head != info.head:
            with misconfiguration("Embeddings", LayerNotFoundError):  # (logits, aux): the logits' head, not the last Linear
                self._capture = EmbeddingCapture(pl_module, head=info.head)
            self.tag = make_tag(KIND, self._capture.source, name=self.name)
            claim_tags(trainer, self, [self.tag])
        if self._capture is None:  # no nn.Linear: the last feature map, globally pooled
            with misconfiguration("Embeddings", LayerNotFoundError):
                self._capture = EmbeddingCapture(pl_module, default_layer(info.calls))
            self.tag = make_tag(KIND, self._capture.source, name=self.name)
            claim_tags(trainer, self, [self.tag])
        if info.io.task != "multiclass" and self._capture.head is not None:
            self._capture.head = None  # the argmax of a Linear is a class only for multiclass models
            say_once(trainer, "embeddings-task", f"Embeddings: a {info.io.task} model's outputs are not one class per "
                     "sample, so the points are coloured by their labels only (no predicted class)")  # fmt: skip

    # ------------------------------------------------------------------ capture during validation

    @override
    def on_validation_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._plan = None
        if not self._should_log_epoch(trainer) or self._writer(trainer) is None:
            return
        self._model_info(trainer, pl_module)  # under trainer.validate(), the first chance
        if self._capture is None:
            return
        self._run_safely(trainer, "preparing the embedding capture", lambda: self._prepare(trainer))

    def _prepare(self, trainer: "pl.Trainer") -> None:
        batches = _batch_indices(trainer)
        if self._probes.indices is None:
            self._probes.indices = evenly_spaced(len(validation_dataset(trainer)), self._probes.num_images)
        wanted = set(self._probes.indices)
        plan = {}
        for batch_idx, batch in enumerate(batches):
            rows = [row for row, index in enumerate(batch) if index in wanted]
            if rows:
                plan[batch_idx] = ([batch[row] for row in rows], rows, len(batch))
        self._capture.error = None
        self._capture.attach()
        self._plan = plan

    @override
    def on_validation_batch_start(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self._plan is None:
            return
        entry = self._plan.get(batch_idx) if dataloader_idx == 0 else None
        if entry is None:
            self._capture.disarm()
        else:
            keys, rows, size = entry
            self._capture.expect(keys, rows, batch_size=size)

    @override
    def on_validation_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._plan is not None:
            self._capture.disarm()

    @override
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._plan is None:
            return
        self._plan = None
        try:
            captured = self._capture.collect()
            error = self._capture.error
        finally:
            self._capture.release()
        # every rank gathers (a collective); only rank 0 logs
        self._run_safely(trainer, "logging embeddings", lambda: self._gather_and_log(trainer, pl_module, captured, error))

    @override
    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        self._release()

    @override
    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        self._release()

    def _release(self) -> None:
        self._plan = None
        if self._capture is not None:
            self._capture.release()
            self._capture.collect()

    # ------------------------------------------------------------------ gather and log

    def _gather_and_log(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        captured: Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]],
        error: Optional[str],
    ) -> None:
        keys, features, predicted, failed = _gather(trainer, pl_module, *captured, failed=error is not None)
        if not trainer.is_global_zero:
            return
        if failed:
            where = "" if trainer.world_size == 1 else f" on rank(s) {failed}"
            raise RuntimeError(f"feature capture at {self._capture.layer!r} failed{where}: {error or 'see that rank'}")
        if len(keys) == 0:
            raise RuntimeError("no validation sample of the embedding subset was seen this epoch")
        order = _first_occurrence(keys.cpu())
        keys, features = keys.cpu()[order], features.cpu()[order]
        predicted = None if predicted is None else predicted.cpu()[order]
        indices = keys.tolist()
        images, labels = self._samples(trainer, indices)
        self._write_later(
            trainer,
            "logging embeddings",
            _embed_and_write,
            self,
            features,
            self._writer(trainer),
            self._capture.source,
            trainer.global_step,
            labels=labels,
            predicted=predicted,
            images=images,
            to_rgb=display(self._info.io if self._info else self.io, self.to_rgb),
            class_names=class_names_for(self.class_names, trainer, pl_module),
            indices=indices,
            projector=self.projector,
            name=self.name,
        )

    def _samples(self, trainer: "pl.Trainer", indices: List[int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The samples ``indices`` shrunk for their thumbnails, and their labels; loaded once and cached."""
        if self._thumbs is None or self._thumbs[0] != indices:
            io = self.io if self._info is None else self._info.io
            images, labels = load_shrunk(validation_dataset(trainer), indices, THUMB_SIDE, io=io)
            self._thumbs = (list(indices), images, labels_as_classes(labels, io.task))
        return self._thumbs[1], self._thumbs[2]


def _first_occurrence(keys: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct key, in ascending key order.

    ``DistributedSampler`` pads the last shard by repeating samples: each sample is kept once.
    """
    order = torch.argsort(keys, stable=True)
    sorted_keys = keys[order]
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return order[first]


def _gather(
    trainer: "pl.Trainer",
    pl_module: "pl.LightningModule",
    keys: torch.Tensor,
    features: torch.Tensor,
    predicted: Optional[torch.Tensor],
    failed: bool,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], List[int]]:
    """Every rank's captured samples on every rank (a collective: all ranks must call it).

    Returns:
        ``(keys, features, predicted or None, ranks whose capture failed)``.
    """
    if trainer.world_size == 1:
        return keys, features, predicted, [0] if failed else []
    device = pl_module.device
    shard = {
        "keys": keys.to(device=device, dtype=torch.long),
        "features": features.to(device=device, dtype=torch.float32),
        "predicted": (predicted if predicted is not None else torch.zeros(len(keys), dtype=torch.long)).to(device),
        "flags": torch.tensor([int(predicted is not None), int(failed)], device=device),
    }
    shards = gather_shards(shard, trainer.world_size)
    seen = [part for part in shards if len(part["keys"])]
    with_predictions = all(bool(part["flags"][0]) for part in seen)
    keys = torch.cat([part["keys"] for part in seen]) if seen else shard["keys"]
    features = torch.cat([part["features"] for part in seen]) if seen else shard["features"]
    predicted = torch.cat([part["predicted"] for part in seen]) if seen and with_predictions else None
    return keys, features, predicted, [rank for rank, part in enumerate(shards) if bool(part["flags"][1])]


def _embed_and_write(owner: "Embeddings", features: torch.Tensor, writer: Any, source: str, step: int, **kwargs: Any) -> None:
    """The writer's job (in order: finds the previous log's map in ``owner._previous``): the 2-D map, aligned, written."""
    indices = kwargs["indices"]
    previous = owner._previous
    reference = torch.tensor(previous[1]) if previous is not None and previous[0] == indices else None
    result = embed(features, method=owner.method, labels=kwargs.get("labels"), reference=reference)
    owner._previous = (indices, result.points.tolist())
    write_embeddings(writer, source, result, step, **kwargs)
