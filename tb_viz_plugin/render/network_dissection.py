"""The ``network_dissection`` view: per layer, the detectors, their concepts, and each unit's top images masked.

Each item is one unit's row of top images (highest maximum activation first), each image dimmed
outside the unit's thresholded, upsampled activation (NetDissect's report style). The step's
meta holds the whole unit table, the detector count per concept and the history of the counts.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from tb_viz_plugin.methods.dissection import Dissection
from tb_viz_plugin.render import BACKGROUND, GAP, Panel, ToRGB, input_rgb, png_item, tile_grid, to_uint8, upscale

DIM = 0.22
"""Brightness kept outside a unit's thresholded activation in its top images."""

MAX_UNITS = 32
"""Units with pictures per layer by default (the highest IoU first); the table lists every unit."""


def masked_rows(result: Dissection, units: Sequence[int], to_rgb: Optional[ToRGB] = None, min_tile: int = 48) -> List[Any]:
    """For each of ``units``, a ``uint8`` row of its top images, dimmed where its activation is below threshold.

    Raises:
        ValueError: a result without top images (``top_k=0``).
    """
    top = result.top
    if top is None:
        raise ValueError("the dissection holds no top images (computed with top_k=0)")
    if not units:
        return []
    index = torch.tensor(list(units), dtype=torch.long)
    values, images, maps = top.values[index], top.images[index], top.maps[index]
    count, k = values.shape
    rgb = input_rgb(images.flatten(0, 1), to_rgb)  # (count * k, h, w, 3)
    size = rgb.shape[1:3]
    heat = F.interpolate(maps.flatten(0, 1)[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    threshold = result.threshold[index].float().repeat_interleave(k)
    inside = heat >= threshold[:, None, None]
    tiles = torch.where(inside[..., None], rgb, rgb * DIM)
    tiles[~torch.isfinite(values.flatten())] = BACKGROUND
    tiles, _ = upscale(tiles, min_tile)
    return [to_uint8(tile_grid(tiles[i * k : (i + 1) * k], ncols=k, gap=GAP, row_gap=GAP)) for i in range(count)]


def dissection_history(result: Dissection, step: int, epoch: Optional[int] = None) -> Dict[str, Any]:
    """One point of the curves across epochs: ``{"step", "epoch", "detectors", "concepts"}``."""
    return {"step": int(step), "epoch": epoch, "detectors": len(result.detectors), "concepts": len(result.concepts_covered)}


def _number(value: float) -> Optional[float]:
    return round(float(value), 6) if math.isfinite(float(value)) else None


def panel(
    result: Dissection,
    step: int,
    *,
    to_rgb: Optional[ToRGB] = None,
    history: Optional[Sequence[Mapping[str, Any]]] = None,
    max_units: int = MAX_UNITS,
) -> Panel:
    """The step of ``network_dissection/<layer>``: one picture per unit shown, the unit table and the counts."""
    units = len(result.label)
    best = result.iou_table.argmax(dim=1).tolist() if result.names else [0] * units
    order = sorted(range(units), key=lambda u: (-float(result.iou[u]), u))
    shown = order[:max_units] if result.top is not None else []
    rows = masked_rows(result, shown, to_rgb)
    items = []
    for unit, picture in zip(shown, rows):
        label = result.label[unit]
        caption = f"unit {unit}: {label or 'no concept'} (IoU {float(result.iou[unit]):.3f})"
        ids = result.top.sample_ids[unit].tolist()
        items.append(png_item(picture, caption, unit=unit, label=label, iou=_number(result.iou[unit]),
                              sample_ids=[i if i >= 0 else None for i in ids]))  # fmt: skip
    item_of = {unit: i for i, unit in enumerate(shown)}
    table = [
        {
            "unit": unit,
            "concept": result.names[best[unit]] if result.names else None,
            "category": result.categories[best[unit]] if result.names else None,
            "label": result.label[unit],
            "iou": _number(result.iou[unit]),
            "threshold": float(result.threshold[unit]),  # a bin edge, exact in JSON
            "fraction": _number(result.fraction[unit]),
            "item": item_of.get(unit),
        }
        for unit in range(units)
    ]
    per_concept = {name: 0 for name in result.names}
    for label in result.label:
        if label is not None:
            per_concept[label] += 1
    concepts = [{"name": n, "category": c, "detectors": per_concept[n]} for n, c in zip(result.names, result.categories)]
    now = dissection_history(result, step)
    given = {int(p["step"]): dict(p) for p in (history or [])}
    points = list({**given, int(step): {**given.get(int(step), {}), **now, "epoch": given.get(int(step), now)["epoch"]}}.values())
    meta = {
        "layer": result.layer,
        "units_total": units,
        "detectors": now["detectors"],
        "concepts_covered": now["concepts"],
        "iou_threshold": result.iou_threshold,
        "quantile": result.quantile,
        "images": result.images,
        "top_k": 0 if result.top is None else int(result.top.values.shape[1]),
        "categories": list(dict.fromkeys(result.categories)),
        "concepts": concepts,
        "units": table,
        "history": sorted(points, key=lambda p: int(p["step"])),
    }
    description = (
        f"Network dissection of {result.layer}: {now['detectors']} of {units} units are detectors covering "
        f"{now['concepts']} concepts (IoU >= {result.iou_threshold:g})"
    )
    return Panel(items, meta, description)
