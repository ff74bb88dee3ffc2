//! Element types as Rust types: kernels that do the same thing to every
//! type (moving, comparing, selecting elements) are written once, generic
//! over [`Element`], and instantiated for a tensor's [`DataType`] by
//! [`dispatch!`](crate::dispatch).

use crate::tensor::{Data, DataType, Tensor, TensorError};

/// A Rust type that a [`Data`] variant holds.
pub trait Element: Copy + Default + PartialEq + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    const DTYPE: DataType;
    /// What [`Tensor::reset`] fills unwritten elements with in debug
    /// builds, to catch kernels that leave some: NaN, or an extreme.
    const POISON: Self;
    /// The [`Data`] variant holding `values`.
    fn wrap(values: Vec<Self>) -> Data;
    /// The elements of `data` when it holds this type.
    fn slice(data: &Data) -> Option<&[Self]>;
    fn slice_mut(data: &mut Data) -> Option<&mut [Self]>;
    /// The value as a double (bool: 0 or 1).
    fn to_f64(self) -> f64;
    /// A double converted as ONNX's Cast does: truncated toward zero for
    /// integers (saturating at the type's range, NaN to 0), nonzero for bool.
    fn from_f64(value: f64) -> Self;
    /// The value as an i64 (floats truncated toward zero).
    fn to_i64(self) -> i64;
    /// An i64 converted as ONNX's Cast does between integers: wrapping.
    fn from_i64(value: i64) -> Self;
    /// Whether the type holds fractions (Cast converts through f64 from
    /// these, through i64 from the others).
    const FLOAT: bool;
}

