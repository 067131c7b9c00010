"""The default callback set within budget: training time and disk, with and without tb-viz callbacks.

For each model, fresh fits of the same seeded training, one per configuration and round (rounds
rotate the order, so a machine that slows down during the run weighs on every configuration
alike): **none** (no callbacks), **default set** (every callback at its defaults; for the demo,
``demo_callbacks()``), and **each callback alone**. Columns:

- **wall** and **CPU**: median seconds from ``on_train_start`` until ``fit`` returns (every epoch
  with its validation and epoch-end work, and the background writer drained at the end); CPU is
  the process's CPU time (all threads: the background writer included), steadier than wall time
  on a shared machine;
- **x none**: the ratio to the run without callbacks (wall; CPU in brackets);
- **logged epochs**: what the budget chose (per callback: the epochs it logged);
- **MB added** and **MB / logged epoch**: bytes the configuration added to the log directory
  (beyond the run without callbacks), in all and divided by the epochs at which any callback
  logged (the sprite and other static images are stored at the first, once).

Models: the demo CNN on the demo's shapes (64 px; ``--epochs`` epochs of the demo's data) and
torchvision's resnet18 (random weights, 10 classes) on synthetic 32 px images (CIFAR size; 2,048
training images by default, ``--train-size``, and 1,024 validation images).

**x none, paired rounds**: the median over rounds of the ratio to the run without callbacks of the
same round (the two runs next to each other in time).

**measured cost / training** (median over rounds): what the callbacks' own clocks (the budget's accounting: their hooks
on the training thread plus their background jobs' CPU time) add up to, against the rest of the
run -- a ratio within one run, so it holds when the machine's load drifts between runs.

Run: ``.venv/bin/python benchmarks/bench_budget.py [--model demo resnet18] [--epochs 8] [--rounds 2]
[--alone] [--threads 2] [--train-size 2048]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from tb_viz_plugin import callbacks as viz


class Clock(pl.Callback):
    """Wall and process CPU time from ``on_train_start`` (``fit`` returning ends it, outside)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()


