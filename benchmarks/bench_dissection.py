"""Network dissection benchmark: what streaming the counts adds to a validation epoch, and its memory.

One validation pass over the demo's 1,200 validation images (64x64, batches of 256, the demo CNN)
with :class:`~tb_viz_plugin.methods.DissectionTracker` on the demo's layers, the concepts the demo
uses (11 colours + 6 shape masks), at several mask sizes, counting all images or ``num_samples``
evenly spaced ones (as ``NetworkDissection(num_samples=)`` does). On CPU the times are the
process's CPU time (1 thread: the cost itself, stable on a shared machine). Columns: the forward passes alone
(no hooks), the time spent in the dissection (hooks, concept masks, counting) as a share of the
forward passes of the same epoch -- a ratio within one run, so it holds on a shared machine --, the
epoch-end read-out and rendering, and the memory the counts keep (independent of the number of
images) plus the top images.

Run: ``.venv/bin/python benchmarks/bench_dissection.py [--threads 1] [--rounds 3] [--device cpu]``
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader

from tb_viz_plugin.demo.data import denormalize, make_splits
from tb_viz_plugin.demo.model import ShapesModule
from tb_viz_plugin.demo.concepts import ShapeMasks
from tb_viz_plugin.methods import ColorConcepts, DissectionTracker
from tb_viz_plugin.methods.concepts import stack_masks
from tb_viz_plugin.methods.dissection import sample_stride
from tb_viz_plugin.render import network_dissection as draw


def _now(device: torch.device) -> float:
    """Wall time on a GPU; on CPU the process's CPU time (stable on a shared machine, the cost itself)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def run(layers: List[str], size: int, rounds: int, device: torch.device, num_samples: Optional[int] = None) -> Dict[str, float]:
    module = ShapesModule().to(device).eval()
    _, val_set = make_splits(0, 0, 1200)
    loader = DataLoader(val_set, batch_size=256)
    batches = [(x.to(device), y) for x, y in loader]
    colors = ColorConcepts(to_rgb=denormalize, size=(size, size))
    shapes = ShapeMasks(val_set, size=size)
    stride = sample_stride(len(val_set), num_samples)  # NetworkDissection(num_samples=): ids 0, s, 2s, ...
    best: Dict[str, float] = {}
    for _ in range(rounds):
        forward = dissection = 0.0
        with torch.no_grad():
            for x, _y in batches:  # forward alone
                start = _now(device)
                module(x)
                forward += _now(device) - start
            tracker = DissectionTracker(module, layers, colors.names + shapes.names, colors.categories + shapes.categories, top_k=4)
            seen = 0
            for x, _y in batches:
                module(x)  # the hooks stash (not timed: a detach per layer)
                start = _now(device)
                ids = torch.arange(seen, seen + len(x), device=device)
                keep = (ids % stride == 0).nonzero()[:, 0]
                tracker.select(keep)
                x, ids = x[keep], ids[keep]
                masks = stack_masks([colors(x), shapes((x, _y), ids).to(device)])
                tracker.update(masks, x, ids)
                dissection += _now(device) - start
                seen += len(_y)
            tracker.remove()
            start = _now(device)
            results = {name: r.cpu() for name, r in tracker.results().items()}
            panels = [draw.panel(r, 0, to_rgb=denormalize) for r in results.values()]
            readout = _now(device) - start
        memory = sum(c.memory_bytes() for c in tracker.counts.values())
        top = sum(sum(getattr(t, f).numel() * getattr(t, f).element_size() for f in t.FIELDS) for t in tracker.top.values() if t is not None)
        row = {"forward_s": forward, "dissection_s": dissection, "readout_s": readout, "counts_MiB": memory / 2**20,
               "top_MiB": top / 2**20, "detectors": sum(p.meta["detectors"] for p in panels)}  # fmt: skip
        if not best or row["dissection_s"] / row["forward_s"] < best["dissection_s"] / best["forward_s"]:
            best = row
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cases: List[Tuple[List[str], int, Optional[int]]] = [
        (["model.features"], 16, None), (["model.features"], 16, 300), (["model.features"], 16, 100),
        (["model.features"], 32, None), (["model.features"], 32, 100), (["model.features"], 64, 100),
        (["model.features.10", "model.features"], 32, 100),
    ]  # fmt: skip
    print("| layers | mask size | images counted | forward (s) | dissection (s) | added | read-out + render (s) | counts (MiB) | top images (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for layers, size, num_samples in cases:
        r = run(layers, size, args.rounds, device, num_samples)
        counted = "all 1,200" if num_samples is None else f"{num_samples} (`num_samples`)"
        print(f"| {', '.join(layers)} | {size}x{size} | {counted} | {r['forward_s']:.2f} | {r['dissection_s']:.2f} | "
              f"{100 * r['dissection_s'] / r['forward_s']:.0f}% | {r['readout_s']:.2f} | {r['counts_MiB']:.1f} | {r['top_MiB']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
