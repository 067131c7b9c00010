"""Feature inversion and neural style in the CNN viz tab of a real TensorBoard, in headless Chromium.

Set TB_VIZ_STYLE_SCREENSHOT=path.png to keep the screenshot.
"""

import os

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_feature_inversion, log_neural_style

from tests.helpers import open_tab, serve_runs, tiny_net, wait_images_loaded

CAPTIONS = ["disc", "<img src=x onerror=alert(1)>", "ring"]
INVERSION = 'feature_inversion/0.0+0.2'
STYLE = 'neural_style/0.2'


def _write_run(logdir: str, run: str, seed: int) -> None:
    net = tiny_net(seed).eval()
    writer = SummaryWriter(os.path.join(logdir, run))
    probes = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    try:
        for step in (0, 10):
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(1.5)  # the "training" between steps
            log_feature_inversion(writer, net, probes, step, layers=["0.0", "0.2"], steps=3, captions=CAPTIONS)
            log_neural_style(writer, net, probes, step, content_layer="0.2", style_layers=["0.1", "0.3"], steps=3,
                             captions=CAPTIONS)  # fmt: skip
    finally:
        writer.close()


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("style_browser"))
    _write_run(logdir, "run_a", 0)
    _write_run(logdir, "run_b", 1)
    with serve_runs(logdir, 2) as url:
        yield url


def test_one_row_per_probe_image_per_run_with_named_columns_and_a_step_slider(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)
    card = frame.locator(f'.tbv-card[data-tag="{INVERSION}"]')
    card.wait_for(timeout=30000)
    for run in ("run_a", "run_b"):  # runs side by side
        panel = card.locator(f'.tbv-panel[data-run="{run}"][data-step="10"]')
        panel.locator(".tbv-item img").nth(len(CAPTIONS) - 1).wait_for()
        captions = panel.locator(".tbv-caption").all_inner_texts()
        assert [c.split(": feature distance")[0] for c in captions] == CAPTIONS
        assert panel.locator(".tbv-row-label").all_inner_texts() == ["original", "0.0", "0.2"]
    wait_images_loaded(page, f'.tbv-card[data-tag="{INVERSION}"] img', 2 * len(CAPTIONS))
    first = card.locator('.tbv-panel[data-run="run_a"] .tbv-item img').first
    assert first.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [3 * 16 + 4 * 2, 16 + 4]  # original | 2 layers
    boxes = card.locator('.tbv-panel[data-run="run_a"] .tbv-item img').evaluate_all(
        "imgs => imgs.map(i => { const r = i.getBoundingClientRect(); return [r.left, r.top, r.width]; })"
    )
    assert len({round(left) for left, _, _ in boxes}) == 1 and len({round(w) for _, _, w in boxes}) == 1  # one column
    assert boxes[0][1] < boxes[1][1] < boxes[2][1] and boxes[0][2] >= 2 * 56  # rows, each at least twice its size

    src_before = first.get_attribute("src")
    slider = card.locator(".tbv-slider")
    slider.focus()
    slider.press("Home")  # back to step 0
    card.locator('.tbv-panel[data-run="run_a"][data-step="0"] .tbv-item img').first.wait_for()
    assert card.locator('.tbv-panel[data-run="run_a"] .tbv-item img').first.get_attribute("src") != src_before

    style = frame.locator(f'.tbv-card[data-tag="{STYLE}"] .tbv-panel[data-run="run_b"]')
    style.locator(".tbv-item img").nth(len(CAPTIONS) - 1).wait_for()
    wait_images_loaded(page, f'.tbv-card[data-tag="{STYLE}"] img', 2 * len(CAPTIONS))
    assert style.locator(".tbv-row-label").all_inner_texts() == ["content", "style", "texture of the style", "result"]
    image = style.locator(".tbv-item img").first
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [4 * 16 + 5 * 2, 16 + 4]
    assert "style loss" in style.locator(".tbv-caption").first.inner_text()
    assert page.dialogs == [] and frame.locator('img[src="x"]').count() == 0
    page.screenshot(path=os.environ.get("TB_VIZ_STYLE_SCREENSHOT") or "/tmp/tb_viz_style.png")
