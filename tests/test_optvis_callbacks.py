"""ActivationMaximization and DeepDream inside real Trainers: what they log, bad input, the hooks they leave."""

import math

import pytest
import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tensorboard import context as tb_context

from tb_viz_plugin.callbacks import ActivationMaximization, DeepDream
from tb_viz_plugin import log_activation_maximization

from tests.helpers import guard_side_effects, hook_count, make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()
NAMES = ["cat", "dog", "<b>owl</b>", "eel"]
STATS = dict(mean=(0.1, 0.0, -0.1), std=(1.0, 0.9, 1.1))


def _callbacks(**kw):
    return [
        ActivationMaximization(class_names=NAMES, units={"net.0.2": [0, 11]}, steps=3, size=16, **STATS, **kw),
        DeepDream("net.0.2", num_images=2, octaves=2, steps=2, class_names=NAMES, **STATS, **kw),
    ]


def _items(logdir, tag, step):
    plugin, _ = make_plugin(str(logdir))
    return plugin.items_impl(CTX, "", "tiny/v0", tag, step)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Both callbacks through a 2-epoch fit with the side-effect guard around every hook."""
    logdir = tmp_path_factory.mktemp("optvis_fit")
    violations: list = []
    pl.seed_everything(0)
    module = tiny_module()
    callbacks = [guard_side_effects(cb, violations) for cb in _callbacks(strict=True, budget=None)]
    trainer = tiny_trainer(logdir, callbacks, max_epochs=2)
    trainer.fit(module)
    return {"logdir": logdir, "module": module, "violations": violations, "callbacks": callbacks}


def test_logs_every_target_with_names_and_values(fitted):
    assert fitted["violations"] == [] and hook_count(fitted["module"]) == 0
    plugin, _ = make_plugin(str(fitted["logdir"]))
    tags = plugin.tags_impl(CTX, "")["tiny/v0"]
    assert {tag: info["kind"] for tag, info in tags.items()} == {
        "activation_maximization/output": "activation_maximization",
        "activation_maximization/net.0.2": "activation_maximization",
        "deepdream/net.0.2": "deepdream",
    }
    assert all(t["steps"] == [2, 4] for t in tags.values())

    classes = _items(fitted["logdir"], "activation_maximization/output", 4)
    captions = [item["caption"] for item in classes["items"]]
    assert [c.split(" · ")[0] for c in captions] == NAMES  # classes=None: every output of the model
    for item in classes["items"]:
        assert math.isfinite(item["objective"]) and item["caption"].endswith(f"{item['objective']:.3g}")
        assert (item["width"], item["height"]) == (16, 16)
    assert classes["meta"]["targets"] == 6 and classes["meta"]["param"] == "pyramid"

    units = _items(fitted["logdir"], "activation_maximization/net.0.2", 4)["items"]
    assert [u["caption"].split(" · ")[0] for u in units] == ["unit 0", "unit 11"]

    dreams = _items(fitted["logdir"], "deepdream/net.0.2", 4)["items"]
    assert len(dreams) == 2 and (dreams[0]["width"], dreams[0]["height"]) == (2 * 16 + 6, 16 + 4)  # original | dream
    assert dreams[0]["caption"].startswith("val #0 (") and "energy" in dreams[0]["caption"]
    assert all(d["energy_after"] > d["energy_before"] for d in dreams)


def test_the_same_seed_gives_the_same_start_every_epoch(tmp_path):
    """Every logged epoch starts from the same image, so steps differ only through the weights."""
    from torch.utils.tensorboard import SummaryWriter

    net = tiny_module()
    writer = SummaryWriter(str(tmp_path / "tiny" / "v0"))
    for step in (0, 1):
        log_activation_maximization(writer, net, step, classes=[1], steps=2, size=16)
    writer.close()
    first, second = (_items(tmp_path, "activation_maximization/output", s)["items"][0] for s in (0, 1))
    assert first["objective"] == second["objective"]


def test_deepdream_probes_are_kept_in_the_checkpoint(fitted):
    dream = fitted["callbacks"][1]
    state = dream.state_dict()
    assert state == {"probes": {"indices": [0, 31]}}
    resumed = DeepDream("net.0.2", num_images=2)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state and resumed.state_key == dream.state_key


def test_validate_in_inference_mode_and_bf16(tmp_path):
    trainer = tiny_trainer(tmp_path, _callbacks(strict=True), max_epochs=1, precision="bf16-mixed")
    trainer.validate(tiny_module())  # inference_mode=True by default
    plugin, _ = make_plugin(str(tmp_path))
    tags = plugin.tags_impl(CTX, "")["tiny/v0"]
    assert sorted(tags) == ["activation_maximization/net.0.2", "activation_maximization/output", "deepdream/net.0.2"]
    values = [item["objective"] for item in _items(tmp_path, "activation_maximization/output", 0)["items"]]
    assert all(math.isfinite(v) for v in values)


def test_setup_rejects_unknown_layers_and_units(tmp_path):
    cases = [
        (ActivationMaximization(units={"net.9": [0]}), r"no module named 'net.9'.*'net.0.0'"),
        (ActivationMaximization(units={"0.2": [12]}), r"units\['0.2'\]: unit indices .* \[0, 12\)"),
        (DeepDream("features.3"), r"DeepDream: .*no module named 'features.3'"),
    ]
    for callback, match in cases:
        with pytest.raises(MisconfigurationException, match=match):
            tiny_trainer(tmp_path, [callback]).fit(tiny_module())


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ActivationMaximization(steps=0), "steps"),
        (lambda: ActivationMaximization(classes=[-1]), "classes"),
        (lambda: ActivationMaximization(classes=[], units=None), "nothing to render"),
        (lambda: ActivationMaximization(units={"a": []}), "units must map"),
        (lambda: ActivationMaximization(param="lowres"), "param must be one of"),
        (lambda: ActivationMaximization(mean=()), "mean must be None or per-channel numbers"),
        (lambda: ActivationMaximization(std=(1, 0, 1)), "std must be None or per-channel numbers"),
        (lambda: ActivationMaximization(mean=(0.5, 0.5), std=(1, 1, 1)), "as many numbers"),
        (lambda: DeepDream(""), "layer"),
        (lambda: DeepDream(["a", "b"]), "one layer"),
        (lambda: DeepDream("a", num_images=0), "num_images"),
        (lambda: DeepDream("a", octaves=0), "octaves"),
        (lambda: DeepDream("a", indices=[]), "probe indices"),
    ],
)
def test_bad_arguments_fail_at_construction(make, match):
    with pytest.raises(MisconfigurationException, match=match):
        make()


def _broken_display(images):
    raise RuntimeError("display broke")


def test_runtime_failure_warns_and_training_goes_on(tmp_path):
    bad = ActivationMaximization(steps=1, size=8, io={"to_rgb": _broken_display})
    trainer = tiny_trainer(tmp_path, [bad], max_epochs=1)
    with pytest.warns(UserWarning, match=r"display broke.*strict=True"):
        trainer.fit(tiny_module())
    assert trainer.current_epoch == 1
    with pytest.raises(RuntimeError, match="display broke"):
        strict = ActivationMaximization(steps=1, size=8, io={"to_rgb": _broken_display}, strict=True)
        tiny_trainer(tmp_path, [strict]).fit(tiny_module())


def test_a_class_past_the_outputs_or_a_normalisation_of_other_channels_fails_before_training(tmp_path):
    with pytest.raises(MisconfigurationException, match=r"class 7 is out of range for a model with 4 outputs"):
        tiny_trainer(tmp_path, [ActivationMaximization(classes=[7], steps=1, size=8)]).fit(tiny_module())
    with pytest.raises(MisconfigurationException, match=r"mean has 2 numbers but the model's inputs have 3 channels"):
        tiny_trainer(tmp_path, [DeepDream("net.0.0", mean=(0.5, 0.5), std=(1, 1))]).fit(tiny_module())
