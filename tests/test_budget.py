"""The schedule (budget, every_n_epochs) and the background writer, inside real Trainers."""

import os
import time
import warnings

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tensorboard import context as tb_context
from tensorboard.backend.event_processing import event_accumulator
from torch.utils.tensorboard import SummaryWriter

from tb_viz_plugin import write_embeddings
from tb_viz_plugin.methods import embed
from tb_viz_plugin.projector import read_tensor

from tb_viz_plugin.callbacks import ActivationMaps, FilterGrid
from tb_viz_plugin.callbacks.base import RankZeroCallback
from tb_viz_plugin.callbacks.schedule import MIN_SCALE, PROBE_SCALE, Schedule, budget_decision

from tests.helpers import make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()


class Slow(RankZeroCallback):
    """Costs ``seconds`` of the training thread per logged epoch, and logs a filter grid."""

    def __init__(self, seconds, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds
        self.epochs = []

    @property
    def state_key(self):
        return self._key(seconds=self.seconds)

    def _log(self, trainer, pl_module, writer):
        time.sleep(self.seconds)
        self.epochs.append(trainer.current_epoch)


def _scalars(tmp_path, prefix):
    accumulator = event_accumulator.EventAccumulator(str(tmp_path / "tiny" / "v0"), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"] if tag.startswith(prefix)
    }


def test_an_expensive_callback_logs_the_first_and_last_epoch_and_says_so(tmp_path):
    slow = Slow(0.5, budget=0.01)  # 1% needs 100 s of training for two logs: only the forced epochs fit
    tiny_trainer(tmp_path, [slow], max_epochs=5).fit(tiny_module())
    assert slow.epochs == [0, 4]
    scalars = _scalars(tmp_path, "tb_viz/")
    assert scalars["tb_viz/schedule/Slow"] == [(2, 1.0), (10, 4.0)]  # epochs since the previous log
    (_, first), (_, last) = scalars["tb_viz/overhead/Slow"]
    assert first == 0.0 and last > 1.0  # percent of the training time: over the budget


def test_a_cheap_callback_logs_every_epoch_and_an_explicit_schedule_wins(tmp_path):
    class SlowTraining(type(tiny_module())):
        def training_step(self, batch, batch_idx):
            time.sleep(0.05)
            return super().training_step(batch, batch_idx)

    cheap, fixed = Slow(0.0), Slow(0.0, every_n_epochs=2, name="fixed")
    tiny_trainer(tmp_path, [cheap, fixed], max_epochs=4).fit(SlowTraining())
    assert cheap.epochs == [0, 1, 2, 3]
    assert fixed.epochs == [1, 3]  # every_n_epochs: as before, budget or not
    assert [v for _, v in _scalars(tmp_path, "tb_viz/schedule/")["tb_viz/schedule/Slow/fixed"]] == [1.0, 2.0]
    work = _scalars(tmp_path, "tb_viz/work/")  # a log that never asks for a work scale ran all of it: 100, every log
    assert [v for _, v in work["tb_viz/work/Slow"]] == [100.0] * 4 and "tb_viz/work/Slow/fixed" not in work


def test_forced_logs_are_sized_to_the_share_and_other_epochs_log_in_full_only_when_a_full_log_fits():
    # fake timings: seconds spent so far, seconds a full log costs, seconds the share allows so far
    assert budget_decision(first=True, last=False, cost=0.0, full_cost=None, allowed=0.01) == (True, PROBE_SCALE)
    assert budget_decision(first=False, last=True, cost=1.0, full_cost=8.0, allowed=5.0) == (True, 0.5)
    assert budget_decision(first=False, last=True, cost=1.0, full_cost=2.0, allowed=9.0) == (True, 1.0)
    assert budget_decision(first=False, last=True, cost=9.0, full_cost=8.0, allowed=5.0) == (True, MIN_SCALE)
    assert budget_decision(first=False, last=False, cost=1.0, full_cost=3.0, allowed=4.0) == (True, 1.0)
    assert budget_decision(first=False, last=False, cost=1.0, full_cost=3.5, allowed=4.0) == (False, 1.0)
    # the fit's length known: a log that fits so far is skipped when it leaves no room for the last one
    assert budget_decision(first=False, last=False, cost=1.0, full_cost=3.0, allowed=4.0, allowed_by_end=6.0,
                           reserve=3.0) == (False, 1.0)  # fmt: skip
    assert budget_decision(first=False, last=False, cost=1.0, full_cost=3.0, allowed=4.0, allowed_by_end=7.0,
                           reserve=3.0) == (True, 1.0)  # fmt: skip


def test_a_scaled_log_counts_as_its_fraction_of_a_full_log():
    schedule = Schedule(every_n_epochs=None, budget=0.05)
    schedule.logged, schedule.scale = [0], PROBE_SCALE
    assert schedule.work(64) == round(64 * PROBE_SCALE) and schedule.work(3) == 1  # at least one step
    assert schedule.work(64, least=16) == 16 and schedule.work(8, least=16) == 8  # a least amount, within n
    schedule.work(64)
    schedule.add(0.5)  # the probe log cost 0.5 s for PROBE_SCALE of the work
    assert schedule.full_cost() == pytest.approx(0.5 / (round(64 * PROBE_SCALE) / 64))
    assert Schedule(every_n_epochs=2, budget=0.05).work(64) == 64


def test_a_scaling_callback_probes_at_the_first_epoch_and_sizes_the_last_one(tmp_path):
    class Steps(Slow):
        def _log(self, trainer, pl_module, writer):
            steps = self._work(64)
            time.sleep(self.seconds * steps / 64)
            self.epochs.append((trainer.current_epoch, steps))

    steps = Steps(0.8, budget=0.01)  # a full log (0.8 s) never fits 1% of this short run
    tiny_trainer(tmp_path, [steps], max_epochs=4).fit(tiny_module())
    least = round(64 * MIN_SCALE)
    assert steps.epochs[0] == (0, round(64 * PROBE_SCALE)) and steps.epochs[-1] == (3, least)  # probe, then the least
    assert [v for _, v in _scalars(tmp_path, "tb_viz/work/")["tb_viz/work/Steps"]] == [100 * PROBE_SCALE, 100 * MIN_SCALE]


def test_the_budget_is_checked_at_construction():
    for budget in (0, 1.5, "5%", True):
        with pytest.raises(MisconfigurationException, match="budget"):
            FilterGrid(budget=budget)
    assert FilterGrid(budget=None).budget is None


def test_background_writes_are_on_disk_when_fit_returns(tmp_path):
    callbacks = [ActivationMaps(layers="net.0.1", num_images=2, units=2, every_n_epochs=1), FilterGrid(every_n_epochs=1)]
    tiny_trainer(tmp_path, callbacks, max_epochs=3).fit(tiny_module())
    plugin, _ = make_plugin(str(tmp_path))  # read at once, nothing waited for
    tags = plugin.tags_impl(CTX, "")["tiny/v0"]
    assert tags["activation_maps/net.0.1"]["steps"] == [2, 4, 6]
    assert tags["filters/net.0.0"]["steps"] == [0, 2, 4, 6]
    items = plugin.items_impl(CTX, "", "tiny/v0", "activation_maps/net.0.1", 6)["items"]
    assert len(items) == 2 and plugin.blob_impl(CTX, items[0]["url"])[:4] == b"\x89PNG"


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling policies")
def test_the_writer_thread_runs_at_idle_priority_with_one_thread_and_training_keeps_its_own(tmp_path):
    from tb_viz_plugin.log.background import background_writer

    seen = {}

    def probe():
        seen.update(policy=os.sched_getscheduler(0), threads=torch.get_num_threads())

    before = (os.sched_getscheduler(0), torch.get_num_threads())
    with SummaryWriter(str(tmp_path)) as writer:
        worker = background_writer(writer)
        worker.submit(None, "probe", probe)
        worker.drain()
    assert seen == {"policy": os.SCHED_IDLE, "threads": 1}
    assert (os.sched_getscheduler(0), torch.get_num_threads()) == before  # the training thread is untouched


def test_a_failing_background_write_warns_once_per_log_and_training_goes_on(tmp_path):
    def broken(images):
        raise RuntimeError("to_rgb exploded")

    callback = ActivationMaps(layers="net.0.1", num_images=2, units=2, to_rgb=broken, every_n_epochs=1)
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(tiny_module())
    ours = [str(w.message) for w in caught if "to_rgb exploded" in str(w.message)]
    assert len(ours) == 2 and all("logging activation maps failed" in m for m in ours), ours
    assert trainer.current_epoch == 2


def test_strict_raises_where_it_happens(tmp_path):
    def broken(images):
        raise RuntimeError("to_rgb exploded")

    callback = ActivationMaps(layers="net.0.1", num_images=2, units=2, to_rgb=broken, strict=True)
    with pytest.raises(RuntimeError, match="to_rgb exploded"):
        tiny_trainer(tmp_path, [callback], max_epochs=1).fit(tiny_module())


def _size(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files)


def _write_epochs(run_dir, samples, dims, epochs=3):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(samples, dims, generator=generator)
    labels = torch.arange(samples) % 10
    images = torch.rand(samples, 3, 32, 32, generator=generator)
    sizes = []
    with SummaryWriter(run_dir) as writer:
        for step in range(epochs):
            write_embeddings(writer, "fc.input", embed(features + 0.1 * step), step, labels=labels, predicted=labels,
                             images=images)
            writer.flush()
            sizes.append(_size(run_dir))
    return features, sizes


@pytest.mark.slow  # 1,000 x 512 features, three epochs
def test_embeddings_of_1000_samples_cost_under_1_5_mb_per_later_epoch(tmp_path):
    _, sizes = _write_epochs(str(tmp_path / "run"), 1000, 512)
    assert sizes[0] > 1_500_000  # the first epoch holds the sprite (twice: tab and Projector)
    assert sizes[2] - sizes[1] < 1_500_000 and sizes[1] - sizes[0] < 1_500_000, sizes


def test_the_sprite_is_stored_once_and_every_epoch_still_shows_it(tmp_path):
    run_dir = str(tmp_path / "run")
    features, sizes = _write_epochs(run_dir, 100, 256)
    plugin, _ = make_plugin(str(tmp_path))
    assert list(plugin.tags_impl(CTX, "")["run"]) == ["embeddings/fc.input"]  # the blob store is no view
    (first,) = plugin.items_impl(CTX, "", "run", "embeddings/fc.input", 0)["items"]
    (last,) = plugin.items_impl(CTX, "", "run", "embeddings/fc.input", 2)["items"]
    assert last["url"] == first["url"] and "stored" not in last and last["tile"] == first["tile"]
    assert plugin.blob_impl(CTX, last["url"])[:4] == b"\x89PNG"
    assert len(os.listdir(os.path.join(run_dir, "embeddings%2ffc.input"))) == 1  # the Projector's sprite, once
    tensor = read_tensor(run_dir, "embeddings/fc.input:00002")
    assert tensor.shape == (100, 128)  # the top principal axes of the 256-d features
    centred = features.double() - features.double().mean(0)
    variances = torch.linalg.eigvalsh(centred.T @ centred).flip(0)
    kept = float((torch.from_numpy(tensor).double() ** 2).sum() / variances.sum())
    assert kept == pytest.approx(float(variances[:128].sum() / variances.sum()), rel=1e-3)


def test_a_sized_down_streamed_log_takes_the_first_batches_and_unhooks_for_the_rest(tmp_path):
    from tb_viz_plugin.callbacks import AttributionMaps, TopActivations

    from tests.helpers import hook_count

    counts = []

    class HookCount(type(tiny_module())):
        def validation_step(self, batch, batch_idx):
            if not self.trainer.sanity_checking:
                counts.append(hook_count(self))
            return super().validation_step(batch, batch_idx)

    top = TopActivations(layers="net.0.3", units=2, k=3, budget=0.01, strict=True)  # one epoch: the probe log, 1/8
    maps = AttributionMaps(methods=["saliency"], num_images=8, budget=0.01, strict=True)
    tiny_trainer(tmp_path, [top, maps], max_epochs=1, limit_val_batches=4).fit(HookCount())
    assert counts[0] > 0 and counts[1:] == [0, 0, 0]  # hooked for the first batch only (1/8 of 4: at least one)
    plugin, _ = make_plugin(str(tmp_path))
    meta = plugin.items_impl(CTX, "", "tiny/v0", "top_activations/net.0.3", None)["meta"]
    assert meta["samples"] == 8  # one batch of 8 streamed
    tags = [t for t in plugin.tags_impl(CTX, "")["tiny/v0"] if t.startswith("attributions/")]
    assert len(plugin.items_impl(CTX, "", "tiny/v0", tags[0], None)["meta"]["rows"]) == 1  # 1 of 8 probe images
    assert [v for _, v in _scalars(tmp_path, "tb_viz/work/")["tb_viz/work/TopActivations"]] == [25.0]  # the scale used
    assert top._schedule.scales == [0.25] and maps._schedule.scales == [0.125]  # what each log really ran (at least 1)


def test_in_a_short_fit_a_heavy_view_s_first_log_waits_when_the_set_spent_its_part_and_cheap_ones_still_log(tmp_path):
    class Heavy(Slow):
        _sizes_work = True

    first, second, cheap = Heavy(0.4, name="a"), Heavy(0.4, name="b"), Slow(0.0)
    tiny_trainer(tmp_path, [first, second, cheap], max_epochs=3).fit(tiny_module())
    assert first.epochs == [0]  # the first heavy view used more than half the set's budget for the fit...
    assert second.epochs == [2]  # ...so the second one logs first at the last epoch (every view logs once)
    assert first._schedule._decided[2] is False  # and the first one's last log would not fit: skipped
    assert cheap.epochs[0] == 0 and cheap.epochs[-1] == 2  # a cheap view logs the first and the last epoch
    assert [step for step, _ in _scalars(tmp_path, "tb_viz/schedule/")["tb_viz/schedule/Heavy/b"]] == [6]

