"""The model zoo: every torchvision classification family (random weights) with every callback at its defaults.

Every callback: the seven of ``every_callback``, then network dissection, feature inversion and
neural style (2 images, 2 steps) in a test of their own. Images are 64 px (at 32 px the deepest maps of some families
are too small for DeepDream's octaves). Only the costs are cut (optimisation steps, probe counts;
see ``every_callback``); layers, methods, sizes and the rest are the defaults. Each family must log
every view, and warn only where a default method cannot apply (guided methods on a net without
ReLU, said once).

Cost: about 1-2 min for the 13 families on 2 CPU cores (per family in BENCHMARKS.md, "Model zoo").
It was ~20 min while TopActivations measured receptive fields on inputs up to 512 px; it now
measures up to twice the input's side (``measure_layer``'s default).
"""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm

from tb_viz_plugin.callbacks import FeatureInversion, NetworkDissection, NeuralStyle

from tests.test_your_model import assert_every_view, every_callback
from tests.user_models import Samples, UserModule, run_callbacks

FAMILIES = {
    "resnet18": lambda: tvm.resnet18(num_classes=4),
    "vgg11": lambda: tvm.vgg11(num_classes=4),
    "vgg11_bn": lambda: tvm.vgg11_bn(num_classes=4),
    "densenet121": lambda: tvm.densenet121(num_classes=4),
    "mobilenet_v2": lambda: tvm.mobilenet_v2(num_classes=4),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(num_classes=4),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(num_classes=4),
    "convnext_tiny": lambda: tvm.convnext_tiny(num_classes=4),
    "regnet_y_400mf": lambda: tvm.regnet_y_400mf(num_classes=4),
    "shufflenet_v2_x0_5": lambda: tvm.shufflenet_v2_x0_5(num_classes=4),
    "squeezenet1_1": lambda: tvm.squeezenet1_1(num_classes=4),
    "googlenet": lambda: tvm.googlenet(num_classes=4, aux_logits=True, init_weights=False),
    "mnasnet0_5": lambda: tvm.mnasnet0_5(num_classes=4),
}
LATER_VIEWS = ("network_dissection", "feature_inversion", "neural_style")
"""Views of the callbacks added after issue 11's ``every_callback`` (dissection, inversion, style)."""
NO_RELU = {"mobilenet_v2", "efficientnet_b0", "convnext_tiny"}  # ReLU6, SiLU, GELU
"""Families whose forward pass runs no ``ReLU``: the default guided Grad-CAM is dropped, with one warning."""


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_view_on_every_family(tmp_path, family):
    torch.manual_seed(0)
    module = UserModule(FAMILIES[family]())
    tags, warnings = run_callbacks(tmp_path, module, Samples(n=8, size=64), every_callback(), batch_size=4)
    dropped = [w for w in warnings if "['guided_grad_cam'] dropped" in w]
    assert len(dropped) == (1 if family in NO_RELU else 0), warnings
    assert_every_view(tags, [w for w in warnings if w not in dropped])


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_dissection_inversion_style_on_every_family(tmp_path, family):
    torch.manual_seed(0)
    module = UserModule(FAMILIES[family]())
    callbacks = [NetworkDissection(), FeatureInversion(num_images=2, steps=2), NeuralStyle(num_images=2, steps=2)]
    tags, warnings = run_callbacks(tmp_path, module, Samples(n=8, size=64), callbacks, batch_size=4)
    assert warnings == [], warnings
    for view in LATER_VIEWS:
        assert any(tag.startswith(view + "/") for tag in tags), (view, sorted(tags))
    assert all(steps == [2] or steps == [0, 2] for steps in tags.values()), tags