macro_rules! element {
    ($($t:ty => $variant:ident, $float:literal, $poison:expr),* $(,)?) => {$(
        impl Element for $t {
            const DTYPE: DataType = DataType::$variant;
            const FLOAT: bool = $float;
            const POISON: Self = $poison;
            fn wrap(values: Vec<Self>) -> Data {
                Data::$variant(values)
            }
            #[inline]
            fn slice(data: &Data) -> Option<&[Self]> {
                if let Data::$variant(v) = data { Some(v) } else { None }
            }
            #[inline]
            fn slice_mut(data: &mut Data) -> Option<&mut [Self]> {
                if let Data::$variant(v) = data { Some(v) } else { None }
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(value: f64) -> Self {
                value as $t
            }
            #[inline]
            fn to_i64(self) -> i64 {
                self as i64
            }
            #[inline]
            fn from_i64(value: i64) -> Self {
                value as $t
            }
        }
    )*};
}
element!(
    f32 => F32, true, f32::NAN,
    f64 => F64, true, f64::NAN,
    i64 => I64, false, i64::MIN,
    i32 => I32, false, i32::MIN,
    i16 => I16, false, i16::MIN,
    i8 => I8, false, i8::MIN,
    u64 => U64, false, u64::MAX,
    u32 => U32, false, u32::MAX,
    u16 => U16, false, u16::MAX,
    u8 => U8, false, u8::MAX,
);

/// Half precision: stored as such, computed through f32 or f64.
impl Element for half::f16 {
    const DTYPE: DataType = DataType::F16;
    const FLOAT: bool = true;
    const POISON: Self = half::f16::NAN;
    fn wrap(values: Vec<Self>) -> Data {
        Data::F16(values)
    }
    fn slice(data: &Data) -> Option<&[Self]> {
        if let Data::F16(v) = data {
            Some(v)
        } else {
            None
        }
    }
    fn slice_mut(data: &mut Data) -> Option<&mut [Self]> {
        if let Data::F16(v) = data {
            Some(v)
        } else {
            None
        }
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(value: f64) -> Self {
        half::f16::from_f64(value)
    }
    fn to_i64(self) -> i64 {
        self.to_f64() as i64
    }
    fn from_i64(value: i64) -> Self {
        half::f16::from_f64(value as f64)
    }
}

/// Brain floating point: stored as such, computed through f32 or f64.
impl Element for half::bf16 {
    const DTYPE: DataType = DataType::BF16;
    const FLOAT: bool = true;
    const POISON: Self = half::bf16::NAN;
    fn wrap(values: Vec<Self>) -> Data {
        Data::BF16(values)
    }
    fn slice(data: &Data) -> Option<&[Self]> {
        if let Data::BF16(v) = data {
            Some(v)
        } else {
            None
        }
    }
    fn slice_mut(data: &mut Data) -> Option<&mut [Self]> {
        if let Data::BF16(v) = data {
            Some(v)
        } else {
            None
        }
    }
    fn to_f64(self) -> f64 {
        self.to_f64()
    }
    fn from_f64(value: f64) -> Self {
        half::bf16::from_f64(value)
    }
    fn to_i64(self) -> i64 {
        self.to_f64() as i64
    }
    fn from_i64(value: i64) -> Self {
        half::bf16::from_f64(value as f64)
    }
}

impl Element for bool {
    const DTYPE: DataType = DataType::Bool;
    const FLOAT: bool = false;
    const POISON: Self = true;
    fn wrap(values: Vec<Self>) -> Data {
        Data::Bool(values)
    }
    fn slice(data: &Data) -> Option<&[Self]> {
        if let Data::Bool(v) = data {
            Some(v)
        } else {
            None
        }
    }
    fn slice_mut(data: &mut Data) -> Option<&mut [Self]> {
        if let Data::Bool(v) = data {
            Some(v)
        } else {
            None
        }
    }
    fn to_f64(self) -> f64 {
        self as u8 as f64
    }
    fn from_f64(value: f64) -> Self {
        value != 0.0
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_i64(value: i64) -> Self {
        value != 0
    }
}

/// Runs `$body` with the type alias `$T` bound to the Rust type of the
/// [`DataType`] `$dtype` (and [`Element`]'s methods in scope).
///
/// ```
/// use byob_tensor::{dispatch, element::Element, DataType};
/// fn size_of(dtype: DataType) -> usize {
///     dispatch!(dtype, T => std::mem::size_of::<T>())
/// }
/// assert_eq!(size_of(DataType::F64), 8);
/// ```
#[macro_export]
macro_rules! dispatch {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::tensor::DataType::F32 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = f32;
                $body
            }
            $crate::tensor::DataType::F64 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = f64;
                $body
            }
            $crate::tensor::DataType::I64 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = i64;
                $body
            }
            $crate::tensor::DataType::I32 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = i32;
                $body
            }
            $crate::tensor::DataType::F16 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = half::f16;
                $body
            }
            $crate::tensor::DataType::BF16 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = half::bf16;
                $body
            }
            $crate::tensor::DataType::I16 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = i16;
                $body
            }
            $crate::tensor::DataType::I8 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = i8;
                $body
            }
            $crate::tensor::DataType::U64 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = u64;
                $body
            }
            $crate::tensor::DataType::U32 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = u32;
                $body
            }
            $crate::tensor::DataType::U16 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = u16;
                $body
            }
            $crate::tensor::DataType::U8 => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = u8;
                $body
            }
            $crate::tensor::DataType::Bool => {
                #[allow(unused_imports)]
                use $crate::element::Element as _;
                type $T = bool;
                $body
            }
        }
    };
}

impl Tensor {
    /// The elements as `T`, when the tensor holds that type.
    pub fn elements<T: Element>(&self) -> Option<&[T]> {
        T::slice(self.data())
    }

    /// [`reset`](Tensor::reset) to `T` elements of `shape`: the elements to
    /// fill.
    pub fn reset_as<T: Element>(&mut self, shape: &[usize]) -> Result<&mut [T], TensorError> {
        Ok(T::slice_mut(self.reset(T::DTYPE, shape)?).expect("reset to T's type"))
    }
}
