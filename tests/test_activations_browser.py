"""Activation maps and the top-activations gallery in TensorBoard's tab, in headless Chromium."""

import os

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_activation_maps, log_top_activations

from tests.helpers import open_tab, serve_runs, tiny_net, wait_images_loaded

UNITS = [0, 3, 7, 9]


def _write_run(logdir: str, run: str, steps, seed: int) -> None:
    """A tiny CNN whose weights drift between steps: activation maps and top-k logged at each step."""
    net = tiny_net(seed)
    generator = torch.Generator().manual_seed(seed)
    data = torch.randn(40, 3, 16, 16, generator=generator)
    writer = SummaryWriter(os.path.join(logdir, run))
    try:
        for step in steps:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.3 * torch.randn(p.shape, generator=generator))
            log_activation_maps(writer, net, data[:3], step, ["0.1"], units=6)
            log_top_activations(writer, net, data.split(10), step, ["0.3"], units=UNITS, k=5)
    finally:
        writer.close()


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("activations_browser"))
    _write_run(logdir, "run_a", [0, 10, 20], seed=0)
    _write_run(logdir, "run_b", [0, 20], seed=1)
    with serve_runs(logdir, 2) as url:
        yield url


def test_gallery_rows_per_unit_with_rf_and_step_slider(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)
    card = frame.locator('.tbv-card[data-tag="top_activations/0.3"]')
    card.locator('.tbv-panel[data-run="run_b"][data-step="20"] .tbv-topk-row img').first.wait_for(timeout=30000)
    assert sorted(card.locator(".tbv-panel").evaluate_all("ps => ps.map(p => p.dataset.run)")) == ["run_a", "run_b"]

    panel = card.locator('.tbv-panel[data-run="run_a"]')
    rows = panel.locator(".tbv-topk-row")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.unit)") == [str(u) for u in UNITS]
    assert panel.locator(".tbv-topk-rf").inner_text() == "RF 7x7 px, stride 1"
    assert "top 5 of 40 samples" in panel.locator(".tbv-topk-summary").inner_text()
    wait_images_loaded(page, '.tbv-card[data-tag="top_activations/0.3"] .tbv-topk-row img', 8)
    # one row = 5 patches of 70 px (7 px x10) with 2 px gaps; rows stacked, each as wide as the panel
    first = rows.first.locator("img")
    assert first.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [5 * 70 + 6 * 2, 70 + 2 * 2]
    boxes = [rows.nth(i).bounding_box() for i in range(2)]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1 and boxes[0]["width"] > 200
    assert "values" in first.get_attribute("title") and "unit 0" in rows.first.inner_text()

    src = first.get_attribute("src")
    slider = card.locator(".tbv-slider")
    slider.focus()
    slider.press("Home")
    frame.locator('.tbv-card[data-tag="top_activations/0.3"] .tbv-panel[data-run="run_a"][data-step="0"]').wait_for()
    assert card.get_attribute("data-step") == "0"
    assert panel.locator(".tbv-topk-row img").first.get_attribute("src") != src

    first_img = panel.locator(".tbv-topk-row img").first
    first_img.click()
    lightbox = frame.locator(".tbv-lightbox")
    lightbox.wait_for(state="visible")
    page.keyboard.press("Escape")
    lightbox.wait_for(state="hidden")
    assert page.dialogs == []
    shot = os.environ.get("TB_VIZ_ACTIVATIONS_SCREENSHOT")
    if shot:
        card.screenshot(path=shot)


def test_activation_maps_as_image_grids(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)
    card = frame.locator('.tbv-card[data-tag="activation_maps/0.1"]')
    panel = card.locator('.tbv-panel[data-run="run_a"][data-step="20"]')
    panel.locator(".tbv-item img").first.wait_for(timeout=30000)
    wait_images_loaded(page, '.tbv-card[data-tag="activation_maps/0.1"] .tbv-panel[data-run="run_a"] img', 3)
    captions = panel.locator(".tbv-caption").all_inner_texts()
    assert len(captions) == 3 and all("(6 most active of 8)" in c for c in captions)
    assert card.locator(".tbv-slider").get_attribute("max") == "2"  # steps 0, 10, 20
