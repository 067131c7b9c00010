"""tb-viz: Lightning callbacks + a TensorBoard plugin showing what a CNN has learned."""

import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithFrontend(build_py):
    """Copy the ES modules of ``frontend/`` into the wheel as ``tb_viz_plugin/static/``."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "tb_viz_plugin", "static")
        os.makedirs(target, exist_ok=True)
        source = os.path.join(HERE, "frontend")
        for name in sorted(os.listdir(source)):
            if os.path.splitext(name)[1] in (".js", ".css", ".png", ".svg"):
                shutil.copyfile(os.path.join(source, name), os.path.join(target, name))


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="tb-viz",
    version="0.1.0",
    description="See what your CNN has learned, epoch by epoch, in TensorBoard",
    long_description=long_description,
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tb_viz_plugin", "tb_viz_plugin.*"]),
    package_data={"tb_viz_plugin": ["*.md"]},
    cmdclass={"build_py": BuildWithFrontend},
    python_requires=">=3.9",
    install_requires=[
        "tensorboard>=2.14",
        "google-crc32c>=1.5",  # the event writer's checksums in C (tb_viz_plugin/fast_crc.py)
        "numpy",
        "pillow",
        "torch>=2.1",
        "pytorch-lightning>=2.1",
        "typing_extensions",
    ],
    extras_require={
        "tsne": ["scikit-learn>=1.2"],
        # peers the tests and benchmarks compare against; never imported by the package
        "test": [
            "pytest>=7",
            "pytest-timeout",
            "playwright>=1.40",
            "lightning>=2.1",
            "captum",
            "grad-cam",
            "scikit-learn>=1.2",
            "torch-lucent",
            "kornia==0.4.1",
            "torchray", "importlib_resources",  # TorchRay (CC BY-NC): install with pip --no-deps; tests only
        ],
    },
    entry_points={
        "tensorboard_plugins": ["tb_viz = tb_viz_plugin.plugin:TbVizPlugin"],
        "console_scripts": ["tb-viz = tb_viz_plugin.cli:main"],
    },
    classifiers=["Programming Language :: Python :: 3", "Topic :: Scientific/Engineering :: Visualization"],
)
