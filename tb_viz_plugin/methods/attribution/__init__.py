"""Where the network looks: CAM, the Grad-CAM family, input gradients and occlusion (pure torch).

Each method takes a batch ``(N, C, H, W)`` and per-image targets and returns raw maps ``(N, H, W)``
at input resolution on the model's device; :func:`attribute` computes several at once, sharing
forward and backward passes.

Modules: ``core`` (``attribute`` and one function per method), ``cams`` (the CAM family on one
base class), ``gradients`` (input-gradient methods), ``perturbation`` (occlusion), ``excitation``
(excitation backprop, c-MWP), ``hooks`` (capturing layers, guided ReLUs, traced module calls),
``targets``. Beside the maps: ``unit_occlusion`` (occlusion at any unit, empirical receptive
fields), ``faithfulness`` (deletion / insertion scores), ``sanity`` (model randomisation, pointing game).
"""

from tb_viz_plugin.methods.attribution.cams import CamHeadError, upsample
from tb_viz_plugin.methods.attribution.core import (
    METHODS,
    Attribution,
    AttributionMap,
    attribute,
    cam,
    check_methods,
    check_options,
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
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
    random_map,
    softmax_score,
)
from tb_viz_plugin.methods.attribution.sanity import RandomisationCheck, model_randomisation, pointing_game, spearman
from tb_viz_plugin.methods.attribution.targets import Targets, check_targets
from tb_viz_plugin.methods.attribution.unit_occlusion import UnitOcclusion, empirical_rf_size, unit_occlusion

__all__ = [
    "Attribution",
    "AttributionMap",
    "CamHeadError",
    "ExcitationRules",
    "METHODS",
    "RandomisationCheck",
    "Targets",
    "UnitOcclusion",
    "attribute",
    "cam",
    "check_methods",
    "check_options",
    "check_targets",
    "contrastive_excitation_backprop",
    "deletion_auc",
    "deletion_curve",
    "empirical_rf_size",
    "excitation_backprop",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "insertion_auc",
    "insertion_curve",
    "integrated_gradients",
    "layer_cam",
    "model_randomisation",
    "occlusion",
    "pointing_game",
    "random_map",
    "saliency",
    "smooth_grad",
    "softmax_score",
    "spearman",
    "unit_occlusion",
    "upsample",
]
