"""Writing one step of a tb-viz tag through a ``SummaryWriter``, and how tags are named.

A tag is ``<kind>/<what>``: the view's kind, then everything that tells two instances of a view
apart (the layer, the target, the group...), then, when given, the user's ``name``. Every
``write_*`` function ends in :func:`write_panel`.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tb_viz_plugin import summary
from tb_viz_plugin.render import Panel


COMPILED = "_orig_mod."
"""What ``torch.compile`` puts into the module names of a compiled submodule."""


def strip_compiled(name: str) -> str:
    """A module name without ``torch.compile``'s ``_orig_mod.`` parts (tags keep the original names).

    Example:
        >>> strip_compiled("net._orig_mod.layer4"), strip_compiled("_orig_mod.conv1")
        ('net.layer4', 'conv1')
    """
    return name.replace(COMPILED, "")


def make_tag(kind: str, *what: str, name: Optional[str] = None) -> str:
    """``<kind>/<what...>[/<name>]``: the tag of one view of one instance.

    Raises:
        ValueError: an empty part, or a ``name`` that is not a non-empty string.

    Example:
        >>> make_tag("attributions", "layer4", "predicted"), make_tag("filters", "conv1", name="frozen")
        ('attributions/layer4/predicted', 'filters/conv1/frozen')
    """
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise ValueError(f"name must be None or a non-empty string, got {name!r}")
    what = tuple(strip_compiled(part) if isinstance(part, str) else part for part in what)
    parts = [kind, *what, *([name] if name is not None else [])]
    if not all(isinstance(part, str) and part for part in parts):
        raise ValueError(f"every part of a tag must be a non-empty string, got {parts!r}")
    return "/".join(parts)


def write_items(
    writer: Any,
    tag: str,
    kind: str,
    items: Sequence[summary.Item],
    step: int,
    *,
    meta: Optional[Mapping[str, Any]] = None,
    description: str = "",
) -> None:
    """Write one step of a tb-viz tag (a manifest plus encoded images) through ``writer``.

    Static items (``Item.static``) are stored once per writer under ``blobs/<tag>`` and referred to.

    Raises:
        ValueError: an invalid tag, kind or step, or items whose data are not bytes.
        TypeError: ``writer`` is not a ``SummaryWriter``.
    """
    items = _store_static(writer, tag, items, step)
    summary.write_summary(writer, summary.build_summary(tag, kind, items, meta, description), step)


_STORED: "weakref.WeakKeyDictionary[Any, Dict[str, Dict[str, Tuple[int, int]]]]" = weakref.WeakKeyDictionary()
_STORED_LOCK = threading.Lock()


def _store_static(writer: Any, tag: str, items: Sequence[summary.Item], step: int) -> List[summary.Item]:
    """``items`` with every static one replaced by a reference to its bytes, stored once under ``blobs/<tag>``.

    A static image not stored yet by this writer is written now, in one ``blobs/<tag>`` event at
    ``step`` holding every such image of the call; later steps with the same bytes only refer to it.
    """
    if not any(item.static for item in items):
        return list(items)
    store = summary.blobs_tag(tag)
    with _STORED_LOCK:
        known = _STORED.setdefault(writer, {}).setdefault(store, {})
        new: List[summary.Item] = []
        result = []
        for item in items:
            if not item.static:
                result.append(item)
                continue
            digest = hashlib.sha256(bytes(item.data)).hexdigest()
            if digest not in known:
                new.append(summary.Item(data=item.data, mime=item.mime))
                known[digest] = (step, len(new))
            stored_step, index = known[digest]
            extra = {**item.extra, "stored": {"tag": store, "step": stored_step, "index": index}}
            result.append(summary.Item(data=b"", caption=item.caption, mime=item.mime, extra=extra))
        if new:
            summary.write_summary(writer, summary.build_summary(store, summary.BLOBS_KIND, new), step)
    return result


def write_panel(writer: Any, tag: str, kind: str, panel: Panel, step: int) -> str:
    """Write a rendered :class:`~tb_viz_plugin.render.Panel` as one step of ``tag``; returns the tag."""
    write_items(writer, tag, kind, panel.items, step, meta=panel.meta, description=panel.description)
    return tag
