"""The on-disk format of tb-viz summaries, shared by the writers and the TensorBoard plugin.

Torch-free on purpose: the TensorBoard side imports this module, and TensorBoard start-up must
stay fast. See ``FORMAT.md`` beside this file for the format written down.

One tag = one visualization, named ``<kind>/<what>`` (e.g. ``filters/features.0``). Every event of a tag is a blob
sequence: blob 0 is a JSON *manifest* (step-level metadata and one entry per item), blobs 1..n
are the encoded images of the n items. The tag's plugin content (stored with the tag's first
event) is a small JSON object with the format ``version`` and the tag's ``kind``.
"""

from __future__ import annotations

import json
import operator
import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple

from tensorboard.compat.proto import summary_pb2, types_pb2
from tensorboard.util import tensor_util

from tb_viz_plugin import fast_crc

PLUGIN_NAME = "tb_viz"
"""TensorBoard plugin name: the tab, the routes and ``--samples_per_plugin tb_viz=N``."""

PROTO_VERSION = 1
"""Format version written into every tag's plugin content and every manifest."""

KINDS = (
    "filters",
    "activation_maps",
    "top_activations",
    "attributions",
    "embeddings",
    "activation_maximization",
    "deepdream",
    "network_dissection",
    "feature_inversion",
    "neural_style",
)
"""Kinds known to this version. Readers show unknown kinds generically (images + captions)."""

BLOBS_KIND = "blobs"
"""Kind of the tags ``blobs/<tag>`` that hold a tag's *static* images once (see :class:`Item`); never listed as views."""

_KIND_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_DEFAULT_MIME = "image/png"


class FormatError(ValueError):
    """Raised when stored bytes are not a valid tb-viz manifest or plugin content."""


@dataclass(frozen=True)
class Item:
    """One image of a step and its metadata (``caption`` and any JSON-serialisable extras).

    A ``static`` item is expected to hold the same bytes at every step (a sprite of a fixed sample
    set, a probe image): the writer stores each distinct image once, under ``blobs/<tag>``, and the
    step's manifest entry says where (``"stored": {"tag", "step", "index"}``) instead of repeating it.
    """

    data: bytes
    caption: str = ""
    mime: str = _DEFAULT_MIME
    extra: Mapping[str, Any] = field(default_factory=dict)
    static: bool = False


@dataclass(frozen=True)
class PluginContent:
    """What a tag's plugin content says: the format version, the kind and a description."""

    version: int
    kind: str
    description: str = ""


def create_plugin_content(kind: str, description: str = "") -> bytes:
    """Serialise a tag's plugin content.

    Raises:
        ValueError: if ``kind`` is not a lower-case identifier.
    """
    if not isinstance(kind, str) or not _KIND_RE.match(kind):
        raise ValueError(f"kind must be a lower-case identifier such as 'filters', got {kind!r}")
    return json.dumps(
        {"version": PROTO_VERSION, "kind": kind, "description": description}, sort_keys=True
    ).encode("utf-8")


def parse_plugin_content(content: bytes) -> Optional[PluginContent]:
    """Parse a tag's plugin content; ``None`` for an unknown format version (callers warn).

    Raises:
        FormatError: if the bytes are not a tb-viz plugin content at all.
    """
    try:
        obj = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise FormatError(f"plugin content is not JSON: {err}") from err
    if not isinstance(obj, dict) or not isinstance(obj.get("kind"), str):
        raise FormatError(f"plugin content lacks a kind: {obj!r}")
    version = obj.get("version")
    if version != PROTO_VERSION:
        return None
    return PluginContent(version=version, kind=obj["kind"], description=str(obj.get("description", "")))


def blobs_tag(tag: str) -> str:
    """The tag that holds ``tag``'s static images once.

    Example:
        >>> blobs_tag("embeddings/fc.input")
        'blobs/embeddings/fc.input'
    """
    return f"{BLOBS_KIND}/{tag}"


