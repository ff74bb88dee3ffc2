//! Reading and writing `.npy` files (NumPy's array format) with the npyz crate.

use crate::element::Element;
use crate::tensor::{element_count, DataType, ShapeText, Tensor};
use npyz::WriterBuilder;
use std::path::Path;

/// Why a `.npy` file could not be read or written.
/// Runs `$body` with `$T` bound to the Rust type of the `.npy`-capable
/// `$dtype` (every type but bfloat16), or evaluates `$otherwise`.
macro_rules! npy_types {
    ($dtype:expr, $T:ident => $body:expr, _ => $otherwise:expr) => {
        match $dtype {
            DataType::BF16 => $otherwise,
            DataType::F32 => { type $T = f32; $body }
            DataType::F64 => { type $T = f64; $body }
            DataType::F16 => { type $T = half::f16; $body }
            DataType::I64 => { type $T = i64; $body }
            DataType::I32 => { type $T = i32; $body }
            DataType::I16 => { type $T = i16; $body }
            DataType::I8 => { type $T = i8; $body }
            DataType::U64 => { type $T = u64; $body }
            DataType::U32 => { type $T = u32; $body }
            DataType::U16 => { type $T = u16; $body }
            DataType::U8 => { type $T = u8; $body }
            DataType::Bool => { type $T = bool; $body }
        }
    };
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a valid .npy file: {what}")]
    Format { path: String, what: String },
    #[error("{path}: element type {dtype} is not supported by .npy in byob (float16/32/64, int8/16/32/64, uint8/16/32/64 and bool are)")]
    Type { path: String, dtype: String },
    #[error("{path}: a tensor of {rank} dimensions cannot be saved as .npy (NumPy allows at most {MAX_RANK})")]
    Rank { path: String, rank: usize },
    #[error(transparent)]
    Output(#[from] byob_files::OutputError),
}

/// The most dimensions a `.npy` array may have: NumPy's own limit
/// (`NPY_MAXDIMS`), so that every file byob writes NumPy can load.
pub const MAX_RANK: usize = 64;

/// Reads a `.npy` file into a tensor. Only a regular file is read; its
/// header is checked against the bytes present before npyz parses it, and
/// the shape against the data before any element is decoded.
pub fn read(path: &Path) -> Result<Tensor, NpyError> {
    let bytes = byob_files::read_regular(path, u64::MAX, "a .npy file").map_err(|source| NpyError::Io { path: path.display().to_string(), source })?;
    read_bytes(&bytes, path)
}

/// Reads a `.npy` file's bytes into a tensor (`path` names it in errors).
pub fn read_bytes(bytes: &[u8], path: &Path) -> Result<Tensor, NpyError> {
    let p = || path.display().to_string();
    let bad = |what: String| NpyError::Format { path: p(), what };
    let data_offset = data_offset(bytes).map_err(bad)?;
    // npyz multiplies the dimensions unchecked: a product that wraps must
    // not reach it. Its header parser also backtracks exponentially on
    // deep nesting (`{{{{...`): a NumPy header is a flat dict, so more
    // than a structured dtype's three levels is refused first.
    let header = String::from_utf8_lossy(&bytes[..data_offset]);
    check_nesting(&header).map_err(bad)?;
    if let Some(dims) = header_shape(&header) {
        element_count(&dims, DataType::U8).map_err(|_| bad(format!("shape {} is too large: its size overflows the address space", ShapeText(&dims))))?;
    }
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(one_line(&e.to_string())))?;
    if npy.order() == npyz::Order::Fortran {
        return Err(bad("Fortran (column-major) order is not supported; save with np.ascontiguousarray".into()));
    }
    if npy.shape().len() > MAX_RANK {
        return Err(bad(format!("{} dimensions, more than NumPy's {MAX_RANK}", npy.shape().len())));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| usize::try_from(d).map_err(|_| bad(format!("dimension {d} is too large")))).collect::<Result<_, _>>()?;
    let descr = npy.dtype().descr();
    // The descriptor comes as NumPy prints it, quoted: '<f4'.
    let dtype = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
        "f2" => DataType::F16,
        "f4" => DataType::F32,
        "f8" => DataType::F64,
        "i8" => DataType::I64,
        "i4" => DataType::I32,
        "i2" => DataType::I16,
        "i1" => DataType::I8,
        "u8" => DataType::U64,
        "u4" => DataType::U32,
        "u2" => DataType::U16,
        "u1" => DataType::U8,
        "b1" => DataType::Bool,
        _ => return Err(NpyError::Type { path: p(), dtype: descr }),
    };
    let count = element_count(&shape, dtype).map_err(|e| bad(e.to_string()))?;
    let present = bytes.len() - data_offset;
    if present != count * dtype.size() {
        return Err(bad(format!("shape {} of {dtype} needs {} bytes of data, the file holds {present}", ShapeText(&shape), count * dtype.size())));
    }
    let format = |e: std::io::Error| bad(one_line(&e.to_string()));
    let data = npy_types!(dtype, T => T::wrap(npy.into_vec::<T>().map_err(format)?), _ => unreachable!("no descriptor maps to bfloat16"));
    Tensor::new(shape, data).map_err(|e| bad(e.to_string()))
}

