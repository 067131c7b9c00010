"""Torch-free tb-viz test data: tiny PNGs and event files written without a SummaryWriter.

Used by the plugin and browser tests of the tab's features (curves, live runs, compare, filters,
hostile requests) and by ``benchmarks/bench_tab.py``. The views' own tests write their data with
the real ``log_*`` functions instead (``tests/helpers.py``).
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple

from tensorboard.compat.proto import event_pb2, summary_pb2, types_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from tb_viz_plugin import summary


def tiny_png(width: int, height: int, rgb: Tuple[int, int, int] = (200, 60, 20), stripe: int = 0) -> bytes:
    """An RGB PNG of ``width`` x ``height`` pixels in one colour (every ``stripe``-th column dark)."""
    rows = []
    for _ in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes((20, 20, 20)) if stripe and x % stripe == 0 else bytes(rgb)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


class RunWriter:
    """Appends events to one run directory (``logdir/run``) and flushes after every step.

    Example:
        >>> import tempfile
        >>> with RunWriter(tempfile.mkdtemp(), "run_a") as w:
        ...     w.tb_viz("filters/conv1", "filters", 0, [summary.Item(tiny_png(8, 8))])
        ...     w.scalar("loss", 0, 1.5)
    """

    def __init__(self, logdir: str, run: str) -> None:
        path = os.path.join(logdir, run)
        os.makedirs(path, exist_ok=True)
        self._writer = EventFileWriter(path)

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def summary(self, value: summary_pb2.Summary, step: int, wall_time: Optional[float] = None) -> None:
        """Writes one ``Summary`` at ``step`` and flushes (a live run's reader sees it at once)."""
        self._writer.add_event(event_pb2.Event(step=step, wall_time=wall_time or time.time(), summary=value))
        self._writer.flush()

    def tb_viz(self, tag: str, kind: str, step: int, items: Sequence[summary.Item],
               meta: Optional[Mapping[str, Any]] = None, description: str = "") -> None:
        """One step of a tb-viz tag, through ``summary.build_summary``."""
        self.summary(summary.build_summary(tag, kind, items, meta or {}, description), step)

    def scalar(self, tag: str, step: int, value: float) -> None:
        """One scalar point (what ``SummaryWriter.add_scalar`` writes)."""
        self.summary(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]), step)

    def raw(self, tag: str, step: int, plugin_name: str, content: bytes, tensor: Any,
            data_class: int = summary_pb2.DATA_CLASS_BLOB_SEQUENCE) -> None:
        """Any ``TensorProto`` under any plugin name (other plugins' data, malformed tb-viz tags)."""
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name, content=content),
            data_class=data_class,
        )
        value = summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)
        self.summary(summary_pb2.Summary(value=[value]), step)

    def image_plugin(self, tag: str, step: int, png: bytes) -> None:
        """An image of TensorBoard's own images plugin (blobs: width, height, PNG)."""
        blobs = [b"8", b"8", png]
        self.raw(tag, step, "images", b"", tensor_util.make_tensor_proto(blobs, dtype=types_pb2.DT_STRING, shape=[3]))

    def float_tb_viz(self, tag: str, step: int) -> None:
        """A tag claiming to be tb-viz (valid plugin content) whose tensor holds floats, not blobs."""
        content = summary.create_plugin_content("filters")
        self.raw(tag, step, summary.PLUGIN_NAME, content,
                 tensor_util.make_tensor_proto([1.5, 2.5, 3.5], dtype=types_pb2.DT_FLOAT, shape=[3]))

    def close(self) -> None:
        self._writer.close()


def filter_items(step: int, count: int = 1, size: int = 8, caption: str = "") -> list:
    """``count`` tiny PNG items whose colour changes with ``step`` (so steps look different)."""
    shade = (40 + 23 * step) % 256
    return [
        summary.Item(tiny_png(size, size, (shade, 255 - shade, 30 * i % 256), stripe=i + 2),
                     caption=caption or f"item {i} at step {step}", extra={"width": size, "height": size})
        for i in range(count)
    ]


def write_run(logdir: str, run: str, steps: Iterable[int], tags: Sequence[str] = ("filters/conv1",),
              kind: str = "filters", items: int = 1, size: int = 8,
              scalars: Mapping[str, Any] = None, scalar_every: int = 1) -> None:
    """A run with tb-viz ``tags`` at ``steps`` and scalar curves at every ``scalar_every``-th step.

    Args:
        scalars: scalar tag -> function of the step (default: ``loss`` = 1/(1+step/10) and
            ``val_acc`` rising from 0.3).
    """
    steps = list(steps)
    if scalars is None:
        scalars = {"loss": lambda s: 1.0 / (1.0 + s / 10.0), "val_acc": lambda s: 0.3 + 0.6 * s / (s + 20.0)}
    with RunWriter(logdir, run) as writer:
        last = max(steps) if steps else 0
        for step in range(0, last + 1, scalar_every):
            for name, fn in scalars.items():
                writer.scalar(name, step, fn(step))
        for step in steps:
            for tag in tags:
                writer.tb_viz(tag, kind, step, filter_items(step, items, size), {"layer": tag.split("/")[-1]},
                              description=f"synthetic {tag}")
