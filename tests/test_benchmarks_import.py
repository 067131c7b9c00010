"""Every script in benchmarks/ still imports (their timings are run by hand; a renamed name breaks them silently)."""

import importlib
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCHMARKS.glob("bench_*.py")))
def test_the_benchmark_script_imports_and_has_a_main(script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    try:
        assert callable(getattr(module, "main", None))
    finally:
        sys.modules.pop(script, None)
