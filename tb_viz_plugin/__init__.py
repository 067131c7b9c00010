"""tb-viz: Lightning callbacks and a TensorBoard plugin that show what a CNN has learned.

Importing this package is cheap and torch-free (TensorBoard imports it at start-up). The
torch-side functions are loaded on first use:

- ``tb_viz_plugin.log_filters(writer, model, step, layers=None)`` and the other ``log_<kind>``
  functions compute a view and write it through a ``SummaryWriter``; the ``write_<kind>``
  functions write results computed elsewhere (see ``tb_viz_plugin.log``).
- ``tb_viz_plugin.callbacks``: Lightning callbacks (``FilterGrid``, ``TopActivations``, ...).
- ``tb_viz_plugin.methods``, ``tb_viz_plugin.render``: the computations and the image rendering.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {name: "tb_viz_plugin.log" for name in (
    "log_filters",
    "log_activation_maps",
    "log_top_activations",
    "log_attributions",
    "log_embeddings",
    "log_activation_maximization",
    "log_deepdream",
    "log_network_dissection",
    "log_feature_inversion",
    "log_neural_style",
    "write_filters",
    "write_activation_maps",
    "write_top_activations",
    "write_attributions",
    "write_embeddings",
    "write_activation_maximization",
    "write_deepdream",
    "write_network_dissection",
    "write_feature_inversion",
    "write_neural_style",
)}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tb_viz_plugin' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
