//! How many inputs and outputs each ONNX operator byob runs may have, from
//! the operator schemas: a node outside them is refused when the session
//! is created, before any kernel sees it (a Relu with three inputs once
//! ran on the first and ignored the rest).

use crate::model::Node;
use std::ops::RangeInclusive;

/// Unbounded, for variadic inputs.
const MANY: usize = usize::MAX;

/// (inputs, outputs) that a default-domain `op` allows at `opset`, where
/// byob knows the schema. Trailing optional inputs may be given as `""`.
pub fn arity(op: &str, opset: i64) -> Option<(RangeInclusive<usize>, RangeInclusive<usize>)> {
    let one = 1..=1;
    Some(match op {
        "Abs" | "Neg" | "Floor" | "Ceil" | "Reciprocal" | "Sqrt" | "Exp" | "Log" | "Erf" | "Sigmoid" | "Sin" | "Cos" | "Tan" | "Asin" | "Acos" | "Atan"
        | "Sinh" | "Cosh" | "Asinh" | "Acosh" | "Atanh" | "Tanh" | "Relu" | "LeakyRelu" | "Elu" | "HardSigmoid" | "ThresholdedRelu" | "Not" | "Identity"
        | "Softplus" | "Softsign" | "Selu" | "Celu" | "Gelu" | "Mish" | "HardSwish" | "Shrink" | "Sign" | "Round" | "Swish" | "IsNaN" | "IsInf"
        | "Shape" | "Size" | "BitwiseNot" | "Flatten" | "Transpose" | "GlobalMaxPool" | "GlobalAveragePool" | "AveragePool" | "LpPool" | "LRN" | "Softmax" | "ConstantOfShape" => (one.clone(), one),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "MatMul" | "Gather" | "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "BitShift" => {
            (2..=2, one)
        }
        "Where" => (3..=3, one),
        "Cast" | "BitCast" => (one.clone(), one),
        "Slice" => (if opset >= 10 { 3..=5 } else { one.clone() }, one),
        "Split" => (if opset >= 13 { 1..=2 } else { one.clone() }, 1..=MANY),
        "Pad" => (if opset >= 18 { 2..=4 } else if opset >= 11 { 2..=3 } else { one.clone() }, one),
        "Tile" | "Expand" | "CumSum" | "CumProd" => (2..=2, one),
        "LogSoftmax" | "Hardmax" | "EyeLike" => (one.clone(), one),
        "Range" | "OneHot" => (3..=3, one),
        "Trilu" => (1..=2, one),
        "LayerNormalization" => (2..=3, 1..=3),
        "RMSNormalization" => (2..=2, one),
        "NegativeLogLikelihoodLoss" => (2..=3, one),
        "SoftmaxCrossEntropyLoss" => (2..=3, 1..=2),
        "GatherElements" | "GatherND" => (2..=2, one),
        "ScatterElements" | "ScatterND" => (3..=3, one),
        "LSTM" => (3..=8, 0..=3),
        "Attention" => (3..=7, 1..=4),
        "ConvTranspose" => (2..=3, one.clone()),
        "DepthToSpace" | "SpaceToDepth" => (one.clone(), one.clone()),
        "ReverseSequence" | "CenterCropPad" | "PRelu" => (2..=2, one.clone()),
        "Scatter" => (3..=3, one.clone()),
        "Einsum" => (1..=MANY, one.clone()),
        "Det" => (one.clone(), one.clone()),
        "Unique" => (one.clone(), 1..=4),
        "GridSample" | "AffineGrid" => (2..=2, one.clone()),
        "RotaryEmbedding" => (3..=4, one.clone()),
        "CausalConvWithState" => (2..=4, 1..=2),
        "LinearAttention" => (3..=6, 1..=2),
        "QuantizeLinear" | "DequantizeLinear" => (2..=3, one.clone()),
        "DynamicQuantizeLinear" => (one.clone(), 3..=3),
        "QLinearMatMul" => (8..=8, one.clone()),
        "MatMulInteger" => (2..=4, one.clone()),
        "Resize" => (if opset >= 11 { 1..=4 } else { 2..=2 }, one.clone()),
        "Upsample" => (if opset >= 9 { 2..=2 } else { one.clone() }, one.clone()),
        "InstanceNormalization" | "GroupNormalization" => (3..=3, one.clone()),
        "MeanVarianceNormalization" | "LpNormalization" | "NonZero" => (one.clone(), one.clone()),
        "TopK" => (if opset >= 10 { 2..=2 } else { one.clone() }, 2..=2),
        "Compress" => (2..=2, one.clone()),
        "DFT" => (1..=3, one.clone()),
        "STFT" => (2..=4, one.clone()),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => (one.clone(), one.clone()),
        "MelWeightMatrix" => (5..=5, one.clone()),
        // Subgraphs' captures follow the declared inputs.
        "If" | "Scan" => (1..=MANY, 1..=MANY),
        "Loop" => (0..=MANY, 1..=MANY),
        "GRU" | "RNN" => (3..=6, 0..=2),
        "CastLike" => (2..=2, one),
        "Sum" | "Concat" | "Max" | "Min" | "Mean" => (1..=MANY, one),
        // Opset 11 moved min and max from attributes to inputs.
        "Clip" => (if opset >= 11 { 1..=3 } else { one.clone() }, one),
        // Opset 5 moved the shape, opset 13 the axes, to inputs.
        "Reshape" => (if opset >= 5 { 2..=2 } else { one.clone() }, one),
        "Unsqueeze" | "Squeeze" => (if opset >= 13 { 1..=2 } else { one.clone() }, one),
        // ReduceSum's axes became an input in opset 13, the others' in 18.
        "ReduceSum" => (if opset >= 13 { 1..=2 } else { one.clone() }, one),
        "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
            (if opset >= 18 { 1..=2 } else { one.clone() }, one)
        }
        "ArgMax" | "ArgMin" => (one.clone(), one),
        "Constant" => (0..=0, one),
        "Dropout" => (if opset >= 12 { 1..=3 } else { one.clone() }, 1..=2),
        "Gemm" => (2..=3, one),
        "Conv" => (2..=3, one),
        "MaxPool" => (one.clone(), 1..=2),
        "BatchNormalization" => (5..=5, 1..=5),
        _ => return None,
    })
}

