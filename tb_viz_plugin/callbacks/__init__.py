"""Lightning callbacks (``pytorch_lightning``) that log tb-viz visualizations at epoch ends.

Example:
    >>> from pytorch_lightning import Trainer
    >>> from pytorch_lightning.loggers import TensorBoardLogger
    >>> from tb_viz_plugin.callbacks import AttributionMaps, FilterGrid
    >>> callbacks = [FilterGrid(layers=["features.0", "features.4"]), AttributionMaps(layers="features")]
    >>> [callback.name for callback in callbacks]  # a name= tells two instances on the same layers apart
    [None, None]
    >>> trainer = Trainer(logger=TensorBoardLogger("logs"), callbacks=callbacks)  # doctest: +SKIP
"""

from tb_viz_plugin.callbacks.base import RankZeroCallback, VizCallback
from tb_viz_plugin.callbacks.activation_maximization import ActivationMaximization
from tb_viz_plugin.callbacks.deepdream import DeepDream
from tb_viz_plugin.callbacks.filter_grid import FilterGrid
from tb_viz_plugin.callbacks.attributions import AttributionMaps
from tb_viz_plugin.callbacks.activation_maps import ActivationMaps
from tb_viz_plugin.callbacks.top_activations import TopActivations
from tb_viz_plugin.callbacks.embeddings import Embeddings
from tb_viz_plugin.callbacks.network_dissection import NetworkDissection
from tb_viz_plugin.callbacks.feature_inversion import FeatureInversion
from tb_viz_plugin.callbacks.neural_style import NeuralStyle

__all__ = [
    "ActivationMaximization",
    "DeepDream",
    "AttributionMaps",
    "ActivationMaps",
    "TopActivations",
    "Embeddings",
    "FeatureInversion",
    "FilterGrid",
    "NetworkDissection",
    "NeuralStyle",
    "RankZeroCallback",
    "VizCallback",
]
