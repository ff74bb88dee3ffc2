#!/usr/bin/env python3
"""Copies the ONNX backend test data byob runs from an installed `onnx`
package (pinned: 1.22.0, the last release that ships it) into
crates/byob-tensor/tests/data/onnx-1.22.0/.

Selection: every `node` test whose graph uses only operators byob's CPU
provider implements and only tensor types it supports (float, int64, int32,
bool), plus every `light` model. Run: pip install onnx==1.22.0 && scripts/select-onnx-tests.py
"""
import os
import shutil
import sys

import onnx

SUPPORTED_OPS = set("""
Abs Neg Floor Ceil Reciprocal Sqrt Exp Log Erf Sigmoid Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh
Tanh Relu LeakyRelu Elu HardSigmoid ThresholdedRelu Clip Not Add Sub Mul Div Pow Shape Reshape Transpose Gemm
Conv MaxPool AveragePool GlobalMaxPool GlobalAveragePool BatchNormalization Concat Sum Softmax Dropout LRN
ConstantOfShape Constant Identity Unsqueeze Squeeze Flatten MatMul Gather
""".split())
SUPPORTED_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}

assert onnx.__version__ == "1.22.0", f"need onnx 1.22.0, found {onnx.__version__}"
source = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
target = os.path.join(os.path.dirname(__file__), "..", "crates", "byob-tensor", "tests", "data", "onnx-1.22.0")
shutil.rmtree(target, ignore_errors=True)


def types(graph):
    for v in list(graph.input) + list(graph.output):
        if v.type.HasField("tensor_type"):
            yield v.type.tensor_type.elem_type
        else:
            yield -1
    for t in graph.initializer:
        yield t.data_type


selected = []
for name in sorted(os.listdir(os.path.join(source, "node"))):
    model = onnx.load(os.path.join(source, "node", name, "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    if all(n.domain in ("", "ai.onnx") for n in model.graph.node) and ops <= SUPPORTED_OPS and set(types(model.graph)) <= SUPPORTED_TYPES:
        shutil.copytree(os.path.join(source, "node", name), os.path.join(target, "node", name))
        selected.append(name)
shutil.copytree(os.path.join(source, "light"), os.path.join(target, "light"))
with open(os.path.join(target, "SELECTION.txt"), "w") as f:
    f.write("\n".join(selected) + "\n")
print(f"{len(selected)} node tests selected", file=sys.stderr)
