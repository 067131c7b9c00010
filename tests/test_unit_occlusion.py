"""Unit occlusion: a planted unit's window recovered, a plain loop as reference, chunks, positions, errors."""

import pytest
import torch
from torch import nn

from tb_viz_plugin.methods.receptive_field import measure_layer
from tb_viz_plugin.methods.attribution.unit_occlusion import empirical_rf_size, unit_occlusion

from tests.helpers import hook_count


def _planted() -> nn.Module:
    """Unit 0 of layer "1" sees a 3x5 window (rows 2-4, columns 1-5) of its 9x9 kernel; the rest weighs 1e-3."""
    conv = nn.Conv2d(3, 2, 9, padding=4, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1e-3)
        conv.weight[0, :, 2:5, 1:6] = 1.0
    return nn.Sequential(conv, nn.ReLU(), nn.Conv2d(2, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))


def _images(n=3, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) + 0.1


@pytest.mark.parametrize("window", [1, 3])
def test_a_planted_unit_gives_back_its_window(window):
    net = _planted().eval()
    images = _images()
    result = unit_occlusion(net, images, "1", [0], window=window, stride=1)
    assert torch.allclose(empirical_rf_size(result.maps), torch.tensor([3.0, 5.0]).expand(3, 1, 2))
    for i in range(3):
        row, col = result.positions[i, 0].tolist()
        peak = result.maps[i, 0]
        above = (peak >= 0.5 * peak.max()).nonzero()
        # the unit at (row, col) of a 9x9 kernel with padding 4 sees rows row-4+2 .. row-4+4, columns col-4+1 .. col-4+5
        assert above.min(0).values.tolist() == [row - 2, col - 3] and above.max(0).values.tolist() == [row, col + 1]
        assert result.activations[i, 0] == net[1](net[0](images[i : i + 1]))[0, 0].max()
    # the theoretical receptive field is the whole kernel
    assert measure_layer(net, "1", (3, 32, 32)).rf.size == (9, 9)
    if window == 1:  # single-pixel occluders: the drop is exactly the pixel times its weight
        i, (row, col) = 0, result.positions[0, 0].tolist()
        inside = images[0, :, row - 2 : row + 1, col - 3 : col + 2].sum(0)
        assert torch.allclose(result.maps[0, 0, row - 2 : row + 1, col - 3 : col + 2], inside, atol=1e-5)


def test_matches_a_plain_loop_and_does_not_depend_on_chunks():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()).eval()
    images = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    units, window, stride, fill = [0, 2, 4], 4, 3, 0.5
    result = unit_occlusion(net, images, "4", units, window, stride, baseline=fill)
    tiny = unit_occlusion(net, images, "4", units, window, stride, baseline=fill, max_memory_mb=1e-6)
    assert torch.allclose(result.maps, tiny.maps, atol=1e-6)
    reference = torch.zeros(2, 3, 12, 12)
    covered = torch.zeros(12, 12)
    with torch.no_grad():
        clean = net(images)
        starts = [0, 3, 6, 9]  # ceil((12 - 4) / 3) + 1 positions, the last one clipped at the border
        for top in starts:
            for left in starts:
                occluded = images.clone()
                occluded[:, :, top : top + window, left : left + window] = fill
                out = net(occluded)
                for i in range(2):
                    for u, unit in enumerate(units):
                        row, col = result.positions[i, u]
                        drop = clean[i, unit, row, col] - out[i, unit, row, col]
                        reference[i, u, top : top + window, left : left + window] += drop
                covered[top : top + window, left : left + window] += 1
        expected_positions = clean[:, units].flatten(2).argmax(2)
    assert torch.equal(result.positions[..., 0] * 6 + result.positions[..., 1], expected_positions)
    assert torch.allclose(result.maps, reference / covered, atol=1e-5)


def test_given_positions_inference_mode_and_the_model_left_as_found():
    net = _planted()
    net.train()
    images = _images(2)
    positions = torch.tensor([[[5, 6], [10, 10]], [[20, 3], [0, 0]]])
    with torch.inference_mode():
        result = unit_occlusion(net, images, "1", [0, 1], window=2, stride=2, positions=positions)
    assert torch.equal(result.positions, positions) and result.maps.shape == (2, 2, 32, 32)
    assert all(m.training for m in net.modules()) and hook_count(net) == 0
    assert all(p.grad is None for p in net.parameters())
    # the unit at (5, 6) sees rows 3-5 and columns 3-7: nothing outside moves it (weights 1e-3 aside)
    peak = result.maps[0, 0]
    assert peak[3:6, 2:8].min() > 100 * peak[12:, 12:].abs().max()


def test_empirical_size_edge_cases_and_errors():
    maps = torch.zeros(2, 6, 6)
    maps[0, 1, 2] = 1.0
    maps[1] = -1.0  # occluding only ever raised that unit
    sizes = empirical_rf_size(maps)
    assert sizes[0].tolist() == [1.0, 1.0] and torch.isnan(sizes[1]).all()
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\]"):
        empirical_rf_size(maps, threshold=0)
    net = _planted()
    images = _images(1)
    for kwargs, match in [
        (dict(units=[2]), r"channel indices in \[0, 2\)"),
        (dict(units=[0], window=40), "window within the images"),
        (dict(units=[0], window=2, stride=3), "stride within the window"),
        (dict(units=[0], positions=torch.zeros(1, 2, 2)), r"positions must be \(N, U, 2\)"),
    ]:
        with pytest.raises(ValueError, match=match):
            unit_occlusion(net, images, "1", **kwargs)
    with pytest.raises(ValueError, match="not a feature map"):
        unit_occlusion(net, images, "5", [0])
    with pytest.raises(ValueError, match="did not run"):
        unit_occlusion(Skipping(), images, "unused", [0])


class Skipping(nn.Module):
    """A module that never runs one of its submodules."""

    def __init__(self) -> None:
        super().__init__()
        self.used, self.unused = nn.Conv2d(3, 2, 3), nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.used(x)