class ResNetModule(pl.LightningModule):
    """torchvision resnet18 (random weights) for 10 classes, SGD."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.model = torchvision.models.resnet18(weights=None, num_classes=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def _resnet_data(n_train: int, n_val: int) -> Tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (n_train + n_val,), generator=g)
    images = torch.randn(n_train + n_val, 3, 32, 32, generator=g) * 0.5 + labels.view(-1, 1, 1, 1) / 10
    train = TensorDataset(images[:n_train], labels[:n_train])
    val = TensorDataset(images[n_train:], labels[n_train:])
    return (DataLoader(train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)),
            DataLoader(val, batch_size=256))  # fmt: skip


def resnet_callbacks() -> Dict[str, Callable[[], pl.Callback]]:
    """Every callback at its defaults (DeepDream needs a layer: ``layer3``)."""
    names = ["FilterGrid", "ActivationMaps", "TopActivations", "AttributionMaps", "Embeddings", "ActivationMaximization"]
    later = ["NetworkDissection", "FeatureInversion", "NeuralStyle"]
    return {**{name: getattr(viz, name) for name in names}, "DeepDream": lambda: viz.DeepDream("model.layer3"),
            **{name: getattr(viz, name) for name in later}}  # fmt: skip


def demo_set() -> Dict[str, Callable[[], pl.Callback]]:
    from tb_viz_plugin.demo.train import demo_callbacks

    return {type(cb).__name__: (lambda i=i: demo_callbacks()[i]) for i, cb in enumerate(demo_callbacks())}


def _size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def _fit(model: str, callbacks: List[pl.Callback], epochs: int, root: str, train_size: int = 2048) -> Dict[str, Any]:
    pl.seed_everything(0)
    if model == "demo":
        from tb_viz_plugin.demo.data import make_splits
        from tb_viz_plugin.demo.model import ShapesModule

        module = ShapesModule(lr=8e-3)
        train_set, val_set = make_splits(0, 4500, 1200)
        loaders = (DataLoader(train_set, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)),
                   DataLoader(val_set, batch_size=256))  # fmt: skip
    else:
        module = ResNetModule()
        loaders = _resnet_data(train_size, 1024)
    clock = Clock()
    logger = TensorBoardLogger(root, name="run", version="v0", default_hp_metric=False)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=epochs, logger=logger, callbacks=[clock, *callbacks],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        trainer.fit(module, *loaders)
    wall, cpu = time.perf_counter() - clock.wall, time.process_time() - clock.cpu
    ours = [cb for cb in callbacks if isinstance(cb, viz.VizCallback)]
    logged = {type(cb).__name__: [f"{e}" if w == 1 else f"{e}@{w:.0%}" for e, w in zip(cb._schedule.logged, cb._schedule.scales)]
              for cb in ours}  # fmt: skip
    spent = {type(cb).__name__: cb._schedule.total_cost() for cb in ours}
    return {"wall": wall, "cpu": cpu, "bytes": _size(os.path.join(root, "run", "v0")), "logged": logged, "spent": spent}


def run(model: str, epochs: int, rounds: int, alone: bool, train_size: int = 2048) -> None:
    factories = demo_set() if model == "demo" else resnet_callbacks()
    configs: Dict[str, Callable[[], List[pl.Callback]]] = {
        "none": lambda: [],
        "default set": lambda: [make() for make in factories.values()],
    }
    if alone:
        for name, make in factories.items():
            configs[name] = lambda make=make: [make()]
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in configs}
    names = list(configs)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            with tempfile.TemporaryDirectory() as root:
                results[name].append(_fit(model, configs[name](), epochs, root, train_size))
            last = results[name][-1]
            print(f"  round {r} {name}: {last['wall']:.1f} s wall, {last['cpu']:.1f} s CPU", flush=True)
    base_wall = statistics.median(x["wall"] for x in results["none"])
    base_cpu = statistics.median(x["cpu"] for x in results["none"])
    base_bytes = results["none"][0]["bytes"]
    sizes = f", {train_size} training images" if model == "resnet18" else ""
    print(f"\n{model}{sizes}, {epochs} epochs, {rounds} rounds, torch threads {torch.get_num_threads()}")
    print("| configuration | wall (s) | CPU (s) | x none | x none, paired rounds | measured cost / training |"
          " logged epochs, measured cost | MB added | MB / logged epoch |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for name, runs in results.items():
        wall, cpu = statistics.median(x["wall"] for x in runs), statistics.median(x["cpu"] for x in runs)
        logged = runs[-1]["logged"]
        most = len({entry.split("@")[0] for v in logged.values() for entry in v})  # epochs any callback logged
        added = (runs[-1]["bytes"] - base_bytes) / 1e6
        spent = runs[-1]["spent"]
        chosen = "; ".join(f"{k} {v} {spent[k]:.1f} s" for k, v in logged.items()) or "-"
        per_epoch = f"{added / most:.2f}" if most else "-"
        share = statistics.median(sum(x["spent"].values()) / max(x["wall"] - sum(x["spent"].values()), 1e-9) for x in runs)
        paired = statistics.median(x["wall"] / none["wall"] for x, none in zip(runs, results["none"]))
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {wall / base_wall:.3f} ({cpu / base_cpu:.3f}) | {paired:.3f} | {share:.1%} | {chosen} "
              f"| {added:.2f} | {per_epoch} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", default=["demo", "resnet18"], choices=["demo", "resnet18"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--alone", action="store_true", help="also each callback alone")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--train-size", type=int, default=2048, help="resnet18's training images (validation: 1,024)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for model in args.model:
        run(model, args.epochs, args.rounds, args.alone, args.train_size)


if __name__ == "__main__":
    main()
