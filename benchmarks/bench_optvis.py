"""Optimisation-based visualization benchmark: our batched render against its compute limit and Lucent.

Every row times two things side by side in this one process (alternating runs, median of
``--repeats``) and prints a markdown table of the ratios:

- **limit**: one iteration of our batched render of N targets (parametrization, transforms,
  forward, backward to the image, Adam step) against one forward + backward (to the input) of a
  batch of N images of the size the model sees -- what one iteration cannot go below. Goal <= 1.1x.
  On the demo model (N = 6 classes, 64 px) and on torchvision's resnet (N = 8 ``layer4`` channels,
  128 px upsampled to 224 px).
- **Lucent**: ``lucent.optvis.render.render_vis`` (torch-lucent, a test/bench-only dependency) on
  the same model, objectives (the mean of ``layer4`` channels), parametrization (Fourier,
  decorrelated colour), image size (128 px upsampled to 224 px) and number of steps: 8 targets as
  Lucent is normally used (8 calls of one image) and as one batched Lucent call, against our one
  batched render of 8 images.

Run: ``.venv/bin/python benchmarks/bench_optvis.py [--device cuda] [--steps 16] [--repeats 3] [--resnet resnet18]
[--threads 1] [--skip-lucent]`` (on a shared CPU, one thread gives steadier ratios).
On a GPU use ``--steps 256 --resnet resnet50`` for the issue's reference setting.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Callable, List, Tuple

import numpy as np
import torch
import torchvision

from tb_viz_plugin.methods.optvis import objectives as O, param as P, render
from tb_viz_plugin.methods.optvis import transform as T

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def side_by_side(
    ours: Callable[[], object], peer: Callable[[], object], repeats: int, device: torch.device
) -> Tuple[float, float]:
    """Median seconds of ``ours`` and ``peer``, run alternately after one warm-up each."""

    def timed(fn: Callable[[], object]) -> float:
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - start

    timed(ours), timed(peer)
    times: Tuple[List[float], List[float]] = ([], [])
    for i in range(repeats):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            times[which].append(timed((ours, peer)[which]))
    return statistics.median(times[0]), statistics.median(times[1])


def _ours(model: torch.nn.Module, objective: O.Objective, n: int, size: int, steps: int, device: torch.device,
          seen: int, mean, std, param=P.fourier_image) -> Callable[[], object]:  # fmt: skip
    """Our batched render of ``n`` targets at ``size`` px, upsampled to ``seen`` px for the model."""
    transforms = T.default_transforms(size) + ([T.resize(seen)] if seen != size else [])

    def run() -> object:
        g = torch.Generator().manual_seed(0)
        return render(model, objective, param(n, size, generator=g, device=device), steps=steps,
                      transforms=transforms, mean=mean, std=std, generator=g)  # fmt: skip

    return run


def _limit(model: torch.nn.Module, n: int, seen: int, steps: int, device: torch.device) -> Callable[[], object]:
    """``steps`` forward + backward passes (to the input) of a batch of ``n`` images of ``seen`` px."""
    x = torch.rand(n, 3, seen, seen, device=device, requires_grad=True)

    def run() -> object:
        for _ in range(steps):
            torch.autograd.grad(model(x).sum(), x)

    return run


def bench_limit_demo(steps: int, repeats: int, device: torch.device) -> Tuple[str, float, float]:
    from tb_viz_plugin.demo.data import MEAN, STD
    from tb_viz_plugin.demo.model import ShapesModule

    torch.manual_seed(0)
    model = ShapesModule().to(device).eval()
    objective = O.batched([O.class_logit(c) for c in range(6)])
    ours = _ours(model, objective, 6, 64, steps, device, 64, MEAN, STD, param=P.pyramid_image)
    t_ours, t_limit = side_by_side(ours, _limit(model, 6, 64, steps, device), repeats, device)
    return "demo CNN, 6 classes, 64 px (pyramid): per iteration vs fwd+bwd of 6", t_ours / steps, t_limit / steps


def _resnet(name: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None).to(device).eval()


def bench_limit_resnet(name: str, steps: int, repeats: int, device: torch.device) -> Tuple[str, float, float]:
    model = _resnet(name, device)
    objective = O.batched([O.channel("layer4", c) for c in range(8)])
    ours = _ours(model, objective, 8, 128, steps, device, 224, IMAGENET_MEAN, IMAGENET_STD)
    t_ours, t_limit = side_by_side(ours, _limit(model, 8, 224, steps, device), repeats, device)
    what = f"{name}, 8 layer4 channels, 128->224 px (fourier): per iteration vs fwd+bwd of 8"
    return what, t_ours / steps, t_limit / steps


def bench_lucent(name: str, steps: int, repeats: int, device: torch.device) -> List[Tuple[str, float, float]]:
    from lucent.optvis import objectives as lucent_objectives
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    model = _resnet(name, device)
    targets = 8
    ours = _ours(model, O.batched([O.channel("layer4", c) for c in range(targets)]), targets, 128, steps, device,
                 224, IMAGENET_MEAN, IMAGENET_STD)  # fmt: skip

    def lucent(batch: bool) -> Callable[[], object]:
        def one_call(objective: object, batch_size: int) -> object:
            try:
                return lucent_render.render_vis(
                    model, objective, lambda: lucent_param.image(128, batch=batch_size), thresholds=(steps,),
                    show_image=False, progress=False, fixed_image_size=224,
                )  # fmt: skip
            finally:  # render_vis leaves a forward hook on every module: remove them, or later runs slow down
                for module in model.modules():
                    module._forward_hooks.clear()

        def run() -> object:
            np.random.seed(0)  # Lucent's transforms draw from numpy's global RNG
            torch.manual_seed(0)
            if batch:
                channels = [lucent_objectives.channel("layer4", c, batch=c) for c in range(targets)]
                return one_call(sum(channels), targets)
            return [one_call(f"layer4:{c}", 1) for c in range(targets)]

        return run

    rows = []
    for batch, label in ((False, "8 calls of 1 image"), (True, "1 batched call of 8")):
        t_ours, t_lucent = side_by_side(ours, lucent(batch), repeats, device)
        rows.append((f"{name}, 8 layer4 channels, 128->224 px, {steps} steps: Lucent {label}", t_ours, t_lucent))
    model.zero_grad(set_to_none=True)  # Lucent's loss.backward() fills the model's .grad
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=16, help="optimisation steps per render (default 16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resnet", default="resnet18", help="torchvision resnet of the 224-px rows (resnet18)")
    parser.add_argument("--skip-lucent", action="store_true")
    parser.add_argument("--only-lucent", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warnings.filterwarnings("ignore")
    rows = [] if args.only_lucent else [
        bench_limit_demo(args.steps, args.repeats, device),
        bench_limit_resnet(args.resnet, args.steps, args.repeats, device),
    ]
    limit_rows = len(rows)
    if not args.skip_lucent:
        rows += bench_lucent(args.resnet, args.steps, args.repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\noptvis benchmark on {name}, torch {torch.__version__}, median of {args.repeats}\n")
    print("| what | ours (s) | peer (s) | peer / ours |")
    print("|---|---:|---:|---:|")
    for i, (what, ours, peer) in enumerate(rows):
        peer_name = "fwd+bwd limit" if i < limit_rows else "Lucent"
        print(f"| {what} | {ours:.4f} | {peer:.4f} ({peer_name}) | {peer / ours:.2f}x |")
    if limit_rows:
        print("\nlimit rows: ours / limit = overhead of an iteration over a bare forward+backward (goal <= 1.1)")
    for what, ours, peer in rows[:limit_rows]:
        print(f"  {what}: {ours / peer:.2f}x")


if __name__ == "__main__":
    main()
