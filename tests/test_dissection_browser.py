"""The network-dissection view in TensorBoard's tab, in headless Chromium: summary, bars, curves, sortable unit table."""

import os

import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import write_network_dissection
from tb_viz_plugin.demo.data import ShapesDataset
from tb_viz_plugin.log.network_dissection import dissection_history
from tb_viz_plugin.methods import dissect

from tests.helpers import open_tab, serve_runs, wait_images_loaded

TAG = "network_dissection/1"
CARD = f'.tbv-card[data-tag="{TAG}"]'


def _net(planted: bool) -> nn.Module:
    """8 units of zero-sum random 3x3 filters; ``planted``: unit 0 fires on red, unit 1 on green."""
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        random = torch.randn(8, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        conv.weight.copy_(random - random.mean(dim=(2, 3), keepdim=True))
        conv.bias.zero_()
        if planted:
            conv.weight[:2] = 0
            conv.weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
            conv.weight[1, :, 1, 1] = torch.tensor([-1.0, 1.0, -1.0])
    return nn.Sequential(conv, nn.ReLU())


def _write_run(logdir: str, run: str, images: torch.Tensor, steps) -> dict:
    """Random units at the first step, the planted detectors from the second on; the curves' history carried along."""
    history, results = [], {}
    with SummaryWriter(os.path.join(logdir, run)) as writer:
        for i, step in enumerate(steps):
            results = dissect(_net(planted=i > 0), images.split(32), "1", top_k=3)
            history.append(dissection_history(results["1"], step))
            write_network_dissection(writer, results, step, history={"1": history})
    return results["1"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    logdir = str(tmp_path_factory.mktemp("dissection_browser"))
    data = ShapesDataset(64, seed=3)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    last = _write_run(logdir, "run_a", images, [0, 10])
    _write_run(logdir, "run_b", images[:32], [0, 10])
    with serve_runs(logdir, 2) as url:
        yield url, last


def test_summary_bars_curves_and_sortable_units(page, served):
    url, result = served
    frame = open_tab(page, url)
    card = frame.locator(CARD)
    panel = card.locator('.tbv-panel[data-run="run_a"][data-step="10"]')
    panel.locator(".tbv-dissect-table img").first.wait_for(timeout=30000)
    assert sorted(card.locator(".tbv-panel").evaluate_all("ps => ps.map(p => p.dataset.run)")) == ["run_a", "run_b"]

    detectors = result.detectors
    assert result.label[0] == "red" and result.label[1] == "green"
    assert panel.locator(".tbv-dissect-summary").inner_text() == (
        f"{len(detectors)} of 8 units are detectors covering {len(result.concepts_covered)} concepts (IoU ≥ 0.04)")
    bars = panel.locator('.tbv-dissect-group[data-category="color"] .tbv-dissect-bar')
    assert set(bars.evaluate_all("bs => bs.map(b => b.dataset.concept)")) == set(result.concepts_covered)
    assert {"red", "green"} <= set(result.concepts_covered)

    history = panel.locator(".tbv-dissect-history")
    assert history.get_attribute("data-points") == "2"
    line = history.locator("polyline.tbv-dissect-detectors")
    assert line.locator("title").text_content() == f"step 0: 0 detectors\nstep 10: {len(detectors)} detectors"

    rows = panel.locator(".tbv-dissect-table tbody tr")
    by_iou = sorted(range(8), key=lambda u: (-float(result.iou[u]), u))
    assert rows.evaluate_all("rs => rs.map(r => Number(r.dataset.unit))") == by_iou
    assert rows.first.locator(".tbv-dissect-iou").inner_text() == f"{float(result.iou[by_iou[0]]):.3f}"
    panel.locator('th[data-key="unit"] button').click()
    assert rows.evaluate_all("rs => rs.map(r => Number(r.dataset.unit))") == list(range(8))
    panel.locator('th[data-key="unit"] button').click()
    assert rows.evaluate_all("rs => rs.map(r => Number(r.dataset.unit))") == list(range(7, -1, -1))
    panel.locator('th[data-key="concept"] button').click()
    labelled = rows.evaluate_all("rs => rs.map(r => r.classList.contains('tbv-dissect-detector'))")
    assert labelled == sorted(labelled, reverse=True) and sum(labelled) == len(detectors)
    assert rows.locator('.tbv-dissect-concept').first.inner_text() in result.concepts_covered

    wait_images_loaded(page, f'{CARD} .tbv-panel[data-run="run_a"] .tbv-dissect-table img', 8)
    img = panel.locator('.tbv-dissect-table tr[data-unit="0"] img')
    assert img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [3 * 64 + 4 * 2, 64 + 2 * 2]
    assert "unit 0: red" in img.get_attribute("title")

    card.locator(".tbv-slider").first.focus()
    page.keyboard.press("Home")
    first = card.locator('.tbv-panel[data-run="run_a"][data-step="0"]')
    first.locator(".tbv-dissect-summary").wait_for(timeout=30000)
    assert first.locator(".tbv-dissect-summary").inner_text().startswith("0 of 8 units are detectors")
    assert first.locator(".tbv-dissect-bars").inner_text() == "no detectors at this step"
