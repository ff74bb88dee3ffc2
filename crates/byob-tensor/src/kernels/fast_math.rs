//! Elementary functions in f32 as straight-line arithmetic, without
//! libm's branches: loops over them compile to vector code. Accurate to a
//! few units in the last place over the ranges their callers use (tested
//! against f64).

/// erf in f32 as a rational function of x² on [-4, 4] (beyond, erf is
/// ±1 to f32 precision; NaN stays NaN through the clamp): a few multiply-adds and one division, against
/// libm's branches and exponentials; Gelu in a transformer calls it once
/// per hidden activation. The coefficients are Eigen's
/// `generic_fast_erf_float` (a minimax fit; error below 1e-6 against f64,
/// checked by `erf_is_accurate`).
pub(crate) fn erf(x: f32) -> f32 {
    const P: [f32; 7] = [-2.726_142_3e-10, 2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_6e-3, -1.609_603_3e-2];
    const Q: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329e-3, -1.426_474e-2];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = P.iter().fold(0.0f32, |acc, &c| acc * x2 + c);
    let q = Q.iter().fold(0.0f32, |acc, &c| acc * x2 + c);
    x * p / q
}

/// e^x for x ≤ 88 (above, f32 overflows; callers subtract a maximum
/// first); 0 below -87, where the result would be subnormal. Rounds x·log₂e
/// to n with the 1.5·2²³ trick (no `round`, which is a libm call on
/// baseline x86_64), reduces r = x - n·ln2 in two parts (Cody and Waite),
/// and scales a degree-6 polynomial of r by 2ⁿ built from its bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HIGH: f32 = 0.693_145_75;
    const LN2_LOW: f32 = 1.428_606_8e-6;
    let c = x.clamp(-87.0, 88.0);
    let shifted = c * std::f32::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    let r = (c - n * LN2_HIGH) - n * LN2_LOW;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2ⁿ from the bits of the shifted value, whose low mantissa bits hold
    // n: integer arithmetic only (a float-to-int cast is a saturating one
    // in Rust, which the compiler did not vectorise: 7× slower Softmax).
    let n_bits = shifted.to_bits().wrapping_sub(SHIFT.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

/// tanh in f32 as a rational function (x times a polynomial of x² over
/// another) on [-7.905, 7.905], beyond which tanh is ±1 to f32 precision:
/// the form and coefficients of Eigen's `generic_fast_tanh_float` (error
/// below 1e-6 against f64, checked by `tanh_is_accurate`). A recurrent
/// cell calls it, or [`sigmoid`], on every gate of every step.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    const P: [f32; 7] = [-2.760_768_4e-16, 2.000_188e-13, -8.604_672e-11, 5.122_297e-8, 1.485_722_4e-5, 6.372_619_3e-4, 4.893_524_6e-3];
    const Q: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525e-3];
    let c = x.clamp(-7.905_311, 7.905_311);
    let x2 = c * c;
    let p = P.iter().fold(0.0f32, |acc, &k| acc * x2 + k);
    let q = Q.iter().fold(0.0f32, |acc, &k| acc * x2 + k);
    // Below 4e-4, tanh x is x to f32 precision (and the ratio would lose
    // a denormal x).
    if x.abs() < 4e-4 {
        x
    } else {
        c * p / q
    }
}

/// The logistic function 1 / (1 + e⁻ˣ) as 0.5 + 0.5·tanh(x/2): absolute
/// error below 1e-6.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    0.5 + 0.5 * tanh(0.5 * x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_accurate() {
        let mut worst = 0.0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf(x) as f64 - libm::erf(x as f64)).abs());
        }
        assert!(worst < 1e-6, "largest error {worst}");
        assert!((erf(f32::INFINITY) - 1.0).abs() < 1e-6 && (erf(f32::NEG_INFINITY) + 1.0).abs() < 1e-6);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn tanh_is_accurate() {
        let (mut worst, mut worst_sigmoid) = (0.0f64, 0.0f64);
        for i in -120_000..=120_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((tanh(x) as f64 - (x as f64).tanh()).abs());
            worst_sigmoid = worst_sigmoid.max((sigmoid(x) as f64 - 1.0 / (1.0 + (-(x as f64)).exp())).abs());
        }
        assert!(worst < 1e-6 && worst_sigmoid < 1e-6, "largest errors: tanh {worst}, sigmoid {worst_sigmoid}");
        // Near 0 the error is relative: small gates keep their digits.
        for x in [1e-3f32, 5e-4, 3e-4, 1e-6, -2e-3] {
            assert!(((tanh(x) as f64 - (x as f64).tanh()) / (x as f64)).abs() < 1e-6, "tanh({x})");
        }
        assert_eq!((tanh(f32::INFINITY), tanh(f32::NEG_INFINITY)), (1.0, -1.0));
        assert_eq!((sigmoid(f32::INFINITY), sigmoid(f32::NEG_INFINITY)), (1.0, 0.0));
        assert!(tanh(f32::NAN).is_nan());
    }

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0.0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let want = (x as f64).exp();
            worst = worst.max((exp(x) as f64 - want).abs() / want);
        }
        assert!(worst < 5e-7, "largest relative error {worst}");
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan());
    }
}
