//! Our own GGUF reader (candle's `model.q8.gguf`, spec §4.7): the header is parsed from any
//! [`Read`] (a file, bytes in memory, a stream), every length and count checked against the bytes
//! that remain before anything is allocated, and each tensor is then read on its own by range.
//!
//! Layout (little-endian, versions 2 and 3):
//! ```text
//! "GGUF"  u32 version  u64 tensor_count  u64 kv_count
//! kv_count × { string key, u32 type, value }          string = u64 length + UTF-8 bytes
//! tensor_count × { string name, u32 n_dims, n_dims × u64 dim (innermost first), u32 ggml_type,
//!                  u64 offset (from the data start, a multiple of the alignment) }
//! padding to `general.alignment` (u32, default 32), then the tensor data
//! ```
//! Metadata values are kept when they are scalars or short strings; arrays and long strings are
//! skipped (their size is checked, their bytes are read and dropped). Tensor types read: F32, F16,
//! BF16, Q8_0, I8, I32, I64; GGUF's innermost-first dims become our row-major shape (reversed).

use std::collections::BTreeMap;
use std::io::Read;

use super::{DType, TensorEntry, WeightsError};

/// GGUF's default data alignment.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest key or tensor name accepted (GGUF limits keys to 65 535 bytes).
const MAX_NAME: u64 = 65_535;
/// String values up to this length are kept; longer ones are skipped.
const MAX_KEPT_STRING: u64 = 4096;
/// Largest string value accepted at all (a tokenizer's merges are stored as many short strings).
const MAX_STRING: u64 = 256 << 20;
/// Nesting of arrays of arrays.
const MAX_DEPTH: u32 = 4;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;

/// A metadata value (scalars and short strings; arrays and long strings are summarised).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// A string value longer than 4 KiB: its length only.
    LongString(u64),
    /// An array: element type and length (elements skipped).
    Array {
        elem_type: u32,
        len: u64,
    },
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A parsed GGUF header: metadata and the byte range of every tensor.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub file: String,
    pub version: u32,
    pub alignment: u64,
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensors by name: dtype, row-major shape, absolute byte range.
    pub tensors: BTreeMap<String, TensorEntry>,
    /// Absolute offset of the data section.
    pub data_start: u64,
}

/// The name of a ggml type id (for messages).
pub fn ggml_type_name(t: u32) -> &'static str {
    match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16..=23 => "IQ*",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        _ => "unknown",
    }
}

/// Our dtype for a ggml type id, if we read it.
fn ggml_dtype(t: u32) -> Option<DType> {
    Some(match t {
        0 => DType::F32,
        1 => DType::F16,
        8 => DType::Q8_0,
        24 => DType::I8,
        26 => DType::I32,
        27 => DType::I64,
        30 => DType::BF16,
        _ => return None,
    })
}

/// The ggml type id of one of our dtypes (for writers in tests and tools).
pub fn dtype_ggml(d: DType) -> Option<u32> {
    Some(match d {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Q8_0 => 8,
        DType::I8 => 24,
        DType::I32 => 26,
        DType::I64 => 27,
        DType::BF16 => 30,
        _ => return None,
    })
}

