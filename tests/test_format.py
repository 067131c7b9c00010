"""The on-disk format: written with a SummaryWriter, read back through TensorBoard's data provider."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tb_viz_plugin import render, summary
from tb_viz_plugin.log import write_items

from tensorboard import context as tb_context

from tests.helpers import make_plugin, write_filter_run, write_raw

CTX = tb_context.RequestContext()


def _png(array):
    return Image.open(io.BytesIO(array)).convert("RGB")


def test_round_trip_through_data_provider(tmp_path):
    logdir = str(tmp_path)
    write_filter_run(logdir, "run_a", steps=[0, 7, 14])
    plugin, _ = make_plugin(logdir)
    ctx = CTX
    tags = plugin.tags_impl(ctx, "")
    assert set(tags) == {"run_a"}
    assert set(tags["run_a"]) == {"filters/0.0", "filters/0.2"}
    assert tags["run_a"]["filters/0.0"]["kind"] == "filters"
    assert tags["run_a"]["filters/0.0"]["steps"] == [0, 7, 14]

    items = plugin.items_impl(ctx, "", "run_a", "filters/0.0", 7)
    assert items["step"] == 7 and items["kind"] == "filters"
    assert items["meta"]["layer"] == "0.0"
    assert items["meta"]["weight_shape"] == [8, 3, 5, 5]
    assert items["meta"]["layout"] == "rgb"
    (item,) = items["items"]
    assert item["mime"] == "image/png"
    image = _png(plugin.blob_impl(ctx, item["url"]))
    assert image.size == (item["width"], item["height"])


def test_generic_items_keep_captions_and_meta(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "r"))
    images = [np.full((4, 6, 3), v, dtype=np.uint8) for v in (0, 128, 255)]
    items = [render.png_item(img, f"img {i}", value=float(i) / 2) for i, img in enumerate(images)]
    write_items(writer, "acts/x", "activation_maps", items, 3, meta={"layer": "x", "values": [1, 2]})
    writer.close()
    plugin, _ = make_plugin(str(tmp_path))
    got = plugin.items_impl(CTX, "", "r", "acts/x", None)
    assert got["kind"] == "activation_maps" and got["step"] == 3
    assert got["meta"] == {"layer": "x", "values": [1, 2]}
    assert [i["caption"] for i in got["items"]] == ["img 0", "img 1", "img 2"]
    assert [i["value"] for i in got["items"]] == [0.0, 0.5, 1.0]
    for item, img in zip(got["items"], images):
        decoded = np.asarray(_png(plugin.blob_impl(CTX, item["url"])))
        np.testing.assert_array_equal(decoded, img)


def test_unknown_version_is_skipped_with_a_warning(tmp_path, caplog):
    logdir = str(tmp_path)
    write_filter_run(logdir, "good", steps=[1])
    future = json.dumps({"version": 99, "kind": "filters"}).encode()
    write_raw(logdir, "future", "filters/x", 1, future, [b"{}", b"png"])
    write_raw(logdir, "garbage", "filters/y", 1, b"\xff\x00not json", [b"{}"])
    plugin, _ = make_plugin(logdir)
    with caplog.at_level("WARNING"):
        tags = plugin.tags_impl(CTX, "")
        plugin.tags_impl(CTX, "")
    assert set(tags) == {"good"}
    warnings = [r.getMessage() for r in caplog.records if "tb_viz" in r.getMessage()]
    assert len(warnings) == 2, warnings  # once per tag, not once per request
    assert any("future" in w and "format version" in w for w in warnings)


def test_format_module_validates_input():
    with pytest.raises(ValueError, match="kind"):
        summary.create_plugin_content("Not A Kind")
    with pytest.raises(ValueError, match="bytes"):
        summary.build_summary("t", "filters", [summary.Item(data="text")])
    with pytest.raises(summary.FormatError):
        summary.parse_manifest(b'{"version": 99, "items": []}')
    assert summary.parse_plugin_content(b'{"version": 99, "kind": "filters"}') is None

    class NotAWriter:
        pass

    with pytest.raises(TypeError, match="SummaryWriter"):
        summary.write_summary(NotAWriter(), summary.build_summary("t", "filters", []), 0)


def test_kind_is_fixed_by_first_event(tmp_path):
    """TensorBoard keeps a tag's first metadata; the reader reports that kind consistently."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "r"))
    item = render.png_item(np.zeros((2, 2, 3), np.uint8))
    write_items(writer, "t", "filters", [item], 0)
    write_items(writer, "t", "attributions", [item], 1)
    writer.close()
    plugin, _ = make_plugin(str(tmp_path))
    assert plugin.tags_impl(CTX, "")["r"]["t"]["kind"] == "filters"
    assert plugin.tags_impl(CTX, "")["r"]["t"]["steps"] == [0, 1]
