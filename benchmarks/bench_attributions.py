"""Attribution benchmark: Grad-CAM and occlusion against captum, pytorch-grad-cam and the compute limit.

Everything runs side by side in one process, rounds interleaving the contenders (their order
rotating), and the table gives each contender's best time over the rounds (the least disturbed by
other processes on a shared machine; the median is shown too) and the ratio of best times to the
compute limit measured in the same rounds. On a CPU the clock is this process's CPU time by default
(``--clock cpu``; with ``--threads 1`` it measures work, unaffected by other processes competing for
the cores), on a GPU wall time after synchronising:

- **Grad-CAM** on torchvision's resnet18 (random weights) at ``layer4``, 224x224, batches of 8 and
  32, targets fixed in advance. Limit: one forward pass with a hook on ``layer4`` plus
  ``torch.autograd.grad`` of the summed target logits with respect to its output (nothing else).
  Contenders: ``tb_viz_plugin.methods.grad_cam`` (maps upsampled to 224x224), captum
  ``LayerGradCam`` + ``LayerAttribution.interpolate(..., "bilinear")``, pytorch-grad-cam ``GradCAM``
  (object built once, outside the timing, as a user reuses it).
- **Occlusion** on resnet18 at 112x112, a 28-pixel window with stride 14 (49 positions per
  image). Limit: a plain no-grad forward of the same occluded images, prebuilt, in the same chunk
  sizes as ours. Contenders: ``occlusion_maps`` (targets given: the occlusion itself, the
  unoccluded images riding in the first chunk), ``tb_viz_plugin.methods.occlusion`` (plus the
  forward pass of the unoccluded batch that every ``attribute`` call makes for the predictions and
  probabilities), captum ``Occlusion`` on the softmax output (``perturbations_per_eval`` giving the
  same batch size; it also runs the unoccluded batch first).
- **Callback** (``--callback``): the demo trained for three epochs with ``AttributionMaps`` as
  ``demo_callbacks()`` configures it; the callback's time per epoch over the rest of the epoch.

Run: ``.venv/bin/python benchmarks/bench_attributions.py [--device cuda] [--threads 1] [--repeats 5] [--callback]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from typing import Callable, Dict, List, Sequence, Tuple

import torch
import torchvision
from captum.attr import LayerAttribution, LayerGradCam, Occlusion
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from tb_viz_plugin.methods import grad_cam, occlusion
from tb_viz_plugin.methods.attribution.perturbation import chunk_size, occlusion_maps, window_starts

Contenders = Dict[str, Callable[[], object]]


CLOCK: Callable[[], float] = time.perf_counter


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = CLOCK()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return CLOCK() - start


def run_rounds(contenders: Contenders, repeats: int, device: torch.device) -> Dict[str, List[float]]:
    """Seconds of every call per contender; one warm-up call each, then ``repeats`` interleaved rounds."""
    for fn in contenders.values():
        fn()
    times: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_index in range(repeats):
        for name in names[round_index % len(names):] + names[: round_index % len(names)]:  # rotate the order
            times[name].append(_timed(contenders[name], device))
    return times


def grad_cam_contenders(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, peer: GradCAM) -> Contenders:
    layer = model.layer4
    size = tuple(images.shape[-2:])

    def limit() -> None:
        kept: List[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda module, inputs, output: kept.append(output))
        try:
            with torch.enable_grad():
                logits = model(images)
            torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), kept[0])
        finally:
            handle.remove()

    def captum() -> None:
        maps = LayerGradCam(model, layer).attribute(images, target=targets, relu_attributions=True)
        LayerAttribution.interpolate(maps, size, "bilinear")

    peer_targets = [ClassifierOutputTarget(int(t)) for t in targets]
    return {
        "limit: forward + backward to layer4": limit,
        "tb-viz grad_cam": lambda: grad_cam(model, images, targets, layer="layer4"),
        "captum LayerGradCam": captum,
        "pytorch-grad-cam GradCAM": lambda: peer(images, peer_targets),
    }


def occlusion_contenders(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, window: int, stride: int) -> Tuple[Contenders, int]:
    n, _, size, _ = images.shape
    chunk = chunk_size(model, images, 1024.0)
    starts = list(window_starts(size, window, stride))
    occluded = []
    for image in images:
        for top in starts:
            for left in starts:
                copy = image.clone()
                copy[:, top : top + window, left : left + window] = 0.0
                occluded.append(copy)
    occluded_batch = torch.stack(occluded)
    softmax = torch.nn.Sequential(model, torch.nn.Softmax(dim=1))
    per_eval = max(1, chunk // n)

    def limit() -> None:
        with torch.no_grad():
            for start in range(0, len(occluded_batch), chunk):
                model(occluded_batch[start : start + chunk])

    def captum() -> None:
        with torch.no_grad():
            Occlusion(softmax).attribute(
                images, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=0.0,
                target=targets, perturbations_per_eval=per_eval,
            )  # fmt: skip

    contenders = {
        f"limit: plain forward of the {len(occluded_batch)} occluded images": limit,
        "tb-viz occlusion_maps (targets given)": lambda: occlusion_maps(model, images, targets, window=window, stride=stride),
        "tb-viz occlusion (with the prediction pass)": lambda: occlusion(model, images, targets, window=window, stride=stride),
        "captum Occlusion": captum,
    }
    return contenders, chunk


def print_table(title: str, results: Dict[str, List[float]]) -> None:
    limit = min(next(iter(results.values())))
    print(f"\n{title}\n")
    print("| contender | best ms | median ms | ratio to limit (best) |")
    print("|---|---:|---:|---:|")
    for name, seconds in results.items():
        print(f"| {name} | {min(seconds) * 1e3:.1f} | {statistics.median(seconds) * 1e3:.1f} | {min(seconds) / limit:.2f}x |")


def callback_share(epochs: int = 3) -> None:
    """Time AttributionMaps (demo settings) against the rest of a demo training epoch."""
    import pytorch_lightning as pl

    from tb_viz_plugin.callbacks import AttributionMaps
    from tb_viz_plugin.demo.train import demo_callbacks, train

    (demo,) = [c for c in demo_callbacks() if isinstance(c, AttributionMaps)]
    callback_seconds: List[float] = []
    epoch_seconds: List[float] = []

    class Timed(pl.Callback):
        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.start = CLOCK()

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            epoch_seconds.append(CLOCK() - self.start)

        def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            start = CLOCK()
            demo.on_validation_epoch_end(trainer, pl_module)
            if not trainer.sanity_checking:
                callback_seconds.append(CLOCK() - start)

        def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
            demo.setup(trainer, pl_module, stage)

    with tempfile.TemporaryDirectory() as logdir:
        train(logdir, epochs=epochs, callbacks=False, extra_callbacks=[Timed()])
    shares = [c / (e - c) for c, e in zip(callback_seconds, epoch_seconds)]
    print("\nAttributionMaps at the demo's settings (6 images; CAM, Grad-CAM, Grad-CAM++, guided Grad-CAM, "
          "saliency, occlusion 16/8)\n")  # fmt: skip
    print("| epoch | callback s | rest of the epoch s | share |")
    print("|---:|---:|---:|---:|")
    for index, (c, e, share) in enumerate(zip(callback_seconds, epoch_seconds, shares)):
        print(f"| {index} | {c:.2f} | {e - c:.1f} | {share:.1%} |")


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: keep torch's default)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default=None, help="default: cpu on a CPU, wall on a GPU")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--model", default="resnet18", help="a torchvision classifier with layer4 (resnet*)")
    parser.add_argument("--callback", action="store_true", help="also time the callback on the demo (trains 3 epochs)")
    args = parser.parse_args(argv or None)
    device = torch.device(args.device)
    global CLOCK
    clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    CLOCK = time.process_time if clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)().to(device).eval()
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, {args.model} random weights, {clock} clock, {args.repeats} interleaved rounds")  # fmt: skip
    generator = torch.Generator().manual_seed(1)
    with GradCAM(model, [model.layer4]) as peer:
        for batch in args.batches:
            images = torch.randn(batch, 3, 224, 224, generator=generator).to(device)
            targets = torch.randint(0, 1000, (batch,), generator=generator).to(device)
            results = run_rounds(grad_cam_contenders(model, images, targets, peer), args.repeats, device)
            print_table(f"Grad-CAM, {args.model} layer4, batch {batch}, 224x224", results)
    images = torch.randn(4, 3, 112, 112, generator=generator).to(device)
    targets = torch.randint(0, 1000, (4,), generator=generator).to(device)
    contenders, chunk = occlusion_contenders(model, images, targets, window=28, stride=14)
    results = run_rounds(contenders, args.repeats, device)
    print_table(f"Occlusion, {args.model}, batch 4, 112x112, window 28, stride 14 (chunks of {chunk} images)", results)
    if args.callback:
        callback_share()


if __name__ == "__main__":
    main()
