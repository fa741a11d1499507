#!/usr/bin/env bash
# Creates .venv and installs ented with everything it needs (tests, GFPGAN for benchmarks, ONNX,
# face detection, dlib identity, video, Real-ESRGAN).
# BasicSR 1.4.2 is a source archive whose build needs torch: torch goes in first, then the rest
# without build isolation. Usage: bash scripts/install.sh   (PYTHON=python3.11 to pick another)
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
.venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install --quiet --no-build-isolation -e ".[dev,benchmark,onnx,face,identity,video,upscale]"
# MTCNN face detection with its weights inside the wheel (works offline); its pins are stale.
.venv/bin/python -m pip install --quiet --no-deps facenet-pytorch==2.6.0
echo "installed: $(.venv/bin/python -c 'import ented, torch; print("ented", ented.__version__, "torch", torch.__version__)')"
