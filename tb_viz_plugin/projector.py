"""TensorBoard's Projector files of a run: ``projector_config.pbtxt``, tensors, metadata and sprites.

One entry per ``(tag, step)``, written here rather than by ``SummaryWriter.add_embedding`` (which
stores the features as text and the sprite again at every step): a float32 binary tensor and the
metadata table per step, the sprite once per run. Entries written by
earlier writers on the same log directory (a resumed run) are kept, and a repeated
``(tag, step)`` replaces its entry instead of being listed twice. Beside ``summary.py`` because it is on-disk format too: the tb-viz ``embeddings`` view
names the Projector's tensor of each step in its manifest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from google.protobuf import text_format
from tensorboard.compat import tf
from tensorboard.plugins.projector.projector_config_pb2 import EmbeddingInfo, ProjectorConfig

from tb_viz_plugin.methods.classes import class_name

CONFIG = "projector_config.pbtxt"
"""The Projector's config file in the log directory."""


Table = Tuple[Optional[List[str]], List[Any]]
"""``(header or None, rows)`` as ``SummaryWriter.add_embedding``'s ``metadata_header`` and ``metadata``."""


def metadata_table(
    ids: Sequence[int],
    labels: Optional[Sequence[int]] = None,
    predicted: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
) -> Table:
    """The Projector's metadata: ``(header, rows)``; a single column has no header (its rule).

    Example:
        >>> metadata_table([4, 9], labels=[0, 1], predicted=[0, 0], class_names=["cat", "dog"])
        (['index', 'label', 'predicted', 'correct'], [['4', 'cat', 'cat', 'yes'], ['9', 'dog', 'cat', 'no']])
        >>> metadata_table([4, 9])
        (None, ['4', '9'])
    """

    def name(value: int) -> str:
        return " ".join(class_name(int(value), class_names).split())  # no tabs or newlines inside a TSV cell

    columns: Dict[str, List[str]] = {"index": [str(i) for i in ids]}
    if labels is not None:
        columns["label"] = [name(v) for v in labels]
    if predicted is not None:
        columns["predicted"] = [name(v) for v in predicted]
    if labels is not None and predicted is not None:
        columns["correct"] = ["yes" if a == b else "no" for a, b in zip(labels, predicted)]
    if len(columns) == 1:
        return None, columns["index"]
    return list(columns), [list(row) for row in zip(*columns.values())]


def encode_tag(tag: str) -> str:
    """The folder name ``SummaryWriter.add_embedding`` gives a tag (``%``, ``/``, ``\\`` escaped).

    Example:
        >>> encode_tag("embeddings/fc.input")
        'embeddings%2ffc.input'
    """
    return tag.replace("%", "%25").replace("/", "%2f").replace("\\", "%5c")


def _read_config(path: str) -> ProjectorConfig:
    config = ProjectorConfig()
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path, "r") as f:
            text_format.Parse(f.read(), config)
    return config


def _binary_tensor(array: np.ndarray) -> bytes:
    """float32 bytes the Projector reads as a binary tensor file.

    It tries the file as UTF-8 text (TSV) first and reads it as binary only on a decoding error,
    so the first byte must never start UTF-8 text: the first value's lowest mantissa byte is moved
    to the nearest byte that cannot (``0x80``-``0xC1``, ``0xF5``-``0xFF``), a change of at most
    128 units in the last place of that one value (relative ``< 2**-16``).
    """
    data = bytearray(np.ascontiguousarray(array, dtype="<f4").tobytes())
    if data:
        first = data[0]
        if first < 0x80:
            data[0] = 0x80
        elif 0xC1 < first < 0xF5:
            data[0] = 0xC1 if first - 0xC1 <= 0xF5 - first else 0xF5
    return bytes(data)


def _metadata_text(table: Table) -> str:
    header, rows = table
    lines = [] if header is None else ["\t".join(header)]
    lines += ["\t".join(row) if isinstance(row, (list, tuple)) else str(row) for row in rows]
    return "\n".join(lines) + "\n"


