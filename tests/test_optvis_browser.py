"""Optimised images in the CNN viz tab of a real TensorBoard, in headless Chromium.

Set TB_VIZ_OPTVIS_SCREENSHOT=path.png to keep the screenshot.
"""

import os

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_activation_maximization, log_deepdream

from tests.helpers import open_tab, serve_runs, tiny_net, wait_images_loaded

NAMES = ["disc", "bar", "<img src=x onerror=alert(1)>", "ring"]


def _write_run(logdir: str, run: str, seed: int) -> None:
    net = tiny_net(seed).eval()
    writer = SummaryWriter(os.path.join(logdir, run))
    probes = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    try:
        for step in (0, 10):
            with torch.no_grad():
                for p in net.parameters():
                    p.mul_(1.5)  # the "training" between steps
            log_activation_maximization(writer, net, step, class_names=NAMES, steps=3, size=24)
            log_deepdream(writer, net, probes, step, layers="0.2", steps=2, octaves=2, captions=["a", "b"])
    finally:
        writer.close()


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("optvis_browser"))
    _write_run(logdir, "run_a", 0)
    _write_run(logdir, "run_b", 1)
    with serve_runs(logdir, 2) as url:
        yield url


def test_class_images_per_run_with_step_slider_and_dreams(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)
    card = frame.locator('.tbv-card[data-tag="activation_maximization/output"]')
    card.wait_for(timeout=30000)
    for run in ("run_a", "run_b"):  # runs side by side, one generated image per class
        panel = card.locator(f'.tbv-panel[data-run="{run}"][data-step="10"]')
        panel.locator(".tbv-item img").nth(len(NAMES) - 1).wait_for()
        captions = panel.locator(".tbv-caption").all_inner_texts()
        assert [c.split(" · ")[0] for c in captions] == NAMES
    wait_images_loaded(page, '.tbv-card[data-tag="activation_maximization/output"] img', 2 * len(NAMES))

    widths = card.locator(".tbv-tile-grid .tbv-item img").evaluate_all("imgs => imgs.map(i => i.clientWidth)")
    assert len(widths) == 2 * len(NAMES) and len(set(widths)) == 1, widths  # equal tiles, none stretched

    panel_a = card.locator('.tbv-panel[data-run="run_a"]')
    src_before = panel_a.locator(".tbv-item img").first.get_attribute("src")
    slider = card.locator(".tbv-slider")
    slider.focus()
    slider.press("Home")  # back to step 0: the class images of the untrained weights
    card.locator('.tbv-panel[data-run="run_a"][data-step="0"] .tbv-item img').first.wait_for()
    assert panel_a.locator(".tbv-item img").first.get_attribute("src") != src_before

    dream = frame.locator('.tbv-card[data-tag="deepdream/0.2"] .tbv-panel[data-run="run_a"] .tbv-item img').first
    dream.wait_for()
    wait_images_loaded(page, '.tbv-card[data-tag="deepdream/0.2"] img', 1, exact=False)
    assert dream.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [2 * 16 + 6, 16 + 4]  # original | dream
    assert page.dialogs == [] and frame.locator('img[src="x"]').count() == 0
    page.screenshot(path=os.environ.get("TB_VIZ_OPTVIS_SCREENSHOT") or "/tmp/tb_viz_optvis.png")
