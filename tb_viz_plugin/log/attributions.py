"""``log_attributions``: attribution maps of probe images, for plain PyTorch (``AttributionMaps`` calls it too)."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import torch

from tb_viz_plugin import render
from tb_viz_plugin.log.core import log_items
from tb_viz_plugin.methods.attribution import METHODS, Attribution
from tb_viz_plugin.render import heatmaps
from tb_viz_plugin.render.activations import ToRGB, input_rgb

KIND = "attributions"


def _class_name(index: Optional[int], class_names: Optional[Sequence[str]]) -> Optional[str]:
    if index is None:
        return None
    return str(class_names[index]) if class_names is not None and 0 <= index < len(class_names) else f"class {index}"


def _rows(
    attribution: Attribution,
    labels: Optional[torch.Tensor],
    class_names: Optional[Sequence[str]],
    indices: Optional[Sequence[int]],
) -> List[Dict[str, Any]]:
    probabilities = attribution.probabilities.detach().float().cpu()
    confidence, predicted = probabilities.max(1)
    targets = attribution.targets.cpu().tolist()
    label_list = labels.cpu().tolist() if labels is not None else [None] * len(targets)
    rows = []
    for row, (target, label) in enumerate(zip(targets, label_list)):
        rows.append(
            {
                "index": int(indices[row]) if indices is not None else row,
                "label": label,
                "label_name": _class_name(label, class_names),
                "predicted": int(predicted[row]),
                "predicted_name": _class_name(int(predicted[row]), class_names),
                "probability": float(confidence[row]),
                "target": int(target),
                "target_name": _class_name(int(target), class_names),
                "target_probability": float(probabilities[row, target]),
            }
        )
    return rows


def _row_caption(row: Dict[str, Any]) -> str:
    truth = f"true: {row['label_name']} · " if row["label_name"] is not None else ""
    caption = f"#{row['index']} {truth}predicted: {row['predicted_name']} ({row['probability']:.2f})"
    if row["target"] != row["predicted"]:
        caption += f" · explained: {row['target_name']} ({row['target_probability']:.2f})"
    return caption


def log_attributions(
    writer: Any,
    attribution: Attribution,
    images: torch.Tensor,
    step: int,
    *,
    labels: Optional[torch.Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    to_rgb: Optional[ToRGB] = None,
    indices: Optional[Sequence[int]] = None,
    tag: Optional[str] = None,
) -> str:
    """Log the maps of :func:`~tb_viz_plugin.methods.attribute` and their images (kind ``attributions``).

    One step holds, per image (a row of the view), the image itself as RGB and one single-channel
    PNG per map (a column per method and layer), normalised per map; the raw range of every map,
    whether it is signed, and per image the true, predicted and explained class with their
    probabilities go to the manifest. Colormap, opacity and overlay are chosen in the browser.

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter``.
        attribution: what ``attribute(model, images, methods, ...)`` returned for ``images``.
        images: the ``(N, C, H, W)`` images the maps explain.
        step: the global step to log at.
        labels: ``(N,)`` true classes, shown in captions when given.
        class_names: names of the classes (index -> name); default ``"class 3"``.
        to_rgb: inputs ``(N, C, H, W)`` -> RGB ``(N, 3, H, W)`` in ``[0, 1]`` for display (e.g.
            un-normalising); default min-max per image.
        indices: dataset indices of the images, shown in captions; default 0..N-1.
        tag: default ``attributions/<target>`` (e.g. ``attributions/predicted``).

    Returns:
        The tag written.

    Raises:
        ValueError: ``images``, ``labels`` or ``indices`` do not match the maps' batch size.

    Example:
        >>> from tb_viz_plugin.methods import attribute  # doctest: +SKIP
        >>> result = attribute(model, images, ["grad_cam", "occlusion"])  # images: (8, 3, 64, 64)  # doctest: +SKIP
        >>> log_attributions(writer, result, images, step, labels=labels, class_names=CLASSES)  # doctest: +SKIP
        'attributions/predicted'
    """
    n = len(attribution.targets)
    for name, value in (("images", images), ("labels", labels), ("indices", indices)):
        if value is not None and len(value) != n:
            raise ValueError(f"{name} has {len(value)} entries but the maps explain {n} images")
    tag = tag or f"{KIND}/{attribution.target}"
    rows = _rows(attribution, labels, class_names, indices)
    pictures = render.to_uint8(input_rgb(images, to_rgb))
    levels = [heatmaps.map_levels(entry.values, entry.signed) for entry in attribution.maps]
    items = []
    for r, row in enumerate(rows):
        items.append(render.png_item(pictures[r], _row_caption(row), role="image", row=r))
        for c, (entry, (grey, low, high)) in enumerate(zip(attribution.maps, levels)):
            caption = f"{entry.label} · #{row['index']} · raw {low[r]:.3g} to {high[r]:.3g}"
            items.append(
                render.png_item(
                    grey[r], caption, role="map", row=r, column=c, min=low[r], max=high[r], signed=entry.signed
                )
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
        "rows": rows,
        "class_names": None if class_names is None else [str(name) for name in class_names],
        "normalization": f"{heatmaps.UNSIGNED_NORMALIZATION}; {heatmaps.SIGNED_NORMALIZATION}",
    }
    methods = ", ".join(dict.fromkeys(METHODS[m.method].title for m in attribution.maps))
    description = f"{methods} for {n} images; target class: {attribution.target}"
    log_items(writer, tag, KIND, items, step, meta=meta, description=description)
    return tag
