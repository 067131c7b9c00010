"""The attributions view shows each method's faithfulness scores (headless Chromium)."""

import os

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_attributions

from tests.helpers import open_plugin_page, serve_runs, tiny_net

TAG = "attributions/0.3/predicted"


@pytest.fixture(scope="module")
def tensorboard_url(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("faithfulness_browser"))
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with SummaryWriter(os.path.join(logdir, "run")) as writer:
        log_attributions(writer, tiny_net(0), images, 3, methods=["grad_cam", "saliency"], faithfulness={"steps": 4})
    with serve_runs(logdir, 1) as url:
        yield url


def test_scores_under_each_method_and_the_random_baseline(page, tensorboard_url):
    frame = open_plugin_page(page, tensorboard_url)
    panel = frame.locator(f'.tbv-card[data-tag="{TAG}"] .tbv-panel')
    panel.locator('.tbv-attr-cell[data-state="ready"] >> nth=3').wait_for(timeout=30000)
    scores = panel.locator(".tbv-attr-head .tbv-attr-scores")
    assert scores.count() == 2
    for text in scores.all_inner_texts():
        assert text.startswith("del 0.") or text.startswith("del 1.")
        assert " · ins " in text
    values = scores.evaluate_all("ss => ss.map(s => [Number(s.dataset.deletion), Number(s.dataset.insertion)])")
    assert all(0 <= v <= 1 for pair in values for v in pair)
    baseline = panel.locator(".tbv-attr-faithfulness").inner_text()
    assert baseline.startswith("faithfulness (4 steps) · random map: del ")
    title = panel.locator('.tbv-attr-cell[data-row="0"][data-column="1"] img').get_attribute("title")
    assert "deletion 0." in title or "deletion 1." in title
    # the scalars are ordinary TensorBoard scalars of the run
    tags = page.evaluate("fetch('/data/plugin/scalars/tags').then(r => r.json())")
    assert "tb_viz/faithfulness/saliency/deletion" in tags["run"]
    assert page.dialogs == []
