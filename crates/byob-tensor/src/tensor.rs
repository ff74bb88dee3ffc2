//! Tensors: a shape and typed elements in row-major order.

use crate::element::Element;
use std::fmt;

/// Element types (ONNX `TensorProto.DataType` codes in [`DataType::onnx`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl DataType {
    pub fn from_onnx(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::F32,
            2 => Self::U8,
            3 => Self::I8,
            6 => Self::I32,
            7 => Self::I64,
            4 => Self::U16,
            5 => Self::I16,
            9 => Self::Bool,
            10 => Self::F16,
            16 => Self::BF16,
            11 => Self::F64,
            12 => Self::U32,
            13 => Self::U64,
            _ => return None,
        })
    }

    pub fn onnx(self) -> i32 {
        match self {
            Self::F32 => 1,
            Self::U8 => 2,
            Self::I8 => 3,
            Self::I32 => 6,
            Self::I64 => 7,
            Self::U16 => 4,
            Self::I16 => 5,
            Self::Bool => 9,
            Self::F16 => 10,
            Self::BF16 => 16,
            Self::F64 => 11,
            Self::U32 => 12,
            Self::U64 => 13,
        }
    }

    /// The ONNX name (`tensor(float)` style, without the wrapper).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "float",
            Self::F64 => "double",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I16 => "int16",
            Self::I8 => "int8",
            Self::U64 => "uint64",
            Self::U32 => "uint32",
            Self::U16 => "uint16",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 | Self::U64 => 8,
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F16 | Self::BF16 | Self::I16 | Self::U16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The elements of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I16(Vec<i16>),
    I8(Vec<i8>),
    U64(Vec<u64>),
    U32(Vec<u32>),
    U16(Vec<u16>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

/// Runs `$body` with `$v` bound to the vector of any [`Data`] variant
/// (`$data` is an expression of type `Data`, `&Data` or `&mut Data`).
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            Data::F32($v) => $body,
            Data::F64($v) => $body,
            Data::F16($v) => $body,
            Data::BF16($v) => $body,
            Data::I64($v) => $body,
            Data::I32($v) => $body,
            Data::I16($v) => $body,
            Data::I8($v) => $body,
            Data::U64($v) => $body,
            Data::U32($v) => $body,
            Data::U16($v) => $body,
            Data::U8($v) => $body,
            Data::Bool($v) => $body,
        }
    };
}

impl Data {
    pub fn dtype(&self) -> DataType {
        fn of<T: Element>(_: &[T]) -> DataType {
            T::DTYPE
        }
        each_variant!(self, v => of(v))
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No elements of `dtype` (allocates nothing).
    pub fn empty(dtype: DataType) -> Self {
        crate::dispatch!(dtype, T => T::wrap(Vec::new()))
    }
}

/// A tensor: shape and row-major data.
#[derive(Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
    /// How many elements at the start of `data`'s allocation hold values
    /// written earlier, beyond its length too (0: just its length). A
    /// planned buffer is lent to values of different sizes in turn;
    /// [`Tensor::reset`] lengthens it over these without writing them again.
    written: usize,
    /// The most bytes [`Tensor::reset`] may size it to: a session lends
    /// kernels buffers bounded by its tensor limit.
    max_bytes: usize,
}

impl Clone for Tensor {
    fn clone(&self) -> Self {
        // A clone's allocation holds only its length.
        Self { shape: self.shape.clone(), data: self.data.clone(), written: 0, max_bytes: self.max_bytes }
    }
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data == other.data
    }
}

