"""``python -m tb_viz_plugin``: the ``tb-viz`` command (see :mod:`tb_viz_plugin.cli`)."""

import sys

from tb_viz_plugin.cli import main

if __name__ == "__main__":
    sys.exit(main())