def _write(path: str, data: bytes) -> None:
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def add_embedding(
    writer: Any,
    tag: str,
    step: int,
    features: Any,
    table: Table,
    sprite: Optional[Tuple[bytes, int]] = None,
) -> str:
    """Add one Projector entry ``<tag>:<step>``: a binary tensor, a metadata table and a sprite stored once.

    Written beside the run's event files: ``<step>/<tag>/tensors.bytes`` (float32) and
    ``metadata.tsv``; the sprite goes to
    ``<tag>/sprite-<hash>.png`` once and every entry with the same sprite refers to that file.
    ``projector_config.pbtxt`` is rewritten with the entries found on disk (earlier writers on the
    same directory: a resumed run) plus this one; a repeated ``(tag, step)`` replaces its entry.

    Args:
        writer: the run's ``SummaryWriter`` (its log directory is used).
        tag: the embedding's name.
        step: the global step.
        features: ``(N, D)`` (a CPU tensor or array).
        table: :func:`metadata_table`.
        sprite: ``(PNG bytes, thumbnail side)``: square thumbnails in rows of ``ceil(sqrt(N))``, or ``None``.

    Returns:
        The Projector's tensor name, ``"<tag>:<step as 5 digits>"``.
    """
    logdir = writer.get_logdir()
    array = np.asarray(features.numpy() if hasattr(features, "numpy") else features, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {array.shape}")
    folder = f"{step:05d}/{encode_tag(tag)}"
    if tf.io.gfile.isdir(os.path.join(logdir, folder)):  # a repeated step: start clean
        shutil.rmtree(os.path.join(logdir, folder), ignore_errors=True)
    tf.io.gfile.makedirs(os.path.join(logdir, folder))
    info = EmbeddingInfo(tensor_name=f"{tag}:{step:05d}", tensor_path=f"{folder}/tensors.bytes")
    info.tensor_shape.extend(array.shape)
    _write(os.path.join(logdir, info.tensor_path), _binary_tensor(array))
    info.metadata_path = f"{folder}/metadata.tsv"
    _write(os.path.join(logdir, info.metadata_path), _metadata_text(table).encode("utf-8"))
    if sprite is not None:
        png, side = sprite
        name = f"{encode_tag(tag)}/sprite-{hashlib.sha256(png).hexdigest()[:16]}.png"
        if not tf.io.gfile.exists(os.path.join(logdir, name)):
            tf.io.gfile.makedirs(os.path.join(logdir, encode_tag(tag)))
            _write(os.path.join(logdir, name), png)
        info.sprite.image_path = name
        info.sprite.single_image_dim.extend([side, side])
    config_path = os.path.join(logdir, CONFIG)
    config = _read_config(config_path)
    kept = [entry for entry in config.embeddings if entry.tensor_name != info.tensor_name]
    del config.embeddings[:]
    config.embeddings.extend(kept + [info])
    _write(config_path, text_format.MessageToString(config).encode("utf-8"))
    own = getattr(writer, "_projector_config", None)  # the writer's add_embedding rewrites the file from it
    if isinstance(own, ProjectorConfig):
        own_kept = [entry for entry in own.embeddings if entry.tensor_name != info.tensor_name]
        del own.embeddings[:]
        own.embeddings.extend(own_kept + [info])
    return info.tensor_name


def read_tensor(logdir: str, tensor_name: str) -> np.ndarray:
    """The features of the Projector entry ``tensor_name`` in ``logdir``, as the Projector reads them.

    Raises:
        KeyError: no such entry in ``projector_config.pbtxt``.
    """
    for info in _read_config(os.path.join(logdir, CONFIG)).embeddings:
        if info.tensor_name == tensor_name:
            path = os.path.join(logdir, info.tensor_path)
            if info.tensor_path.endswith(".bytes"):
                return np.fromfile(path, dtype="<f4").reshape(tuple(info.tensor_shape))
            return np.loadtxt(path, dtype=np.float32, ndmin=2)
    raise KeyError(f"no Projector entry {tensor_name!r} in {logdir}")