/// Why a tensor could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    #[error("shape {} holds {expected} elements but {actual} were given", ShapeText(shape))]
    Length { shape: Vec<usize>, expected: usize, actual: usize },
    /// The element count or byte size overflows what one allocation can
    /// hold (`isize::MAX` bytes): no tensor of this shape can exist.
    #[error("shape {} of {dtype} is too large: its size overflows the address space", ShapeText(shape))]
    TooLarge { shape: Vec<usize>, dtype: DataType },
    /// Past the session's limit on one tensor.
    #[error("a tensor of shape {} ({dtype}) needs {bytes} bytes, more than the {limit} a tensor may take (SessionBuilder::with_max_tensor_bytes; byob run --max-tensor-mib)", ShapeText(shape))]
    Limit { shape: Vec<usize>, dtype: DataType, bytes: usize, limit: usize },
    /// The system refused the memory.
    #[error("out of memory: a tensor of shape {} ({dtype}) needs {bytes} bytes", ShapeText(shape))]
    OutOfMemory { shape: Vec<usize>, dtype: DataType, bytes: usize },
}

/// How many elements a `dtype` tensor of `shape` holds, checked: the
/// product of the dimensions and its size in bytes must not overflow, and
/// the bytes must fit one allocation (`isize::MAX`). Every tensor byob
/// makes passes through this check, so the sizes of its shapes, and any
/// product of some of their dimensions, never wrap.
pub fn element_count(shape: &[usize], dtype: DataType) -> Result<usize, TensorError> {
    let too_large = || TensorError::TooLarge { shape: shape.to_vec(), dtype };
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(too_large)?;
    match count.checked_mul(dtype.size()) {
        Some(bytes) if bytes <= isize::MAX as usize => Ok(count),
        _ => Err(too_large()),
    }
}

/// A shape for messages: a long one abbreviated, so that an error about a
/// crafted rank-10,000 tensor stays one readable line.
pub struct ShapeText<'a>(pub &'a [usize]);

impl fmt::Display for ShapeText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 8;
        let dims = self.0;
        let head: Vec<String> = dims.iter().take(SHOWN).map(ToString::to_string).collect();
        if dims.len() <= SHOWN {
            write!(f, "[{}]", head.join(", "))
        } else {
            write!(f, "[{}, ... ({} dimensions)]", head.join(", "), dims.len())
        }
    }
}

/// A placeholder holding no elements and no storage (rank 0 but, unlike a
/// scalar, empty): a buffer for a kernel to size with [`Tensor::reset`].
/// Making one allocates nothing.
impl Default for Tensor {
    fn default() -> Self {
        Self { shape: Vec::new(), data: Data::F32(Vec::new()), written: 0, max_bytes: usize::MAX }
    }
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Self, TensorError> {
        let expected = element_count(&shape, data.dtype())?;
        if expected != data.len() {
            return Err(TensorError::Length { shape, expected, actual: data.len() });
        }
        Ok(Self { shape, data, written: 0, max_bytes: usize::MAX })
    }

    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, TensorError> {
        Self::new(shape, Data::F32(data))
    }

    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self, TensorError> {
        Self::new(shape, Data::I64(data))
    }

    /// A zeroed `dtype` tensor of `shape`.
    pub fn zeros(dtype: DataType, shape: &[usize]) -> Result<Self, TensorError> {
        let mut tensor = Self::default();
        let data = tensor.reset(dtype, shape)?;
        each_variant!(data, v => v.fill(Default::default()));
        Ok(tensor)
    }

