"""Feature inversion benchmark: one batched inversion of N images x L layers, against its limit and a plain loop.

Two comparisons per model, timed in this one process (alternating runs, median of ``--repeats``):

- **limit**: one iteration of :func:`~tb_viz_plugin.methods.optvis.invert` (pyramid parametrization,
  forward of all N x L images, the feature distances and the TV prior, backward to the images,
  Adam step) against one forward + backward (to the input) of a batch of N x L images of the
  same size -- what an iteration cannot go below. Goal <= 1.1x. The iteration is measured as the
  difference of two inversions (``2 + steps`` and 2 steps) divided by ``steps``, so the target
  capture and the final evaluation (3 forward passes per call) do not count.
- **plain reference** (written here, the way tutorials do it): one image and one layer at a time,
  a pixel tensor with ``requires_grad``, the model run up to the layer through a forward hook,
  ``||phi(x) - phi(x0)||² / ||phi(x0)||²`` plus the same TV prior, ``torch.autograd.grad`` to the
  pixels, Adam; N x L such loops of ``steps`` steps, against one ``invert`` call of ``steps`` steps.

Models: the demo CNN (64 px, N = 4 probe images x L = 4 convs, as the demo callback) and a
random-weight torchvision resnet (``--size`` px, N = 4 x L = 3: ``conv1``, ``layer2``, ``layer4``).

Run: ``.venv/bin/python benchmarks/bench_inversion.py [--device cuda] [--steps 8] [--repeats 3]
[--resnet resnet18] [--size 112] [--threads 1]`` (on a shared CPU, one thread gives steadier ratios).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Callable, List, Sequence, Tuple

import torch
import torchvision
from torch import nn

from tb_viz_plugin.methods.optvis import invert
from tb_viz_plugin.methods.optvis.inversion import TV_WEIGHT

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def alternating(fns: Sequence[Callable[[], object]], repeats: int, device: torch.device) -> List[float]:
    """Median seconds of each of ``fns``, run in turn (order reversed every other round) after a warm-up each."""
    for fn in fns:
        timed(fn, device)
    times: List[List[float]] = [[] for _ in fns]
    for i in range(repeats):
        order = range(len(fns)) if i % 2 == 0 else reversed(range(len(fns)))
        for k in order:
            times[k].append(timed(fns[k], device))
    return [statistics.median(t) for t in times]


def _tv(image: torch.Tensor) -> torch.Tensor:
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    return (dx + dy) / 2


def plain_inversion(model: nn.Module, x0: torch.Tensor, layer: str, steps: int, mean, std) -> torch.Tensor:
    """The tutorial loop for one image and one layer: pixels in [0, 1] through a sigmoid, a hook, Adam."""
    module = model.get_submodule(layer)
    kept = {}
    handle = module.register_forward_hook(lambda m, args, out: kept.__setitem__("phi", out))
    m = torch.tensor(mean, device=x0.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x0.device).view(1, -1, 1, 1)
    try:
        with torch.no_grad():
            model((x0 - m) / s)
            target = kept["phi"].detach()
        logits = (0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))).to(x0.device)
        logits.requires_grad_(True)
        optimizer = torch.optim.Adam([logits], lr=0.1)
        for _ in range(steps):
            image = torch.sigmoid(logits)
            model((image - m) / s)
            loss = (kept["phi"] - target).pow(2).sum() / target.pow(2).sum() + TV_WEIGHT * _tv(image)
            (logits.grad,) = torch.autograd.grad(loss, logits)
            optimizer.step()
    finally:
        handle.remove()
    return torch.sigmoid(logits).detach()


def bench(model: nn.Module, images: torch.Tensor, layers: List[str], steps: int, repeats: int,
          device: torch.device, mean, std, what: str) -> List[Tuple[str, float, float]]:  # fmt: skip
    n, count = len(images), len(layers)
    inputs = (images - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    inputs = inputs.to(device)
    batch = torch.rand(n * count, *images.shape[1:], device=device, requires_grad=True)

    def ours(k: int) -> Callable[[], object]:
        return lambda: invert(model, inputs, layers, steps=k, mean=mean, std=std)

    def limit() -> None:
        for _ in range(steps):
            torch.autograd.grad(model(batch).sum(), batch)

    long, short, t_limit = alternating([ours(2 + steps), ours(2), limit], repeats, device)
    per_iteration = (long - short) / steps
    rows = [(f"{what}, {n} images x {count} layers: one iteration vs fwd+bwd of {n * count}", per_iteration,
             t_limit / steps)]  # fmt: skip

    def plain() -> None:
        for image in images.to(device):
            for layer in layers:
                plain_inversion(model, image[None], layer, steps, mean, std)

    t_ours, t_plain = alternating([ours(steps), plain], repeats, device)
    rows.append((f"{what}, {n} x {count}, {steps} steps: one batched invert vs {n * count} plain loops", t_ours,
                 t_plain))  # fmt: skip
    return rows


def demo_rows(steps: int, repeats: int, device: torch.device) -> List[Tuple[str, float, float]]:
    from tb_viz_plugin.demo.data import MEAN, STD
    from tb_viz_plugin.demo.model import ShapesModule

    torch.manual_seed(0)
    model = ShapesModule().to(device).eval()
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    layers = ["model.features.0", "model.features.4", "model.features.8", "model.features.12"]
    return bench(model, images, layers, steps, repeats, device, MEAN, STD, "demo CNN, 64 px")


def resnet_rows(name: str, size: int, steps: int, repeats: int, device: torch.device) -> List[Tuple[str, float, float]]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).to(device).eval()
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    return bench(model, images, ["conv1", "layer2", "layer4"], steps, repeats, device, IMAGENET_MEAN, IMAGENET_STD,
                 f"{name}, {size} px")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=8, help="optimisation steps (default 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resnet", default="resnet18")
    parser.add_argument("--size", type=int, default=112, help="resnet input size in pixels (default 112)")
    parser.add_argument("--skip-resnet", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warnings.filterwarnings("ignore")
    rows = demo_rows(args.steps, args.repeats, device)
    if not args.skip_resnet:
        rows += resnet_rows(args.resnet, args.size, args.steps, args.repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\nfeature inversion benchmark on {name}, torch {torch.__version__}, median of {args.repeats}\n")
    print("| what | ours (s) | reference (s) | ratio |")
    print("|---|---:|---:|---:|")
    for i, (what, ours, reference) in enumerate(rows):
        if i % 2 == 0:
            print(f"| {what} | {ours:.4f} | {reference:.4f} (fwd+bwd) | ours / limit {ours / reference:.2f}x |")
        else:
            print(f"| {what} | {ours:.3f} | {reference:.3f} (plain) | {reference / ours:.2f}x faster |")


if __name__ == "__main__":
    main()