def stored_reference(entry: Mapping[str, Any]) -> Optional[Tuple[str, int, int]]:
    """``(tag, step, index)`` where a manifest entry's image is stored, when elsewhere (a static item), else ``None``.

    Example:
        >>> stored_reference({"stored": {"tag": "blobs/embeddings/fc.input", "step": 2, "index": 1}})
        ('blobs/embeddings/fc.input', 2, 1)
        >>> stored_reference({"caption": "x"}) is None
        True
    """
    stored = entry.get("stored")
    if not isinstance(stored, dict):
        return None
    tag, step, index = stored.get("tag"), stored.get("step"), stored.get("index")
    if not isinstance(tag, str) or not tag.startswith(BLOBS_KIND + "/"):
        return None
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (step, index)) or index < 1:
        return None
    return tag, step, index


def create_manifest(items: Sequence[Item], meta: Optional[Mapping[str, Any]] = None) -> bytes:
    """Serialise a step's manifest: step-level ``meta`` plus one entry per item (not its bytes)."""
    entries = []
    for item in items:
        entry = dict(item.extra)
        entry["caption"] = item.caption
        entry["mime"] = item.mime
        entries.append(entry)
    return json.dumps(
        {"version": PROTO_VERSION, "meta": dict(meta or {}), "items": entries},
        sort_keys=True,
        allow_nan=False,
    ).encode("utf-8")


def parse_manifest(data: bytes) -> dict:
    """Parse a step's manifest into ``{"meta": {...}, "items": [{...}, ...]}``.

    Raises:
        FormatError: if the bytes are not a manifest of this format version.
    """
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise FormatError(f"manifest is not JSON: {err}") from err
    if not isinstance(obj, dict) or obj.get("version") != PROTO_VERSION:
        raise FormatError(f"manifest has unknown format version {obj.get('version') if isinstance(obj, dict) else obj!r}")
    items = obj.get("items")
    meta = obj.get("meta", {})
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items) or not isinstance(meta, dict):
        raise FormatError("manifest must hold a dict 'meta' and a list of dicts 'items'")
    return {"meta": meta, "items": items}


def build_summary(
    tag: str,
    kind: str,
    items: Sequence[Item],
    meta: Optional[Mapping[str, Any]] = None,
    description: str = "",
) -> summary_pb2.Summary:
    """Build the ``Summary`` proto of one step of one tag (no TensorFlow needed).

    Raises:
        ValueError: for an empty tag, an invalid kind, or items whose data are not bytes.
    """
    if not tag:
        raise ValueError("tag must be a non-empty string")
    for item in items:
        if not isinstance(item.data, (bytes, bytearray)):
            raise ValueError(f"item data must be encoded image bytes, got {type(item.data).__name__}")
    blobs = [create_manifest(items, meta)] + [bytes(item.data) for item in items]
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=create_plugin_content(kind, description)
        ),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
        summary_description=description,
    )
    tensor = tensor_util.make_tensor_proto(blobs, dtype=types_pb2.DT_STRING, shape=[len(blobs)])
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)])


def write_summary(writer: Any, summary: summary_pb2.Summary, step: int, walltime: Optional[float] = None) -> None:
    """Write ``summary`` at ``step`` through a ``torch.utils.tensorboard.SummaryWriter``.

    Goes through the writer's own file writer, so no second writer ever touches the log
    directory (TensorBoard would see two event files and the Projector config would be rewritten).

    Raises:
        TypeError: if ``writer`` is not a SummaryWriter-like object.
    """
    get_file_writer = getattr(writer, "_get_file_writer", None)
    if get_file_writer is None:
        raise TypeError(
            f"expected a torch.utils.tensorboard.SummaryWriter, got {type(writer).__name__}"
        )
    try:
        index = operator.index(step)
    except TypeError:
        index = -1
    if index < 0 or isinstance(step, bool):
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    fast_crc.install()  # the event file writer's checksums in C, not at 9 MB/s holding the GIL
    get_file_writer().add_summary(summary, index, time.time() if walltime is None else walltime)
