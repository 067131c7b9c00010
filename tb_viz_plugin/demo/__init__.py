"""tb-viz demo: a small CNN learns synthetic coloured shapes while tb-viz logs what it learns.

``python -m tb_viz_plugin.demo --logdir DIR`` trains and then serves TensorBoard. The parts:

- ``tb_viz_plugin.demo.data``: ``ShapesDataset``, ``make_splits``, ``CLASS_NAMES``, ``COLOR_NAMES``,
  ``MEAN`` / ``STD``, ``normalize`` / ``denormalize``.
- ``tb_viz_plugin.demo.model``: ``ShapesCNN``, ``ShapesModule`` and the layer names
  ``FIRST_CONV``, ``DEEP_CONV``, ``CAM_LAYER``.
- ``tb_viz_plugin.demo.train``: ``train`` and ``demo_callbacks``.

Nothing is imported here, so ``tb_viz_plugin.demo.train`` stays the module (not the function).
"""