/// A GGUF v3 file (little-endian) holding `metadata` and `tensors` (name, dtype, row-major
/// shape, bytes), data aligned to `alignment` (written as `general.alignment` unless it is the
/// default 32). For tests and tools; arrays in `metadata` are not supported (written as absent).
pub fn write_gguf(
    metadata: &[(&str, GgufValue)],
    tensors: &[(&str, DType, &[usize], &[u8])],
    alignment: u64,
) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut kv: Vec<(&str, GgufValue)> = metadata
        .iter()
        .filter(|(_, v)| !matches!(v, GgufValue::Array { .. } | GgufValue::LongString(_)))
        .cloned()
        .collect();
    if alignment != DEFAULT_ALIGNMENT {
        kv.push(("general.alignment", GgufValue::U32(alignment as u32)));
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in &kv {
        string(&mut out, k);
        let (ty, bytes): (u32, Vec<u8>) = match v {
            GgufValue::U8(x) => (0, vec![*x]),
            GgufValue::I8(x) => (1, vec![*x as u8]),
            GgufValue::U16(x) => (2, x.to_le_bytes().to_vec()),
            GgufValue::I16(x) => (3, x.to_le_bytes().to_vec()),
            GgufValue::U32(x) => (4, x.to_le_bytes().to_vec()),
            GgufValue::I32(x) => (5, x.to_le_bytes().to_vec()),
            GgufValue::F32(x) => (6, x.to_le_bytes().to_vec()),
            GgufValue::Bool(x) => (7, vec![*x as u8]),
            GgufValue::String(s) => {
                let mut b = (s.len() as u64).to_le_bytes().to_vec();
                b.extend(s.as_bytes());
                (8, b)
            }
            GgufValue::U64(x) => (10, x.to_le_bytes().to_vec()),
            GgufValue::I64(x) => (11, x.to_le_bytes().to_vec()),
            GgufValue::F64(x) => (12, x.to_le_bytes().to_vec()),
            GgufValue::Array { .. } | GgufValue::LongString(_) => unreachable!("filtered"),
        };
        out.extend(ty.to_le_bytes());
        out.extend(bytes);
    }
    let mut offset = 0u64;
    let mut offsets = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        string(&mut out, name);
        out.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(dtype_ggml(*dtype).unwrap_or(u32::MAX).to_le_bytes());
        out.extend(offset.to_le_bytes());
        offsets.push(offset);
        offset = (offset + bytes.len() as u64).div_ceil(alignment) * alignment;
    }
    let data_start = (out.len() as u64).div_ceil(alignment) * alignment;
    out.resize(data_start as usize, 0);
    for ((_, _, _, bytes), off) in tensors.iter().zip(offsets) {
        out.resize((data_start + off) as usize, 0);
        out.extend(*bytes);
    }
    out
}

/// A bounded little-endian reader: it knows how many bytes remain and refuses any length that
/// does not fit before reading or allocating.
struct Rd<'a, R: Read> {
    r: &'a mut R,
    pos: u64,
    len: u64,
    file: &'a str,
}

impl<R: Read> Rd<'_, R> {
    fn bad(&self, why: impl std::fmt::Display) -> WeightsError {
        WeightsError::NotGguf {
            file: self.file.into(),
            why: format!("{why} (at byte {})", self.pos),
        }
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn need(&self, n: u64, what: &str) -> Result<(), WeightsError> {
        if n > self.remaining() {
            return Err(self.bad(format!(
                "{what} needs {n} bytes but only {} remain in the file",
                self.remaining()
            )));
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), WeightsError> {
        self.need(buf.len() as u64, what)?;
        self.r
            .read_exact(buf)
            .map_err(|e| self.bad(format!("reading {what}: {e}")))?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], WeightsError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, WeightsError> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    /// Read and drop `n` bytes.
    fn skip(&mut self, n: u64, what: &str) -> Result<(), WeightsError> {
        self.need(n, what)?;
        let got = std::io::copy(&mut (&mut *self.r).take(n), &mut std::io::sink())
            .map_err(|e| self.bad(format!("reading {what}: {e}")))?;
        if got != n {
            return Err(self.bad(format!("{what}: the file ends early")));
        }
        self.pos += n;
        Ok(())
    }

    /// A string of at most `max` bytes (UTF-8).
    fn string(&mut self, what: &str, max: u64) -> Result<String, WeightsError> {
        let n = self.u64(what)?;
        if n > max {
            return Err(self.bad(format!("{what} is {n} bytes long (at most {max})")));
        }
        self.need(n, what)?;
        let mut b = vec![0u8; n as usize];
        self.fill(&mut b, what)?;
        String::from_utf8(b).map_err(|_| self.bad(format!("{what} is not UTF-8")))
    }

    /// One metadata value of type `ty`.
    fn value(&mut self, ty: u32, depth: u32, what: &str) -> Result<GgufValue, WeightsError> {
        Ok(match ty {
            0 => GgufValue::U8(self.arr::<1>(what)?[0]),
            1 => GgufValue::I8(self.arr::<1>(what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.arr(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.arr(what)?)),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.arr(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.arr(what)?)),
            7 => match self.arr::<1>(what)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.bad(format!("{what}: bool value {b}"))),
            },
            8 => {
                let n = self.u64(what)?;
                if n > MAX_STRING {
                    return Err(self.bad(format!("{what}: string of {n} bytes")));
                }
                if n <= MAX_KEPT_STRING {
                    self.need(n, what)?;
                    let mut b = vec![0u8; n as usize];
                    self.fill(&mut b, what)?;
                    GgufValue::String(
                        String::from_utf8(b)
                            .map_err(|_| self.bad(format!("{what} is not UTF-8")))?,
                    )
                } else {
                    self.skip(n, what)?;
                    GgufValue::LongString(n)
                }
            }
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(self.bad(format!("{what}: arrays nested deeper than {MAX_DEPTH}")));
                }
                let elem = self.u32(what)?;
                let n = self.u64(what)?;
                match elem {
                    0..=7 | 10..=12 => {
                        let size: u64 = match elem {
                            0 | 1 | 7 => 1,
                            2 | 3 => 2,
                            4..=6 => 4,
                            _ => 8,
                        };
                        let bytes = n
                            .checked_mul(size)
                            .ok_or_else(|| self.bad(format!("{what}: array of {n} elements")))?;
                        self.skip(bytes, what)?;
                    }
                    8 => {
                        // Each string takes at least its 8-byte length.
                        if n > self.remaining() / 8 {
                            return Err(self.bad(format!(
                                "{what}: array of {n} strings does not fit in the file"
                            )));
                        }
                        for _ in 0..n {
                            let len = self.u64(what)?;
                            self.skip(len, what)?;
                        }
                    }
                    9 => {
                        // Each inner array takes at least its type and length (12 bytes).
                        if n > self.remaining() / 12 {
                            return Err(self.bad(format!(
                                "{what}: array of {n} arrays does not fit in the file"
                            )));
                        }
                        for _ in 0..n {
                            self.value(9, depth + 1, what)?;
                        }
                    }
                    t => return Err(self.bad(format!("{what}: array of unknown type {t}"))),
                }
                GgufValue::Array {
                    elem_type: elem,
                    len: n,
                }
            }
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.arr(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.arr(what)?)),
            t => return Err(self.bad(format!("{what}: unknown value type {t}"))),
        })
    }
}

