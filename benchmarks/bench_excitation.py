"""Excitation benchmark: c-MWP against the compute limit and TorchRay; unit occlusion's cost per unit.

Rounds interleave the contenders as in ``bench_attributions.py`` (whose timing helpers this
script uses); the table gives each contender's best time and its ratio to the first row, the limit.

- **c-MWP** on torchvision's resnet18 (random weights) at ``layer3`` and on the demo CNN at
  ``features.11``, targets fixed in advance. Limit: one forward + backward of the same batch, the
  gradient of the summed target logits with respect to the input *and* the weights (a training
  step's work, without the optimizer). Also shown: forward + backward to the layer only (what
  Grad-CAM needs). Contenders: ``excitation_signals`` (c-MWP alone; both methods together),
  ``tb_viz_plugin.methods.attribution.contrastive_excitation_backprop`` (plus the prediction pass
  of ``attribute`` and the upsampling), TorchRay's ``contrastive_excitation_backprop`` (two
  forward-backward passes) when installed. The goal is at most 2 forward+backward passes.
- **Unit occlusion** on the demo CNN, ``features.7`` (32 units, 16x16), 8 images of 64x64,
  window 4, stride 2 (961 positions per image). Limit: a plain no-grad forward of the same occluded
  images through the layers up to ``features.7``, prebuilt, in the same chunks. The cost per unit
  is the total over the number of units: every unit of the layer shares the same passes.

Run: ``.venv/bin/python benchmarks/bench_excitation.py [--device cuda] [--threads 1] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from typing import Dict, List, Sequence

import torch
import torchvision
from torch import nn

import bench_attributions
from bench_attributions import Contenders, print_table, run_rounds
from tb_viz_plugin.demo.model import ShapesCNN
from tb_viz_plugin.methods.attribution import contrastive_excitation_backprop
from tb_viz_plugin.methods.attribution.excitation import excitation_signals
from tb_viz_plugin.methods.attribution.perturbation import _cover, chunk_size
from tb_viz_plugin.methods.attribution.unit_occlusion import unit_occlusion


def c_mwp_contenders(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, layer: str, classifier: str) -> Contenders:
    module = model.get_submodule(layer)
    parameters = [p for p in model.parameters()]

    def forward_backward(to_layer: bool) -> None:
        kept: List[torch.Tensor] = []
        handle = module.register_forward_hook(lambda m, i, output: kept.append(output))
        try:
            x = images.detach().requires_grad_(not to_layer)
            score = model(x).gather(1, targets[:, None]).sum()
            torch.autograd.grad(score, kept if to_layer else [x, *parameters])
        finally:
            handle.remove()

    contenders: Contenders = {
        "limit: forward + backward (input and weights)": lambda: forward_backward(False),
        f"forward + backward to {layer}": lambda: forward_backward(True),
        "tb-viz excitation_signals, c-MWP": lambda: excitation_signals(model, images, targets, [layer], ["contrastive_excitation_backprop"]),
        "tb-viz excitation_signals, EB + c-MWP": lambda: excitation_signals(
            model, images, targets, [layer], ["excitation_backprop", "contrastive_excitation_backprop"]
        ),
        "tb-viz contrastive_excitation_backprop (attribute)": lambda: contrastive_excitation_backprop(model, images, targets, layer),
    }
    try:
        from torchray.attribution.excitation_backprop import contrastive_excitation_backprop as torchray_c_mwp, update_resnet
    except ImportError:
        return contenders
    peer = copy.deepcopy(model)
    for relu in (m for m in peer.modules() if isinstance(m, nn.ReLU)):
        relu.inplace = False
    if isinstance(peer, torchvision.models.ResNet):
        update_resnet(peer)
    contrast = "layer4" if isinstance(peer, torchvision.models.ResNet) else "features.12"
    contenders["TorchRay contrastive_excitation_backprop"] = lambda: torchray_c_mwp(
        peer, images, targets, saliency_layer=layer, contrast_layer=contrast, classifier_layer=classifier
    )
    return contenders


def unit_occlusion_contenders(model: nn.Module, images: torch.Tensor, layer: str, units: Sequence[int], window: int, stride: int) -> Contenders:
    n, _, size, _ = images.shape
    cover = _cover(size, window, stride, images.device)
    windows = (cover[:, None, :, None] * cover[None, :, None, :]).flatten(0, 1).bool()
    occluded = torch.where(windows[None, :, None], torch.zeros(()), images[:, None]).flatten(0, 1)
    chunk = chunk_size(model, images, 1024.0)
    head = model.features[: int(layer.split(".")[1]) + 1]

    def limit() -> None:
        with torch.no_grad():
            for start in range(0, len(occluded), chunk):
                head(occluded[start : start + chunk])

    return {
        f"limit: plain forward to {layer} of the {len(occluded)} occluded images": limit,
        f"tb-viz unit_occlusion, {len(units)} units": lambda: unit_occlusion(model, images, layer, units, window, stride),
        "tb-viz unit_occlusion, 1 unit": lambda: unit_occlusion(model, images, layer, units[:1], window, stride),
    }


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: keep torch's default)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default=None, help="default: cpu on a CPU, wall on a GPU")
    parser.add_argument("--size", type=int, default=112, help="resnet18 input size")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv or None)
    device = torch.device(args.device)
    clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    bench_attributions.CLOCK = time.process_time if clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, random weights, {clock} clock, {args.repeats} interleaved rounds")  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    cases: Dict[str, tuple] = {
        "resnet18": (torchvision.models.resnet18(), args.size, 1000, "layer3", "fc"),
        "demo CNN": (ShapesCNN(), 64, 6, "features.11", "classifier"),
    }
    for name, (model, size, classes, layer, classifier) in cases.items():
        model = model.to(device).eval()
        images = torch.randn(args.batch, 3, size, size, generator=generator).to(device)
        targets = torch.randint(0, classes, (args.batch,), generator=generator).to(device)
        results = run_rounds(c_mwp_contenders(model, images, targets, layer, classifier), args.repeats, device)
        print_table(f"c-MWP, {name} at {layer}, batch {args.batch}, {size}x{size}", results)
    model = ShapesCNN().to(device).eval()
    images = torch.randn(8, 3, 64, 64, generator=generator).to(device)
    units = list(range(32))
    results = run_rounds(unit_occlusion_contenders(model, images, "features.7", units, 4, 2), max(1, args.repeats // 2), device)
    print_table("Unit occlusion, demo CNN features.7 (32 units), 8 images 64x64, window 4, stride 2", results)
    all_units = min(results[f"tb-viz unit_occlusion, {len(units)} units"])
    print(f"\ncost per unit: {all_units / len(units) * 1e3:.1f} ms for 8 images ({all_units / len(units) / 8 * 1e3:.2f} ms per image)")


if __name__ == "__main__":
    main()
