//! Reading and writing `.npy` files (NumPy's array format) with the npyz crate.

use crate::tensor::{Data, Tensor};
use npyz::WriterBuilder;
use std::path::Path;

/// Why a `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid .npy file: {what}")]
    Format { path: String, what: String },
    #[error("{path}: element type {dtype} is not supported (float32, float64, int64, int32, int8, uint8 and bool are)")]
    Type { path: String, dtype: String },
}

/// Reads a `.npy` file into a tensor.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let p = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io { path: p(), source })?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| NpyError::Format { path: p(), what: e.to_string() })?;
    if npy.order() == npyz::Order::Fortran {
        return Err(NpyError::Format { path: p(), what: "Fortran (column-major) order is not supported; save with np.ascontiguousarray".into() });
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let format = |e: std::io::Error| NpyError::Format { path: p(), what: e.to_string() };
    // The descriptor comes as NumPy prints it, quoted: '<f4'.
    let data = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f4" => Data::F32(npy.into_vec::<f32>().map_err(format)?),
        "f8" => Data::F64(npy.into_vec::<f64>().map_err(format)?),
        "i8" => Data::I64(npy.into_vec::<i64>().map_err(format)?),
        "i4" => Data::I32(npy.into_vec::<i32>().map_err(format)?),
        "i1" => Data::I8(npy.into_vec::<i8>().map_err(format)?),
        "u1" => Data::U8(npy.into_vec::<u8>().map_err(format)?),
        "b1" => Data::Bool(npy.into_vec::<bool>().map_err(format)?),
        _ => return Err(NpyError::Type { path: p(), dtype: descr }),
    };
    Tensor::new(shape, data).map_err(|e| NpyError::Format { path: p(), what: e.to_string() })
}

/// Writes a tensor as `.npy`, through a temporary file renamed into place.
pub fn write(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    let p = || path.display().to_string();
    let io = |source| NpyError::Io { path: p(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    {
        let file = std::io::BufWriter::new(temp.as_file_mut());
        macro_rules! write_all {
            ($t:ty, $v:expr) => {{
                let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd().map_err(io)?;
                writer.extend($v.iter().copied()).map_err(io)?;
                writer.finish().map_err(io)?;
            }};
        }
        match tensor.data() {
            Data::F32(v) => write_all!(f32, v),
            Data::F64(v) => write_all!(f64, v),
            Data::I64(v) => write_all!(i64, v),
            Data::I32(v) => write_all!(i32, v),
            Data::I8(v) => write_all!(i8, v),
            Data::U8(v) => write_all!(u8, v),
            Data::Bool(v) => write_all!(bool, v),
        }
    }
    temp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}
