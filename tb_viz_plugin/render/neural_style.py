"""The ``neural_style`` view: per probe image, content | style | texture of the style | the stylized result."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from tb_viz_plugin.methods.optvis.style import Stylized, Texture
from tb_viz_plugin.render import Panel, png_item
from tb_viz_plugin.render.feature_inversion import image_rows, row_labels


def panel(stylized: Stylized, texture: Optional[Texture] = None, captions: Optional[Sequence[str]] = None) -> Panel:
    """The step of ``neural_style/<content layer>``: one item per content image, its sources next to the results.

    Args:
        stylized: what ``methods.style_transfer`` returned.
        texture: what ``methods.texture`` returned for the same style images (``None`` = no texture column).
        captions: one per content image (e.g. ``"#12 circle ← #30 star"``); default ``"image <i>"``.

    Raises:
        ValueError: ``captions`` or textures of another length than the images.

    Example:
        >>> n = torch.ones(1)
        >>> result = Stylized("c", ["s"], *torch.rand(3, 1, 3, 8, 8), n, n / 4, n, n, 4.0, 10, 0.5)
        >>> item = panel(result, captions=["#7"]).items[0]
        >>> item.caption, item.extra["width"]
        ('#7: style loss 0.25 (content image 1) · content loss 1 (style image 1)', 32)
    """
    labels = row_labels(captions, len(stylized.contents))
    columns = [stylized.contents, stylized.styles]
    names = ["content", "style"]
    if texture is not None:
        if texture.textures.shape != stylized.styles.shape:
            raise ValueError(
                f"textures {tuple(texture.textures.shape)} do not pair with styles {tuple(stylized.styles.shape)}"
            )
        columns.append(texture.textures)
        names.append("texture of the style")
    columns.append(stylized.results)
    names.append("result")
    items = []
    for i, array in enumerate(image_rows(columns)):
        values = {
            "style_loss": stylized.style_loss[i].item(),
            "style_loss_of_content": stylized.style_loss_of_content[i].item(),
            "content_loss": stylized.content_loss[i].item(),
            "content_loss_of_style": stylized.content_loss_of_style[i].item(),
        }
        if texture is not None:
            values.update(texture_loss=texture.loss_end[i].item(), texture_loss_start=texture.loss_start[i].item())
        caption = (f"{labels[i]}: style loss {values['style_loss']:.2g} "
                   f"(content image {values['style_loss_of_content']:.2g}) · content loss "
                   f"{values['content_loss']:.2g} (style image {values['content_loss_of_style']:.2g})")  # fmt: skip
        items.append(png_item(array, caption, **values))
    meta = {
        "content_layer": stylized.content_layer,
        "style_layers": list(stylized.style_layers),
        "style_weight": stylized.style_weight,
        "steps": stylized.steps,
        "columns": names,
        "layout": " | ".join(names),
        "seconds": round(stylized.seconds + (texture.seconds if texture is not None else 0.0), 3),
    }
    description = (f"Neural style: content at {stylized.content_layer}, style (Gram matrices) at "
                   f"{', '.join(stylized.style_layers)}; {' | '.join(names)}")  # fmt: skip
    return Panel(items, meta, description)
