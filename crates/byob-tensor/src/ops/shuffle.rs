//! `ChannelShuffle` (domain [`PACKED_DOMAIN`](super::packed::PACKED_DOMAIN), made by
//! the channel shuffle fusion pass (`passes::fuse`) for the CPU): ShuffleNet's
//! Reshape → Transpose → Reshape as one transpose, without the copies the
//! two Reshapes make. X, viewed as [outer, groups, C / groups, inner]
//! around axis `axis` of `shape` (C = shape[axis]), has its two middle
//! axes swapped, and the result is viewed in `shape` again.

use crate::kernels::transpose::transpose_view;
use super::{output, required, Attrs, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::Tensor;

#[derive(Debug)]
struct ChannelShuffle {
    shape: Vec<usize>,
    axis: usize,
    groups: usize,
}

impl ChannelShuffle {
    fn view(&self) -> [usize; 4] {
        let (c, g) = (self.shape[self.axis], self.groups);
        [self.shape[..self.axis].iter().product(), g, c / g, self.shape[self.axis + 1..].iter().product()]
    }
}

impl Op for ChannelShuffle {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(x.dtype, self.shape.iter().map(|&d| Dim::Known(d)).collect())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let view = self.view();
        if x.len() != view.iter().product::<usize>() {
            return Err(OpError::input(0, format!("a channel shuffle to {:?} needs {} elements, got shape {:?}", self.shape, view.iter().product::<usize>(), x.shape())));
        }
        Ok(transpose_view(x, &view, &[0, 2, 1, 3], &self.shape, output(outputs, 0)?, threads)?)
    }
}

pub(super) fn channel_shuffle(node: &Node, _opset: i64) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let shape: Vec<usize> = a.ints("shape")?.unwrap_or_default().iter().map(|&d| usize::try_from(d).ok().filter(|&d| d > 0)).collect::<Option<_>>().filter(|s: &Vec<usize>| !s.is_empty()).ok_or_else(|| OpError::attribute("shape", "needs positive dimensions"))?;
    let axis = usize::try_from(a.int("axis", -1)?).ok().filter(|&x| x < shape.len()).ok_or_else(|| OpError::attribute("axis", format!("must name an axis of {shape:?}")))?;
    let groups = usize::try_from(a.int("groups", 0)?).ok().filter(|&g| g > 0 && shape[axis] % g == 0).ok_or_else(|| OpError::attribute("groups", format!("must divide the {} channels", shape[axis])))?;
    Ok(Box::new(ChannelShuffle { shape, axis, groups }))
}
