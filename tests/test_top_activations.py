"""TopActivations in a real Trainer: same result as the plain function, hooks only during validation."""

import itertools

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_top_activations
from tb_viz_plugin.callbacks import ActivationMaps, TopActivations
from tb_viz_plugin.methods import UnitTopK, top_activations
from tensorboard import context as tb_context

from tests.helpers import guard_side_effects, hook_count, make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()
LAYERS = ["net.0.1", "net.0.3"]


def _logged(logdir, run, tag, step=None):
    """The manifest meta, the items (without urls) and the image bytes of one logged step."""
    plugin, client = make_plugin(str(logdir))
    answer = plugin.items_impl(CTX, "", run, tag, step)
    blobs = [client.get("/data/plugin/tb_viz/" + item.pop("url")).data for item in answer["items"]]
    return answer, blobs


class HookSpy(pl.Callback):
    """Records the hooks on the module during training batches and during validation batches."""

    def __init__(self) -> None:
        self.train, self.val = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append(hook_count(pl_module))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.append((trainer.sanity_checking, hook_count(pl_module)))


def test_callback_logs_what_the_plain_function_computes(tmp_path):
    violations: list = []
    spy = HookSpy()
    callback = guard_side_effects(TopActivations(layers=LAYERS, units=[0, 5, 2], k=4, strict=True, budget=None), violations)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path / "cb", [callback, spy])
    trainer.fit(module)
    assert violations == []
    assert hook_count(module) == 0
    assert spy.train and set(spy.train) == {0}  # never hooked during training batches
    assert {count for sanity, count in spy.val if sanity} == {0}  # nor during the sanity check
    assert {count for sanity, count in spy.val if not sanity} == {2}

    plugin, _ = make_plugin(str(tmp_path / "cb"))
    tags = plugin.tags_impl(CTX, "")["tiny/v0"]
    assert {tag: info["steps"] for tag, info in tags.items()} == {
        "top_activations/net.0.1": [2, 4], "top_activations/net.0.3": [2, 4]}

    # the same validation data (2 batches of 8) through the plain-PyTorch function, same weights
    writer = SummaryWriter(str(tmp_path / "plain" / "run"))
    batches = (x for x, _ in itertools.islice(module.val_dataloader(), 2))
    log_top_activations(writer, module, batches, 4, LAYERS, units=[0, 5, 2], k=4)
    writer.close()
    for layer in LAYERS:
        streamed, streamed_png = _logged(tmp_path / "cb", "tiny/v0", f"top_activations/{layer}", 4)
        plain, plain_png = _logged(tmp_path / "plain", "run", f"top_activations/{layer}", 4)
        assert streamed["items"] == plain["items"] and streamed_png == plain_png
        assert streamed["meta"] == {**plain["meta"], "sample_ids": "dataset index"}
        assert streamed["meta"]["samples"] == 16 and streamed["meta"]["k"] == 4
    meta = streamed["meta"]
    assert meta["rf_size"] == [7, 7] and meta["rf_stride"] == [1, 1] and meta["rf"] == "RF 7x7 px, stride 1"
    assert [item["unit"] for item in streamed["items"]] == [0, 5, 2]
    values = streamed["items"][0]["values"]
    assert values == sorted(values, reverse=True) and len(set(streamed["items"][0]["sample_ids"])) == 4


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_validate_under_inference_mode_and_autocast_logs_at_step_zero(tmp_path, precision):
    callbacks = [TopActivations(units=2, k=3, strict=True), ActivationMaps(num_images=2, strict=True)]
    trainer = tiny_trainer(tmp_path, callbacks, precision=precision)
    trainer.validate(tiny_module())
    answer, blobs = _logged(tmp_path, "tiny/v0", "top_activations/net.0.2", 0)  # default: last Conv2d
    assert len(answer["items"]) == 2 and all(blob.startswith(b"\x89PNG") for blob in blobs)
    assert answer["meta"]["rf_size"] == [7, 7]
    maps, _ = _logged(tmp_path, "tiny/v0", "activation_maps/net.0.0", 0)  # default: first Conv2d
    assert len(maps["items"]) == 2


