"""Embeddings benchmark: what the feature capture adds to a validation epoch, and what logging costs.

Every row times our code and a named peer side by side in this one process (alternating runs, the
fastest of ``--repeats``: the least disturbed by other jobs), and prints a markdown table of the ratios:

- what the capture adds to a validation batch of the demo model (the issue's target: at most +2%):
  the hooks' own work (arm, keep 64 of 256 rows, argmax) timed in isolation over 100 calls, against
  one forward pass of the batch; then the whole validation loop (1,200 images) with the hooks
  capturing 300 samples against the same loop without hooks (a coarse check: on a busy machine the
  run-to-run noise of this row is larger than the effect);
- ``trainer.validate()`` with the ``Embeddings`` callback (capture + PCA + files), against without;
- per-epoch computations on 2,000 x 512 features: PCA, k-NN accuracy, silhouette and alignment
  against scikit-learn / scipy, and the cost of t-SNE (scikit-learn) relative to our PCA;
- ``write_embeddings`` (the map computed by ``methods.embed``) with and without the Projector's files.

Run: ``.venv/bin/python benchmarks/bench_embeddings.py [--repeats 5] [--threads N] [--skip-tsne]``
(``--threads 1`` on a machine shared with other jobs: multi-threaded BLAS/OpenMP spin-waits make
small linear-algebra calls tens of times slower there, which says nothing about either side.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from typing import Callable, List, Tuple

import numpy as np
import torch

from tb_viz_plugin.callbacks.probes import evenly_spaced
from tb_viz_plugin.methods import EmbeddingCapture, knn_accuracy, pca, procrustes_align, silhouette, tsne


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(ours: Callable[[], object], peer: Callable[[], object], repeats: int) -> Tuple[float, float]:
    """Fastest seconds of ``ours`` and ``peer`` over ``repeats`` alternating runs, after one warm-up each."""
    ours(), peer()
    times: Tuple[List[float], List[float]] = ([], [])
    for i in range(repeats):
        pair = (ours, peer) if i % 2 == 0 else (peer, ours)
        for fn in pair:
            times[0 if fn is ours else 1].append(_time(fn))
    return min(times[0]), min(times[1])


def _validation_setup():
    from torch.utils.data import DataLoader

    from tb_viz_plugin.demo.data import make_splits
    from tb_viz_plugin.demo.model import ShapesModule

    torch.manual_seed(0)
    module = ShapesModule().eval()
    _, val_set = make_splits(0, 10, 1200)
    return module, val_set, DataLoader(val_set, batch_size=256)


def bench_capture(repeats: int) -> Tuple[float, float]:
    """The validation loop's forward passes with the hooks capturing 300 samples, and without."""
    module, val_set, loader = _validation_setup()
    batches = [x for x, _ in loader]
    wanted = set(evenly_spaced(len(val_set), 300))
    plan = []
    for b, x in enumerate(batches):
        rows = [r for r in range(len(x)) if b * 256 + r in wanted]
        plan.append(([b * 256 + r for r in rows], rows, len(x)))
    capture = EmbeddingCapture(module)

    def without() -> None:
        with torch.no_grad():
            for x in batches:
                module(x)

    def with_capture() -> None:
        with capture, torch.no_grad():
            for x, (keys, rows, size) in zip(batches, plan):
                capture.expect(keys, rows, batch_size=size)
                module(x)
                capture.disarm()
            capture.collect()

    return side_by_side(with_capture, without, repeats)


def bench_hook_work(repeats: int) -> Tuple[float, float]:
    """A validation batch: forward + the capture hooks' own work, and the forward pass alone."""
    module, _, loader = _validation_setup()
    images = next(iter(loader))[0]
    capture = EmbeddingCapture(module)
    head = module.get_submodule(capture.layer)
    with torch.no_grad():
        features = module.model.pool(module.model.features(images)).flatten(1)  # the classifier's input
        logits = head(features)
    rows = list(range(0, len(images), 4))
    calls = 100

    def hook_work() -> None:
        for _ in range(calls):
            capture.expect(rows, rows, batch_size=len(images))
            capture._on_layer(head, (features,), logits)  # what the forward hook runs per batch
            capture.disarm()
        capture.collect()

    def forward() -> None:
        with torch.no_grad():
            module(images)

    hooks, alone = side_by_side(hook_work, forward, repeats)
    return alone + hooks / calls, alone


