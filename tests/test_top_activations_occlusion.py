"""Unit occlusion of the top-k (empirical receptive fields): the method, the callback option, the logged overlay."""

import io

import pytest
import torch
from PIL import Image
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn

from tb_viz_plugin.callbacks import TopActivations
from tb_viz_plugin.methods import compare_empirical, top_activations
from tb_viz_plugin.methods.attribution import top_k_occlusion, unit_occlusion
from tensorboard import context as tb_context

from tests.helpers import make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()


def _planted(size=7, window=((1, 4), (2, 5))):
    """One ReLU conv unit with a 7x7 kernel that, but for 1e-3 weights, sees only a 3x3 window of it."""
    conv = nn.Conv2d(1, 1, size, padding=size // 2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1e-3)
        conv.weight[0, 0, window[0][0] : window[0][1], window[1][0] : window[1][1]] = 1.0
    return nn.Sequential(conv, nn.ReLU())


def test_planted_unit_recovers_its_window_on_every_top_image():
    net = _planted()
    images = 0.5 + 0.5 * torch.rand(12, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    top = top_activations(net, images.split(5), ["1"], units=1, k=5)["1"]
    assert top.geometry.rf.size == (7, 7)  # the theoretical field: every nonzero weight
    result = top_k_occlusion(net, top, window=1)
    assert result.maps.shape == (1, 5, 7, 7) and result.window == (1, 1) and result.stride == (1, 1)
    assert torch.equal(result.sizes, torch.full((1, 5, 2), 3.0))  # the planted 3x3 window
    origins = top.geometry.crop_origins(top.positions[0])
    for rank in range(5):
        above = (result.maps[0, rank] >= 0.5 * result.maps[0, rank].max()).nonzero()
        rows, cols = above[:, 0] + origins[rank, 0], above[:, 1] + origins[rank, 1]
        row, col = top.positions[0, rank].tolist()  # unit at (row, col) reads rows row-3..row+3
        assert (rows.min().item(), rows.max().item()) == (row - 2, row)
        assert (cols.min().item(), cols.max().item()) == (col - 1, col + 1)
    comparison = compare_empirical(top.geometry.rf, result.sizes)
    assert comparison["empirical"] == [3.0, 3.0] and comparison["theoretical"] == [7, 7] and comparison["maps"] == 5
    assert comparison["area_ratio"] == round(9 / 49, 4)


def test_crops_on_a_canvas_give_the_whole_image_maps():
    """Occluding the crop on a baseline canvas equals occluding the whole image, cut at the crop."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
    images = torch.rand(10, 3, 24, 24)
    top = top_activations(net, [images], ["3"], units=[1, 3], k=3)["3"]
    result = top_k_occlusion(net, top, window=1, k=2)
    assert result.maps.shape == (2, 2, *top.geometry.crop_size)
    height, width = top.geometry.crop_size
    for row, unit in enumerate(top.units.tolist()):
        for rank in range(2):
            sample, position = int(top.sample_ids[row, rank]), top.positions[row, rank]
            whole = unit_occlusion(net, images[sample : sample + 1], "3", [unit], window=1, stride=1,
                                   positions=position.view(1, 1, 2)).maps[0, 0]  # fmt: skip
            top_left = top.geometry.crop_origins(position)
            cut = whole[top_left[0] : top_left[0] + height, top_left[1] : top_left[1] + width]
            assert torch.allclose(cut, result.maps[row, rank], atol=1e-5)
            assert whole.abs().sum().item() == pytest.approx(cut.abs().sum().item(), abs=1e-4)  # nothing outside the crop


def test_callback_logs_the_overlay_and_the_mean_empirical_field(tmp_path):
    callback = TopActivations(layers=["net.0.3"], units=2, k=3, unit_occlusion={"k": 2}, strict=True, budget=None)
    tiny_trainer(tmp_path, [callback], max_epochs=1).fit(tiny_module())
    plugin, client = make_plugin(str(tmp_path))
    answer = plugin.items_impl(CTX, "", "tiny/v0", "top_activations/net.0.3", None)
    meta, items = answer["meta"], answer["items"]
    assert [item["role"] for item in items] == ["patches", "patches", "occlusion", "occlusion"]
    assert [item["unit"] for item in items] == [0, 1, 0, 1]
    occlusion = meta["occlusion"]
    assert occlusion["k"] == 2 and occlusion["window"] == [1, 1] and occlusion["theoretical"] == meta["rf_size"]
    assert 0 < occlusion["maps"] <= 4 and occlusion["text"].startswith("empirical RF ")
    assert all(len(item["empirical_rf"]) == 3 and item["empirical_rf"][2] is None for item in items[2:])
    patches = Image.open(io.BytesIO(client.get("/data/plugin/tb_viz/" + items[0]["url"]).data))
    overlay = Image.open(io.BytesIO(client.get("/data/plugin/tb_viz/" + items[2]["url"]).data))
    assert overlay.mode == "RGBA" and overlay.size == patches.size == (items[0]["width"], items[0]["height"])
    tile, gap = meta["tile"], meta["gap"]
    alpha = torch.tensor(list(overlay.getdata()))[:, 3].view(overlay.size[1], overlay.size[0])
    third = gap + 2 * (tile[1] + gap)
    assert alpha[:, third:].max() == 0 and alpha[:, :third].max() > 0  # rank 3 was not occluded


@pytest.mark.parametrize("value,match", [({"k": 2, "grid": 3}, r"unknown unit_occlusion options \['grid'\]"),
                                         ("yes", "bool or a mapping")])  # fmt: skip
def test_bad_occlusion_options_fail_at_construction(value, match):
    with pytest.raises(MisconfigurationException, match=match):
        TopActivations(unit_occlusion=value)
