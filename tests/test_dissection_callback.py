"""NetworkDissection in a real Trainer: the plain function's result, hooks only during validation, curves over epochs."""

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tensorboard import context as tb_context
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_network_dissection
from tb_viz_plugin.callbacks import NetworkDissection
from tb_viz_plugin.methods import color_concepts, dissect

from tests.helpers import guard_side_effects, hook_count, make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()
LAYERS = ["net.0.1", "net.0.3"]


class HalfMasks:
    """User masks of a batch: concept "left" is the left half of every image, "top" the top half of even samples."""

    names = ["left", "top"]
    categories = ["half", "half"]

    def __init__(self) -> None:
        self.seen = []

    def __call__(self, batch, sample_ids):
        images = batch[0]
        self.seen.append(sample_ids.tolist())
        masks = torch.zeros(images.shape[0], 2, *images.shape[2:], dtype=torch.bool)
        masks[:, 0, :, : images.shape[3] // 2] = True
        masks[(sample_ids % 2 == 0), 1, : images.shape[2] // 2] = True
        return masks


def _answer(logdir, tag, step=None):
    plugin, _ = make_plugin(str(logdir))
    return plugin.items_impl(CTX, "", "tiny/v0", tag, step)


def test_callback_logs_what_the_plain_function_computes(tmp_path):
    violations: list = []
    masks = HalfMasks()
    callback = guard_side_effects(NetworkDissection(layers=LAYERS, masks=masks, quantile=0.02, top_k=3, strict=True, budget=None), violations)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [callback], limit_val_batches=4)
    trainer.fit(module)
    assert violations == [] and hook_count(module) == 0
    assert masks.seen[-4:] == [list(range(i, i + 8)) for i in range(0, 32, 8)]  # dataset indices

    plugin, _ = make_plugin(str(tmp_path))
    tags = plugin.tags_impl(CTX, "")["tiny/v0"]
    assert {t: i["steps"] for t, i in tags.items()} == {f"network_dissection/{layer}": [2, 4] for layer in LAYERS}
    answer = _answer(tmp_path, "network_dissection/net.0.3")
    meta = answer["meta"]
    assert [(p["step"], p["epoch"]) for p in meta["history"]] == [(2, 0), (4, 1)]
    assert meta["images"] == 32 and meta["units_total"] == 12 and meta["top_k"] == 3
    assert [c["name"] for c in meta["concepts"]] == color_concepts.names + ["left", "top"]
    assert meta["categories"] == ["color", "half"]

    images = torch.cat([x for x, _ in module.val_dataloader()])
    extra = HalfMasks()
    batches = [(x, torch.cat([color_concepts(x), extra((x,), torch.arange(i * 8, i * 8 + 8))], 1)) for i, x in enumerate(images.split(8))]
    module.eval()
    expected = dissect(module.net, batches, "0.3", names=color_concepts.names + HalfMasks.names, quantile=0.02)["0.3"]
    assert [u["label"] for u in meta["units"]] == expected.label
    assert [u["iou"] for u in meta["units"]] == pytest.approx(expected.iou.tolist(), abs=1e-6)
    assert meta["detectors"] == len(expected.detectors)
    assert len(answer["items"]) == 12 and {item["unit"] for item in answer["items"]} == set(range(12))


def test_resumed_history_and_names(tmp_path):
    callback = NetworkDissection(layers="net.0.3", name="colours")
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=1)
    trainer.fit(tiny_module())
    state = callback.state_dict()
    assert [p["step"] for p in state["history"]["net.0.3"]] == [2]
    again = NetworkDissection(layers="net.0.3", name="colours")
    again.load_state_dict(state)
    assert again.state_dict() == state
    assert "network_dissection/net.0.3/colours" in make_plugin(str(tmp_path))[0].tags_impl(CTX, "")["tiny/v0"]


def test_wrong_settings_fail_early():
    with pytest.raises(MisconfigurationException, match="concept names are needed"):
        NetworkDissection(masks=lambda batch, ids: None)
    with pytest.raises(MisconfigurationException, match="bins must be an even number"):
        NetworkDissection(bins=7)
    with pytest.raises(MisconfigurationException, match="quantile"):
        NetworkDissection(quantile=1.5)
    with pytest.raises(MisconfigurationException, match="no concepts"):
        NetworkDissection(concepts=[])
    trainer = tiny_trainer("/tmp/unused-dissection", [NetworkDissection(layers="net.9")])
    with pytest.raises(MisconfigurationException, match="net.0.1"):
        trainer.fit(tiny_module())


def test_failing_masks_warn_and_training_goes_on(tmp_path):
    def broken(batch, ids):
        raise RuntimeError("no masks today")

    broken.names = ["x"]
    module = tiny_module()
    with pytest.warns(UserWarning, match="no masks today"):
        tiny_trainer(tmp_path, [NetworkDissection(layers="net.0.1", masks=broken)]).fit(module)
    assert hook_count(module) == 0


def test_plain_function_logs_one_tag_per_layer(tmp_path):
    net = tiny_module().net
    with SummaryWriter(str(tmp_path / "tiny" / "v0")) as writer:
        tags = log_network_dissection(writer, net, torch.rand(16, 3, 16, 16).split(8), step=3, layers=["0.1"], quantile=0.02)
    assert tags == ["network_dissection/0.1"]
    meta = _answer(tmp_path, tags[0], 3)["meta"]
    assert meta["history"] == [{"step": 3, "epoch": None, "detectors": meta["detectors"], "concepts": meta["concepts_covered"]}]


def test_num_samples_counts_evenly_spaced_images(tmp_path):
    masks = HalfMasks()
    callback = NetworkDissection(layers="net.0.3", masks=masks, quantile=0.02, top_k=2, num_samples=12, strict=True, budget=None)
    module = tiny_module()
    tiny_trainer(tmp_path, [callback], max_epochs=1, limit_val_batches=4).fit(module)
    kept = list(range(0, 32, 3))  # stride ceil(32 / 12) = 3: 11 images
    assert sum(masks.seen[-4:], []) == list(range(32))  # the user's masks get whole batches (then sliced)
    meta = _answer(tmp_path, "network_dissection/net.0.3")["meta"]
    assert meta["images"] == len(kept)

    images = torch.cat([x for x, _ in module.val_dataloader()])
    parts = [torch.tensor([i for i in kept if i // 8 == b]) for b in range(4)]  # the same batches as the loader's
    batches = [(images[ids], torch.cat([color_concepts(images[ids]), HalfMasks()((images[ids],), ids)], 1)) for ids in parts]
    module.eval()
    expected = dissect(module.net, batches, "0.3", names=color_concepts.names + HalfMasks.names, quantile=0.02)["0.3"]
    assert [u["label"] for u in meta["units"]] == expected.label
    assert [u["iou"] for u in meta["units"]] == pytest.approx(expected.iou.tolist(), abs=1e-6)
    with pytest.raises(MisconfigurationException, match="num_samples"):
        NetworkDissection(num_samples=0)
