"""`tb-viz backfill`: a run trained without tb-viz gets, from its checkpoints, what a run with the callbacks logged.

Two tiny demo runs (2 epochs of 4 steps, 64 validation images): one trained with ``small_callbacks()``
(the live run), one without (the bare run, whose checkpoints are backfilled). Callbacks never change
training, so both runs' checkpoints hold the same weights.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from tb_viz_plugin.backfill import backfill
from tb_viz_plugin.checkpoints import BackfillError, find_checkpoints
from tb_viz_plugin.cli import main
from tb_viz_plugin.summary import PLUGIN_NAME

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_VAL = 64
HERE = "tests.test_backfill"
MODULE = "tb_viz_plugin.demo.model:ShapesModule"
POSITIONS = []  # (epoch, global_step) seen by Recorder, in order


def val_loader():
    """The tiny runs' validation DataLoader (``--data``)."""
    from tb_viz_plugin.demo.data import val_loader as demo_val_loader

    return demo_val_loader(seed=0, n_val=N_VAL)


def small_callbacks():
    """Four cheap views (``--callbacks``); the deterministic ones the issue compares byte for byte."""
    from tb_viz_plugin.callbacks import ActivationMaps, AttributionMaps, FilterGrid, TopActivations
    from tb_viz_plugin.demo.data import CLASS_NAMES, denormalize

    return [
        FilterGrid(layers=["features.0"], every_n_epochs=2),  # backfill still logs every checkpoint
        ActivationMaps(layers=["features.2"], num_images=2, units=4, to_rgb=denormalize),
        TopActivations(layers=["features.10"], units=4, k=4, to_rgb=denormalize),
        AttributionMaps(methods=["grad_cam", "saliency"], layers="features", num_images=2, class_names=CLASS_NAMES,
                        to_rgb=denormalize),  # fmt: skip
    ]


def live_callbacks():
    """``small_callbacks`` as the live run has them: every epoch."""
    callbacks = small_callbacks()
    for callback in callbacks:
        callback.every_n_epochs = 1
    return callbacks


class OtherModule(pl.LightningModule):
    """A LightningModule of another class: the demo's checkpoints do not fit it."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3, 2)


class ValData(pl.LightningDataModule):
    """``--data`` as a LightningDataModule class."""

    def val_dataloader(self):
        return val_loader()


class Recorder(pl.Callback):
    """Records the Trainer's epoch and step where the views are logged."""

    def on_validation_epoch_end(self, trainer, pl_module):
        POSITIONS.append((trainer.current_epoch, trainer.global_step, trainer.sanity_checking))


def recorded_callbacks():
    from tb_viz_plugin.callbacks import FilterGrid

    return [FilterGrid(layers=["features.0"]), Recorder()]


