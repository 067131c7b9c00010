"""AttributionMaps inside a real Trainer: what it logs, resuming, validate(), precision, bad settings."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tensorboard import context as tb_context
from torch import nn

from tb_viz_plugin.callbacks import AttributionMaps

from tests.helpers import hook_count, make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()
METHODS = ["cam", "grad_cam", "saliency", "integrated_gradients", "occlusion"]
OPTIONS = {"integrated_gradients": {"steps": 4}, "occlusion": {"window": 8}}


def _read(tmp_path, tag="attributions/net.0.3/predicted", step=None):
    plugin, client = make_plugin(str(tmp_path))
    tags = plugin.tags_impl(CTX, "").get("tiny/v0", {})
    if step is None:
        return tags
    body = plugin.items_impl(CTX, "", "tiny/v0", tag, step)
    blobs = [client.get("/data/plugin/tb_viz/" + item["url"]).get_data() for item in body["items"]]
    return body, [Image.open(io.BytesIO(blob)) for blob in blobs]


def test_logs_one_grid_per_validation_epoch(tmp_path):
    module = tiny_module()
    module.class_names = ["cat", "dog", "<b>emu</b>", "yak"]
    callback = AttributionMaps(methods=METHODS, num_images=3, options=OPTIONS, strict=True, budget=None)
    tiny_trainer(tmp_path, [callback], max_epochs=2).fit(module)
    tags = _read(tmp_path)
    assert tags["attributions/net.0.3/predicted"]["kind"] == "attributions"
    assert tags["attributions/net.0.3/predicted"]["steps"] == [2, 4]  # global step after each epoch; no sanity check
    body, images = _read(tmp_path, step=4)
    meta, items = body["meta"], body["items"]
    assert [c["method"] for c in meta["columns"]] == METHODS
    assert [c["signed"] for c in meta["columns"]] == [True, False, False, True, True]
    assert meta["layers"] == ["net.0.3"] and meta["class_names"][2] == "<b>emu</b>"
    assert [row["index"] for row in meta["rows"]] == [0, 16, 31]  # evenly spaced validation samples
    for row in meta["rows"]:
        assert row["predicted_name"] == module.class_names[row["predicted"]] and 0 < row["probability"] <= 1
        assert row["target"] == row["predicted"]
    assert len(items) == 3 * (1 + len(METHODS))
    for item, image in zip(items, images):
        if item["role"] == "image":
            assert image.mode == "RGB" and "predicted:" in item["caption"]
            continue
        assert image.mode == "L" and image.size == (16, 16)  # one channel, normalised per map
        levels = np.asarray(image)
        assert item["min"] <= item["max"]
        if not item["signed"] and item["max"] > item["min"]:
            assert levels.min() == 0 and levels.max() == 255
        if item["signed"]:
            scale = max(abs(item["min"]), abs(item["max"]))
            assert abs(int(levels.max()) - round(128 + 127 * item["max"] / scale)) <= 1  # 0 is level 128
    assert hook_count(module) == 0


def test_true_label_target_resume_and_validate_in_inference_mode(tmp_path):
    callback = AttributionMaps(methods=["grad_cam", "guided_backprop"], target="label", indices=[3, 5], strict=True)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=1)
    trainer.fit(module)
    body, _ = _read(tmp_path, tag="attributions/net.0.3/label", step=2)
    assert [row["target"] for row in body["meta"]["rows"]] == [row["label"] for row in body["meta"]["rows"]]
    assert body["meta"]["target"] == "label"

    resumed = AttributionMaps(methods=["grad_cam", "guided_backprop"], target="label", num_images=7, strict=True)
    resumed.load_state_dict(callback.state_dict())
    assert callback.state_dict() == {"probes": {"indices": [3, 5]}, "layers": ["net.0.3"]}
    validator = tiny_trainer(tmp_path, [resumed], max_epochs=1)
    validator.validate(module, verbose=False)  # runs under torch.inference_mode()
    assert resumed.state_dict() == callback.state_dict()
    assert hook_count(module) == 0


def test_bf16_mixed_precision(tmp_path):
    callback = AttributionMaps(methods=["grad_cam", "guided_grad_cam", "occlusion"], num_images=2, options={"occlusion": {"window": 8}}, strict=True)
    tiny_trainer(tmp_path, [callback], max_epochs=1, precision="bf16-mixed").fit(tiny_module())
    body, images = _read(tmp_path, step=2)
    assert all(np.isfinite([item["min"], item["max"]]).all() for item in body["items"] if item["role"] == "map")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(methods=["grad_cam", "gradcam"]), r"'gradcam'.*valid methods: cam, grad_cam"),
        (dict(methods=["occlusion"], options={"occlusion": {"size": 4}}), "valid options: window"),
        (dict(target="largest"), "'predicted'"),
        (dict(target=[0, 1]), "not per-image indices"),
        (dict(num_images=0), "num_images"),
        (dict(layers=[]), "layers must be"),
        (dict(every_n_epochs=0), "every_n_epochs"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        AttributionMaps(**kwargs)


def test_bad_layer_or_headless_cam_fail_at_setup(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"no module named 'layer4'.*'net', 'net.0', 'net.0.0'"):
        tiny_trainer(tmp_path, [AttributionMaps(layers="layer4")]).fit(tiny_module())
    module = tiny_module()
    module.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 4))
    with pytest.raises(MisconfigurationException, match="no nn.AdaptiveAvgPool2d"):
        tiny_trainer(tmp_path, [AttributionMaps(methods=["cam"])]).fit(module)


def _broken_display(images):
    raise RuntimeError("display broke")


def test_runtime_failure_warns_and_training_goes_on(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = tiny_trainer(tmp_path, [AttributionMaps(methods=["saliency"], to_rgb=_broken_display)])
        trainer.fit(tiny_module())
    assert trainer.current_epoch == 2
    assert any("display broke" in str(w.message) and "strict=True" in str(w.message) for w in caught)
    with pytest.raises(RuntimeError, match="display broke"):
        tiny_trainer(tmp_path, [AttributionMaps(methods=["saliency"], to_rgb=_broken_display, strict=True)]).fit(tiny_module())


def test_guided_methods_on_a_net_without_relu(tmp_path):
    module = tiny_module()
    module.net[0][1] = nn.GELU()  # no ReLU left: guided backprop cannot run
    module.net[0][3] = nn.GELU()
    with pytest.raises(MisconfigurationException, match=r"\['guided_backprop'\] need ReLUs.*use methods such as"):
        tiny_trainer(tmp_path, [AttributionMaps(methods=["guided_backprop"])]).fit(module)
    with warnings.catch_warnings(record=True) as caught:  # the defaults: guided Grad-CAM dropped, once
        warnings.simplefilter("always")
        trainer = tiny_trainer(tmp_path / "defaults", [AttributionMaps(num_images=2, budget=None)])
        trainer.fit(module)
    ours = [str(w.message) for w in caught if str(w.message).startswith("AttributionMaps")]
    assert len(ours) == 1 and "['guided_grad_cam'] dropped" in ours[0] and "runs no ReLU" in ours[0]
    plugin, _ = make_plugin(str(tmp_path / "defaults"))
    tags = plugin.tags_impl(CTX, "").get("tiny/v0", {})
    assert list(tags) == ["attributions/net.0.3/predicted"] and tags["attributions/net.0.3/predicted"]["steps"] == [2, 4]
