"""The embeddings scatter view in a real headless Chromium: points, hover thumbnail, colour toggle, slider."""

import os

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import write_embeddings
from tb_viz_plugin.methods import embed

from tests.helpers import open_tab, serve_runs

TAG = "embeddings/penultimate"
N = 60
XSS = "<img src=x onerror=alert(1)>"
NAMES = ["circle", "square", XSS]


def _colours():
    return torch.rand(N, 3, generator=torch.Generator().manual_seed(7))


def _write_run(logdir, run, seed):
    """Three steps whose classes separate more and more; each sample's image is one flat colour."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(N) % 3
    noise = torch.randn(N, 16, generator=g)
    images = _colours()[:, :, None, None].expand(N, 3, 24, 24)
    writer = SummaryWriter(os.path.join(logdir, run))
    previous = None
    for step, separation in ((0, 0.2), (10, 2.0), (20, 6.0)):
        features = noise + separation * torch.nn.functional.one_hot(labels, 16).float()
        predicted = torch.where(torch.arange(N) < 12 - step // 2, (labels + 1) % 3, labels)
        previous = embed(features, labels=labels, reference=None if previous is None else previous.points)
        write_embeddings(writer, "penultimate", previous, step, labels=labels, predicted=predicted, images=images,
                         to_rgb=lambda x: x, class_names=NAMES, projector=False)
    writer.close()


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("embeddings_browser"))
    _write_run(logdir, "run_a", 0)
    _write_run(logdir, "run_b", 1)
    with serve_runs(logdir, 2) as url:
        yield url


def _positions(panel):
    return panel.locator("circle.tbv-emb-point").evaluate_all(
        "cs => Object.fromEntries(cs.map(c => [c.dataset.index, [+c.getAttribute('cx'), +c.getAttribute('cy')]]))")


def test_scatter_view_hover_colour_toggle_and_slider(page, tensorboard_url):
    frame = open_tab(page, tensorboard_url)
    card = frame.locator(f'.tbv-card[data-tag="{TAG}"]')
    card.wait_for(timeout=30000)
    panel = card.locator('.tbv-panel[data-run="run_a"][data-step="20"]')
    panel.locator(".tbv-emb:not([data-animating])").wait_for(timeout=30000)
    assert card.locator(".tbv-panel .tbv-emb").count() == 2  # runs side by side
    assert panel.locator("circle.tbv-emb-point").count() == N
    header = panel.locator(".tbv-emb-header").inner_text()
    assert "5-NN accuracy" in header and "silhouette" in header and "PCA" in header
    assert panel.locator(".tbv-emb-legend").inner_text().count("(20)") == 3

    # hover: the nearest sample's thumbnail (its flat colour) and labels
    circle = panel.locator('circle.tbv-emb-point[data-index="5"]')
    box = circle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tooltip = panel.locator(".tbv-emb-tooltip")
    tooltip.wait_for(state="visible")
    thumb = tooltip.locator("canvas.tbv-emb-thumb")
    frame.locator(".tbv-emb-thumb[data-sample]").wait_for()
    sample = int(thumb.get_attribute("data-sample"))
    pixel = thumb.evaluate("c => Array.from(c.getContext('2d').getImageData(48, 48, 1, 1).data)")
    expected = (_colours()[sample] * 255).tolist()
    assert all(abs(p - e) <= 2 for p, e in zip(pixel[:3], expected)), (pixel, expected)
    text = tooltip.inner_text()
    assert f"sample {sample}" in text and f"label: {NAMES[sample % 3]}" in text

    # colour toggle: by correctness, misclassified points turn red
    panel.locator('input[value="correct"]').check()
    assert panel.locator(".tbv-emb").get_attribute("data-color-by") == "correct"
    fills = panel.locator("circle.tbv-emb-point").evaluate_all("cs => cs.map(c => c.getAttribute('fill'))")
    assert fills.count("#d32f2f") == 2 and fills.count("#2e7d32") == N - 2  # 2 wrong at step 20

    # the slider moves to step 0: the points move (animated) to that step's map
    before = _positions(panel)
    slider = card.locator(".tbv-slider")
    slider.focus()
    slider.press("Home")
    first = card.locator('.tbv-panel[data-run="run_a"][data-step="0"]')
    first.locator(".tbv-emb:not([data-animating])").wait_for(timeout=10000)
    after = _positions(first)
    assert after.keys() == before.keys()
    moved = sum(abs(after[k][0] - before[k][0]) + abs(after[k][1] - before[k][1]) > 1 for k in after)
    assert moved > N // 2
    assert first.locator(".tbv-emb").get_attribute("data-color-by") == "correct"  # the choice is kept
    assert first.locator(".tbv-emb-legend").inner_text().startswith("correct (48)")

    assert page.dialogs == []  # the class name that looks like HTML stays text
    assert frame.locator('img[src="x"]').count() == 0
    page.screenshot(path=os.environ.get("TB_VIZ_EMBEDDINGS_SCREENSHOT") or "/tmp/tb_viz_embeddings.png")
