"""Activation methods in pure torch: receptive fields, streamed top-k against a brute-force reference, hooks."""

import pytest
import torch
from torch import nn

from tb_viz_plugin.methods import (
    LayerHooks,
    RunningTopK,
    TopActivationTracker,
    UnitTopK,
    capture_activations,
    check_units,
    measure_layer,
    merge_top_k,
    select_units,
    top_activations,
)

from tests.helpers import hook_count


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # RF 4, stride 2
        nn.Conv2d(6, 8, 3), nn.ReLU(),  # valid conv: RF 8, stride 2, feature map 6x6 for 16x16
    )


@pytest.mark.parametrize(
    "layers,size,stride,offset",
    [
        ([nn.Conv2d(3, 4, 5, padding=2)], 5, 1, -2),
        ([nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1)], 8, 2, -3),
        ([nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2)], 7, 4, 0),
        ([nn.Conv2d(3, 4, 3, dilation=2, padding=2), nn.Conv2d(4, 4, 3, padding=1)], 7, 1, -3),
        # needs inputs larger than 16x16 to see the whole field: measured on 32x32
        ([nn.Conv2d(3, 4, 7, padding=3), nn.Conv2d(4, 4, 7, padding=3), nn.Conv2d(4, 4, 7, padding=3)], 19, 1, -9),
    ],
)
def test_receptive_field_matches_conv_arithmetic(layers, size, stride, offset):
    torch.manual_seed(0)
    net = nn.Sequential(*layers)
    rf = measure_layer(net, str(len(layers) - 1), (3, 16, 16)).rf
    assert (rf.size, rf.stride, rf.offset, rf.complete) == ((size, size), (stride, stride), (offset, offset), True)


def test_receptive_field_of_resnet18_and_lower_bound():
    torchvision = pytest.importorskip("torchvision")
    resnet = torchvision.models.resnet18()  # random weights, nothing downloaded
    geometry = measure_layer(resnet, "layer1", (3, 32, 32))  # field 43 px: measured again on 64x64
    assert geometry.rf.size == (43, 43) and geometry.rf.stride == (4, 4) and geometry.rf.complete
    assert geometry.feature_size == (8, 8) and geometry.channels == 64 and geometry.crop_size == (32, 32)
    capped = measure_layer(resnet, "layer2", (3, 16, 16), max_size=32)  # true field 99 px
    assert not capped.rf.complete and capped.rf.size == (32, 32) and capped.crop_size == (16, 16)
    assert capped.rf.describe().startswith("RF >= 32x32")
    deep = measure_layer(resnet, "layer4", (3, 32, 32))  # by default measured up to twice the input's side
    assert not deep.rf.complete and deep.rf.size == (64, 64) and deep.crop_size == (32, 32)
    assert resnet.training  # flags restored


def test_measuring_changes_nothing_and_uses_no_global_rng():
    net = _net()
    net.train()
    state = torch.get_rng_state()
    measure_layer(net, "3", (3, 16, 16))
    assert torch.equal(state, torch.get_rng_state())
    assert all(m.training for m in net.modules()) and all(p.grad is None for p in net.parameters())
    assert hook_count(net) == 0


def _brute_force(net, batches, layer, units, k):
    """All activations kept, sorted by (value desc, index asc): the reference."""
    with torch.no_grad():
        maps = torch.cat([capture_activations(net, b, [layer])[layer] for b in batches])
    images = torch.cat(batches)
    values, flat = maps.flatten(2).max(2)
    width = maps.shape[3]
    expected = []
    for u in units:
        order = sorted(range(len(images)), key=lambda i: (-values[i, u].item(), i))[:k]
        expected.append([(i, values[i, u].item(), divmod(flat[i, u].item(), width)) for i in order])
    return expected, images, maps


def _as_rows(top: UnitTopK):
    return [
        [(i, v, tuple(p)) for i, v, p in zip(ids, vals, pos) if i >= 0]
        for ids, vals, pos in zip(top.sample_ids.tolist(), top.values.tolist(), top.positions.tolist())
    ]


