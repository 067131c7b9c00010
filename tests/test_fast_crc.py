"""The event writer's checksums in C (tb_viz_plugin.fast_crc): the same bytes, readable by TensorBoard."""

import os

import pytest

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer import record_writer

from tb_viz_plugin import fast_crc

# TensorBoard's own pure-Python checksum, also when the plugin already switched its reader
PURE = fast_crc._tensorboards or pywrap_tensorflow.masked_crc32c


@pytest.fixture()
def pure_tensorboard(monkeypatch):
    """TensorBoard as it ships: both checksums in pure Python, nothing installed yet."""
    monkeypatch.setitem(fast_crc._done, "writer", False)
    monkeypatch.setitem(fast_crc._done, "reader", False)
    monkeypatch.setattr(pywrap_tensorflow, "masked_crc32c", PURE)
    monkeypatch.setattr(record_writer, "masked_crc32c", PURE)
    monkeypatch.delenv("TB_VIZ_PURE_CRC", raising=False)


def test_masked_crc_equals_tensorboards_pure_python_one():
    for size in (0, 1, 7, 64, 1000, 4099):
        data = os.urandom(size)
        assert fast_crc.masked_crc32c(data) == PURE(data)


def test_installed_writer_writes_event_files_tensorboard_verifies(tmp_path, pure_tensorboard):
    from torch.utils.tensorboard import SummaryWriter

    assert fast_crc.install() and fast_crc.install()  # idempotent
    assert record_writer.masked_crc32c is fast_crc.masked_crc32c
    writer = SummaryWriter(str(tmp_path))
    payload = os.urandom(300_000)
    writer.add_text("big", payload.hex()[:200_000], 3)
    writer.add_scalar("loss", 0.5, 4)
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    # TensorBoard's reader checks every record's checksums with its own pure-Python CRC
    events = list(EventFileLoader(str(path)).Load())
    tags = [value.tag for event in events for value in event.summary.value]
    assert "big/text_summary" in tags and "loss" in tags


def test_install_is_refused_when_someone_else_replaced_the_checksum(monkeypatch, pure_tensorboard):
    theirs = lambda data: PURE(data)  # noqa: E731
    monkeypatch.setattr(record_writer, "masked_crc32c", theirs)
    monkeypatch.setattr(pywrap_tensorflow, "masked_crc32c", theirs)
    assert not fast_crc.install() and not fast_crc.install_reader()
    monkeypatch.setenv("TB_VIZ_PURE_CRC", "1")
    monkeypatch.setattr(record_writer, "masked_crc32c", PURE)
    monkeypatch.setattr(pywrap_tensorflow, "masked_crc32c", PURE)
    assert not fast_crc.install() and not fast_crc.install_reader()
    assert record_writer.masked_crc32c is PURE and pywrap_tensorflow.masked_crc32c is PURE


def test_the_first_tb_viz_summary_installs_it(tmp_path, pure_tensorboard):
    from tensorboard.compat.proto import summary_pb2
    from torch.utils.tensorboard import SummaryWriter

    from tb_viz_plugin.summary import write_summary

    writer = SummaryWriter(str(tmp_path))
    write_summary(writer, summary_pb2.Summary(), 0)
    writer.close()
    assert record_writer.masked_crc32c is fast_crc.masked_crc32c


def test_the_plugin_switches_tensorboards_python_reader(tmp_path, pure_tensorboard):
    """Loading the plugin (what TensorBoard does at start-up) makes its Python loader verify in C;
    a damaged record is still caught."""
    from torch.utils.tensorboard import SummaryWriter

    from tests.helpers import make_plugin

    writer = SummaryWriter(str(tmp_path))
    writer.add_text("big", os.urandom(100_000).hex(), 1)
    writer.close()
    (path,) = tmp_path.glob("events.out.tfevents.*")
    make_plugin(str(tmp_path))
    assert pywrap_tensorflow.masked_crc32c is fast_crc.masked_crc32c
    assert len(list(EventFileLoader(str(path)).Load())) == 2
    data = bytearray(path.read_bytes())
    data[-200] ^= 0xFF  # flip a byte inside the text record's payload
    path.write_bytes(bytes(data))
    assert len(list(EventFileLoader(str(path)).Load())) == 1  # the damaged record is dropped, as TensorBoard does