class FailingValidation(pl.LightningModule):
    """Validation raises at the second batch."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_module()

    def forward(self, x):
        return self.inner(x)

    def validation_step(self, batch, batch_idx):
        self(batch[0])
        if batch_idx == 1:
            raise RuntimeError("validation broke")

    def val_dataloader(self):
        return self.inner.val_dataloader()


def test_hooks_are_removed_when_validation_raises(tmp_path):
    module = FailingValidation()
    trainer = tiny_trainer(tmp_path, [TopActivations(layers="inner.net.0.0")])
    with pytest.raises(RuntimeError, match="validation broke"):
        trainer.validate(module)
    assert hook_count(module) == 0


def _broken_display(images):
    raise RuntimeError("display broke")


def test_runtime_failure_warns_once_and_training_goes_on(tmp_path):
    trainer = tiny_trainer(tmp_path, [TopActivations(to_rgb=_broken_display)])
    with pytest.warns(UserWarning, match=r"display broke.*strict=True"):
        trainer.fit(tiny_module())
    assert trainer.current_epoch == 2

    trainer = tiny_trainer(tmp_path, [TopActivations(to_rgb=_broken_display, strict=True)])
    with pytest.raises(RuntimeError, match="display broke"):
        trainer.fit(tiny_module())


def test_a_linear_layer_fails_before_training(tmp_path):
    trainer = tiny_trainer(tmp_path, [TopActivations(layers="net.1")])  # Linear: (N, 4) outputs
    with pytest.raises(MisconfigurationException, match=r"'net.1' outputs \(2, 4\), not a feature map.*'net.0.0'"):
        trainer.fit(tiny_module())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(layers=["features.0"]), r"no module named 'features.0'.*'net.0.0'"),
        (dict(layers="net.0.0", units=[1, 8]), r"\[0, 8\)"),
    ],
)
def test_bad_layers_and_units_fail_at_setup(tmp_path, kwargs, match):
    trainer = tiny_trainer(tmp_path, [TopActivations(**kwargs)])
    with pytest.raises(MisconfigurationException, match=match):
        trainer.fit(tiny_module())


@pytest.mark.parametrize(
    "kwargs,match",
    [(dict(k=0), "k must"), (dict(units=0), "units must"), (dict(units=[]), "units must"),
     (dict(units=[1, -2]), "units must"), (dict(layers=[]), "layers must"), (dict(every_n_epochs=0), "every_n")],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(MisconfigurationException, match=match):
        TopActivations(**kwargs)


def test_state_key_identifies_the_instance():
    assert TopActivations(layers=["a"]).state_key != TopActivations(layers=["a"], k=4).state_key


@pytest.mark.slow  # the trained demo model
def test_trained_demo_units_prefer_the_objects(trained_demo):
    """Top-k receptive fields of the last conv block centre on the shapes far more often than chance."""
    val_set, module = trained_demo["val_set"], trained_demo["model"]
    images = torch.stack([val_set[i][0] for i in range(len(val_set))])
    top = top_activations(module, images.split(150), ["model.features"], units=None, k=9)["model.features"]
    rf = top.geometry.rf
    centres = torch.tensor(rf.offset) + top.positions * torch.tensor(rf.stride) + torch.tensor(rf.size) // 2
    centres = centres.clamp(0, val_set.size - 1)
    masks = torch.from_numpy(val_set.masks)
    on_object = masks[top.sample_ids, centres[..., 0], centres[..., 1]].float().mean().item()
    area = masks.float().mean().item()
    assert rf.size == (40, 40) and rf.stride == (8, 8)
    assert on_object > 2.5 * area, (on_object, area)


def test_ddp_gather_packing_round_trips_every_field():
    """What ranks exchange (sizes, then two flat tensors for all layers) unpacks to the same results."""
    from tb_viz_plugin.callbacks.distributed import pack, unpack

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 5, 3, stride=2))
    results = top_activations(net, torch.randn(10, 3, 12, 12).split(4), ["1", "2"], units=3, k=4)
    shard = {f"{name}/{field}": getattr(top, field) for name, top in results.items() for field in UnitTopK.SHARDED}
    shard.update({f"{name}/samples": torch.tensor([top.samples]) for name, top in results.items()})
    shapes, floats, ints = pack(shard)
    assert floats.dtype == torch.float32 and ints.dtype == torch.long and floats.dim() == ints.dim() == 1
    back = unpack(shard, shapes, floats, ints)
    for name, top in results.items():
        assert int(back[f"{name}/samples"]) == top.samples == 10
        for field in ("values", "sample_ids", "positions", "crops", "maps"):
            assert torch.equal(back[f"{name}/{field}"], getattr(top, field)), (name, field)
            assert back[f"{name}/{field}"].dtype == getattr(top, field).dtype
    # another rank's shard of other sizes unpacks by its own sizes
    other = {"keys": torch.arange(3), "features": torch.randn(3, 5)}
    assert torch.equal(unpack(other, *pack(other))["features"], other["features"])
