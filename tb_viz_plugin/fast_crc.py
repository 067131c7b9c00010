"""A C CRC-32C for TensorBoard's event-file writer: the same checksums, about 1,000x faster.

TensorBoard's record writer (``tensorboard.summary.writer.record_writer``, which
``torch.utils.tensorboard.SummaryWriter`` writes through) checksums every record with a pure-Python
CRC-32C: about 9 MB/s, holding the GIL, on the writer's own thread. A 4 MB log of images then
takes ~0.45 s of interpreter time from the training thread (measured: the first hooks of the next
validation epoch waited ~50 ms on the GIL after a top-k log). :func:`install` points the record
writer at ``google-crc32c``'s C implementation (a dependency of this package) once the two agree on a
sample; without the C implementation nothing changes.

TensorBoard's Python event reader (``--load_fast=false``, or without its Rust data server)
verifies every record with the same pure-Python CRC: a 20 MB event file of images took 2.2 s to
read, 0.018 s with :func:`install_reader` (which the plugin calls when TensorBoard loads it).
Torch-free: the TensorBoard side imports it.
"""

from __future__ import annotations

import os
import threading

_MASK_DELTA = 0xA282EAD8
_done = {"writer": False, "reader": False}  # which side is switched
_tensorboards: object = None  # TensorBoard's own pure-Python function, once replaced (tests compare with it)
_lock = threading.Lock()


def masked_crc32c(data: bytes) -> int:
    """TensorBoard's masked CRC-32C of ``data`` (the C implementation; ``ImportError`` without it)."""
    import google_crc32c  # noqa: PLC0415 - optional at import time

    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def install() -> bool:
    """Make TensorBoard's record writer use the C CRC-32C (idempotent); whether it does now.

    Set ``TB_VIZ_PURE_CRC=1`` to leave TensorBoard's writer as it is.
    """
    return _switch("writer")


def install_reader() -> bool:
    """Make TensorBoard's Python event reader verify checksums in C (idempotent); whether it does now.

    ``TB_VIZ_PURE_CRC=1`` leaves it as it is.
    """
    return _switch("reader")


def _switch(side: str) -> bool:
    global _tensorboards
    if _done[side]:
        return True
    with _lock:
        if _done[side] or os.environ.get("TB_VIZ_PURE_CRC"):
            return _done[side]
        try:
            from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
            from tensorboard.summary.writer import record_writer
        except ImportError:
            return False
        module = record_writer if side == "writer" else pywrap_tensorflow  # the reader calls pywrap's own
        if _replaceable(module.masked_crc32c, pywrap_tensorflow):
            _tensorboards = _tensorboards or module.masked_crc32c
            module.masked_crc32c = masked_crc32c
            _done[side] = True
    return _done[side]


def _replaceable(current: object, pywrap_tensorflow: object) -> bool:
    """Whether ``current`` is TensorBoard's own pure-Python checksum and the C one agrees with it."""
    if getattr(current, "__module__", None) != pywrap_tensorflow.__name__ or getattr(current, "__name__", None) != "masked_crc32c":
        return False  # someone else replaced it: leave theirs
    try:
        import google_crc32c
    except ImportError:
        return False
    if getattr(google_crc32c, "implementation", "c") != "c":
        return False  # its pure-Python fallback is no faster
    sample = bytes(range(256)) * 3 + b"tb-viz"
    return all(masked_crc32c(data) == current(data) for data in (b"", b"a", sample))
