"""The wheel ships the frontend and registers the TensorBoard entry point and the `tb-viz` command."""

import glob
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.timeout(300)
def test_wheel_contains_frontend_and_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), ROOT],
        capture_output=True, text=True, timeout=280,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = glob.glob(str(tmp_path / "tb_viz-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for module in ("index.js", "kinds.js", "model.js", "views.js", "style.css"):
        assert f"tb_viz_plugin/static/{module}" in names
    assert "tb_viz_plugin/plugin.py" in names and "tb_viz_plugin/summary.py" in names
    assert "[tensorboard_plugins]" in entry_points
    assert "tb_viz = tb_viz_plugin.plugin:TbVizPlugin" in entry_points
    assert "[console_scripts]" in entry_points and "tb-viz = tb_viz_plugin.cli:main" in entry_points