    /// An empty buffer for a kernel, which [`reset`](Self::reset) may size
    /// to at most `max_bytes`.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        Self { max_bytes, ..Self::default() }
    }

    /// Bounds what [`reset`](Self::reset) may size this tensor to.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    /// What [`reset`](Self::reset) may size this tensor to, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// A rank-0 tensor.
    pub fn scalar_f32(value: f32) -> Self {
        Self { shape: Vec::new(), data: Data::F32(vec![value]), written: 0, max_bytes: usize::MAX }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut Data {
        // The caller may shrink or replace the vector.
        self.written = 0;
        &mut self.data
    }

    pub fn into_parts(self) -> (Vec<usize>, Data) {
        (self.shape, self.data)
    }

    /// Changes the shape, keeping the elements (their count must match).
    pub fn reshape(&mut self, shape: Vec<usize>) -> Result<(), TensorError> {
        let expected = element_count(&shape, self.dtype())?;
        if expected != self.data.len() {
            return Err(TensorError::Length { shape, expected, actual: self.data.len() });
        }
        self.shape = shape;
        Ok(())
    }

    /// Makes this tensor a `dtype` tensor of `shape` for a kernel to fill,
    /// reusing its buffer: no allocation when the type matches and the
    /// capacity suffices. The elements are unspecified (the kernel writes
    /// every one); tests fill them with a poison value to catch kernels
    /// that do not. A shape too large to exist or past this tensor's
    /// limit is an error that leaves the tensor as it was; memory the
    /// system refuses is an error that leaves it empty.
    pub fn reset(&mut self, dtype: DataType, shape: &[usize]) -> Result<&mut Data, TensorError> {
        let len = element_count(shape, dtype)?;
        if len * dtype.size() > self.max_bytes {
            return Err(TensorError::Limit { shape: shape.to_vec(), dtype, bytes: len * dtype.size(), limit: self.max_bytes });
        }
        if self.data.dtype() != dtype {
            self.data = Data::empty(dtype);
            self.written = 0;
        }
        let written = &mut self.written;
        let fitted = each_variant!(&mut self.data, v => fit(v, len, Element::POISON, written, POISON_ALL));
        self.shape.clear();
        if fitted.is_err() {
            self.data = Data::empty(dtype);
            self.written = 0;
            return Err(TensorError::OutOfMemory { shape: shape.to_vec(), dtype, bytes: len * dtype.size() });
        }
        self.shape.extend_from_slice(shape);
        Ok(&mut self.data)
    }

    /// [`reset`](Self::reset) for a float result: the elements to fill.
    pub fn reset_f32(&mut self, shape: &[usize]) -> Result<&mut [f32], TensorError> {
        match self.reset(DataType::F32, shape)? {
            Data::F32(v) => Ok(v),
            _ => unreachable!("reset to float"),
        }
    }

    /// Makes this tensor a copy of `data` in `shape`, reusing its buffer.
    pub fn copy_from(&mut self, shape: &[usize], data: &Data) -> Result<(), TensorError> {
        let expected = element_count(shape, data.dtype())?;
        if expected != data.len() {
            return Err(TensorError::Length { shape: shape.to_vec(), expected, actual: data.len() });
        }
        let target = self.reset(data.dtype(), shape)?;
        crate::dispatch!(data.dtype(), T => T::slice_mut(target).expect("reset to the source's type").copy_from_slice(T::slice(data).expect("the type matched")));
        Ok(())
    }

    /// Where this tensor's element storage lives and how many elements it
    /// can hold without growing: the session compares it before and after
    /// a kernel to count the kernels that had to allocate.
    pub fn storage(&self) -> (usize, usize) {
        macro_rules! of {
            ($v:expr) => {
                ($v.as_ptr() as usize, $v.capacity())
            };
        }
        each_variant!(&self.data, v => of!(v))
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_f32_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Integer (or bool) elements as i64 (u64 past i64::MAX wraps): for
    /// shapes, axes and indices.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        if matches!(self.dtype(), DataType::F32 | DataType::F64 | DataType::F16 | DataType::BF16) {
            return None;
        }
        Some(crate::dispatch!(self.dtype(), T => self.elements::<T>().unwrap_or_default().iter().map(|v| v.to_i64()).collect()))
    }
}

/// Whether [`Tensor::reset`] poisons every element: in debug builds, so
/// that tests catch a kernel that leaves one unwritten.
const POISON_ALL: bool = cfg!(debug_assertions);

