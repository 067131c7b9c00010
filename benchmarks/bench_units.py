"""Issue 16's options at the demo's settings: unit occlusion of the top-k, faithfulness scores, top-k labels.

Measured on the demo CNN (random weights: the cost does not depend on training), 64x64 inputs,
process CPU time, best of ``--repeats`` (``time.process_time``: steady on a shared machine).

- **unit occlusion** (``TopActivations(unit_occlusion={"k": 2})`` in the demo):
  ``top_k_occlusion`` for the demo's two layers (``features.10``, ``features``), 8 units, the first
  2 of k = 8 ranks, an 8 x 8 grid over each patch; against one validation epoch of the demo
  (1,200 images, forward only) and per occluded patch.
- **faithfulness** (``AttributionMaps(faithfulness={"steps": 8})`` in the demo): deletion and
  insertion for the demo's 7 methods and the random map, 6 probe images; against ``attribute``
  of the same methods (what the callback computes anyway).
- **top-k logging**: ``write_top_activations`` of the demo's top-k (2 layers x 8 units x 8 patches)
  now (values in the manifest, drawn by the browser) against the same plus the PIL labels the
  rows used to carry (``render.label_tiles`` on every row).

Run: ``.venv/bin/python benchmarks/bench_units.py [--threads 1] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Callable, List

import torch
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin.demo.data import make_splits
from tb_viz_plugin.demo.model import ShapesCNN
from tb_viz_plugin.log import write_top_activations
from tb_viz_plugin.methods import top_activations
from tb_viz_plugin.methods.attribution import attribute, faithfulness_scores, top_k_occlusion
from tb_viz_plugin.render import label_tiles
from tb_viz_plugin.render import top_activations as draw

METHODS = ["cam", "grad_cam", "grad_cam_plus_plus", "guided_grad_cam", "saliency", "occlusion", "contrastive_excitation_backprop"]


def best(fn: Callable[[], object], repeats: int) -> float:
    times: List[float] = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = ShapesCNN().eval()
    _, val_set = make_splits(0, 16, 1200)
    images = torch.stack([val_set[i][0] for i in range(len(val_set))])
    layers = ["features.10", "features"]
    with torch.no_grad():
        epoch = best(lambda: [net(x) for x in images.split(256)], args.repeats)
    tops = top_activations(net, images.split(256), layers, units=8, k=8)
    occlusion = best(lambda: [top_k_occlusion(net, top, k=2) for top in tops.values()], args.repeats)
    patches = 2 * 8 * 2
    print(f"CPU, {args.threads} thread(s), best of {args.repeats}, process time\n")
    print("| what | seconds | ratio |")
    print("|---|---:|---:|")
    print(f"| demo validation epoch, 1,200 images, forward only | {epoch:.3f} | 1.00x |")
    print(f"| unit occlusion of the demo's top-k ({patches} patches, 64 positions each) | {occlusion:.3f} | "
          f"{occlusion / epoch:.2f}x ({1000 * occlusion / patches:.0f} ms per patch) |")  # fmt: skip

    probes = images[::200][:6]
    maps = attribute(net, probes, METHODS, layers="features")
    attributing = best(lambda: attribute(net, probes, METHODS, layers="features"), args.repeats)
    scoring = best(lambda: faithfulness_scores(net, probes, maps, steps=8), args.repeats)
    print(f"| `attribute`, the demo's 7 methods, 6 images | {attributing:.3f} | 1.00x |")
    print(f"| `faithfulness_scores`, 8 steps (7 methods + random, deletion + insertion) | {scoring:.3f} | "
          f"{scoring / attributing:.2f}x |")  # fmt: skip

    cpu = {name: top.cpu() for name, top in tops.items()}
    with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer:
        now = best(lambda: write_top_activations(writer, cpu, 0), args.repeats)
    rows = []
    for top in cpu.values():
        count, k = top.values.shape
        crops = draw.input_rgb(top.crops.flatten(0, 1)).reshape(count, k, *top.geometry.crop_size, 3)
        pictures = draw.top_activation_rows(
            crops, top.maps, top.geometry.crop_origins(top.positions), top.values, top.geometry.image_size
        )
        tile = draw.tile_size(top.geometry.crop_size)
        rows += [(picture, tile, k, [f"{v:.3g}" for v in values]) for picture, values in zip(pictures, top.values.tolist())]
    labels = best(lambda: [label_tiles(*row) for row in rows], args.repeats)  # what the rows used to add
    count = sum(top.values.numel() for top in cpu.values())
    print(f"| `write_top_activations`, {count} patches, values drawn by the browser | {now:.3f} | 1.00x "
          f"({1000 * now / count:.2f} ms per patch) |")  # fmt: skip
    print(f"| the PIL value labels the rows carried before (`render.label_tiles`, now left out) | {labels:.3f} | "
          f"{labels / now:.2f}x ({1000 * labels / count:.2f} ms per patch) |")  # fmt: skip

if __name__ == "__main__":
    main()
