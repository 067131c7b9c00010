"""Network dissection, streamed: equal to an exact two-pass reference that keeps every activation; planted detectors found."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tb_viz_plugin.demo.data import CLASS_NAMES, ShapesDataset
from tb_viz_plugin.methods import ColorConcepts, DissectionCounts, DissectionTracker, color_concepts, dissect
from tb_viz_plugin.methods.dissection_counts import upsample


def exact_iou(features, masks, categories, threshold):
    """Dense reference: every upsampled map kept; IoU of ``map >= threshold`` with each concept (partial-mask rule).

    Up-sampled one image at a time with the method's own bilinear ``upsample`` (equal to
    ``F.interpolate`` to 1e-6, checked below), so that the comparison is exact at the threshold.
    """
    up = torch.cat([upsample(f, masks.shape[2:]) for f in features.split(1)])
    active = (up.double() >= threshold.view(1, -1, 1, 1)).double()
    present = masks.flatten(2).any(2)
    annotated = torch.zeros_like(present)
    for category in categories.unique():
        chosen = categories == category
        annotated[:, chosen] = present[:, chosen].any(1, keepdim=True)
    masks = masks.double()
    inter = torch.einsum("nuhw,nkhw->uk", active, masks)
    union = torch.einsum("nuhw,nk->uk", active, annotated.double()) + masks.sum((0, 2, 3))[None] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(union))


def check_threshold(features, counts, threshold, fraction, quantile):
    """The documented bound: the threshold is the k-th largest value rounded down to its bin edge, k the nearest cut."""
    values = features.transpose(0, 1).flatten(1).double()
    width = torch.ldexp(torch.ones_like(threshold), counts.exponent.double())
    edges = counts.edges()
    positions = values.shape[1]
    for unit in range(values.shape[0]):
        k = int((values[unit] >= threshold[unit]).sum())
        assert k == round(float(fraction[unit]) * positions)
        kth = values[unit].sort(descending=True).values[k - 1]
        assert threshold[unit] <= kth < threshold[unit] + width[unit]
        cuts = (values[unit][None] >= edges[unit][:, None]).sum(1).double()  # every count a bin edge can cut at
        assert abs(k - quantile * positions) <= (cuts - quantile * positions).abs().min() + 1e-9
        exact = values[unit].quantile(1 - quantile)  # the exact quantile is within the bins next to the cut
        assert (edges[unit] <= exact).any() and abs(float(exact) - float(kth)) < 2 * float(width[unit]) + float(
            values[unit].sort().values.diff().max())


def test_upsampling_is_bilinear_like_f_interpolate():
    maps = torch.randn(3, 4, 7, 5, generator=torch.Generator().manual_seed(2))
    for size in [(7, 5), (14, 10), (64, 64), (9, 11)]:
        expected = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(upsample(maps, size), expected, atol=1e-5, rtol=1e-5)


def _data(seed=0, n=40, units=5, concepts=4):
    g = torch.Generator().manual_seed(seed)
    scale = torch.linspace(0.5, 3, n).view(-1, 1, 1, 1)  # later batches reach higher: the range grows
    features = torch.randn(n, units, 6, 6, generator=g).relu() * scale
    masks = torch.rand(n, concepts, 12, 12, generator=g) < 0.2
    masks[:10, 2:] = False  # category 1 not annotated on 10 images
    return features, masks, torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize("bins", [16, 256])
def test_streamed_counts_equal_the_exact_reference(bins):
    features, masks, categories = _data()
    counts = DissectionCounts(features.shape[1], masks.shape[1], categories, bins=bins, quantile=0.02)
    for start in range(0, len(features), 8):
        counts.update(features[start : start + 8], masks[start : start + 8])
    threshold, iou, fraction = counts.read()
    torch.testing.assert_close(iou, exact_iou(features, masks, categories, threshold), atol=1e-6, rtol=0)
    check_threshold(features, counts, threshold, fraction, 0.02)
    assert counts.memory_bytes() < 2 * 5 * (bins + 1) * 4 * 8 + 5 * (bins + 1) * 8 + 100  # independent of the images


def test_shards_merge_to_one_stream_exactly():
    features, masks, categories = _data(seed=1)
    one = DissectionCounts(5, 4, categories, bins=32, quantile=0.02)
    shards = [DissectionCounts(5, 4, categories, bins=32, quantile=0.02) for _ in range(2)]
    for start in range(0, len(features), 8):
        one.update(features[start : start + 8], masks[start : start + 8])
        shards[start // 8 % 2].update(features[start : start + 8], masks[start : start + 8])
    merged = DissectionCounts(5, 4, categories, bins=32, quantile=0.02)
    merged.merge([s.state() for s in shards])
    threshold, iou, fraction = merged.read()
    assert merged.images == len(features) and merged.positions == one.positions
    torch.testing.assert_close(iou, exact_iou(features, masks, categories, threshold), atol=1e-6, rtol=0)
    check_threshold(features, merged, threshold, fraction, 0.02)
    assert int(merged.mask_area.sum()) == int(masks.sum())


def _planted_net():
    """Unit 0 fires on red, unit 1 on green (1x1 conv on RGB in [0, 1]); units 2..7 random 3x3 edge filters.

    The random filters sum to zero over each input channel, so no uniform colour drives them.
    """
    conv = nn.Conv2d(3, 8, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
        conv.weight[1, :, 1, 1] = torch.tensor([-1.0, 1.0, -1.0])
        random = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        conv.weight[2:] = random - random.mean(dim=(2, 3), keepdim=True)
    return nn.Sequential(conv, nn.ReLU())


@pytest.fixture(scope="module")
def shapes():
    data = ShapesDataset(96, seed=3)
    images = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    return data, images


def test_planted_colour_units_are_labelled_with_their_colour(shapes):
    _, images = shapes
    result = dissect(_planted_net(), images.split(32), "1", top_k=3)["1"]
    assert result.label[0] == "red" and result.label[1] == "green"
    assert float(result.iou[0]) > 0.15 and float(result.iou[1]) > 0.15
    assert result.images == len(images)
    assert float(result.iou[2:].max()) < 0.04 and result.label[2:] == [None] * 6, result.iou
    top = result.top
    assert top.images.shape == (8, 3, 3, 64, 64) and top.maps.shape == (8, 3, 64, 64)
    assert (top.values[:, :-1] >= top.values[:, 1:]).all()


def test_user_masks_of_the_demo_shapes_label_a_planted_circle_unit(shapes):
    """A 4-channel input whose last channel is the circle mask; a 1x1 conv reading it is a circle detector."""
    data, images = shapes
    masks = torch.from_numpy(data.masks)
    labels = torch.from_numpy(data.labels)
    shape_masks = torch.stack([masks & (labels == c).view(-1, 1, 1) for c in range(len(CLASS_NAMES))], dim=1)
    inputs = torch.cat([images, shape_masks[:, :1].float()], dim=1)
    conv = nn.Conv2d(4, 2, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 3] = 1.0
        conv.weight[1, :3] = torch.randn(3, 1, 1, generator=torch.Generator().manual_seed(1))
    batches = list(zip(inputs.split(32), shape_masks.split(32)))
    result = dissect(conv, batches, "", names=list(CLASS_NAMES), quantile=0.02)[""]
    assert result.label[0] == "circle" and float(result.iou[0]) > 0.5
    assert result.names == list(CLASS_NAMES) and result.iou_table.shape == (2, 6)


def test_colour_concepts_name_the_demo_palette():
    names = color_concepts.names
    palette = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.15, 0.3, 0.95], [0.95, 0.9, 0.1], [1.0, 0.55, 0.05], [0.97] * 3])
    masks = color_concepts(palette.T.reshape(1, 3, 6, 1))
    assert [names[int(k)] for k in masks[0, :, :, 0].float().argmax(0)] == ["red", "green", "blue", "yellow", "orange", "white"]
    assert masks.sum(1).eq(1).all()  # one colour per pixel
    small = ColorConcepts(size=(2, 2))(torch.rand(3, 3, 8, 8))
    assert small.shape == (3, 11, 2, 2)


def test_tracker_rejects_masks_that_do_not_match():
    net = nn.Sequential(nn.Conv2d(3, 2, 3))
    with DissectionTracker(net, ["0"], ["a", "b"]) as tracker:
        net(torch.rand(2, 3, 8, 8))
        with pytest.raises(ValueError, match=r"masks must be \(N, 2, H, W\)"):
            tracker.update(torch.zeros(2, 3, 8, 8, dtype=torch.bool))
        with pytest.raises(RuntimeError, match="no forward pass"):
            tracker.update(torch.zeros(2, 2, 8, 8, dtype=torch.bool))
    assert not net[0]._forward_hooks
    with pytest.raises(ValueError, match="concept names are needed"):
        dissect(net, [(torch.rand(2, 3, 8, 8), torch.zeros(2, 2, 8, 8, dtype=torch.bool))], "0")


def test_torchvision_model_with_random_weights():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None)
    results = dissect(net, [torch.rand(2, 3, 64, 64) for _ in range(2)], ["layer3", "layer4"], quantile=0.05)
    assert results["layer4"].iou_table.shape == (512, 11) and results["layer3"].iou.shape == (256,)
    assert all(0 <= float(v) <= 1 for v in results["layer4"].iou) and results["layer4"].images == 4
    assert net.training  # flags restored
