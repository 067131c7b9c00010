"""AttributionMaps(faithfulness=True): deletion / insertion per method as TensorBoard scalars and in the manifest."""

import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from tensorboard import context as tb_context
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tb_viz_plugin.callbacks import AttributionMaps
from tb_viz_plugin.methods.attribution import deletion_auc, insertion_auc, random_map

from tests.helpers import make_plugin, tiny_module, tiny_trainer

CTX = tb_context.RequestContext()
METHODS = ["grad_cam", "saliency"]


def test_scores_are_scalars_beside_the_loss_and_in_the_view(tmp_path):
    callback = AttributionMaps(methods=METHODS, num_images=3, faithfulness={"steps": 4}, strict=True, budget=None)
    module = tiny_module()
    trainer = tiny_trainer(tmp_path, [callback])
    trainer.fit(module)
    events = EventAccumulator(str(tmp_path / "tiny" / "v0")).Reload()
    scalars = sorted(tag for tag in events.Tags()["scalars"] if tag.startswith("tb_viz/faithfulness/"))
    assert scalars == sorted(f"tb_viz/faithfulness/{m}/{s}" for m in [*METHODS, "random"] for s in ("deletion", "insertion"))
    assert [e.step for e in events.Scalars("tb_viz/faithfulness/grad_cam/deletion")] == [2, 4]
    assert "train_loss" in events.Tags()["scalars"]  # the same run, beside the loss

    plugin, _ = make_plugin(str(tmp_path))
    answer = plugin.items_impl(CTX, "", "tiny/v0", "attributions/net.0.3/predicted", 4)
    meta = answer["meta"]["faithfulness"]
    assert meta["steps"] == 4 and len(meta["columns"]) == 2
    last = {tag: events.Scalars(tag)[-1].value for tag in scalars}
    for column, method in zip(meta["columns"], METHODS):
        for score in ("deletion", "insertion"):
            assert last[f"tb_viz/faithfulness/{method}/{score}"] == pytest.approx(column[score], abs=1e-4)
    assert last["tb_viz/faithfulness/random/deletion"] == pytest.approx(meta["random"]["deletion"], abs=1e-4)

    # the same scores from the plain functions, on the final weights, the probe images and their maps
    maps = [item for item in answer["items"] if item["role"] == "map"]
    dataset = module.val_dataloader().dataset
    rows = answer["meta"]["rows"]
    images = torch.stack([dataset[row["index"]][0] for row in rows])
    targets = torch.tensor([row["target"] for row in rows])
    module.eval()
    assert torch.allclose(  # the random map: the same seed, the same images
        deletion_auc(module, images, random_map(images), targets, steps=4).mean(), torch.tensor(meta["random"]["deletion"]),
        atol=1e-4,
    )
    insertion = insertion_auc(module, images, random_map(images), targets, steps=4)
    assert insertion.mean().item() == pytest.approx(meta["random"]["insertion"], abs=1e-4)
    per_image = [item["deletion"] for item in maps if item["column"] == 0]
    assert sum(per_image) / 3 == pytest.approx(meta["columns"][0]["deletion"], abs=1e-3)


@pytest.mark.parametrize("value,match", [({"stepz": 3}, r"unknown faithfulness options \['stepz'\]"),
                                         ({"steps": 0}, "positive int"), ("yes", "bool or a mapping")])  # fmt: skip
def test_bad_faithfulness_options_fail_at_construction(value, match):
    with pytest.raises(MisconfigurationException, match=match):
        AttributionMaps(methods=METHODS, faithfulness=value)
