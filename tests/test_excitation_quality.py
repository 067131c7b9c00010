"""Do c-MWP and the other maps mean something on the trained demo? Pointing game, deletion, randomisation.

Uses the briefly trained demo model of the ``trained_demo`` fixture and its validation shapes (whose
object masks are known). Set ``TB_VIZ_REPORT=1`` to print the figures.
"""

import os

import torch

from tb_viz_plugin.demo.model import CAM_LAYER, ShapesCNN
from tb_viz_plugin.methods.attribution import attribute
from tb_viz_plugin.methods.attribution.faithfulness import deletion_auc, insertion_auc, random_map
from tb_viz_plugin.methods.attribution.sanity import model_randomisation, pointing_game

CMWP_LAYER = "features.11"  # the last max-pool (8x8): c-MWP's maps at a pooling layer, as in the paper
METHODS = ["grad_cam", "saliency", "contrastive_excitation_backprop", "excitation_backprop"]


def _report(text: str) -> None:
    if os.environ.get("TB_VIZ_REPORT"):
        print(text)


def _validation(trained_demo, every: int):
    val_set = trained_demo["val_set"]
    indices = list(range(0, len(val_set), every))
    images = torch.stack([val_set[i][0] for i in indices])
    return images, torch.from_numpy(val_set.labels)[indices], torch.from_numpy(val_set.masks)[indices]


def _hit_rates(model, images, labels, masks):
    """Pointing-game hit rate per method (layer methods at CMWP_LAYER, Grad-CAM also at CAM_LAYER)."""
    result = attribute(model, images, METHODS, targets=labels, layers=[CMWP_LAYER, CAM_LAYER])
    return {f"{m.method}@{m.layer}" if m.layer else m.method: pointing_game(m.values, masks).float().mean().item() for m in result.maps}


def test_pointing_game_c_mwp_grad_cam_saliency_trained_and_untrained(trained_demo):
    images, labels, masks = _validation(trained_demo, 2)
    trained = _hit_rates(trained_demo["model"].model, images, labels, masks)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        untrained = _hit_rates(ShapesCNN().eval(), images, labels, masks)
    area = masks.float().mean().item()
    _report(f"pointing game on {len(images)} demo images (mask area {area:.3f}), trained / untrained: "
            + ", ".join(f"{k} {trained[k]:.3f} / {untrained[k]:.3f}" for k in trained))  # fmt: skip
    cmwp = f"contrastive_excitation_backprop@{CMWP_LAYER}"
    assert trained[cmwp] >= untrained[cmwp] + 0.15 and trained[cmwp] >= 3 * area, (trained, untrained)
    assert trained[cmwp] > trained["saliency"], trained
    # excitation backprop without the contrast points at the object even untrained: not class-specific
    assert untrained[f"excitation_backprop@{CMWP_LAYER}"] >= 4 * area, untrained


def test_grad_cam_deletion_beats_the_random_map(trained_demo):
    images, labels, _ = _validation(trained_demo, 12)
    model = trained_demo["model"].model
    result = attribute(model, images, ["grad_cam", "contrastive_excitation_backprop"], targets=labels, layers=CAM_LAYER)
    scores = {}
    for name, maps in (("grad_cam", result.get("grad_cam")), ("c-MWP", result.get("contrastive_excitation_backprop")),
                       ("random", random_map(images, seed=0))):  # fmt: skip
        scores[name] = (deletion_auc(model, images, maps, labels, steps=16).mean().item(),
                        insertion_auc(model, images, maps, labels, steps=16).mean().item())  # fmt: skip
    _report(f"deletion / insertion AUC on {len(images)} demo images @ {CAM_LAYER}: "
            + ", ".join(f"{k} {d:.3f} / {i:.3f}" for k, (d, i) in scores.items()))  # fmt: skip
    assert scores["grad_cam"][0] < scores["random"][0], scores
    assert scores["grad_cam"][1] > scores["random"][1], scores


def test_c_mwp_fails_the_randomisation_check_less_than_excitation_backprop(trained_demo):
    images, labels, _ = _validation(trained_demo, 12)
    check = model_randomisation(
        trained_demo["model"].model, images, ["contrastive_excitation_backprop", "excitation_backprop"],
        modules=["classifier", "features.12"], targets=labels, layers=CMWP_LAYER,
    )  # fmt: skip
    cmwp, plain = check.mean("contrastive_excitation_backprop"), check.mean("excitation_backprop")
    _report(f"rank correlation after randomising {check.stages}: c-MWP {cmwp.tolist()}, excitation backprop {plain.tolist()}")
    assert cmwp[-1] < 0.4 and plain[-1] > cmwp[-1] + 0.3, (cmwp, plain)
