//! `ConcatConvs` (domain [`PACKED_DOMAIN`](super::packed::PACKED_DOMAIN),
//! made by the Concat fusion pass, `passes::fuse`): packed convolutions whose
//! outputs a `Concat` joins along the channels (SqueezeNet's expand layers,
//! Inception's branches), each writing its channels of the joined output in
//! place, so the Concat's copy disappears. Four inputs per branch (X, W,
//! bias, and an empty residual slot); each branch's attributes are those of
//! its `PackedConv`, prefixed `"{branch}:"`; `branches` counts them.

use super::linalg::known;
use super::packed::{read_packed_conv, Conv2d, PackedConv};
use super::{output, Attrs, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};

/// Inputs per branch.
const SLOTS: usize = 4;

#[derive(Debug)]
struct ConcatConvs {
    branches: Vec<PackedConv>,
}

impl ConcatConvs {
    fn inputs<'i, T>(inputs: &'i [Option<T>], branch: usize) -> &'i [Option<T>] {
        let slots = &inputs[(branch * SLOTS).min(inputs.len())..];
        &slots[..slots.len().min(SLOTS - 1)]
    }
}

impl Op for ConcatConvs {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let mut shape: Option<Vec<Dim>> = None;
        let mut channels = 0;
        for (i, branch) in self.branches.iter().enumerate() {
            let fact = branch.infer(Self::inputs(inputs, i)).map_err(|e| in_branch(e, i))?.remove(0);
            match &mut shape {
                None => shape = Some(fact.shape[..3].to_vec()),
                Some(first) => {
                    for (d, (a, b)) in first.iter_mut().zip(&fact.shape[..3]).enumerate() {
                        match (known(a), known(b)) {
                            (Some(x), Some(y)) if x != y => return Err(OpError::Shape(format!("branch {i}'s output has {y} along axis {d}, branch 0's {x}"))),
                            (None, Some(_)) => *a = b.clone(),
                            _ => {}
                        }
                    }
                }
            }
            channels += branch.output_channels();
        }
        let mut shape = shape.ok_or_else(|| OpError::attribute("branches", "no convolution to join"))?;
        shape.push(Dim::Known(channels));
        Ok(vec![Fact::new(DataType::F32, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let mut convs: Vec<(Conv2d, [usize; 4])> = Vec::with_capacity(self.branches.len());
        for (i, branch) in self.branches.iter().enumerate() {
            let (conv, shape) = branch.operands(Self::inputs(inputs, i)).map_err(|e| in_branch(e, i))?;
            if let Some((_, first)) = convs.first() {
                if shape[..3] != first[..3] {
                    return Err(OpError::Shape(format!("branch {i}'s output {shape:?} does not line up with branch 0's {first:?}")));
                }
            }
            convs.push((conv, shape));
        }
        let total: usize = convs.iter().map(|(_, s)| s[3]).sum();
        let [n, h, w, _] = convs[0].1;
        let y = output(outputs, 0)?.reset_f32(&[n, h, w, total])?;
        let mut offset = 0;
        for (mut conv, shape) in convs {
            (conv.offset, conv.stride) = (offset, total);
            conv.run(y, threads);
            offset += shape[3];
        }
        Ok(())
    }
}

/// A branch's error, its input numbered as the node's.
fn in_branch(error: OpError, branch: usize) -> OpError {
    match error {
        OpError::Input { index, what } => OpError::Input { index: branch * SLOTS + index, what },
        other => other,
    }
}

pub(super) fn concat_convs(node: &Node, _opset: i64) -> Result<Box<dyn Op>, OpError> {
    let count = Attrs(node).int("branches", 0)?;
    if count < 1 {
        return Err(OpError::attribute("branches", format!("must be positive, got {count}")));
    }
    let branches = (0..count)
        .map(|i| {
            let prefix = format!("{i}:");
            let mut branch = node.clone();
            branch.attributes = node.attributes.iter().filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone()))).collect();
            let conv = read_packed_conv(&branch, false)?;
            if !conv.places_anywhere() {
                return Err(OpError::attribute(&format!("{i}:group"), "a depthwise convolution cannot write into a joined output"));
            }
            Ok(conv)
        })
        .collect::<Result<_, OpError>>()?;
    Ok(Box::new(ConcatConvs { branches }))
}