def test_streamed_top_k_equals_brute_force_with_ties_crops_and_maps():
    net = _net()
    g = torch.Generator().manual_seed(1)
    data = torch.randn(45, 3, 16, 16, generator=g)
    data[30] = data[4]  # an exact tie: the lower index ranks first
    data[41] = data[4]
    batches = list(data.split(7))
    top = top_activations(net, batches, ["4"], units=[0, 3, 7], k=6)["4"]
    expected, images, maps = _brute_force(net, batches, "4", [0, 3, 7], 6)
    assert _as_rows(top) == expected
    assert top.samples == 45 and top.units.tolist() == [0, 3, 7]
    geometry = top.geometry
    h, w = geometry.crop_size
    for row, unit in enumerate([0, 3, 7]):
        for rank, (index, _, _) in enumerate(expected[row]):
            y, x = geometry.crop_origins(top.positions[row, rank]).tolist()
            assert torch.equal(top.crops[row, rank], images[index, :, y : y + h, x : x + w])
            assert torch.equal(top.maps[row, rank], maps[index, unit])
    tied = [i for i, _, _ in expected[0]]
    if 4 in tied and 30 in tied:
        assert tied.index(4) < tied.index(30)


def test_pooled_whole_image_crops_equal_brute_force_and_the_pool_holds_only_the_top_k():
    """On 8x8 inputs layer "4" sees the whole image (its crops come from the shared image pool);
    layer "1" (RF 3x3) keeps per-entry crops. Both equal the brute-force reference."""
    net = _net()
    data = torch.randn(60, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    batches = list(data.split(9))
    layers, units, k = ["1", "4"], [0, 2, 5], 4
    geometry = {name: measure_layer(net, name, (3, 8, 8)) for name in layers}
    assert geometry["4"].crop_size == (8, 8) and geometry["1"].crop_size == (3, 3)
    pool_sizes = []
    with torch.no_grad(), TopActivationTracker(net, geometry, {n: units for n in layers}, k, in_channels=3) as tracker:
        for start, images in zip(range(0, 60, 9), batches):
            net(images)
            tracker.update(images, torch.arange(start, start + len(images)))
            referenced = set(tracker.results()["4"].sample_ids.flatten().tolist())
            pool_sizes.append((len(tracker._pool), len(referenced)))
    assert all(size == held for size, held in pool_sizes), pool_sizes  # pruned after every batch
    assert tracker._pool.capacity == len(units) * k  # only layer "4" is pooled
    assert len(tracker._pool._storage) <= tracker._pool.capacity + 9  # at most one batch over, in passing
    for name, top in tracker.results().items():
        expected, images, maps = _brute_force(net, batches, name, units, k)
        assert _as_rows(top) == expected
        h, w = top.geometry.crop_size
        for row, unit in enumerate(units):
            for rank, (index, _, _) in enumerate(expected[row]):
                y, x = top.geometry.crop_origins(top.positions[row, rank]).tolist()
                assert torch.equal(top.crops[row, rank], images[index, :, y : y + h, x : x + w])
                assert torch.equal(top.maps[row, rank], maps[index, unit])


def test_a_restarted_tracker_equals_a_new_one_and_reuses_its_storage():
    """A second stream through ``restart`` (the next validation epoch) gives what a new tracker
    gives, for a pooled (whole-image) and a cropped layer, also with fewer samples than k: the
    kept storage of the last stream never shows through (empty entries are zeros)."""
    net = _net()
    g = torch.Generator().manual_seed(5)
    first, second = torch.randn(40, 3, 8, 8, generator=g), torch.randn(3, 3, 8, 8, generator=g) * 5
    layers, units, k = ["1", "4"], [0, 2, 5], 4
    geometry = {name: measure_layer(net, name, (3, 8, 8)) for name in layers}
    chosen = {n: units for n in layers}

    def stream(tracker, data):
        with torch.no_grad():
            for start, images in zip(range(0, len(data), 9), data.split(9)):
                net(images)
                tracker.update(images, torch.arange(start, start + len(images)))
        return tracker.results()

    reused = TopActivationTracker(net, geometry, chosen, k, in_channels=3)
    stream(reused, first)
    storage = reused._pool._storage
    reused.remove()
    for data in (second, first):
        reused.restart(net)
        got = stream(reused, data)
        reused.remove()
        with TopActivationTracker(net, geometry, chosen, k, in_channels=3) as fresh:
            want = stream(fresh, data)
        for name in layers:
            for field in ("values", "sample_ids", "positions", "crops", "maps"):
                assert torch.equal(getattr(got[name], field), getattr(want[name], field)), (name, field)
            assert got[name].samples == len(data)
    assert (got["4"].sample_ids >= 0).all() and reused._pool._storage is storage  # no new allocation
    assert hook_count(net) == 0


def test_fewer_samples_than_k_leave_empty_entries():
    top = top_activations(_net(), [torch.randn(3, 3, 16, 16)], ["4"], units=2, k=5)["4"]
    assert (top.sample_ids[:, :3] >= 0).all() and (top.sample_ids[:, 3:] == -1).all()
    assert torch.isinf(top.values[:, 3:]).all()


def test_merging_shards_equals_one_process_and_drops_padded_repeats():
    net = _net()
    data = torch.randn(21, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    single = top_activations(net, list(data.split(4)), ["1"], units=4, k=5)["1"]
    # two "ranks" like a DistributedSampler: interleaved, the last shard padded with sample 0 again
    shards = [list(range(0, 21, 2)), list(range(1, 21, 2)) + [0]]
    parts = []
    for ids in shards:
        geometry = single.geometry
        topk = RunningTopK("1", [0, 1, 2, 3], 5, geometry, 3, torch.device("cpu"))
        with torch.no_grad(), LayerHooks(net, ["1"], lambda name, out: maps.append(out[:, :4])):
            for chunk in torch.tensor(ids).split(3):
                maps: list = []
                net(data[chunk])
                topk.update(maps[0], data[chunk], chunk)
        parts.append(topk.result())
    merged = merge_top_k(parts)
    assert torch.equal(merged.sample_ids, single.sample_ids) and torch.equal(merged.positions, single.positions)
    torch.testing.assert_close(merged.values, single.values)  # other batch sizes: last-bit differences
    assert torch.equal(merged.crops, single.crops)
    torch.testing.assert_close(merged.maps, single.maps)  # other batch sizes: last-bit differences
    assert merged.samples == 22  # samples streamed, the padded repeat included


def test_state_is_independent_of_the_number_of_samples():
    net = _net()

    def state_bytes(n):
        top = top_activations(net, list(torch.randn(n, 3, 16, 16).split(8)), ["4"], units=4, k=3)["4"]
        return sum(getattr(top, f).nbytes for f in UnitTopK.SHARDED)

    assert state_bytes(8) == state_bytes(96)


def test_hooks_are_removed_when_the_stream_fails():
    net = _net()

    def batches():
        yield torch.randn(4, 3, 16, 16)
        raise RuntimeError("data loader broke")

    with pytest.raises(RuntimeError, match="data loader broke"):
        top_activations(net, batches(), ["4"])
    assert hook_count(net) == 0
    with pytest.raises(ValueError, match="outputs .*need \\(N, C, H, W\\)"):
        top_activations(nn.Sequential(net, nn.Flatten()), [torch.randn(2, 3, 16, 16)], ["1"])
    assert hook_count(net) == 0


def test_capture_stops_after_the_last_wanted_layer():
    class Boom(nn.Module):
        def forward(self, x):
            raise AssertionError("ran past the captured layer")

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Boom())
    maps = capture_activations(net, torch.randn(2, 3, 8, 8), ["0", "1"])
    assert [tuple(m.shape) for m in maps.values()] == [(2, 4, 6, 6)] * 2
    assert hook_count(net) == 0


def test_unit_and_channel_choices():
    assert check_units(None, 8) == list(range(8)) and check_units(None, 64) == list(range(16))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        check_units([3, 8], 8)
    with pytest.raises(ValueError):
        check_units(0, 8)
    maps = torch.zeros(2, 5, 3, 3)
    maps[:, 3] = 2.0
    maps[:, 1] = 1.0
    assert select_units(maps, 2).tolist() == [3, 1]


def test_image_pool_stack_with_and_without_empty_ids():
    from tb_viz_plugin.methods.image_pool import EMPTY_ID, ImagePool

    pool = ImagePool(4)
    images = torch.arange(3 * 2 * 2 * 2, dtype=torch.float32).view(3, 2, 2, 2)
    pool.add(torch.tensor([10, 11, 12]), images, torch.arange(3))
    full = pool.stack(torch.tensor([12, 10, 12]), (2, 2, 2), torch.device("cpu"))
    assert torch.equal(full, images[[2, 0, 2]])
    holes = pool.stack(torch.tensor([11, EMPTY_ID]), (2, 2, 2), torch.device("cpu"))
    assert torch.equal(holes[0], images[1]) and torch.equal(holes[1], torch.zeros(2, 2, 2))