impl GgufHeader {
    /// True if `first4` is the GGUF magic.
    pub fn is_gguf(first4: &[u8]) -> bool {
        first4.starts_with(b"GGUF")
    }

    /// Parse the header from `r`, positioned at the start of a file of `file_len` bytes. Reads
    /// exactly the header (not the padding or the data).
    pub fn read<R: Read>(file: &str, r: &mut R, file_len: u64) -> Result<Self, WeightsError> {
        let mut rd = Rd {
            r,
            pos: 0,
            len: file_len,
            file,
        };
        let magic: [u8; 4] = rd.arr("the magic")?;
        if &magic != b"GGUF" {
            return Err(rd.bad(format!("the file starts with {magic:02x?}, not \"GGUF\"")));
        }
        let version = rd.u32("the version")?;
        match version {
            2 | 3 => {}
            1 => return Err(rd.bad(
                "GGUF version 1 (32-bit counts) is not supported; convert the file to version 3",
            )),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(rd.bad("big-endian GGUF is not supported"))
            }
            v => return Err(rd.bad(format!("unknown GGUF version {v}"))),
        }
        let n_tensors = rd.u64("the tensor count")?;
        let n_kv = rd.u64("the metadata count")?;
        // Each key/value takes at least 13 bytes, each tensor info at least 24.
        if n_kv > rd.remaining() / 13 {
            return Err(rd.bad(format!("{n_kv} metadata entries do not fit in the file")));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = rd.string(&format!("metadata key {i}"), MAX_NAME)?;
            let ty = rd.u32(&format!("the type of '{key}'"))?;
            let v = rd.value(ty, 0, &format!("metadata '{key}'"))?;
            if metadata.insert(key.clone(), v).is_some() {
                return Err(rd.bad(format!("metadata key '{key}' appears twice")));
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(GgufValue::U32(a)) if a.is_power_of_two() && *a <= 1 << 20 => *a as u64,
            Some(v) => {
                return Err(rd.bad(format!(
                    "general.alignment is {v:?}, expected a power of two (u32, at most 1 MiB)"
                )))
            }
        };
        if n_tensors > rd.remaining() / 24 {
            return Err(rd.bad(format!("{n_tensors} tensors do not fit in the file")));
        }
        let mut infos = Vec::new();
        for i in 0..n_tensors {
            let name = rd.string(&format!("the name of tensor {i}"), MAX_NAME)?;
            let what = format!("tensor '{name}'");
            let n_dims = rd.u32(&what)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(rd.bad(format!("{what} has {n_dims} dimensions (1 to {MAX_DIMS})")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = rd.u64(&what)?;
                let d = usize::try_from(d)
                    .map_err(|_| rd.bad(format!("{what} has a dimension of {d}")))?;
                dims.push(d);
            }
            let ty = rd.u32(&what)?;
            let offset = rd.u64(&what)?;
            infos.push((name, dims, ty, offset));
        }
        let header_end = rd.pos;
        let data_start = header_end.div_ceil(alignment) * alignment;
        let mut tensors = BTreeMap::new();
        for (name, dims, ty, offset) in infos {
            let bad = |why: String| WeightsError::NotGguf {
                file: file.into(),
                why: format!("tensor '{name}' {why}"),
            };
            let dtype = ggml_dtype(ty).ok_or_else(|| {
                bad(format!(
                    "has ggml type {ty} ({}); parle reads F32, F16, BF16, Q8_0, I8, I32 and I64",
                    ggml_type_name(ty)
                ))
            })?;
            let shape: Vec<usize> = dims.iter().rev().copied().collect();
            let nbytes = dtype.nbytes(&shape).ok_or_else(|| {
                bad(format!(
                    "has shape {shape:?} which is not whole {} blocks of {} (or is too large)",
                    dtype.name(),
                    dtype.block_len()
                ))
            })?;
            if offset % alignment != 0 {
                return Err(bad(format!(
                    "starts at offset {offset}, not a multiple of the alignment {alignment}"
                )));
            }
            let start = data_start
                .checked_add(offset)
                .ok_or_else(|| bad(format!("has offset {offset}")))?;
            let end = start
                .checked_add(nbytes)
                .ok_or_else(|| bad(format!("has offset {offset}")))?;
            if end > file_len {
                return Err(WeightsError::Truncated {
                    file: file.into(),
                    tensor: name,
                    end,
                    len: file_len,
                });
            }
            let e = TensorEntry {
                dtype,
                shape,
                start,
                end,
            };
            if tensors.insert(name.clone(), e).is_some() {
                return Err(bad("appears twice".into()));
            }
        }
        let mut ranges: Vec<(&String, &TensorEntry)> =
            tensors.iter().filter(|(_, e)| e.end > e.start).collect();
        ranges.sort_by_key(|(_, e)| e.start);
        for w in ranges.windows(2) {
            if w[1].1.start < w[0].1.end {
                return Err(WeightsError::NotGguf {
                    file: file.into(),
                    why: format!("tensors '{}' and '{}' overlap", w[0].0, w[1].0),
                });
            }
        }
        Ok(Self {
            file: file.into(),
            version,
            alignment,
            metadata,
            tensors,
            data_start,
        })
    }

    /// Parse the header of a whole file held in memory.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self, WeightsError> {
        let mut r = bytes;
        Self::read(file, &mut r, bytes.len() as u64)
    }

