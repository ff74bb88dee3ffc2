//! The CPU's fallback for channels-last (NHWC) nodes without a kernel of
//! their own (a Conv whose weights are computed at run time, an unfused
//! BatchNormalization): they transpose to NCHW around the NCHW kernel.

use crate::kernels::transpose::transpose_into;
use super::{output, required, Fact, Op, OpError};
use crate::tensor::Tensor;
use std::sync::Mutex;

const TO_NCHW: [usize; 4] = [0, 3, 1, 2];
const TO_NHWC: [usize; 4] = [0, 2, 3, 1];

#[derive(Debug)]
pub(crate) struct ChannelsLast {
    inner: Box<dyn Op>,
    /// The NCHW input and output, kept between runs.
    scratch: Mutex<[Tensor; 2]>,
}

impl ChannelsLast {
    pub fn new(inner: Box<dyn Op>) -> Self {
        Self { inner, scratch: Mutex::default() }
    }
}

fn permuted<T: Clone>(shape: &[T], perm: [usize; 4]) -> Option<Vec<T>> {
    (shape.len() == 4).then(|| perm.iter().map(|&p| shape[p].clone()).collect())
}

impl Op for ChannelsLast {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let shape = permuted(&x.shape, TO_NCHW).ok_or_else(|| OpError::input(0, format!("a channels-last input must be [N, H, W, C], got rank {}", x.shape.len())))?;
        let nchw = Fact::new(x.dtype, shape);
        let mut args = inputs.to_vec();
        args[0] = Some(&nchw);
        let mut facts = self.inner.infer(&args)?;
        for f in &mut facts {
            f.shape = permuted(&f.shape, TO_NHWC).ok_or_else(|| OpError::Shape("a channels-last output must have rank 4".into()))?;
        }
        Ok(facts)
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        if x.rank() != 4 {
            return Err(OpError::input(0, format!("a channels-last input must be [N, H, W, C], got shape {:?}", x.shape())));
        }
        // Another run may hold the scratch, possibly further down this very
        // thread's stack (a pool thread waiting inside a kernel takes up
        // queued work): never wait for it, use fresh buffers instead.
        let mut fresh = Default::default();
        let mut held = match self.scratch.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        let [x_nchw, y_nchw]: &mut [Tensor; 2] = held.as_deref_mut().unwrap_or(&mut fresh);
        transpose_into(x, &TO_NCHW, x_nchw, threads)?;
        let mut args = inputs.to_vec();
        args[0] = Some(x_nchw);
        self.inner.eval(&args, std::slice::from_mut(y_nchw), threads)?;
        transpose_into(y_nchw, &TO_NHWC, output(outputs, 0)?, threads)?;
        Ok(())
    }
}
