"""ActivationMaps and log_activation_maps: probe images, channel choice, colours, resume, bad input."""

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_activation_maps
from tb_viz_plugin.callbacks import ActivationMaps
from tb_viz_plugin.callbacks.probes import evenly_spaced
from tb_viz_plugin.methods import capture_activations, select_units
from tb_viz_plugin.render.activation_maps import activation_grid
from tensorboard import context as tb_context

from tests.helpers import guard_side_effects, hook_count, make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()


def test_callback_logs_the_most_active_channels_of_the_probe_images(tmp_path):
    violations: list = []
    callback = guard_side_effects(ActivationMaps(layers=["net.0.1", "net.0.3"], num_images=3, units=4), violations)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [callback])
    trainer.fit(module)
    assert violations == [] and hook_count(module) == 0

    plugin, _ = make_plugin(str(tmp_path))
    tags = plugin.tags_impl(CTX, "")["tiny/v0"]
    assert {tag: info["steps"] for tag, info in tags.items()} == {
        "activation_maps/net.0.1": [2, 4], "activation_maps/net.0.3": [2, 4]}  # sanity check skipped
    answer = plugin.items_impl(CTX, "", "tiny/v0", "activation_maps/net.0.3", 4)
    indices = evenly_spaced(32, 3)
    assert [item["caption"].split(":")[0] for item in answer["items"]] == [
        f"val #{i} (label {int(module.val_dataloader().dataset[i][1])})" for i in indices]

    # the channels shown are the most active ones for the final weights, the same for every image
    probes = torch.stack([module.val_dataloader().dataset[i][0] for i in indices])
    module.eval()
    with torch.no_grad():
        maps = capture_activations(module, probes, ["net.0.3"])["net.0.3"]
    expected = select_units(maps, 4).tolist()
    assert all(item["channels"] == expected for item in answer["items"])
    assert answer["meta"]["channels_total"] == 12 and answer["meta"]["feature_shape"] == [12, 16, 16]
    peaks = maps[:, expected].flatten(2).abs().max(2).values
    for item, peak in zip(answer["items"], peaks):
        assert item["peaks"] == pytest.approx(peak.tolist())
    # 5 tiles of 64 px (16 px upscaled x4) on a 3x3 grid with 2 px gaps
    assert (answer["items"][0]["width"], answer["items"][0]["height"]) == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)

    state = callback.state_dict()
    assert state == {"probes": {"indices": indices}}
    resumed = ActivationMaps(layers=["net.0.1"], num_images=5)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state


def test_grid_colours_follow_the_values():
    maps = torch.zeros(3, 2, 2)
    maps[1, 0, 0] = 2.0  # positive peak: red
    maps[2, 1, 1] = -1.0  # negative peak: blue
    grid = activation_grid(torch.zeros(8, 8, 3), maps, min_tile=8)
    tile = lambda i, y, x: grid[2 + (i // 2) * 10 + y, 2 + (i % 2) * 10 + x].tolist()  # 2x2 grid of 8 px tiles
    assert tile(1, 6, 6) == [247, 247, 247]  # all-zero map: white
    assert tile(2, 1, 1) == [178, 24, 43] and tile(2, 6, 6) == [247, 247, 247]
    assert tile(3, 6, 6) == [33, 102, 172] and tile(0, 4, 4) == [0, 0, 0]  # the image itself first


def test_plain_function_with_chosen_channels(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    writer = SummaryWriter(str(tmp_path / "run"))
    tags = log_activation_maps(writer, net, torch.randn(2, 1, 12, 12), 7, ["1", "2"], units=[5, 0], captions=["a", "b"])
    writer.close()
    assert tags == ["activation_maps/1", "activation_maps/2"]
    plugin, _ = make_plugin(str(tmp_path))
    answer = plugin.items_impl(CTX, "", "run", "activation_maps/2", 7)
    assert [item["channels"] for item in answer["items"]] == [[5, 0], [5, 0]]
    assert answer["items"][1]["caption"].startswith("b: the image, then channels 5, 0 (2 chosen of 6)")
    assert answer["meta"]["selection"] == "given" and answer["meta"]["feature_shape"] == [6, 6, 6]
    assert net.training and hook_count(net) == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(num_images=0), "num_images"), (dict(units=0), "units"), (dict(units=[]), "units"),
     (dict(indices=[]), "indices"), (dict(layers=[3]), "layers")],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        ActivationMaps(**kwargs)


def test_unknown_layer_fails_at_setup(tmp_path):
    trainer = tiny_trainer(tmp_path, [ActivationMaps(layers="net.9")])
    with pytest.raises(MisconfigurationException, match=r"no module named 'net.9'.*'net.0.0'"):
        trainer.fit(tiny_module())
