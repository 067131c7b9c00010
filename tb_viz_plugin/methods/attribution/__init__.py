"""Where the network looks: CAM, the Grad-CAM family, input gradients and occlusion (pure torch).

Each method takes a batch ``(N, C, H, W)`` and per-image targets and returns raw maps ``(N, H, W)``
at input resolution on the model's device; :func:`attribute` computes several at once, sharing
forward and backward passes.

Modules: ``core`` (``attribute`` and one function per method), ``registry`` (every method by name),
``result`` (what ``attribute`` returns), ``shared_pass`` (the passes methods share), ``cams`` (the
CAM family on one base class), ``gradients`` (input-gradient methods), ``perturbation``
(occlusion), ``excitation`` (excitation backprop, c-MWP), ``hooks`` (traced module calls, guided
ReLUs), ``targets``. Beside the maps: ``unit_occlusion`` (occlusion at any unit, empirical receptive
fields), ``faithfulness`` (deletion / insertion scores), ``sanity`` (model randomisation, pointing game).
"""

from tb_viz_plugin.methods.attribution.cams import CamHeadError, upsample
from tb_viz_plugin.methods.attribution.core import (
    attribute,
    cam,
    grad_cam,
    grad_cam_plus_plus,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    layer_cam,
    occlusion,
    saliency,
    smooth_grad,
)
from tb_viz_plugin.methods.attribution.excitation import (
    ExcitationRules,
    contrastive_excitation_backprop,
    excitation_backprop,
)
from tb_viz_plugin.methods.attribution.faithfulness import (
    Faithfulness,
    deletion_auc,
    deletion_curve,
    faithfulness_scores,
    insertion_auc,
    insertion_curve,
    random_map,
    softmax_score,
)
from tb_viz_plugin.methods.attribution.registry import DEFAULT_METHODS, METHODS, check_methods, check_options
from tb_viz_plugin.methods.attribution.result import Attribution, AttributionMap
from tb_viz_plugin.methods.attribution.sanity import RandomisationCheck, model_randomisation, pointing_game, spearman
from tb_viz_plugin.methods.attribution.targets import Targets, check_targets, describe_targets
from tb_viz_plugin.methods.attribution.unit_occlusion import TopKOcclusion, UnitOcclusion, empirical_rf_size, top_k_occlusion
from tb_viz_plugin.methods.attribution.unit_occlusion import unit_occlusion

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "Attribution",
    "AttributionMap",
    "CamHeadError",
    "Targets",
    "attribute",
    "cam",
    "check_methods",
    "check_options",
    "check_targets",
    "describe_targets",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "layer_cam",
    "occlusion",
    "saliency",
    "smooth_grad",
    "upsample",
    "ExcitationRules",
    "contrastive_excitation_backprop",
    "excitation_backprop",
    "deletion_auc",
    "Faithfulness",
    "faithfulness_scores",
    "deletion_curve",
    "insertion_auc",
    "insertion_curve",
    "random_map",
    "softmax_score",
    "RandomisationCheck",
    "model_randomisation",
    "pointing_game",
    "spearman",
    "UnitOcclusion",
    "empirical_rf_size",
    "unit_occlusion",
    "top_k_occlusion",
    "TopKOcclusion",
]