/// Where the array's data starts, from the format's fixed prefix: the magic
/// string, the version, and the header's length (2 bytes in version 1, 4
/// in versions 2 and 3), which must lie within the file. Checked here
/// because npyz allocates the header's declared length before reading it.
fn data_offset(bytes: &[u8]) -> Result<usize, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if !bytes.starts_with(MAGIC) || bytes.len() < MAGIC.len() + 2 {
        return Err("it does not start with the .npy magic string".into());
    }
    let major = bytes[MAGIC.len()];
    let (field, width) = match major {
        1 => (MAGIC.len() + 2, 2),
        2 | 3 => (MAGIC.len() + 2, 4),
        _ => return Err(format!("format version {major} is not one NumPy writes (1, 2 or 3)")),
    };
    let Some(len_bytes) = bytes.get(field..field + width) else { return Err("the header is cut short".into()) };
    let header_len = len_bytes.iter().rev().fold(0usize, |n, &b| n << 8 | b as usize);
    let start = field + width;
    if header_len > bytes.len() - start {
        return Err(format!("the header claims {header_len} bytes, the file holds {} after the prefix", bytes.len() - start));
    }
    Ok(start + header_len)
}

/// Refuses a header whose brackets nest deeper than NumPy ever writes:
/// `{` for the dict, then at most `[` and `(` for a structured dtype.
/// Brackets count inside strings too: telling strings apart would mean
/// following Python's string syntax exactly as npyz's parser does (a quote
/// escaped with a backslash once hid 23 brackets from a simpler reading,
/// and the parser took over 10 s on them), and NumPy's own headers hold no
/// brackets in their strings.
fn check_nesting(header: &str) -> Result<(), String> {
    const MAX_DEPTH: usize = 3;
    let mut depth = 0usize;
    for c in header.chars() {
        match c {
            '{' | '[' | '(' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("the header nests brackets more than {MAX_DEPTH} deep; a .npy header is a flat dict"));
                }
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The dimensions of the header's `'shape': (...)` entry, when it reads
/// as a tuple of integers that fit `usize` (anything else is left to npyz,
/// which reports it; a dimension past `usize` is `usize::MAX`, which
/// overflows any product with another non-zero dimension, as it should).
fn header_shape(header: &str) -> Option<Vec<usize>> {
    let at = header.find("'shape'").or_else(|| header.find("\"shape\""))?;
    let rest = header[at + "'shape'".len()..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('(')?;
    let tuple = &rest[..rest.find(')')?];
    let parse = |d: &str| d.trim_end_matches('L').parse::<u128>().ok().map(|d| usize::try_from(d).unwrap_or(usize::MAX));
    tuple.split(',').map(str::trim).filter(|d| !d.is_empty()).map(parse).collect()
}

/// npyz's messages may quote the header over several lines.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Writes a tensor as `.npy`, through a temporary file renamed into place
/// (see [`byob_files::Outputs`] for what paths are refused).
pub fn write(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    let p = || path.display().to_string();
    check_rank(path, tensor)?;
    byob_files::write_atomically(path, |file| write_to(file, tensor).map_err(|source| NpyError::Io { path: p(), source }))
}

/// Refuses a tensor NumPy could not load (too many dimensions, or
/// bfloat16, which NumPy has no type for): for callers that check every
/// output before writing the first.
pub fn check_rank(path: &Path, tensor: &Tensor) -> Result<(), NpyError> {
    if tensor.rank() > MAX_RANK {
        return Err(NpyError::Rank { path: path.display().to_string(), rank: tensor.rank() });
    }
    if tensor.dtype() == DataType::BF16 {
        return Err(NpyError::Type { path: path.display().to_string(), dtype: tensor.dtype().to_string() });
    }
    Ok(())
}


/// Writes a tensor as `.npy` to `file` (whose rank [`check_rank`] passed).
pub fn write_to(file: &mut std::fs::File, tensor: &Tensor) -> std::io::Result<()> {
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let file = std::io::BufWriter::new(file);
    macro_rules! write_all {
        ($v:expr) => {{
            let mut writer = npyz::WriteOptions::new().default_dtype().shape(&shape).writer(file).begin_nd()?;
            writer.extend($v.iter().copied())?;
            writer.finish()
        }};
    }
    npy_types!(tensor.dtype(), T => write_all!(T::slice(tensor.data()).expect("the tensor's own type")), _ => Err(std::io::Error::other("bfloat16 cannot be saved as .npy")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Data;

    /// A version 1 `.npy` file with `header` (padded as NumPy pads it) and
    /// then `data`.
    fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
        let mut header = header.to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    fn read_via_file(bytes: &[u8]) -> Result<Tensor, NpyError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        std::fs::write(&path, bytes).unwrap();
        read(&path)
    }

    fn error(bytes: &[u8]) -> String {
        let e = read_via_file(bytes).unwrap_err().to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn a_well_formed_file_reads() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = read_via_file(&npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &data)).unwrap();
        assert_eq!((t.shape(), t.as_f32().unwrap()), (&[2, 2][..], &[1.0, 2.0, 3.0, 4.0][..]));
    }

    #[test]
    fn scalars_and_every_npy_type_round_trip() {
        // A 0-d array as NumPy writes it (`np.save(f, np.float32(2.5))`).
        let t = read_via_file(&npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &2.5f32.to_le_bytes())).unwrap();
        assert_eq!((t.shape(), t.as_f32().unwrap()), (&[][..], &[2.5][..]));
        let dir = tempfile::tempdir().unwrap();
        let tensors = [
            Tensor::i64(vec![], vec![16000]).unwrap(),
            Tensor::new(vec![3], Data::F16(vec![half::f16::from_f32(0.5), half::f16::from_f32(-2.0), half::f16::INFINITY])).unwrap(),
            Tensor::new(vec![2], Data::F64(vec![1e-300, -3.25])).unwrap(),
            Tensor::new(vec![2], Data::I8(vec![-128, 127])).unwrap(),
            Tensor::new(vec![2], Data::I16(vec![-32768, 7])).unwrap(),
            Tensor::new(vec![1, 2], Data::I32(vec![i32::MIN, 5])).unwrap(),
            Tensor::new(vec![2], Data::U8(vec![0, 255])).unwrap(),
            Tensor::new(vec![2], Data::U16(vec![0, 65535])).unwrap(),
            Tensor::new(vec![2], Data::U32(vec![0, u32::MAX])).unwrap(),
            Tensor::new(vec![2], Data::U64(vec![0, u64::MAX])).unwrap(),
            Tensor::new(vec![], Data::Bool(vec![true])).unwrap(),
        ];
        for (k, t) in tensors.iter().enumerate() {
            let path = dir.path().join(format!("t{k}.npy"));
            write(&path, t).unwrap();
            assert_eq!(&read(&path).unwrap(), t, "{} {:?}", t.dtype(), t.shape());
        }
    }

    /// The memory-unsafe case: (2^62 + 1) × 4 wraps to 4 elements, which
    /// the file holds; the tensor once passed and a kernel read past it.
    #[test]
    fn a_shape_whose_size_wraps_is_refused() {
        let data = [0u8; 16];
        let e = error(&npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387905, 4), }", &data));
        assert!(e.ends_with("shape [4611686018427387905, 4] is too large: its size overflows the address space"), "{e}");
        // Past u64: still refused before npyz sees it.
        let e = error(&npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, 4), }", &data));
        assert!(e.contains("too large"), "{e}");
    }

    #[test]
    fn the_data_must_match_the_shape() {
        let e = error(&npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }", &[0; 8]));
        assert!(e.ends_with("shape [1000000000] of float needs 4000000000 bytes of data, the file holds 8"), "{e}");
        let e = error(&npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", &[0; 8]));
        assert!(e.contains("needs 4 bytes of data, the file holds 8"), "{e}");
    }

    /// A version 2 header that claims 0xFFFFFFF0 bytes: npyz would allocate
    /// them before reading.
    #[test]
    fn a_header_longer_than_the_file_is_refused() {
        let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
        bytes.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        bytes.extend_from_slice(b"{'descr': '<f4'}");
        let e = error(&bytes);
        assert!(e.ends_with("the header claims 4294967280 bytes, the file holds 16 after the prefix"), "{e}");
        assert!(error(b"\x93NUMPY\x09\x00").contains("format version 9"));
        assert!(error(b"PK\x03\x04").contains("magic string"));
        assert!(error(b"\x93NUMPY\x02\x00\x10").contains("cut short"));
    }

    #[test]
    fn ranks_numpy_cannot_hold_are_refused() {
        let dims = vec!["1"; MAX_RANK + 1].join(", ");
        let e = error(&npy_bytes(&format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}"), &[0; 4]));
        assert!(e.ends_with("65 dimensions, more than NumPy's 64"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.npy");
        let t = Tensor::f32(vec![1; 13_000], vec![0.5]).unwrap();
        let e = write(&path, &t).unwrap_err().to_string();
        assert!(e.ends_with("a tensor of 13000 dimensions cannot be saved as .npy (NumPy allows at most 64)"), "{e}");
        assert!(!path.exists());
    }

    /// npyz's parser backtracked for minutes on deep nesting (found by
    /// fuzzing: 126 bytes took more than 10 s).
    #[test]
    fn deeply_nested_headers_are_refused() {
        let deep = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': {}{} }}", "[".repeat(40), "]".repeat(40));
        let e = error(&npy_bytes(&deep, &[0; 4]));
        assert!(e.ends_with("the header nests brackets more than 3 deep; a .npy header is a flat dict"), "{e}");
        // Inside strings too, whatever their quoting (found by fuzzing: an
        // escaped quote hid the brackets from a reading that skipped strings).
        let escaped = r#"{'descr': '<f4', 'x\'': {'': {[[[[[[[[[[[[[[[[[[[[[[' ': 1, 'fortran_order': False, 'shape': (1,), }"#;
        assert!(error(&npy_bytes(escaped, &[0; 4])).ends_with("more than 3 deep; a .npy header is a flat dict"));
        let structured = "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }";
        assert!(!error(&npy_bytes(structured, &[0; 4])).contains("deep"));
    }

    #[test]
    fn only_regular_files_are_read() {
        let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(e, "/dev/zero: not a regular file (a FIFO, socket or device)");
    }
}
