#!/usr/bin/env python3
"""Copies ONNX's backend test data from an installed `onnx` package (pinned:
1.22.0) into crates/byob-tensor/tests/data/onnx-1.22.0/: the whole `node`
folder (1,765 operator tests) and the nine `light` real models. The
conformance suite runs every node test; the ones a runtime is expected to
fail are listed, with the reason, in that folder's expected-failures/*.txt.

    python3 -m pip install onnx==1.22.0 && scripts/copy-onnx-tests.py
"""
import os
import shutil
import sys

import onnx

assert onnx.__version__ == "1.22.0", f"need onnx 1.22.0, found {onnx.__version__}"
source = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
target = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "byob-tensor", "tests", "data", "onnx-1.22.0")
for part in ("node", "light"):
    shutil.rmtree(os.path.join(target, part), ignore_errors=True)
    shutil.copytree(os.path.join(source, part), os.path.join(target, part))
count = len(os.listdir(os.path.join(target, "node")))
print(f"copied {count} node tests and the light models to {os.path.normpath(target)}", file=sys.stderr)
