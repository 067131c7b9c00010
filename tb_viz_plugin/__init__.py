"""tb-viz: Lightning callbacks and a TensorBoard plugin that show what a CNN has learned.

Importing this package is cheap and torch-free (TensorBoard imports it at start-up). The
torch-side functions are loaded on first use:

- ``tb_viz_plugin.log_filters(writer, model, step, layers=None)``: plain-PyTorch logging.
- ``tb_viz_plugin.callbacks``: Lightning callbacks (``FilterGrid``, ...).
- ``tb_viz_plugin.methods``, ``tb_viz_plugin.render``: the computations and the image rendering.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {"log_activation_maximization": "tb_viz_plugin.log", "log_deepdream": "tb_viz_plugin.log", "log_attributions": "tb_viz_plugin.log", "log_activation_maps": "tb_viz_plugin.log", "log_top_activations": "tb_viz_plugin.log", "log_filters": "tb_viz_plugin.log", "log_embeddings": "tb_viz_plugin.log"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tb_viz_plugin' has no attribute {name!r}")


__all__ = ["__version__", "log_activation_maximization", "log_deepdream", "log_attributions", "log_activation_maps", "log_top_activations", "log_embeddings", "log_filters"]