def unified_module():
    """A ``lightning.pytorch`` LightningModule class holding the demo CNN (a separate class hierarchy)."""
    import lightning.pytorch as L
    import torch.nn.functional as F

    from tb_viz_plugin.demo.model import ShapesCNN

    class Unified(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = ShapesCNN(width=4)

        def forward(self, x):
            return self.model(x)

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Unified


def build_net():
    """The demo's CNN as a plain ``torch.nn.Module`` (``--model``)."""
    from tb_viz_plugin.demo.model import ShapesCNN

    return ShapesCNN()


def read_run(run_dir):
    """``tag -> step -> list of blobs`` of the tb-viz tags, and ``tag -> steps`` of the others."""
    viz, other = {}, {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == PLUGIN_NAME or value.tag in viz:
                    viz.setdefault(value.tag, {})[event.step] = list(value.tensor.string_val)
                else:
                    other.setdefault(value.tag, []).append(event.step)
    return viz, other


def tags_at(viz, step):
    return sorted(tag for tag, steps in viz.items() if step in steps and not tag.startswith("blobs/"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The live and the bare run directories (each ``seed0/version_0``)."""
    from tb_viz_plugin.demo.train import train

    torch.set_num_threads(1)
    out = {}
    for kind in ("live", "bare"):
        extra = live_callbacks() if kind == "live" else ()
        result = train(tmp_path_factory.mktemp(kind), epochs=2, n_train=256, n_val=N_VAL, callbacks=False,
                       extra_callbacks=extra)  # fmt: skip
        out[kind] = str(result["run_dir"])
    return out


@pytest.fixture
def bare(runs, tmp_path):
    """A fresh copy of the bare run (the tests write into it)."""
    target = tmp_path / "logs" / "seed0" / "version_0"
    shutil.copytree(runs["bare"], target)
    return target


def test_demo_keeps_one_checkpoint_per_epoch(runs):
    names = sorted(os.listdir(os.path.join(runs["bare"], "checkpoints")))
    assert names == ["epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt"]


def test_backfill_logs_what_the_live_run_logged(runs, bare):
    scalars_before = read_run(str(bare))[1]
    results = backfill(str(bare.parent.parent / "**" / "*.ckpt"), f"{HERE}:val_loader", module=MODULE,
                       callbacks=f"{HERE}:small_callbacks", device="cpu", progress=False)  # fmt: skip
    assert [(r.checkpoint.step, r.checkpoint.epoch, r.status) for r in results] == [(4, 0, "backfilled"), (8, 1, "backfilled")]
    assert results[0].checkpoint.run_dir == bare.resolve()  # final.ckpt, at step 8 too, is left out
    live, _ = read_run(runs["live"])
    filled, scalars_after = read_run(str(bare))
    assert scalars_after == scalars_before  # no metric, no hparams: the run's curves are as they were
    for step in (4, 8):
        assert tags_at(filled, step) == tags_at(live, step) and len(tags_at(live, step)) == 4
        for tag in tags_at(live, step):
            if tag.split("/")[0] in ("filters", "activation_maps"):
                assert filled[tag][step] == live[tag][step], (tag, step)
            elif tag.startswith("attributions/"):
                rows = [[row["index"] for row in json.loads(run[tag][step][0])["meta"]["rows"]] for run in (live, filled)]
                assert rows[0] == rows[1][: len(rows[0])], (tag, step)  # the same PNG bytes (and manifest)
    assert sorted(len(r.written) for r in results) == [4, 4] and not any(r.skipped for r in results)


def test_a_second_backfill_writes_nothing(bare):
    args = (str(bare / "checkpoints" / "*.ckpt"), f"{HERE}:val_loader")
    kwargs = dict(module=MODULE, callbacks=f"{HERE}:small_callbacks", device="cpu", progress=False)
    first = backfill(*args, **kwargs)
    files = sorted(os.listdir(bare))
    viz = read_run(str(bare))[0]
    second = backfill(*args, **kwargs)
    assert sum(len(r.written) for r in first) == 8
    assert [r.status for r in second] == ["backfilled", "already logged"]  # the first recomputed, nothing written
    assert second[0].written == [] and len(second[0].skipped) == 4
    assert sorted(os.listdir(bare)) == files and read_run(str(bare))[0] == viz  # not even an empty event file


def test_an_interrupted_backfill_is_completed_and_the_tab_shows_one_run(bare):
    """Only the last checkpoint done, then all: the earlier step lands in a later event file, the tab sorts it in."""
    from tensorboard import context as tb_context

    from tests.helpers import make_plugin

    kwargs = dict(module=MODULE, callbacks=f"{HERE}:small_callbacks", device="cpu", progress=False)
    backfill(str(bare / "checkpoints" / "epoch=1-*.ckpt"), f"{HERE}:val_loader", **kwargs)
    rest = backfill(str(bare / "checkpoints" / "*.ckpt"), f"{HERE}:val_loader", **kwargs)
    assert [(r.checkpoint.step, r.status, len(r.written)) for r in rest] == [(4, "backfilled", 4), (8, "already logged", 0)]
    tags = make_plugin(str(bare.parent.parent))[0].tags_impl(tb_context.RequestContext(), "")
    assert list(tags) == ["seed0/version_0"] and len(tags["seed0/version_0"]) == 4
    assert all(info["steps"] == [4, 8] for info in tags["seed0/version_0"].values())


@pytest.mark.parametrize("data", ["val_loader", "ValData"])
def test_callbacks_see_the_checkpoint_epoch_and_step(bare, data):
    POSITIONS.clear()
    backfill(str(bare / "checkpoints" / "*.ckpt"), f"{HERE}:{data}", module=MODULE,
             callbacks=f"{HERE}:recorded_callbacks", device="cpu", progress=False)  # fmt: skip
    assert POSITIONS == [(0, 4, False), (1, 8, False)]


def test_plain_pytorch_state_dicts_with_step_from_the_file_name(runs, tmp_path):
    for name in ("epoch=0-step=4.ckpt", "epoch=1-step=8.ckpt"):
        state = torch.load(os.path.join(runs["bare"], "checkpoints", name), map_location="cpu", weights_only=True)["state_dict"]
        step = name.split("step=")[1].split(".")[0]
        torch.save({k[len("model."):]: v for k, v in state.items()}, tmp_path / f"net-{step}.pt")
    results = backfill(str(tmp_path / "*.pt"), f"{HERE}:val_loader", model=f"{HERE}:build_net",
                       callbacks=f"{HERE}:small_callbacks", logdir=str(tmp_path / "run"), step_from=r"net-(\d+)",
                       device="cpu", progress=False)  # fmt: skip
    assert [(r.checkpoint.step, r.checkpoint.epoch) for r in results] == [(4, 0), (8, 1)]
    live, plain = read_run(runs["live"])[0], read_run(str(tmp_path / "run"))[0]
    assert tags_at(plain, 8) == tags_at(live, 8)  # the net is held as `model`, as in ShapesModule
    assert plain["filters/model.features.0"][8] == live["filters/model.features.0"][8]


def test_a_lightning_pytorch_module(tmp_path):
    """A run of the unified ``lightning`` package is replayed with its own Trainer class."""
    L = pytest.importorskip("lightning.pytorch")
    global Unified
    Unified = unified_module()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=L.loggers.TensorBoardLogger(str(tmp_path), name="u"),
                        callbacks=[L.callbacks.ModelCheckpoint(save_top_k=-1)], limit_train_batches=1,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(Unified(), val_loader(), val_loader())
    results = backfill(str(tmp_path / "**" / "*.ckpt"), f"{HERE}:val_loader", module=f"{HERE}:Unified",
                       callbacks=f"{HERE}:recorded_callbacks", device="cpu", progress=False)  # fmt: skip
    assert [r.checkpoint.step for r in results] == [1, 2]
    assert sorted(read_run(str(tmp_path / "u" / "version_0"))[0]["filters/model.features.0"]) == [1, 2]


def test_checkpoints_are_taken_in_step_order_not_name_order(tmp_path):
    (tmp_path / "run").mkdir()
    for step in (10, 9, 100):
        torch.save({"global_step": step, "epoch": step // 10, "state_dict": {}}, tmp_path / "run" / f"s{step}.ckpt")
    found, _ = find_checkpoints(str(tmp_path / "run" / "*.ckpt"), logdir=str(tmp_path / "run"))
    assert [c.step for c in found] == [9, 10, 100] and [c.epoch for c in found] == [0, 1, 10]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--checkpoints": "{tmp}/nothing/**/*.ckpt"}, r"matches no file\. Quote the pattern"),
        ({"--module": "tb_viz_plugin.demo.model:ShapeModule"}, r"has no attribute 'ShapeModule' \(did you mean: ShapesModule\?\)"),
        ({"--module": "tb_viz_plugin.demo.modle:ShapesModule"}, r"no module named 'tb_viz_plugin\.demo\.modle'"),
        ({"--module": "ShapesModule"}, r"expected MODULE:NAME"),
        ({"--module": "tb_viz_plugin.demo.model:ShapesCNN"}, r"is not a LightningModule class; .* --model"),
        ({"--module": f"{HERE}:OtherModule"}, r"is not a checkpoint of tests\.test_backfill\.OtherModule: .*Missing key"),
        ({"--data": f"{HERE}:val_lodaer"}, r"no attribute 'val_lodaer' \(did you mean: val_loader\?\)"),
        ({"--callbacks": f"{HERE}:build_net"}, r"must return a non-empty list of Lightning callbacks"),
        ({"--step-from": r"nope=(\d+)"}, r"does not match the file name 'epoch=0-step=4\.ckpt'"),
        ({"--device": "gpu0"}, r"--device 'gpu0'"),
    ],
)
def test_clear_errors(bare, tmp_path, capsys, change, message):
    import re

    args = {"--checkpoints": str(bare / "checkpoints" / "*.ckpt"), "--module": MODULE, "--data": f"{HERE}:val_loader",
            "--callbacks": f"{HERE}:small_callbacks", "--device": "cpu"}  # fmt: skip
    args.update({k: v.format(tmp=tmp_path) for k, v in change.items()})
    assert main(["backfill", "--no-progress", *[x for kv in args.items() for x in kv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tb-viz backfill: error: ") and re.search(message, err), err
    assert len(glob.glob(str(bare / "events.out.tfevents.*"))) == 1  # nothing written


def test_a_plain_state_dict_given_to_module_says_use_model(tmp_path):
    (tmp_path / "run").mkdir()
    torch.save({"global_step": 3, "weight": torch.zeros(1)}, tmp_path / "run" / "a.ckpt")
    with pytest.raises(BackfillError, match=r"not a Lightning checkpoint .*--model MODULE:FUNCTION"):
        backfill(str(tmp_path / "run" / "*.ckpt"), f"{HERE}:val_loader", module=MODULE, logdir=str(tmp_path / "run"),
                 callbacks=f"{HERE}:small_callbacks", device="cpu", progress=False)  # fmt: skip


def test_a_checkpoint_outside_lightnings_layout_needs_logdir(tmp_path):
    torch.save({"global_step": 3, "state_dict": {}}, tmp_path / "a.ckpt")
    with pytest.raises(BackfillError, match=r"cannot tell the log directory .* pass --logdir DIR"):
        find_checkpoints(str(tmp_path / "*.ckpt"))


def test_the_cli_as_a_user_runs_it(bare):
    """``python -m tb_viz_plugin backfill ...`` in a subprocess, from the project directory (the README's command)."""
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tb_viz_plugin", "backfill", "--checkpoints", str(bare.parent.parent / "**" / "*.ckpt"),
               "--module", MODULE, "--data", f"{HERE}:val_loader", "--callbacks", f"{HERE}:small_callbacks",
               "--device", "cpu"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "replayed 2 of 2 checkpoints (0 already logged) into 1 run(s): 8 (tag, step) written" in done.stdout
    assert "1/2 step 4: AttributionMaps" in done.stderr  # the progress bar names checkpoint and stage
    assert "final.ckpt: another checkpoint of its run has the same step" in done.stdout + done.stderr
    assert tags_at(read_run(str(bare))[0], 8) == tags_at(read_run(str(bare))[0], 4) != []
    usage = subprocess.run([sys.executable, "-m", "tb_viz_plugin", "backfill", "--help"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert usage.returncode == 0 and "tb-viz backfill --checkpoints 'logs/**/*.ckpt'" in usage.stdout


def test_the_cli_module_imports_neither_torch_nor_lightning():
    code = "import sys, tb_viz_plugin.cli; print(any(m in sys.modules for m in ('torch', 'pytorch_lightning', 'lightning')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_demo_callbacks_backfilled_match_a_run_trained_with_them(runs, bare, tmp_path):
    """``demo_callbacks`` (the README's command): at every checkpoint the live run's tags (more where the live
    run's budget skipped a view); the views of weights and probe images byte for byte (attributions: the live
    run's budget may explain only the first probe images, which the backfill, every view in full, also shows)."""
    from tb_viz_plugin.demo.train import train

    live_dir = str(train(tmp_path / "live", epochs=2, n_train=256, n_val=N_VAL, callbacks=True)["run_dir"])
    backfill(str(bare / "checkpoints" / "*.ckpt"), f"{HERE}:val_loader", module=MODULE,
             callbacks="tb_viz_plugin.demo.train:demo_callbacks", device="cpu", progress=False)  # fmt: skip
    live, filled = read_run(live_dir)[0], read_run(str(bare))[0]
    for step in (4, 8):  # (the live run's budget may skip a heavy view at either step of this short fit)
        assert set(tags_at(live, step)) <= set(tags_at(filled, step)) and tags_at(live, step)
    assert {tag for step in (4, 8) for tag in tags_at(live, step)} == set(tags_at(filled, 8))  # every view once
    for step in (4, 8):
        for tag in tags_at(live, step):
            if tag.split("/")[0] in ("filters", "activation_maps"):
                assert filled[tag][step] == live[tag][step], (tag, step)
            elif tag.startswith("attributions/"):
                rows = [[row["index"] for row in json.loads(run[tag][step][0])["meta"]["rows"]] for run in (live, filled)]
                assert rows[0] == rows[1][: len(rows[0])], (tag, step)