/// Gives `v` the length `len` for a kernel to overwrite: over values its
/// allocation already holds (`written` of them, see [`Tensor::written`])
/// without writing them, and with `poison` beyond (everywhere with
/// `poison_all`). Memory the system refuses is an error, not an abort.
fn fit<T: Copy>(v: &mut Vec<T>, len: usize, poison: T, written: &mut usize, poison_all: bool) -> Result<(), std::collections::TryReserveError> {
    if poison_all {
        v.clear();
        *written = 0;
    }
    let known = (*written).max(v.len());
    // SAFETY: the first `known` elements of this allocation hold values of
    // type T written earlier (its length, or `written`, which every way of
    // replacing or handing out the vector sets to 0), and shortening a
    // vector of `Copy` values leaves them in place; so elements
    // `..min(len, known)` are initialised, and `known ≤ capacity`.
    unsafe { v.set_len(len.min(known)) };
    // Past what the allocation held: written now up to `len` (in a new
    // allocation if it grows).
    v.try_reserve_exact(len - v.len())?;
    v.resize(len, poison);
    *written = known.max(len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer lent to a smaller value and then to a larger one again
    /// keeps its storage and regains the values it held, unwritten.
    #[test]
    fn fit_lengthens_over_values_already_written() {
        let mut v: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let (ptr, mut written) = (v.as_ptr(), 0);
        fit(&mut v, 3, f32::NAN, &mut written, false).unwrap();
        assert_eq!((v.as_slice(), written), (&[0.0, 1.0, 2.0][..], 8));
        fit(&mut v, 6, f32::NAN, &mut written, false).unwrap();
        assert_eq!(v, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        // Beyond what was written: poison, in whatever allocation it takes.
        fit(&mut v, 10, f32::NAN, &mut written, false).unwrap();
        assert_eq!(&v[..8], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
        assert!(v[8..].iter().all(|x| x.is_nan()) && written == 10);
        fit(&mut v, 4, f32::NAN, &mut written, true).unwrap();
        assert!(v.iter().all(|x| x.is_nan()) && written == 4);
        assert!(v.capacity() >= 10 && (v.as_ptr() == ptr || v.capacity() > 8));
    }

    /// Handing the vector out or cloning forgets what lay past its length.
    #[test]
    fn data_mut_and_clone_forget_the_spare_values() {
        let mut t = Tensor::f32(vec![8], (0..8).map(|i| i as f32).collect()).unwrap();
        t.reset(DataType::F32, &[2]).unwrap();
        assert_eq!(t.clone().written, 0);
        if let Data::F32(v) = t.data_mut() {
            v.shrink_to_fit();
        }
        assert_eq!(t.written, 0);
        t.reset(DataType::F32, &[4]).unwrap();
        assert_eq!(t.len(), 4);
    }

    /// A shape whose product wraps (2^62 + 1 rows of 4: 4 elements modulo
    /// 2^64) is refused however the elements are given, and so is one
    /// whose bytes alone overflow.
    #[test]
    fn sizes_that_wrap_are_refused() {
        let wraps = vec![(1usize << 62) + 1, 4];
        assert!(matches!(Tensor::f32(wraps.clone(), vec![0.0; 4]), Err(TensorError::TooLarge { .. })));
        let mut t = Tensor::default();
        assert!(matches!(t.reset(DataType::F32, &wraps), Err(TensorError::TooLarge { .. })));
        assert!(matches!(t.reset(DataType::F64, &[1 << 61]), Err(TensorError::TooLarge { .. })));
        assert!(t.is_empty() && t.shape().is_empty());
        assert_eq!(element_count(&[1 << 61], DataType::U8), Ok(1 << 61));
        assert_eq!(element_count(&[0, usize::MAX], DataType::F32), Ok(0));
        let mut t = Tensor::f32(vec![4], vec![0.0; 4]).unwrap();
        assert!(t.reshape(wraps).is_err() && t.shape() == [4]);
    }

    /// Memory the system refuses is an error: 2^62 bytes passes the size
    /// check but no machine has it.
    #[test]
    fn refused_memory_is_an_error() {
        let mut t = Tensor::default();
        let e = t.reset(DataType::U8, &[1 << 62, 1]).unwrap_err();
        assert!(matches!(e, TensorError::OutOfMemory { .. }), "{e}");
        assert!(t.is_empty());
    }

    #[test]
    fn long_shapes_are_abbreviated() {
        assert_eq!(ShapeText(&[2, 3]).to_string(), "[2, 3]");
        assert_eq!(ShapeText(&[1; 10_000]).to_string(), "[1, 1, 1, 1, 1, 1, 1, 1, ... (10000 dimensions)]");
    }
}
