"""A small transformer encoder with seeded random weights, for byob's
real-model conformance cases and the ONNX benchmark: what a BERT-like
export contains, built with onnx.helper so that no model download is
needed.

Two post-norm encoder layers (d_model 128, 4 heads, feed-forward 512) on
inputs `x` [batch, seq, 128] float and `mask` [batch, seq] bool (true:
attend). Each layer: Q/K/V by batched MatMul, heads by Reshape and
Transpose, scaled scores, the mask applied through Where, Softmax over the
last axis, the output projection, residual, normalisation, feed-forward.
Layer 0 uses the LayerNormalization and Gelu operators (opset 20); layer 1
their decomposed forms (ReduceMean, Sub, Pow, Sqrt, Div; Erf), as older
exporters write them. Output `y` [batch, seq, 128].

A module of scripts/make-real-model-tests.py, which calls `write` when it
rebuilds every case, or only it with `--transformer-only`.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

D_MODEL, HEADS, FFN, LAYERS, OPSET = 128, 4, 512, 2, 20
MODEL_FILE = "transformer_encoder.onnx"


def build(seed=5):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def weight(name, shape, scale):
        inits.append(numpy_helper.from_array((scale * rng.standard_normal(shape)).astype(np.float32), name))
        return name

    def const(name, value, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.array(value, dtype), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    dh = D_MODEL // HEADS
    const("heads_shape", [0, 0, HEADS, dh], np.int64)
    const("model_shape", [0, 0, D_MODEL], np.int64)
    const("mask_axes", [1, 2], np.int64)
    const("scale", 1.0 / np.sqrt(dh))
    const("masked", -1e9)
    const("half", 0.5)
    const("one", 1.0)
    const("two", 2.0)
    const("sqrt2", np.sqrt(2.0))
    const("eps", 1e-5)
    const("last_axis", [-1], np.int64)
    mask4 = node("Unsqueeze", ["mask", "mask_axes"], "mask4")  # [B, 1, 1, S]

    def linear(x, name, d_in, d_out):
        w = weight(f"{name}.w", (d_in, d_out), 1.0 / np.sqrt(d_in))
        b = weight(f"{name}.b", (d_out,), 0.02)
        return node("Add", [node("MatMul", [x, w], f"{name}.matmul"), b], f"{name}.out")

    def layer_norm(x, name, fused):
        gamma = weight(f"{name}.gamma", (D_MODEL,), 0.1)
        inits[-1] = numpy_helper.from_array(numpy_helper.to_array(inits[-1]) + 1.0, gamma)
        beta = weight(f"{name}.beta", (D_MODEL,), 0.1)
        if fused:
            return node("LayerNormalization", [x, gamma, beta], f"{name}.out", axis=-1, epsilon=1e-5)
        mean = node("ReduceMean", [x, "last_axis"], f"{name}.mean")
        centred = node("Sub", [x, mean], f"{name}.centred")
        var = node("ReduceMean", [node("Pow", [centred, "two"], f"{name}.square"), "last_axis"], f"{name}.var")
        std = node("Sqrt", [node("Add", [var, "eps"], f"{name}.var_eps")], f"{name}.std")
        normed = node("Div", [centred, std], f"{name}.normed")
        return node("Add", [node("Mul", [normed, gamma], f"{name}.scaled"), beta], f"{name}.out")

    def gelu(x, name, fused):
        if fused:
            return node("Gelu", [x], f"{name}.out")
        erf = node("Erf", [node("Div", [x, "sqrt2"], f"{name}.div")], f"{name}.erf")
        return node("Mul", [node("Mul", [x, node("Add", [erf, "one"], f"{name}.plus1")], f"{name}.mul"), "half"], f"{name}.out")

    x = "x"
    for l in range(LAYERS):
        p, fused = f"layer{l}", l == 0

        def heads(t, perm, name):
            return node("Transpose", [node("Reshape", [t, "heads_shape"], f"{name}.split")], f"{name}.heads", perm=perm)

        q = heads(linear(x, f"{p}.q", D_MODEL, D_MODEL), [0, 2, 1, 3], f"{p}.q")
        k = heads(linear(x, f"{p}.k", D_MODEL, D_MODEL), [0, 2, 3, 1], f"{p}.k")
        v = heads(linear(x, f"{p}.v", D_MODEL, D_MODEL), [0, 2, 1, 3], f"{p}.v")
        scores = node("Mul", [node("MatMul", [q, k], f"{p}.qk"), "scale"], f"{p}.scores")
        scores = node("Where", [mask4, scores, "masked"], f"{p}.masked_scores")
        probs = node("Softmax", [scores], f"{p}.probs", axis=-1)
        context = node("Transpose", [node("MatMul", [probs, v], f"{p}.context")], f"{p}.context_t", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, "model_shape"], f"{p}.merged")
        attended = node("Add", [x, linear(context, f"{p}.o", D_MODEL, D_MODEL)], f"{p}.residual1")
        x1 = layer_norm(attended, f"{p}.norm1", fused)
        hidden = gelu(linear(x1, f"{p}.ffn1", D_MODEL, FFN), f"{p}.gelu", fused)
        x = layer_norm(node("Add", [x1, linear(hidden, f"{p}.ffn2", FFN, D_MODEL)], f"{p}.residual2"), f"{p}.norm2", fused)
    nodes.append(helper.make_node("Identity", [x], ["y"], name="output"))
    graph = helper.make_graph(
        nodes,
        "transformer_encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", D_MODEL]), helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", D_MODEL])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="byob scripts/transformer_encoder.py")
    onnx.checker.check_model(model, full_check=True)
    return model


def inputs(batch, seq, seed):
    """Embeddings-like input; in each batch row after the first, the last
    positions are padding (masked out), as in a padded batch."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, seq, D_MODEL)).astype(np.float32)
    mask = np.ones((batch, seq), bool)
    for b in range(1, batch):
        mask[b, seq - seq * b // (2 * batch) :] = False
    return x, mask


def write(models, write_case):
    """Writes the model into `models` and its case through `write_case`
    (make-real-model-tests.py's): batch 2, sequence 64, ONNX Runtime's
    output as the reference."""
    import onnxruntime as ort

    path = os.path.join(models, MODEL_FILE)
    onnx.save(build(), path)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x, mask = inputs(2, 64, seed=9)
    write_case("transformer_encoder_b2_s64", MODEL_FILE, [([x, mask], session.run(None, {"x": x, "mask": mask}))])

