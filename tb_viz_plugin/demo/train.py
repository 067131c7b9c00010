"""Train the shapes demo model, with or without the visualization callbacks."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from tb_viz_plugin.demo.data import VAL_BATCH_SIZE, ShapesDataset, denormalize, make_splits
from tb_viz_plugin.demo.model import CAM_LAYER, DEEP_CONV, FIRST_CONV, ShapesModule


DISSECTION_MASKS = 16
"""Side of the concept masks network dissection scores the demo's 8x8 ``features`` maps against (upsampled 2x)."""


def demo_callbacks(val_set: ShapesDataset | None = None) -> list[pl.Callback]:
    """Every tb-viz visualization callback the demo uses (the one place to add new ones).

    Layer names are resolved against ``ShapesModule``, which holds the CNN as ``model``. Network
    dissection scores units against colours and the shape masks of ``val_set`` (by default the
    validation set of ``tb_viz_plugin.demo.data.val_loader()``, the one ``tb-viz backfill`` replays).
    """
    from tb_viz_plugin.callbacks import ActivationMaps, AttributionMaps, Embeddings, FilterGrid, TopActivations
    from tb_viz_plugin.callbacks import ActivationMaximization, DeepDream, FeatureInversion, NetworkDissection
    from tb_viz_plugin.callbacks import NeuralStyle
    from tb_viz_plugin.demo.concepts import ShapeMasks
    from tb_viz_plugin.methods import ColorConcepts
    from tb_viz_plugin.demo.data import CLASS_NAMES, MEAN, STD, val_loader

    return [
        FilterGrid(layers=[FIRST_CONV, DEEP_CONV]),
        ActivationMaps(layers=["features.2", "features.6"], num_images=4, units=8, to_rgb=denormalize),
        TopActivations(layers=["features.10", CAM_LAYER], units=8, k=8, to_rgb=denormalize, unit_occlusion={"k": 1}),
        AttributionMaps(
            methods=["cam", "grad_cam", "grad_cam_plus_plus", "guided_grad_cam", "saliency", "occlusion",
                     "contrastive_excitation_backprop"],
            layers=CAM_LAYER, num_images=6, class_names=CLASS_NAMES, to_rgb=denormalize, faithfulness={"steps": 8},
        ),  # fmt: skip
        Embeddings(num_samples=300, class_names=CLASS_NAMES, to_rgb=denormalize),
        ActivationMaximization(class_names=CLASS_NAMES, mean=MEAN, std=STD),
        DeepDream("features.10", num_images=4, class_names=CLASS_NAMES, mean=MEAN, std=STD),
        NetworkDissection(
            layers=CAM_LAYER, concepts=[ColorConcepts(to_rgb=denormalize, size=(DISSECTION_MASKS,) * 2)],
            masks=ShapeMasks(val_set if val_set is not None else val_loader().dataset, size=DISSECTION_MASKS),
            to_rgb=denormalize,
        ),  # fmt: skip
        FeatureInversion(layers=[FIRST_CONV, DEEP_CONV, "features.8", "features.12"], num_images=3,
                         steps=100, class_names=CLASS_NAMES, mean=MEAN, std=STD),  # fmt: skip
        NeuralStyle("features.10", ["features.2", "features.6", "features.10", "features.14"], num_images=3,
                    steps=100, class_names=CLASS_NAMES, mean=MEAN, std=STD),  # fmt: skip
    ]


def epoch_checkpoints() -> ModelCheckpoint:
    """Keeps one checkpoint per epoch, ``<run_dir>/checkpoints/epoch=E-step=S.ckpt`` (Lightning's layout).

    What ``tb-viz backfill`` replays on a run trained without the callbacks.
    """
    return ModelCheckpoint(filename="{epoch}-{step}", every_n_epochs=1, save_top_k=-1)


def train(
    logdir: str | Path,
    epochs: int = 8,
    seed: int = 0,
    callbacks: bool = True,
    n_train: int = 4500,
    n_val: int = 1200,
    batch_size: int = 64,
    lr: float = 8e-3,
    limit_train_batches: int | float | None = None,
    limit_val_batches: int | float | None = None,
    extra_callbacks: Iterable[pl.Callback] = (),
) -> dict[str, Any]:
    """Train ``ShapesModule`` on freshly generated shapes; save ``<run_dir>/final.ckpt`` and one checkpoint per epoch.

    Logs to ``TensorBoardLogger(logdir, name=f"seed{seed}")``, so the run is ``seed{seed}/version_K``.
    ``callbacks=False`` leaves out ``demo_callbacks()`` and trains the identical model: same
    initialisation, same data, same batch order (shuffling uses its own seeded generator).

    Every epoch's checkpoint is kept in ``<run_dir>/checkpoints/`` (see ``epoch_checkpoints``).

    Returns ``run_dir`` and ``checkpoint`` (Paths), ``val_acc`` (last validation epoch),
    ``seconds`` (wall time, data generation included), ``model`` (the trained ShapesModule) and
    ``trainer``. The defaults reach ~99% validation accuracy in about a minute on 2 CPU cores.
    """
    start = time.perf_counter()
    pl.seed_everything(seed, workers=True)
    module = ShapesModule(lr=lr)  # before anything else can touch the global RNG
    train_set, val_set = make_splits(seed, n_train, n_val)
    train_loader = DataLoader(
        train_set, batch_size=batch_size, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(seed)
    )
    val_loader = DataLoader(val_set, batch_size=VAL_BATCH_SIZE, num_workers=0)  # = data.val_loader(seed, n_val)
    logger = TensorBoardLogger(save_dir=str(logdir), name=f"seed{seed}", default_hp_metric=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        deterministic=True,
        logger=logger,
        callbacks=[*(demo_callbacks(val_set) if callbacks else []), *extra_callbacks, epoch_checkpoints()],
        enable_progress_bar=False,
        log_every_n_steps=10,
        limit_train_batches=limit_train_batches,
        limit_val_batches=limit_val_batches,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # in-memory data
        trainer.fit(module, train_loader, val_loader)
    run_dir = Path(logger.log_dir)
    checkpoint = run_dir / "final.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=False)  # full checkpoint: resumable
    val_acc = trainer.callback_metrics.get("val_acc")
    return {
        "run_dir": run_dir,
        "checkpoint": checkpoint,
        "val_acc": float(val_acc) if val_acc is not None else float("nan"),
        "seconds": time.perf_counter() - start,
        "model": module,
        "trainer": trainer,
    }
