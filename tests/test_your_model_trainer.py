"""Trainer settings users have (resume, precisions, fast_dev_run, torch.compile, no validation) and the
mistakes that fail before the first training step with a message naming the fix; plain ``log_*`` under
``no_grad`` and ``inference_mode``."""

from __future__ import annotations

import tempfile

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import log_activation_maps, log_activation_maximization, log_attributions, log_deepdream
from tb_viz_plugin.callbacks import (
    ActivationMaps,
    ActivationMaximization,
    AttributionMaps,
    DeepDream,
    Embeddings,
    FilterGrid,
    TopActivations,
)

from tests.test_your_model import assert_every_view, every_callback, small_net
from tests.user_models import Samples, UserModule, logged_tags, run_callbacks

# ------------------------------------------------------------------ Trainer settings


@pytest.mark.parametrize("precision", ["bf16-true", "64-true"])
def test_every_precision(tmp_path, precision):
    tags, warnings = run_callbacks(tmp_path, UserModule(small_net()), Samples(), every_callback(), precision=precision)
    assert_every_view(tags, warnings)


def test_torch_compile_keeps_the_original_names(tmp_path):
    class Compiled(UserModule):
        def __init__(self) -> None:
            super().__init__(small_net())
            self.net = torch.compile(self.net, backend="eager")  # names gain "_orig_mod."

    assert "net._orig_mod.0" in dict(Compiled().named_modules())
    callbacks = every_callback() + [ActivationMaps(layers="net.2", name="typed")]  # the name the user knows
    tags, warnings = run_callbacks(tmp_path, Compiled(), Samples(), callbacks)
    assert_every_view(tags, warnings)
    assert not any("_orig_mod" in tag for tag in tags) and "activation_maps/net.2/typed" in tags


def test_resume_logs_no_duplicate_step(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.loggers import TensorBoardLogger

    def trainer(epochs):
        logger = TensorBoardLogger(str(tmp_path), name="", version="")
        return pl.Trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, logger=logger,
                          callbacks=[FilterGrid()], enable_progress_bar=False, enable_model_summary=False,
                          enable_checkpointing=False, num_sanity_val_steps=0)  # fmt: skip

    data = Samples()
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    module = UserModule(small_net())
    first = trainer(1)
    first.fit(module, loader, loader)
    first.save_checkpoint(str(tmp_path / "last.ckpt"))
    trainer(2).fit(UserModule(small_net()), loader, loader, ckpt_path=str(tmp_path / "last.ckpt"))
    assert logged_tags(str(tmp_path)) == {"filters/net.0": [0, 2, 4]}  # step 0 once, not again at the resume


def test_fast_dev_run_says_once_why_nothing_is_logged(tmp_path):
    tags, warnings = run_callbacks(tmp_path, UserModule(small_net()), Samples(), every_callback(), fast_dev_run=True)
    assert tags == {}
    assert len(warnings) == 1 and "fast_dev_run replaces the loggers with a dummy logger" in warnings[0]


def test_settings_that_never_log_are_said_at_setup(tmp_path):
    callbacks = [AttributionMaps(num_images=2), FilterGrid(every_n_epochs=5)]
    tags, warnings = run_callbacks(tmp_path, UserModule(small_net()), Samples(), callbacks, limit_val_batches=0)
    assert any(w.startswith("AttributionMaps: limit_val_batches=0 disables validation") for w in warnings)
    assert any(w.startswith("FilterGrid: every_n_epochs=5 > max_epochs=1, so it never logs") for w in warnings)
    assert not any(w.startswith("FilterGrid: limit_val_batches") for w in warnings)  # it logs at train epoch ends


# ------------------------------------------------------------------ mistakes found before training


class NoLabels(Samples):
    def __getitem__(self, i):
        return self.images[i]


def _fails(tmp_path, callback, match, module=None, data=None):
    with pytest.raises(MisconfigurationException, match=match):
        run_callbacks(tmp_path, module or UserModule(small_net()), data or Samples(), [callback])


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ActivationMaps(layers="net.6"), r"ActivationMaps: the layer 'net.6' outputs \(2, 4\), not a feature map"),
        (lambda: DeepDream(layers="net.5"), r"DeepDream: the layer 'net.5' outputs \(2, 8\), not a feature map"),
        (lambda: AttributionMaps(target=9), r"target=9 is out of range for a model with 4 outputs"),
        (lambda: ActivationMaximization(classes=[4]), r"class 4 is out of range for a model with 4 outputs"),
        (lambda: AttributionMaps(indices=[3, 99]), r"probe index 99 is past the validation set of 16 samples"),
        (lambda: DeepDream(indices=[16]), r"probe index 16 is past the validation set of 16 samples"),
    ],
)
def test_mistakes_fail_before_the_first_step(tmp_path, make, match):
    _fails(tmp_path, make(), match)


def test_target_label_without_labels(tmp_path):
    class Unlabelled(UserModule):
        def _loss(self, batch):
            return self(batch).pow(2).mean()

    _fails(tmp_path, AttributionMaps(target="label"), r"target='label' needs class labels, but the validation samples "
           r"have no labels.*io=ModelIO\(labels='<key>'\)", module=Unlabelled(small_net()), data=NoLabels())  # fmt: skip


def test_a_forward_taking_a_batch_is_named(tmp_path):
    class BatchForward(UserModule):
        def forward(self, batch):
            images, labels = batch
            return self.net(images)

        def _loss(self, batch):
            return nn.functional.cross_entropy(self(batch), batch[1])

    match = r"the model's forward failed on the inputs alone.*call `pl_module\(inputs\)`.*io=ModelIO\(forward="
    _fails(tmp_path, ActivationMaps(), match, module=BatchForward(small_net()))


def test_no_input_tensor_is_named(tmp_path):
    class Odd(Samples):
        def __getitem__(self, i):
            return {"scan": self.images[i], "y": 0}

    _fails(tmp_path, TopActivations(), r"found no input tensor.*keys \['scan', 'y'\].*io=ModelIO\(inputs='<key>'", data=Odd())


def test_the_errors_stop_before_training(tmp_path):
    import pytorch_lightning as pl

    module = UserModule(small_net())
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, logger=False, callbacks=[Embeddings(layers="net.6"),
                         ActivationMaps(layers="net.6")], enable_progress_bar=False, enable_checkpointing=False)  # fmt: skip
    loader = torch.utils.data.DataLoader(Samples(), batch_size=8)
    with pytest.raises(MisconfigurationException):
        trainer.fit(module, loader, loader)
    assert trainer.global_step == 0


# ------------------------------------------------------------------ plain PyTorch: no_grad and inference_mode


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_log_functions_under_no_grad_and_inference_mode(mode):
    net = small_net(channels=1)
    images = torch.randn(2, 1, 16, 16)
    with tempfile.TemporaryDirectory() as logdir, SummaryWriter(logdir) as writer, mode():
        assert log_activation_maximization(writer, net, 0, steps=2, size=16, channels=1) == ["activation_maximization/output"]
        assert log_attributions(writer, net, images, 0, methods=["grad_cam", "saliency", "occlusion"])
        assert log_activation_maps(writer, net, images, 0, layers=["0"])
        assert log_deepdream(writer, net, images, 0, layers="2", steps=1, octaves=1)
