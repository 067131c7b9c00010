"""TopActivations benchmark: what streaming the top-k adds to a validation epoch, and its memory.

For each model, one process trains 1 batch per epoch and validates every epoch, once per peer and
round (rounds alternate the order); the first validation epoch of every fit is left out (it
measures the receptive fields once). Peers:

- **TopActivations**: this package, streamed from the validation loop's own forward passes;
- **keep-all peer**: the same hooks keep every sample's unit maps and image, ranked once at epoch
  end (memory grows with the validation set);
- **extra-pass peer**: after the epoch, a second pass over the validation loader with the hooks
  (what a callback without streaming does).

Columns: the median validation epoch (wall clock, from the first callback's
``on_validation_epoch_start`` to the last callback's ``on_validation_epoch_end``) and its ratio to
the loop without callbacks; **added**: the time spent in the peer's own code (its callback hooks
and forward hooks, the epoch-end logging left out) as a share of the rest of the same epoch -- a
ratio within one epoch, so it holds on a shared machine where epoch times drift between runs;
**logging**: rendering and writing the top-k at epoch end, a fixed cost per epoch (proportional to
layers x units x k, the same for every peer, independent of the number of samples); **state**: what
the top-k keeps between batches (values, ids, positions, receptive-field crops, unit maps; for
TopActivations the bound, every entry a different sample: whole-image crops are kept once per
sample, so it usually holds less); and on CUDA the peak memory of the epoch.

Models: the demo CNN (1,200 images of 64x64, batches of 256, the demo's settings: 2 layers, 8 units,
k = 8) and torchvision's resnet18 (random weights, synthetic 64x64 data; ``layer2``-``layer4``,
64 units, k = 9).

Run: ``.venv/bin/python benchmarks/bench_activations.py [--device cuda] [--rounds 2] [--epochs 2] [--threads 1]``
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

import tb_viz_plugin.callbacks.top_activations as top_activations_module
from tb_viz_plugin.callbacks import TopActivations
from tb_viz_plugin.methods.model_io import split_batch
from tb_viz_plugin.log import write_top_activations
from tb_viz_plugin.methods import RunningTopK, TopActivationTracker, UnitTopK, measure_layer


def _now() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class Stopwatch:
    """Wall seconds spent in instrumented code during the current epoch (nested calls counted once)."""

    def __init__(self) -> None:
        self.own = self.logging = 0.0
        self._depth = 0

    def timed(self, fn: Callable[..., Any], logging: bool = False) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = _now()
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                spent = _now() - start
                if logging:
                    self.logging += spent
                if self._depth == 0:
                    self.own += spent

        return wrapper


WATCH = Stopwatch()
top_activations_module.write_top_activations = timed_log = WATCH.timed(write_top_activations, logging=True)
TopActivationTracker._stash = WATCH.timed(TopActivationTracker._stash)  # the forward hooks' work


def instrument(callback: pl.Callback) -> pl.Callback:
    """Time every validation hook of ``callback`` with ``WATCH``."""
    for name in ("on_validation_epoch_start", "on_validation_batch_end", "on_validation_epoch_end"):
        setattr(callback, name, WATCH.timed(getattr(callback, name)))
    return callback


class EpochClock(pl.Callback):
    """Two of these bracket the other callbacks: the first starts an epoch, the second records it."""

    def __init__(self, records: Optional[List[Tuple[float, float, float]]] = None, started: Optional[list] = None) -> None:
        self.records, self.started = records, started if started is not None else []

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.records is None:
            WATCH.own = WATCH.logging = 0.0
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            self.started.append(_now())

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.records is not None:
            self.records.append((_now() - self.started[-1], WATCH.own, WATCH.logging))


class _Peer(pl.Callback):
    """Shared set-up of the peers: receptive fields measured once at setup, the same units and k."""

    def __init__(self, layers: Sequence[str], units: int, k: int, shape: Tuple[int, int, int]) -> None:
        self.layers, self.units, self.k, self.shape = list(layers), units, k, shape
        self.geometry: Dict[str, Any] = {}
        self.state_bytes = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.geometry = {name: measure_layer(pl_module, name, self.shape) for name in self.layers}

    def _units(self) -> Dict[str, List[int]]:
        return {name: list(range(min(self.units, g.channels))) for name, g in self.geometry.items()}

    def _log(self, trainer: pl.Trainer, results: Dict[str, UnitTopK]) -> None:
        timed_log(trainer.logger.experiment, results, trainer.global_step)


class KeepAll(_Peer):
    """Keeps every sample's maps of the chosen units and every image; ranks them once at epoch end."""

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.maps: Dict[str, List[torch.Tensor]] = {name: [] for name in self.layers}
        self.images: List[torch.Tensor] = []
        self.handles = [
            pl_module.get_submodule(name).register_forward_hook(WATCH.timed(functools.partial(self._keep, name)))
            for name in self.layers
        ]

    def _keep(self, name: str, module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        self.maps[name].append(output.detach()[:, : len(self._units()[name])].float())

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.images.append(split_batch(batch)[0])

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for handle in self.handles:
            handle.remove()
        images = torch.cat(self.images)
        self.state_bytes = images.nbytes + sum(m.nbytes for ms in self.maps.values() for m in ms)
        results = {}
        for name, geometry in self.geometry.items():
            topk = RunningTopK(name, self._units()[name], self.k, geometry, images.shape[1], images.device)
            topk.update(torch.cat(self.maps[name]), images, torch.arange(len(images), device=images.device))
            results[name] = topk.result()
        self._log(trainer, results)


class ExtraPass(_Peer):
    """After the validation epoch, streams the validation loader again through the hooked model."""

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seen = 0
        with TopActivationTracker(pl_module, self.geometry, self._units(), self.k, self.shape[0]) as tracker:
            for batch in trainer.val_dataloaders:
                images = split_batch(batch)[0].to(pl_module.device)
                pl_module(images)
                tracker.update(images, torch.arange(seen, seen + len(images), device=images.device))
                seen += len(images)
        results = tracker.results()
        self.state_bytes = sum(getattr(t, f).nbytes for t in results.values() for f in UnitTopK.SHARDED)
        self._log(trainer, results)


class Classifier(pl.LightningModule):
    """Wraps a classifier network; one SGD step per epoch keeps the weights (and the top-k) moving."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch: Tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def demo_setup(n_val: int) -> Dict[str, Any]:
    from tb_viz_plugin.demo.data import make_splits
    from tb_viz_plugin.demo.model import ShapesCNN

    torch.manual_seed(0)
    train_set, val_set = make_splits(0, 256, n_val)
    return dict(
        name=f"demo CNN, {n_val} val images 64x64, batch 256",
        make_module=lambda: Classifier(ShapesCNN()),
        train=DataLoader(train_set, batch_size=64),
        val=DataLoader(val_set, batch_size=256),
        layers=["net.features.10", "net.features"],
        units=8,
        k=8,
        shape=(3, 64, 64),
    )


def resnet_setup(n_val: int) -> Dict[str, Any]:
    import torchvision

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n_val, 3, 64, 64, generator=g), torch.randint(0, 10, (n_val,), generator=g))

    def make_module() -> Classifier:
        torch.manual_seed(0)
        return Classifier(torchvision.models.resnet18(num_classes=10))  # random weights

    return dict(
        name=f"resnet18, {n_val} synthetic val images 64x64, batch 128",
        make_module=make_module,
        train=DataLoader(data, batch_size=128),
        val=DataLoader(data, batch_size=128),
        layers=["net.layer2", "net.layer3", "net.layer4"],
        units=64,
        k=9,
        shape=(3, 64, 64),
    )


def run_fit(setup: Dict[str, Any], peer: Optional[pl.Callback], epochs: int, device: str) -> List[Tuple[float, float, float]]:
    """(wall, own, logging) seconds of each validation epoch of one fit, the first left out."""
    records: List[Tuple[float, float, float]] = []
    clock = EpochClock()
    callbacks = [clock, *([instrument(peer)] if peer else []), EpochClock(records, clock.started)]
    with tempfile.TemporaryDirectory() as logdir, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            accelerator=device, devices=1, max_epochs=epochs + 1, limit_train_batches=1, num_sanity_val_steps=0,
            logger=TensorBoardLogger(logdir), callbacks=callbacks, enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False,
        )
        trainer.fit(setup["make_module"](), setup["train"], setup["val"])
    return records[1:]


def _peers(setup: Dict[str, Any]) -> Dict[str, Callable[[], Optional[pl.Callback]]]:
    layers, units, k, shape = setup["layers"], setup["units"], setup["k"], setup["shape"]
    return {
        "no callback (baseline)": lambda: None,
        "TopActivations (streamed)": lambda: TopActivations(layers=layers, units=units, k=k, strict=True, budget=None),
        "keep-all peer (rank at end)": lambda: KeepAll(layers, units, k, shape),
        "extra-pass peer": lambda: ExtraPass(layers, units, k, shape),
    }


def _state_bytes(setup: Dict[str, Any], peer: Optional[pl.Callback]) -> Optional[int]:
    if isinstance(peer, _Peer):
        return peer.state_bytes
    if isinstance(peer, TopActivations):
        module, shape = setup["make_module"](), setup["shape"]
        total = 0
        for name in setup["layers"]:
            g = measure_layer(module, name, shape)
            top = RunningTopK(name, list(range(min(setup["units"], g.channels))), setup["k"], g, shape[0], torch.device("cpu"))
            total += sum(getattr(top.result(), f).nbytes for f in UnitTopK.SHARDED)
        return total
    return None


def benchmark(setup: Dict[str, Any], rounds: int, epochs: int, device: str) -> List[Tuple[Any, ...]]:
    """Per peer: name, median epoch wall seconds, median added share, median logging seconds, state bytes, CUDA peak."""
    peers = _peers(setup)
    records: Dict[str, List[Tuple[float, float, float]]] = {name: [] for name in peers}
    state: Dict[str, Optional[int]] = {}
    peak: Dict[str, Optional[float]] = {}
    for r in range(rounds):
        for name in list(peers) if r % 2 == 0 else list(reversed(peers)):
            peer = peers[name]()
            records[name] += run_fit(setup, peer, epochs, device)
            state[name] = _state_bytes(setup, peer)
            peak[name] = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    rows = []
    for name in peers:
        walls = [wall for wall, _, _ in records[name]]
        added = [(own - logged) / (wall - own) for wall, own, logged in records[name]]
        logging = [logged for _, _, logged in records[name]]
        rows.append((name, statistics.median(walls), statistics.median(added), statistics.median(logging), state[name], peak[name]))
    return rows


def _mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=2, help="fits per peer (alternating order)")
    parser.add_argument("--epochs", type=int, default=2, help="timed validation epochs per fit")
    parser.add_argument("--n-resnet", type=int, default=1024, help="resnet18 validation images")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--models", default="demo,resnet18", help="comma-separated: demo, resnet18")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device_name}; torch {torch.__version__}; {args.rounds} rounds x {args.epochs} epochs\n")
    setups = {"demo": lambda: demo_setup(1200), "resnet18": lambda: resnet_setup(args.n_resnet)}
    for setup in (setups[name]() for name in args.models.split(",")):
        rows = benchmark(setup, args.rounds, args.epochs, args.device)
        baseline = rows[0][1]
        print(f"**{setup['name']}**; layers {setup['layers']}, {setup['units']} units, k = {setup['k']}\n")
        print("| peer | val epoch (wall) | vs baseline | added, excl. logging | logging per epoch | state kept | CUDA peak |")
        print("|---|---|---|---|---|---|---|")
        for name, wall, added, logged, state, peak in rows:
            cuda_peak = "-" if peak is None else f"{peak:.0f} MiB"
            print(
                f"| {name} | {wall:.3f} s | {wall / baseline:.3f}x | {100 * added:+.1f}% | {logged:.3f} s | "
                f"{_mib(state)} | {cuda_peak} |"
            )
        print()


if __name__ == "__main__":
    main()
