"""The top-k view in headless Chromium: value labels drawn from the manifest, the unit-occlusion overlay toggle."""

import json
import os
import urllib.parse
import urllib.request

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_top_activations

from tests.helpers import open_plugin_page, serve_runs, tiny_net, wait_images_loaded

TAG = "top_activations/0.3"
UNITS = [0, 3, 7]
K = 4
OCCLUDED = 2


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("topk_browser"))
    data = torch.randn(30, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with SummaryWriter(os.path.join(logdir, "run")) as writer:
        log_top_activations(writer, tiny_net(0), data.split(10), 5, ["0.3"], units=UNITS, k=K,
                            unit_occlusion={"k": OCCLUDED, "window": 1})  # fmt: skip
    with serve_runs(logdir, 1) as url:
        yield url


def _items(url):
    with urllib.request.urlopen(url + "data/plugin/tb_viz/items?" + urllib.parse.urlencode({"run": "run", "tag": TAG})) as answer:
        return json.load(answer)


def _panel(page, url):
    frame = open_plugin_page(page, url)
    panel = frame.locator(f'.tbv-card[data-tag="{TAG}"] .tbv-panel')
    wait_images_loaded(page, f'.tbv-card[data-tag="{TAG}"] .tbv-topk-row img', len(UNITS))
    return frame, panel


def test_value_labels_are_drawn_over_each_patch_from_the_manifest(page, tensorboard_url):
    _, panel = _panel(page, tensorboard_url)
    items = _items(tensorboard_url)
    rows = [item for item in items["items"] if item["role"] == "patches"]
    tile, gap = items["meta"]["tile"], items["meta"]["gap"]
    row = panel.locator(".tbv-topk-row").first
    labels = row.locator(".tbv-topk-value")
    assert labels.count() == K
    texts = labels.all_inner_texts()
    assert [float(t) for t in texts] == pytest.approx(rows[0]["values"], rel=5e-3)
    img = row.locator("img").bounding_box()
    scale = img["width"] / rows[0]["width"]
    for rank in range(K):
        box = labels.nth(rank).bounding_box()
        assert box["x"] == pytest.approx(img["x"] + scale * (gap + rank * (tile[1] + gap)), abs=1.5)
        assert box["y"] == pytest.approx(img["y"] + scale * gap, abs=1.5)
        assert box["x"] + box["width"] <= img["x"] + scale * (gap + rank * (tile[1] + gap) + tile[1]) + 1
    assert page.dialogs == []


def test_occlusion_overlay_toggles_on_every_row_and_is_remembered(page, tensorboard_url):
    frame, panel = _panel(page, tensorboard_url)
    summary = panel.locator(".tbv-topk-summary").inner_text()
    assert "RF 7x7 px" in summary and "empirical RF " in summary and "maps)" in summary
    overlays = panel.locator(".tbv-topk-occlusion")
    assert overlays.count() == len(UNITS)
    displays = lambda: overlays.evaluate_all("os => os.map(o => getComputedStyle(o).display)")  # noqa: E731
    assert set(displays()) == {"none"}
    toggle = panel.locator(".tbv-topk-toggle input")
    toggle.check()
    assert set(displays()) == {"block"}
    # the overlay covers the row image exactly and its pixels: opaque in the occluded ranks only
    box, img = overlays.first.bounding_box(), panel.locator(".tbv-topk-row img").first.bounding_box()
    assert all(abs(box[key] - img[key]) < 1 for key in ("x", "y", "width", "height"))
    alpha = overlays.first.evaluate(
        """async o => { const url = getComputedStyle(o).backgroundImage.slice(5, -2);
        const bitmap = await createImageBitmap(await (await fetch(url)).blob());
        const c = document.createElement('canvas'); c.width = bitmap.width; c.height = bitmap.height;
        const x = c.getContext('2d'); x.drawImage(bitmap, 0, 0);
        const data = x.getImageData(0, 0, c.width, c.height).data; const columns = new Array(c.width).fill(0);
        for (let i = 3; i < data.length; i += 4) columns[((i - 3) / 4) % c.width] = Math.max(columns[((i - 3) / 4) % c.width], data[i]);
        return columns; }"""
    )
    meta = _items(tensorboard_url)["meta"]
    split = meta["gap"] + OCCLUDED * (meta["tile"][1] + meta["gap"])
    assert max(alpha[:split]) > 0 and max(alpha[split:]) == 0
    assert page.evaluate("localStorage.getItem('tb_viz.topkOcclusion')") == "true"

    page.reload()  # remembered
    frame, panel = _panel(page, tensorboard_url)
    assert panel.locator(".tbv-topk-toggle input").is_checked()
    assert set(panel.locator(".tbv-topk-occlusion").evaluate_all("os => os.map(o => getComputedStyle(o).display)")) == {"block"}
    panel.locator(".tbv-topk-toggle input").uncheck()
    assert set(panel.locator(".tbv-topk-occlusion").evaluate_all("os => os.map(o => getComputedStyle(o).display)")) == {"none"}
    assert page.dialogs == []