def bench_validate(repeats: int) -> Tuple[float, float]:
    """``trainer.validate()`` of the demo model with the Embeddings callback, and without."""
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    from tb_viz_plugin.callbacks import Embeddings
    from tb_viz_plugin.demo.data import CLASS_NAMES, denormalize

    module, _, loader = _validation_setup()
    logdir = tempfile.mkdtemp()

    def trainer(callbacks):
        return pl.Trainer(accelerator="cpu", devices=1, logger=TensorBoardLogger(logdir, name="bench"),
                          callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False)

    with_cb = trainer([Embeddings(num_samples=300, class_names=CLASS_NAMES, to_rgb=denormalize, strict=True)])
    without = trainer([])
    return side_by_side(lambda: with_cb.validate(module, loader, verbose=False),
                        lambda: without.validate(module, loader, verbose=False), repeats)


def _features(n: int = 2000, dim: int = 512, classes: int = 10) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, dim, generator=g) * 2
    return centres[labels] + torch.randn(n, dim, generator=g) * 3, labels


def _sklearn_knn(x: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    from sklearn.neighbors import NearestNeighbors

    neighbours = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)  # self excluded
    votes = np.stack([np.bincount(row, minlength=y.max() + 1) for row in y[neighbours]])
    return float((votes.argmax(1) == y).mean())


def bench_log(repeats: int, n: int, dim: int) -> Tuple[float, float]:
    """``embed`` + ``write_embeddings`` (PCA, with sprite) with the Projector's files, and without them."""
    from torch.utils.tensorboard import SummaryWriter

    from tb_viz_plugin import write_embeddings
    from tb_viz_plugin.methods import embed

    features, labels = _features(n, dim)
    images = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    writer = SummaryWriter(tempfile.mkdtemp())
    step = iter(range(10**6))

    def run(projector: bool) -> None:
        write_embeddings(writer, "emb", embed(features, labels=labels), next(step), labels=labels, predicted=labels,
                         images=images, to_rgb=lambda x: x, projector=projector)

    try:
        return side_by_side(lambda: run(True), lambda: run(False), repeats)
    finally:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch and BLAS/OpenMP threads (0 = defaults)")
    parser.add_argument("--skip-tsne", action="store_true", help="leave out the (slow) t-SNE row")
    args = parser.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    warnings.filterwarnings("ignore")
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score
    from scipy.linalg import orthogonal_procrustes

    x, y = _features()
    xn, yn = x.numpy(), y.numpy()
    reference = procrustes_align(pca(x)[0])
    moved = reference @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    rows = []

    def row(what: str, ours: str, peer: str, times: Tuple[float, float]) -> None:
        rows.append((what, ours, peer, times[0], times[1]))
        print(f"  {what}: {times[0] * 1e3:.1f} ms vs {times[1] * 1e3:.1f} ms", flush=True)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; repeats={args.repeats}", flush=True)
    row("validation batch, demo model, 256 images", "forward + capture hooks", "forward alone",
        bench_hook_work(args.repeats))
    row("validation loop, demo model, 1,200 images", "hooks capturing 300 samples", "same loop, no hooks",
        bench_capture(args.repeats))
    row("`trainer.validate()`, demo model, 1,200 images", "with `Embeddings(num_samples=300)`", "without",
        bench_validate(args.repeats))
    row("PCA, 2,000 x 512", "`pca` (torch, exact eigh, float64)", "scikit-learn `PCA(2)`",
        side_by_side(lambda: pca(x), lambda: PCA(2).fit_transform(xn), args.repeats))
    row("alignment, 2,000 x 2", "`procrustes_align`", "scipy `orthogonal_procrustes`",
        side_by_side(lambda: procrustes_align(moved, reference),
                     lambda: orthogonal_procrustes(moved.numpy(), reference.numpy()), args.repeats))
    row("5-NN leave-one-out accuracy, 2,000 x 512", "`knn_accuracy` (torch)", "scikit-learn `NearestNeighbors`",
        side_by_side(lambda: knn_accuracy(x, y), lambda: _sklearn_knn(xn, yn), args.repeats))
    row("silhouette, 2,000 x 512", "`silhouette` (torch)", "scikit-learn `silhouette_score`",
        side_by_side(lambda: silhouette(x, y), lambda: silhouette_score(xn, yn), args.repeats))
    if not args.skip_tsne:
        row("2-D map, 2,000 x 512", "t-SNE (scikit-learn, `method='tsne'`)", "`pca` (the default)",
            side_by_side(lambda: tsne(x), lambda: pca(x), 1))
    row("`embed` + `write_embeddings`, 300 x 128 (demo size)", "with Projector files", "without",
        bench_log(args.repeats, 300, 128))
    row("`embed` + `write_embeddings`, 2,000 x 512", "with Projector files", "without", bench_log(max(1, args.repeats // 2), 2000, 512))

    print("\n| what | ours | peer | ours (ms) | peer (ms) | ours / peer |")
    print("|---|---|---|---:|---:|---:|")
    for what, ours, peer, a, b in rows:
        print(f"| {what} | {ours} | {peer} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.3f} |")


if __name__ == "__main__":
    main()
