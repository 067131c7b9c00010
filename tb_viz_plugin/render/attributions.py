"""The ``attributions`` view: per probe image, the image as RGB and each method's map as 8-bit grey levels.

Maps are stored as single-channel images normalised per map, and the raw range goes to the
manifest, so the viewer picks colormap, opacity and overlay without them being baked into the
PNGs. Per image (a row of the view) the true, predicted and explained class and their
probabilities go to the manifest too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from tb_viz_plugin.methods.attribution import METHODS, Attribution, Faithfulness
from tb_viz_plugin.methods.classes import class_name
from tb_viz_plugin.render import Panel, ToRGB, input_rgb, png_item, to_uint8

SIGNED_NORMALIZATION = "signed maps: value / max|value| per map, 0 -> 128 (mid grey), +max -> 255, -max -> 1"
UNSIGNED_NORMALIZATION = "unsigned maps: min-max per map to 0..255"
_TINY = 1e-12


def map_levels(values: torch.Tensor, signed: bool) -> Tuple[np.ndarray, List[float], List[float]]:
    """Maps ``(N, H, W)`` to ``uint8`` grey levels, normalised per map, and each map's raw range.

    Unsigned maps: min-max to ``0..255``. Signed maps: ``value / max|value|`` so that 0 is level
    128 and the sign survives (``level = 128 + 127 * value / max|value|``). Non-finite values
    count as 0.

    Returns:
        ``(levels (N, H, W) uint8, raw minima, raw maxima)``.

    Example:
        >>> levels, low, high = map_levels(torch.tensor([[[-1.0, 0.0, 2.0]]]), signed=True)
        >>> levels.tolist(), low, high
        ([[[64, 128, 255]]], [-1.0], [2.0])
    """
    v = torch.nan_to_num(values.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    flat = v.flatten(1)
    low, high = flat.amin(1), flat.amax(1)
    if signed:
        scale = torch.maximum(low.abs(), high.abs()).clamp_min(_TINY).view(-1, 1, 1)
        levels = (128 + 127 * v / scale).round().clamp(0, 255)
    else:
        levels = ((v - low.view(-1, 1, 1)) / (high - low).clamp_min(_TINY).view(-1, 1, 1) * 255).round()
    return levels.to(torch.uint8).cpu().numpy(), low.tolist(), high.tolist()


def _name(index: Optional[int], class_names: Optional[Sequence[str]]) -> Optional[str]:
    return None if index is None else class_name(index, class_names)


def rows(
    attribution: Attribution,
    labels: Optional[torch.Tensor],
    class_names: Optional[Sequence[str]],
    indices: Optional[Sequence[int]],
) -> List[Dict[str, Any]]:
    """The manifest's ``rows``: per image its index, true, predicted and explained class with names and probabilities."""
    probabilities = attribution.probabilities.detach().float().cpu()
    predicted, confidence = attribution.predicted.cpu().tolist(), attribution.confidence.float().cpu().tolist()
    targets = attribution.targets.cpu().tolist()
    truths = labels.cpu().tolist() if labels is not None else [None] * len(targets)
    out = []
    for row, (target, label) in enumerate(zip(targets, truths)):
        out.append(
            {
                "index": int(indices[row]) if indices is not None else row,
                "label": label,
                "label_name": _name(label, class_names),
                "predicted": int(predicted[row]),
                "predicted_name": _name(int(predicted[row]), class_names),
                "probability": float(confidence[row]),
                "target": int(target),
                "target_name": _name(int(target), class_names),
                "target_probability": float(probabilities[row, target]),
            }
        )
    return out


def _row_caption(row: Dict[str, Any]) -> str:
    truth = f"true: {row['label_name']} · " if row["label_name"] is not None else ""
    caption = f"#{row['index']} {truth}predicted: {row['predicted_name']} ({row['probability']:.2f})"
    if row["target"] != row["predicted"]:
        caption += f" · explained: {row['target_name']} ({row['target_probability']:.2f})"
    return caption