/// Refuses a default-domain node outside its operator's arity.
pub fn check_arity(node: &Node, opset: i64) -> Result<(), String> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Ok(());
    }
    let Some((inputs, outputs)) = arity(&node.op_type, opset) else { return Ok(()) };
    let count = |names: &[String]| names.iter().rposition(|n| !n.is_empty()).map_or(0, |i| i + 1);
    let describe = |r: &RangeInclusive<usize>| match (*r.start(), *r.end()) {
        (a, b) if a == b => format!("{a}"),
        (a, MANY) => format!("at least {a}"),
        (a, b) => format!("{a} to {b}"),
    };
    // Required inputs must be named; `""` stands only for optional ones.
    let given = count(&node.inputs);
    if !inputs.contains(&given) || node.inputs.iter().take(*inputs.start()).any(String::is_empty) {
        return Err(format!("{} (opset {opset}) takes {} input(s), the node gives {given}", node.op_type, describe(&inputs)));
    }
    let produced = count(&node.outputs);
    // Every output of the recurrent operators is optional; elsewhere the
    // first is required.
    let first_optional = matches!(node.op_type.as_str(), "LSTM" | "GRU" | "RNN");
    if !outputs.contains(&produced) || (!first_optional && node.outputs.first().is_none_or(String::is_empty)) {
        return Err(format!("{} (opset {opset}) has {} output(s), the node names {produced}", node.op_type, describe(&outputs)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Node { name: "n".into(), op_type: op.into(), domain: String::new(), inputs: names(inputs), outputs: names(outputs), attributes: Default::default() }
    }

    #[test]
    fn counts_follow_the_schemas() {
        assert_eq!(check_arity(&node("Relu", &["x", "y", "z"], &["o"]), 13).unwrap_err(), "Relu (opset 13) takes 1 input(s), the node gives 3");
        assert!(check_arity(&node("Relu", &["x"], &["o"]), 13).is_ok());
        assert!(check_arity(&node("Clip", &["x", "", "max"], &["o"]), 13).is_ok());
        assert!(check_arity(&node("Clip", &["x", "min"], &["o"]), 6).is_err());
        assert!(check_arity(&node("Add", &["", "b"], &["o"]), 13).unwrap_err().contains("takes 2 input(s)"));
        assert!(check_arity(&node("Sum", &["a", "b", "c", "d"], &["o"]), 13).is_ok());
        assert_eq!(check_arity(&node("Sum", &[], &["o"]), 13).unwrap_err(), "Sum (opset 13) takes at least 1 input(s), the node gives 0");
        assert!(check_arity(&node("MaxPool", &["x"], &["y", "indices"]), 12).is_ok());
        assert!(check_arity(&node("Relu", &["x"], &["a", "b"]), 13).unwrap_err().contains("has 1 output(s), the node names 2"));
        assert!(check_arity(&node("Relu", &["x"], &[]), 13).is_err());
        // Operators byob does not know are left to the providers.
        assert!(check_arity(&node("Frobnicate", &["x", "y", "z"], &["o"]), 13).is_ok());
    }
}
