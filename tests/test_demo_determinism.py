"""The demo trained with every demo callback ends bitwise equal to the demo trained without any."""

import torch

from tb_viz_plugin.demo.train import demo_callbacks, train

from tests.helpers import guard_side_effects, hook_count

SHORT = dict(epochs=2, seed=3, n_train=512, n_val=256, limit_train_batches=4, limit_val_batches=2)


def test_demo_weights_bitwise_equal_with_and_without_callbacks(tmp_path):
    baseline = train(tmp_path / "without", callbacks=False, **SHORT)
    violations: list = []
    guarded = [guard_side_effects(callback, violations) for callback in demo_callbacks()]
    with_viz = train(tmp_path / "with", callbacks=False, extra_callbacks=guarded, **SHORT)

    assert violations == []
    a, b = baseline["model"].state_dict(), with_viz["model"].state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert hook_count(with_viz["model"]) == 0
    assert all(p.grad is None or torch.equal(p.grad, q.grad) for p, q in
               zip(baseline["model"].parameters(), with_viz["model"].parameters()))
    # the callbacks did log something, and the checkpoint exists either way
    assert any(with_viz["run_dir"].glob("events.out.tfevents.*"))
    assert baseline["checkpoint"].is_file() and with_viz["checkpoint"].is_file()
