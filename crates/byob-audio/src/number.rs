//! Numbers in error messages: a crafted value of 1e300 or a bound of
//! `f32::MAX` shown in scientific notation, not as 39 to 309 digits.

use std::fmt;

/// `{}` for ordinary magnitudes, `{:e}` for very large and very small ones.
pub(crate) struct Shown(pub f64);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let magnitude = self.0.abs();
        if magnitude.is_finite() && (magnitude >= 1e15 || (magnitude != 0.0 && magnitude < 1e-6)) {
            write!(f, "{:e}", self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shown;

    #[test]
    fn extremes_are_short() {
        assert_eq!(Shown(f64::MAX).to_string(), "1.7976931348623157e308");
        assert_eq!(Shown(f32::MAX as f64).to_string(), "3.4028234663852886e38");
        assert_eq!(Shown(-3e-9).to_string(), "-3e-9");
        assert_eq!(Shown(0.25).to_string(), "0.25");
        assert_eq!(Shown(48000.0).to_string(), "48000");
        assert_eq!(Shown(f64::NAN).to_string(), "NaN");
    }
}
