"""Tags never collide: two instances of a callback with other settings either write other tags or are refused.

A tag is ``<kind>/<what>[/<name>]``. Two instances that differ only in settings outside ``<what>``
(methods, k, probe images, ...) fail at ``setup`` with a message naming both and the fix, ``name=``.
"""

import re

import pytest
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tensorboard import context as tb_context

from tb_viz_plugin.callbacks import (
    ActivationMaps,
    ActivationMaximization,
    AttributionMaps,
    DeepDream,
    Embeddings,
    FeatureInversion,
    FilterGrid,
    NetworkDissection,
    NeuralStyle,
    TopActivations,
)

from tests.helpers import make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()
AM = dict(steps=1, size=8)
DREAM = dict(num_images=1, octaves=1, steps=1)

# Per callback: two instances that would share a tag, the tag, and the second one with a name.
SAME_WHAT = {
    "FilterGrid": (
        lambda **kw: FilterGrid(layers="net.0.0", **kw), lambda **kw: FilterGrid(layers="net.0.0", max_filters=4, **kw),
        "filters/net.0.0",
    ),
    "ActivationMaps": (
        lambda **kw: ActivationMaps(layers="net.0.1", num_images=1, units=2, **kw),
        lambda **kw: ActivationMaps(layers="net.0.1", num_images=1, units=[0, 1], **kw),
        "activation_maps/net.0.1",
    ),
    "TopActivations": (
        lambda **kw: TopActivations(layers="net.0.3", units=2, k=2, **kw),
        lambda **kw: TopActivations(layers="net.0.3", units=2, k=3, **kw),
        "top_activations/net.0.3",
    ),
    "AttributionMaps": (
        lambda **kw: AttributionMaps(methods=["grad_cam"], layers="net.0.3", num_images=1, **kw),
        lambda **kw: AttributionMaps(methods=["layer_cam"], layers="net.0.3", num_images=1, **kw),
        "attributions/net.0.3/predicted",
    ),
    "Embeddings": (
        lambda **kw: Embeddings(num_samples=4, **kw), lambda **kw: Embeddings(num_samples=8, **kw),
        "embeddings/net.1.input",
    ),
    "ActivationMaximization": (
        lambda **kw: ActivationMaximization(classes=[0], **AM, **kw),
        lambda **kw: ActivationMaximization(classes=[1], param="fourier", **AM, **kw),
        "activation_maximization/output",
    ),
    "DeepDream": (
        lambda **kw: DeepDream("net.0.2", **DREAM, **kw), lambda **kw: DeepDream("net.0.2", indices=[5], octaves=1, steps=1, **kw),
        "deepdream/net.0.2",
    ),
    "NetworkDissection": (
        lambda **kw: NetworkDissection(layers="net.0.3", top_k=1, **kw),
        lambda **kw: NetworkDissection(layers="net.0.3", quantile=0.01, top_k=1, **kw),
        "network_dissection/net.0.3",
    ),
    "FeatureInversion": (
        lambda **kw: FeatureInversion(["net.0.0", "net.0.2"], num_images=1, steps=1, **kw),
        lambda **kw: FeatureInversion(["net.0.0", "net.0.2"], num_images=2, steps=2, **kw),
        "feature_inversion/net.0.0+net.0.2",
    ),
    "NeuralStyle": (
        lambda **kw: NeuralStyle("net.0.2", "net.0.1", num_images=2, steps=1, **kw),
        lambda **kw: NeuralStyle("net.0.2", ["net.0.0", "net.0.1"], num_images=2, steps=1, **kw),
        "neural_style/net.0.2",
    ),
}


@pytest.mark.parametrize("callback", list(SAME_WHAT))
def test_two_instances_on_the_same_tag_are_refused_at_setup_naming_both(tmp_path, callback):
    make_first, make_second, tag = SAME_WHAT[callback]
    first, second = make_first(), make_second()
    message = (
        re.escape(f"{second.state_key} and {first.state_key} would both write the tag {tag!r}")
        + ".*" + re.escape(f"name='...' to one of them (it is appended to its tags: '{tag}/<name>')")
    )  # fmt: skip
    with pytest.raises(MisconfigurationException, match=message):
        tiny_trainer(tmp_path, [first, second], max_epochs=1).fit(tiny_module())


def test_two_of_each_callback_in_one_trainer_write_distinct_tags(tmp_path):
    """Two of each callback: the second of each differs in its ``<what>`` (layer, target, group) or has a name."""
    callbacks = []
    for make_first, make_second, _ in SAME_WHAT.values():
        callbacks += [make_first(strict=True), make_second(strict=True, name="second")]
    tiny_trainer(tmp_path, callbacks, max_epochs=1).fit(tiny_module())
    tags = make_plugin(str(tmp_path))[0].tags_impl(CTX, "")["tiny/v0"]
    expected = {tag for _, _, tag in SAME_WHAT.values()} | {f"{tag}/second" for _, _, tag in SAME_WHAT.values()}
    assert set(tags) == expected
    assert all(info["steps"] == [0, 2] for tag, info in tags.items() if tag.startswith("filters/"))  # log_initial too
    assert all(info["steps"] == [2] for tag, info in tags.items() if not tag.startswith("filters/"))


def test_other_layers_and_targets_need_no_name(tmp_path):
    callbacks = [
        AttributionMaps(methods=["grad_cam"], layers="net.0.3", num_images=1, strict=True),
        AttributionMaps(methods=["grad_cam"], layers="net.0.1", num_images=1, strict=True),
        AttributionMaps(methods=["grad_cam"], layers="net.0.3", target="label", num_images=1, strict=True),
        AttributionMaps(methods=["saliency"], num_images=1, strict=True),  # no layer: the maps of the input
        ActivationMaximization(classes=[0], units={"net.0.2": [1]}, **AM, strict=True),
        ActivationMaximization(classes=[], units={"net.0.0": [1]}, **AM, strict=True),
        Embeddings(num_samples=4, strict=True),
        Embeddings(layers="net.0.2", num_samples=4, strict=True),
    ]
    tiny_trainer(tmp_path, callbacks, max_epochs=1).fit(tiny_module())
    assert sorted(make_plugin(str(tmp_path))[0].tags_impl(CTX, "")["tiny/v0"]) == [
        "activation_maximization/net.0.0", "activation_maximization/net.0.2", "activation_maximization/output",
        "attributions/input/predicted", "attributions/net.0.1/predicted", "attributions/net.0.3/label",
        "attributions/net.0.3/predicted", "embeddings/net.0.2", "embeddings/net.1.input",
    ]  # fmt: skip


def test_a_default_layer_that_turns_out_to_be_taken_is_refused_when_found(tmp_path):
    """``layers=None`` resolves on the first run; an instance that named the same layer already owns the tag."""
    explicit = AttributionMaps(methods=["grad_cam"], layers="net.0.3", num_images=1, strict=True)
    default = AttributionMaps(methods=["layer_cam"], num_images=1, strict=True)
    with pytest.raises(MisconfigurationException, match=r"would both write the tag 'attributions/net.0.3/predicted'"):
        tiny_trainer(tmp_path, [explicit, default], max_epochs=1).fit(tiny_module())


@pytest.mark.parametrize("name", ["", "a/b", 3])
def test_bad_names_are_refused_at_construction(name):
    with pytest.raises(MisconfigurationException, match="name must be None or a non-empty string"):
        FilterGrid(name=name)
