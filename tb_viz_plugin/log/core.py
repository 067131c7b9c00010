"""Writing one step of a tb-viz tag through a ``SummaryWriter``: what every ``log_*`` function ends with."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from tb_viz_plugin import summary


def log_items(
    writer: Any,
    tag: str,
    kind: str,
    items: Sequence[summary.Item],
    step: int,
    *,
    meta: Optional[Mapping[str, Any]] = None,
    description: str = "",
) -> None:
    """Write one step of a tb-viz tag (a manifest plus encoded images) through ``writer``."""
    summary.write_summary(writer, summary.build_summary(tag, kind, items, meta, description), step)
