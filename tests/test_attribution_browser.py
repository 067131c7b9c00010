"""The attributions view in headless Chromium: grid, browser-side colormap/opacity/overlay, steps, runs."""

import os

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import write_attributions
from tb_viz_plugin.methods import attribute

from tests.helpers import open_tab, serve_runs, tiny_net, wait_images_loaded

XSS = "<img src=x onerror=alert(1)>"
CLASSES = ["circle", XSS, "square", "star"]
METHODS = ["grad_cam", "saliency", "occlusion"]
TAG = "attributions/0.3/predicted"


def _write_run(logdir, run, steps, seed):
    writer = SummaryWriter(os.path.join(logdir, run))
    images = torch.randn(3, 3, 24, 24, generator=torch.Generator().manual_seed(seed))
    try:
        for step in steps:
            net = tiny_net(seed + step)
            result = attribute(net, images, METHODS, options={"occlusion": {"window": 8, "stride": 4}})
            write_attributions(writer, result, images, step, labels=torch.tensor([0, 1, 2]), class_names=CLASSES)
    finally:
        writer.close()


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("attributions"))
    _write_run(logdir, "run_a", [0, 10], seed=0)
    _write_run(logdir, "run_b", [10], seed=1)
    with serve_runs(logdir, 2) as url:
        yield url


def _wait_ready(page, frame, panel_selector, cells):
    panel = frame.locator(panel_selector)
    panel.locator(".tbv-attr-grid").wait_for(timeout=30000)
    panel.locator(f'.tbv-attr-cell[data-state="ready"] >> nth={cells - 1}').wait_for(timeout=30000)
    return panel


def _pixels(locator):
    """RGB rows of an <img> as the page decodes it."""
    return locator.evaluate(
        """img => { const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const x = c.getContext('2d'); x.drawImage(img, 0, 0); return Array.from(x.getImageData(0, 0, c.width, c.height).data); }"""
    )


def test_grid_of_images_by_methods_with_captions_and_steps(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)
    card = frame.locator(f'.tbv-card[data-tag="{TAG}"]')
    card.wait_for(timeout=30000)
    run_a = _wait_ready(page, frame, f'.tbv-card[data-tag="{TAG}"] .tbv-panel[data-run="run_a"]', 9)
    _wait_ready(page, frame, f'.tbv-card[data-tag="{TAG}"] .tbv-panel[data-run="run_b"]', 9)
    assert sorted(card.locator(".tbv-panel").evaluate_all("ps => ps.map(p => p.dataset.run)")) == ["run_a", "run_b"]
    grid = run_a.locator(".tbv-attr-grid")
    assert (grid.get_attribute("data-rows"), grid.get_attribute("data-columns")) == ("3", "3")
    heads = run_a.locator(".tbv-attr-head").all_inner_texts()
    assert heads[0] == "image" and heads[1].startswith("Grad-CAM") and "@ 0.3" in heads[1] and heads[3] == "Occlusion"
    assert wait_images_loaded(page, f'.tbv-card[data-tag="{TAG}"] .tbv-panel[data-run="run_a"] .tbv-item img', 3 + 9) == 12
    captions = run_a.locator(".tbv-attr-image .tbv-caption").all_inner_texts()
    assert captions[1].startswith("#1 true: " + XSS) and "predicted: " in captions[1] and "(0." in captions[1]
    colormaps = run_a.locator(".tbv-attr-cell").evaluate_all("cs => cs.map(c => c.dataset.colormap)")
    assert colormaps[:3] == ["jet", "jet", "diverging"]  # occlusion is signed: always blue-white-red
    assert page.dialogs == [] and frame.locator('img[src="x"]').count() == 0

    # the step slider: run_a moves to step 0, run_b has nothing that early
    assert card.get_attribute("data-step") == "10"
    photo = run_a.locator(".tbv-attr-image img").first.get_attribute("src")
    src = run_a.locator(".tbv-attr-cell img").first.get_attribute("src")
    slider = card.locator(".tbv-slider")
    slider.focus()
    slider.press("Home")
    _wait_ready(page, frame, f'.tbv-card[data-tag="{TAG}"] .tbv-panel[data-run="run_a"][data-step="0"]', 9)
    assert run_a.locator(".tbv-attr-cell img").first.get_attribute("src") != src
    assert run_a.locator(".tbv-attr-image img").first.get_attribute("src") == photo  # the same image: stored once
    assert "no data at or before step 0" in card.locator('.tbv-panel[data-run="run_b"]').inner_text()


def test_colormap_opacity_and_overlay_are_browser_controls(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)
    panel = f'.tbv-card[data-tag="{TAG}"] .tbv-panel'
    run_a = _wait_ready(page, frame, panel + '[data-run="run_a"]', 9)
    run_b = _wait_ready(page, frame, panel + '[data-run="run_b"]', 9)
    cell = run_a.locator('.tbv-attr-cell[data-row="0"][data-column="0"] img')
    before = cell.get_attribute("src")

    run_a.locator(".tbv-attr-colormap").select_option("gray")
    run_b.locator('.tbv-attr-cell[data-colormap="gray"] >> nth=5').wait_for()  # every grid follows
    assert cell.get_attribute("src") != before
    assert run_b.locator(".tbv-attr-colormap").input_value() == "gray"

    run_b.locator(".tbv-attr-overlay").uncheck()  # the map alone: grey levels exactly as stored
    run_a.locator('.tbv-attr-cell[data-overlay="false"] >> nth=8').wait_for()
    values = _pixels(cell)
    reds, greens = values[0::4], values[1::4]
    assert reds == greens and min(reds) == 0 and max(reds) == 255  # min-max normalised, unsigned

    run_a.locator(".tbv-attr-overlay").check()
    run_a.locator(".tbv-attr-opacity").fill("0")  # fully transparent map: the image itself
    run_a.locator('.tbv-attr-cell[data-overlay="true"] >> nth=8').wait_for()
    page.wait_for_function(
        "() => document.querySelector('iframe').contentWindow.localStorage.getItem('tb_viz.attributions').includes('\"opacity\":0')"
    )
    photo = run_a.locator('.tbv-attr-image >> nth=0').locator("img")
    assert _pixels(cell) == _pixels(photo)
    assert page.dialogs == []
