"""TensorBoard's Projector files of a run: ``projector_config.pbtxt``, tensors, metadata and sprites.

Written through the run's own ``SummaryWriter.add_embedding`` (one entry per ``(tag, step)``),
with the fixes for its traps: entries written by earlier writers on the same log directory (a
resumed run) are kept, and a repeated ``(tag, step)`` replaces its entry instead of being listed
twice. Beside ``summary.py`` because it is on-disk format too: the tb-viz ``embeddings`` view
names the Projector's tensor of each step in its manifest.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple

from google.protobuf import text_format
from tensorboard.compat import tf
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

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


def add_embedding(writer: Any, tag: str, step: int, features: Any, table: Table, thumbs: Optional[Any] = None) -> str:
    """``writer.add_embedding`` plus the fixes for its traps; returns the Projector's tensor name.

    ``SummaryWriter.add_embedding`` rewrites ``projector_config.pbtxt`` from the writer's own list, which loses
    the entries of earlier writers on the same directory (a resumed run), and lists a repeated
    ``(tag, step)`` twice. Here the entries found on disk before the call are merged back in and
    every tensor name is listed once (the newest files win).

    Args:
        writer: the run's ``SummaryWriter``.
        tag: the embedding's name.
        step: the global step.
        features: ``(N, D)`` (a CPU tensor or array).
        table: :func:`metadata_table`.
        thumbs: ``(N, 3, s, s)`` in ``[0, 1]`` (square, so that the Projector's sprite is right) or ``None``.

    Returns:
        The Projector's tensor name, ``"<tag>:<step as 5 digits>"``.
    """
    logdir = writer.get_logdir()
    config_path = os.path.join(logdir, CONFIG)
    before = _read_config(config_path)
    folder = os.path.join(logdir, f"{step:05d}", encode_tag(tag))
    if os.path.isdir(folder):  # a repeated step (local disk): start clean instead of a printed warning
        shutil.rmtree(folder)
    header, rows = table
    writer.add_embedding(features, metadata=rows, metadata_header=header, label_img=thumbs, global_step=step, tag=tag)
    written = _read_config(config_path)
    merged: Dict[str, Any] = {}
    for info in list(before.embeddings) + list(written.embeddings):
        merged.pop(info.tensor_name, None)
        merged[info.tensor_name] = info
    if list(merged.values()) != list(written.embeddings):
        config = ProjectorConfig()
        config.CopyFrom(written)
        del config.embeddings[:]
        config.embeddings.extend(merged.values())
        with tf.io.gfile.GFile(config_path, "wb") as f:
            f.write(text_format.MessageToString(config).encode("utf-8"))
    return written.embeddings[-1].tensor_name
