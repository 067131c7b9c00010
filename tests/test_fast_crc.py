"""The event writer's checksums in C (tb_viz_plugin.fast_crc): the same bytes, readable by TensorBoard."""

import os

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer import record_writer

from tb_viz_plugin import fast_crc


def test_masked_crc_equals_tensorboards_pure_python_one():
    for size in (0, 1, 7, 64, 1000, 4099):
        data = os.urandom(size)
        assert fast_crc.masked_crc32c(data) == pywrap_tensorflow.masked_crc32c(data)


def test_installed_writer_writes_event_files_tensorboard_verifies(tmp_path):
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


def test_install_is_refused_when_someone_else_replaced_the_checksum(monkeypatch):
    monkeypatch.setattr(fast_crc, "_installed", False)
    monkeypatch.setattr(record_writer, "masked_crc32c", lambda data: pywrap_tensorflow.masked_crc32c(data))
    assert not fast_crc.install()
    monkeypatch.setenv("TB_VIZ_PURE_CRC", "1")
    monkeypatch.setattr(record_writer, "masked_crc32c", pywrap_tensorflow.masked_crc32c)
    assert not fast_crc.install() and record_writer.masked_crc32c is pywrap_tensorflow.masked_crc32c


def test_the_first_tb_viz_summary_installs_it(monkeypatch, tmp_path):
    from tensorboard.compat.proto import summary_pb2
    from torch.utils.tensorboard import SummaryWriter

    from tb_viz_plugin.summary import write_summary

    monkeypatch.setattr(fast_crc, "_installed", False)
    monkeypatch.setattr(record_writer, "masked_crc32c", pywrap_tensorflow.masked_crc32c)
    monkeypatch.delenv("TB_VIZ_PURE_CRC", raising=False)
    writer = SummaryWriter(str(tmp_path))
    write_summary(writer, summary_pb2.Summary(), 0)
    writer.close()
    assert record_writer.masked_crc32c is fast_crc.masked_crc32c
