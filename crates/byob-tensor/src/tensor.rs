//! Tensors: a shape and typed elements in row-major order.

use std::fmt;

/// Element types (ONNX `TensorProto.DataType` codes in [`DataType::onnx`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    F32,
    F64,
    I64,
    I32,
    I8,
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
            9 => Self::Bool,
            11 => Self::F64,
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
            Self::Bool => 9,
            Self::F64 => 11,
        }
    }

    /// The ONNX name (`tensor(float)` style, without the wrapper).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "float",
            Self::F64 => "double",
            Self::I64 => "int64",
            Self::I32 => "int32",
            Self::I8 => "int8",
            Self::U8 => "uint8",
            Self::Bool => "bool",
        }
    }

    pub fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
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
    I64(Vec<i64>),
    I32(Vec<i32>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

impl Data {
    pub fn dtype(&self) -> DataType {
        match self {
            Self::F32(_) => DataType::F32,
            Self::F64(_) => DataType::F64,
            Self::I64(_) => DataType::I64,
            Self::I32(_) => DataType::I32,
            Self::I8(_) => DataType::I8,
            Self::U8(_) => DataType::U8,
            Self::Bool(_) => DataType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U8(v) => v.len(),
            Self::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zeroed elements of `dtype`.
    pub fn zeros(dtype: DataType, len: usize) -> Self {
        match dtype {
            DataType::F32 => Self::F32(vec![0.0; len]),
            DataType::F64 => Self::F64(vec![0.0; len]),
            DataType::I64 => Self::I64(vec![0; len]),
            DataType::I32 => Self::I32(vec![0; len]),
            DataType::I8 => Self::I8(vec![0; len]),
            DataType::U8 => Self::U8(vec![0; len]),
            DataType::Bool => Self::Bool(vec![false; len]),
        }
    }
}

/// A tensor: shape and row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Data,
}

/// Why a tensor could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TensorError {
    #[error("shape {shape:?} holds {expected} elements but {actual} were given")]
    Length { shape: Vec<usize>, expected: usize, actual: usize },
}

/// A placeholder holding no elements and no storage (rank 0 but, unlike a
/// scalar, empty): a buffer for a kernel to size with [`Tensor::reset`].
/// Making one allocates nothing.
impl Default for Tensor {
    fn default() -> Self {
        Self { shape: Vec::new(), data: Data::F32(Vec::new()) }
    }
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Self, TensorError> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(TensorError::Length { shape, expected, actual: data.len() });
        }
        Ok(Self { shape, data })
    }

    pub fn zeros(dtype: DataType, shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Self { shape, data: Data::zeros(dtype, len) }
    }

    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, TensorError> {
        Self::new(shape, Data::F32(data))
    }

    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self, TensorError> {
        Self::new(shape, Data::I64(data))
    }

    /// A rank-0 tensor.
    pub fn scalar_f32(value: f32) -> Self {
        Self { shape: Vec::new(), data: Data::F32(vec![value]) }
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
        &mut self.data
    }

    pub fn into_parts(self) -> (Vec<usize>, Data) {
        (self.shape, self.data)
    }

    /// Changes the shape, keeping the elements (their count must match).
    pub fn reshape(&mut self, shape: Vec<usize>) -> Result<(), TensorError> {
        let expected: usize = shape.iter().product();
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
    /// that do not.
    pub fn reset(&mut self, dtype: DataType, shape: &[usize]) -> &mut Data {
        let len = shape.iter().product();
        self.shape.clear();
        self.shape.extend_from_slice(shape);
        if self.data.dtype() != dtype {
            self.data = Data::zeros(dtype, 0);
        }
        macro_rules! fit {
            ($v:expr, $poison:expr) => {{
                if cfg!(debug_assertions) {
                    $v.clear();
                }
                $v.resize(len, $poison);
                $v.truncate(len);
            }};
        }
        match &mut self.data {
            Data::F32(v) => fit!(v, f32::NAN),
            Data::F64(v) => fit!(v, f64::NAN),
            Data::I64(v) => fit!(v, i64::MIN),
            Data::I32(v) => fit!(v, i32::MIN),
            Data::I8(v) => fit!(v, i8::MIN),
            Data::U8(v) => fit!(v, u8::MAX),
            Data::Bool(v) => fit!(v, true),
        }
        &mut self.data
    }

    /// [`reset`](Self::reset) for a float result: the elements to fill.
    pub fn reset_f32(&mut self, shape: &[usize]) -> &mut [f32] {
        match self.reset(DataType::F32, shape) {
            Data::F32(v) => v,
            _ => unreachable!("reset to float"),
        }
    }

    /// Makes this tensor a copy of `data` in `shape`, reusing its buffer.
    pub fn copy_from(&mut self, shape: &[usize], data: &Data) -> Result<(), TensorError> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(TensorError::Length { shape: shape.to_vec(), expected, actual: data.len() });
        }
        match (self.reset(data.dtype(), shape), data) {
            (Data::F32(d), Data::F32(s)) => d.copy_from_slice(s),
            (Data::F64(d), Data::F64(s)) => d.copy_from_slice(s),
            (Data::I64(d), Data::I64(s)) => d.copy_from_slice(s),
            (Data::I32(d), Data::I32(s)) => d.copy_from_slice(s),
            (Data::I8(d), Data::I8(s)) => d.copy_from_slice(s),
            (Data::U8(d), Data::U8(s)) => d.copy_from_slice(s),
            (Data::Bool(d), Data::Bool(s)) => d.copy_from_slice(s),
            _ => unreachable!("reset to the source's type"),
        }
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
        match &self.data {
            Data::F32(v) => of!(v),
            Data::F64(v) => of!(v),
            Data::I64(v) => of!(v),
            Data::I32(v) => of!(v),
            Data::I8(v) => of!(v),
            Data::U8(v) => of!(v),
            Data::Bool(v) => of!(v),
        }
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

    /// Integer elements (i64, i32, i8, u8 or bool) widened to i64: for
    /// shapes, axes and indices.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            _ => return None,
        })
    }
}
