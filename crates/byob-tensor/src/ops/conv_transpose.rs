//! ConvTranspose over 1-D, 2-D and 3-D (any rank): each input element
//! scatters its products with the kernel into the output, with strides,
//! dilations, groups, pads (explicit, or SAME_UPPER/SAME_LOWER from the
//! output shape), `output_padding` and `output_shape`, as the operator's
//! reference computes it.

use super::linalg::{f32_fact, f32_input, optional_f32_input};
use super::{output, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::DataType;
use std::collections::HashMap;

#[derive(Debug)]
struct ConvTranspose {
    auto_pad: String,
    dilations: Option<Vec<i64>>,
    group: usize,
    output_padding: Option<Vec<i64>>,
    output_shape: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    strides: Option<Vec<i64>>,
}

/// Per spatial axis: output size and the padding before.
pub struct Geometry {
    pub out: Vec<usize>,
    pub pad_begin: Vec<i64>,
    pub strides: Vec<i64>,
    pub dilations: Vec<i64>,
}

/// The geometry of ConvTranspose `node` over spatial sizes `input` with a
/// kernel of spatial sizes `kernel`: for providers that compute it on
/// their own, so that both agree on shapes and padding.
pub fn geometry(node: &Node, input: &[usize], kernel: &[usize]) -> Result<Geometry, OpError> {
    conv_transpose_op(node)?.geometry(input, kernel)
}

impl ConvTranspose {
    fn geometry(&self, input: &[usize], kernel: &[usize]) -> Result<Geometry, OpError> {
        let n = input.len();
        let list = |v: &Option<Vec<i64>>, name: &str, default: i64, len: usize| -> Result<Vec<i64>, OpError> {
            let v = v.clone().unwrap_or_else(|| vec![default; len]);
            if v.len() < len {
                return Err(OpError::attribute(name, format!("{v:?} has fewer than {len} entries")));
            }
            Ok(v)
        };
        let strides = list(&self.strides, "strides", 1, n)?;
        let dilations = list(&self.dilations, "dilations", 1, n)?;
        let output_padding = list(&self.output_padding, "output_padding", 0, n)?;
        if strides.iter().chain(&dilations).any(|v| !(1..=1 << 20).contains(v)) || output_padding.iter().any(|&v| !(0..1 << 20).contains(&v)) {
            return Err(OpError::attribute("strides", "strides and dilations must be positive, output_padding at least 0"));
        }
        let extent = |i: usize| strides[i] * (input[i] as i64 - 1) + output_padding[i] + (kernel[i] as i64 - 1) * dilations[i] + 1;
        let same = matches!(self.auto_pad.as_str(), "SAME_UPPER" | "SAME_LOWER");
        let (out, pad_begin): (Vec<i64>, Vec<i64>) = match (&self.pads, same) {
            (None, true) => {
                let shape = match &self.output_shape {
                    Some(s) => s[s.len().saturating_sub(n)..].to_vec(),
                    None => (0..n).map(|i| input[i] as i64 * strides[i]).collect(),
                };
                let begin = (0..n)
                    .map(|i| {
                        let total = extent(i) - shape[i];
                        if self.auto_pad == "SAME_UPPER" { total / 2 } else { total - total / 2 }
                    })
                    .collect();
                (shape, begin)
            }
            (pads, _) => {
                let pads = pads.clone().unwrap_or_else(|| vec![0; 2 * n]);
                if pads.len() != 2 * n {
                    return Err(OpError::attribute("pads", format!("{pads:?} must hold a begin and an end per axis")));
                }
                let shape = match &self.output_shape {
                    Some(s) => s[s.len().saturating_sub(n)..].to_vec(),
                    None => (0..n).map(|i| extent(i) - pads[i] - pads[i + n]).collect(),
                };
                (shape, pads[..n].to_vec())
            }
        };
        let out = out.iter().map(|&d| usize::try_from(d).map_err(|_| OpError::Shape(format!("output size {d} is negative")))).collect::<Result<_, _>>()?;
        Ok(Geometry { out, pad_begin, strides, dilations })
    }
}

impl Op for ConvTranspose {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        Ok(vec![Fact::new(DataType::F32, vec![Dim::Unknown; x.shape.len()])])
    }

    fn eval(&self, inputs: &[Option<&crate::tensor::Tensor>], outputs: &mut [crate::tensor::Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        let (ws, w) = f32_input(inputs, 1)?;
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(OpError::input(1, format!("X {xs:?} and W {ws:?} must be [N, C, ...] and [C, M/group, ...] of one rank")));
        }
        let (batch, channels, g) = (xs[0], xs[1], self.group);
        if g == 0 || channels % g != 0 || ws[0] != channels {
            return Err(OpError::input(1, format!("W {ws:?} does not fit {channels} input channels in {g} groups")));
        }
        let (per_group_in, per_group_out) = (channels / g, ws[1]);
        let out_channels = per_group_out * g;
        let bias = optional_f32_input(inputs, 2)?.map(|(_, b)| b);
        if bias.is_some_and(|b| b.len() != out_channels) {
            return Err(OpError::input(2, format!("B must hold {out_channels} values")));
        }
        let (spatial, kernel) = (&xs[2..], &ws[2..]);
        let geo = self.geometry(spatial, kernel)?;
        let mut shape = vec![batch, out_channels];
        shape.extend_from_slice(&geo.out);
        crate::tensor::element_count(&shape, DataType::F32)?;
        let (in_size, k_size, out_size) = (spatial.iter().product::<usize>(), kernel.iter().product::<usize>(), geo.out.iter().product::<usize>());
        // Each kernel tap's offset in the output, per input position.
        let coordinates = |flat: usize, dims: &[usize]| -> Vec<usize> {
            let mut rest = flat;
            let mut c = vec![0; dims.len()];
            for d in (0..dims.len()).rev() {
                c[d] = rest % dims[d];
                rest /= dims[d];
            }
            c
        };
        let taps: Vec<Vec<usize>> = (0..k_size).map(|k| coordinates(k, kernel)).collect();
        let y = output(outputs, 0)?.reset_f32(&shape)?;
        for n in 0..batch {
            for m in 0..out_channels {
                let b = bias.map_or(0.0, |b| b[m]);
                y[(n * out_channels + m) * out_size..][..out_size].fill(b);
            }
            for p in 0..in_size {
                let position = coordinates(p, spatial);
                // Where each tap lands, or None off the output.
                let targets: Vec<Option<usize>> = taps
                    .iter()
                    .map(|tap| {
                        let mut at = 0usize;
                        for d in 0..spatial.len() {
                            let o = position[d] as i64 * geo.strides[d] + tap[d] as i64 * geo.dilations[d] - geo.pad_begin[d];
                            if o < 0 || o >= geo.out[d] as i64 {
                                return None;
                            }
                            at = at * geo.out[d] + o as usize;
                        }
                        Some(at)
                    })
                    .collect();
                for c in 0..channels {
                    let v = x[(n * channels + c) * in_size + p];
                    let group = c / per_group_in;
                    for mo in 0..per_group_out {
                        let m = group * per_group_out + mo;
                        let kernel_w = &w[(c * per_group_out + mo) * k_size..][..k_size];
                        let out = &mut y[(n * out_channels + m) * out_size..][..out_size];
                        for (target, &wk) in targets.iter().zip(kernel_w) {
                            if let Some(at) = target {
                                out[*at] += v * wk;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn conv_transpose(node: &Node, _: i64) -> Result<Box<dyn Op>, OpError> {
    Ok(Box::new(conv_transpose_op(node)?))
}

fn conv_transpose_op(node: &Node) -> Result<ConvTranspose, OpError> {
    let a = Attrs(node);
    let group = a.int("group", 1)?;
    Ok(ConvTranspose {
        auto_pad: a.string("auto_pad", "NOTSET")?,
        dilations: a.ints("dilations")?,
        group: usize::try_from(group).ok().filter(|&g| g > 0).ok_or_else(|| OpError::attribute("group", format!("{group} must be positive")))?,
        output_padding: a.ints("output_padding")?,
        output_shape: a.ints("output_shape")?,
        pads: a.ints("pads")?,
        strides: a.ints("strides")?,
    })
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("ConvTranspose", conv_transpose);
}