def panel(
    attribution: Attribution,
    images: torch.Tensor,
    *,
    labels: Optional[torch.Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    to_rgb: Optional[ToRGB] = None,
    indices: Optional[Sequence[int]] = None,
    faithfulness: Optional[Faithfulness] = None,
) -> Panel:
    """The step of an ``attributions`` tag: per image an RGB item then one grey item per map, and the meta.

    With ``faithfulness`` (``methods.faithfulness_scores`` of these maps) each map item carries its
    image's ``deletion`` and ``insertion`` AUC and the meta their means per column and those of a
    random map (``faithfulness``).

    Args:
        attribution: what ``methods.attribute`` returned (``Attribution.cpu()``).
        images: the ``(N, C, H, W)`` images the maps explain (model inputs, on the CPU).
        labels: ``(N,)`` true classes, shown in captions when given.
        class_names: names of the classes (index -> name); default ``"class 3"``.
        to_rgb: inputs -> RGB in ``[0, 1]``; default min-max per image.
        indices: dataset indices of the images, shown in captions; default 0..N-1.
        faithfulness: the maps' deletion / insertion scores, ``None`` for none.

    Raises:
        ValueError: ``images``, ``labels`` or ``indices`` do not match the maps' batch size, or
            ``faithfulness`` scores other maps.
    """
    n = len(attribution.targets)
    scores = _scores(attribution, faithfulness)
    for name, value in (("images", images), ("labels", labels), ("indices", indices)):
        if value is not None and len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries but the maps explain {n} images")
    described = rows(attribution, labels, class_names, indices)
    pictures = to_uint8(input_rgb(images, to_rgb))
    levels = [map_levels(entry.values, entry.signed) for entry in attribution.maps]
    items = []
    for r, row in enumerate(described):
        items.append(png_item(pictures[r], _row_caption(row), static=True, role="image", row=r))
        for c, (entry, (grey, low, high)) in enumerate(zip(attribution.maps, levels)):
            caption = f"{entry.label} · #{row['index']} · raw {low[r]:.3g} to {high[r]:.3g}"
            extra = {} if scores is None else {"deletion": scores[0][c][r], "insertion": scores[1][c][r]}
            items.append(
                png_item(grey[r], caption, role="map", row=r, column=c, min=low[r], max=high[r], signed=entry.signed, **extra)
            )
    columns = [
        {"method": m.method, "title": METHODS[m.method].title, "layer": m.layer, "label": m.label, "signed": m.signed}
        for m in attribution.maps
    ]
    meta = {
        "target": attribution.target,
        "layers": attribution.layers,
        "cam_head": None if attribution.cam_head is None else dataclasses.asdict(attribution.cam_head),
        "columns": columns,
        "rows": described,
        "class_names": None if class_names is None else [str(name) for name in class_names],
        "normalization": f"{UNSIGNED_NORMALIZATION}; {SIGNED_NORMALIZATION}",
    }
    if faithfulness is not None:
        meta["faithfulness"] = faithfulness_meta(faithfulness)
    methods = ", ".join(dict.fromkeys(METHODS[m.method].title for m in attribution.maps))
    return Panel(items, meta, f"{methods} for {n} images; target class: {attribution.target}")


def _scores(attribution: Attribution, faithfulness: Optional[Faithfulness]) -> Optional[Tuple[list, list]]:
    """Per column, per image: the deletion and the insertion scores (rounded), checked against the maps."""
    if faithfulness is None:
        return None
    columns = [(m.method, m.layer) for m in attribution.maps]
    if list(faithfulness.columns) != columns or faithfulness.deletion.shape != (len(columns), len(attribution.targets)):
        raise ValueError(f"the faithfulness scores are of {faithfulness.columns}, the maps of {columns}")
    return _rounded(faithfulness.deletion), _rounded(faithfulness.insertion)


def _rounded(values: torch.Tensor) -> Any:
    return [[round(float(v), 4) for v in row] for row in values.detach().float().cpu().tolist()]


def faithfulness_meta(faithfulness: Faithfulness) -> Dict[str, Any]:
    """The ``faithfulness`` entry of the meta: means over the images per column and of the random map.

    Example:
        >>> from tb_viz_plugin.methods.attribution import Faithfulness
        >>> f = Faithfulness([("saliency", None)], torch.tensor([[0.2, 0.4]]), torch.tensor([[0.6, 0.8]]),
        ...                  torch.tensor([0.5, 0.5]), torch.tensor([0.4, 0.4]), steps=16)
        >>> faithfulness_meta(f)["columns"], faithfulness_meta(f)["random"]
        ([{'deletion': 0.3, 'insertion': 0.7}], {'deletion': 0.5, 'insertion': 0.4})
    """
    mean = lambda values: round(float(values.detach().float().mean()), 4)  # noqa: E731
    return {
        "steps": faithfulness.steps,
        "deletion": "probability of the explained class as the most attributed pixels are set to 0; area, lower is better",
        "insertion": "probability as they are put into a blurred copy; area, higher is better",
        "columns": [{"deletion": mean(d), "insertion": mean(i)} for d, i in zip(faithfulness.deletion, faithfulness.insertion)],
        "random": {"deletion": mean(faithfulness.random_deletion), "insertion": mean(faithfulness.random_insertion)},
    }