    /// Read the header of a file on disk (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_file(path: &std::path::Path) -> Result<Self, WeightsError> {
        let file = path.display().to_string();
        let io = |e: std::io::Error| WeightsError::Io {
            file: file.clone(),
            message: e.to_string(),
        };
        let f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        // The buffer no larger than the file (small files, small allocations).
        let mut r = std::io::BufReader::with_capacity(len.clamp(1, 8192) as usize, f);
        Self::read(&file, &mut r, len)
    }
}

/// A whole GGUF file in memory (small models, browser tests).
pub struct MemoryGguf {
    pub header: GgufHeader,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for MemoryGguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryGguf")
            .field("header", &self.header)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl MemoryGguf {
    pub fn new(name: &str, bytes: Vec<u8>) -> Result<Self, WeightsError> {
        let header = GgufHeader::parse(name, &bytes)?;
        Ok(Self { header, bytes })
    }

    /// The bytes `start..start + len` (within the file: the header checked every tensor).
    pub fn range(&self, start: u64, len: u64) -> Result<&[u8], WeightsError> {
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.bytes.len() as u64);
        match end {
            Some(end) => Ok(&self.bytes[start as usize..end as usize]),
            None => Err(WeightsError::Io {
                file: self.header.file.clone(),
                message: format!("bytes {start}+{len} are past the end of the file"),
            }),
        }
    }
}

/// An open GGUF file on disk: the header, and tensors read by range (native).
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug)]
pub struct GgufFile {
    pub header: GgufHeader,
    file: std::cell::RefCell<std::fs::File>,
}

#[cfg(not(target_arch = "wasm32"))]
impl GgufFile {
    pub fn open(path: &std::path::Path) -> Result<Self, WeightsError> {
        let header = GgufHeader::read_file(path)?;
        let file = std::fs::File::open(path).map_err(|e| WeightsError::Io {
            file: header.file.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            header,
            file: std::cell::RefCell::new(file),
        })
    }

    /// `len` bytes at absolute offset `start`.
    pub fn range(&self, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        super::loader::read_range(&self.file, &self.header.file, start, len)
    }
}
