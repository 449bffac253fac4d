//! The safetensors header: 8-byte little-endian header length, a JSON table of tensors with
//! dtype, shape and data offsets (relative to the end of the header), then the raw data.
//! Only the header is parsed here; tensor bytes are read range by range by the caller.

use std::collections::BTreeMap;

use super::WeightsError;

/// Element types found in published checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F32,
    F16,
    BF16,
    I64,
    I32,
    U32,
    U8,
    I8,
    Bool,
    /// ggml Q8_0 (GGUF only): blocks of 32 elements along the innermost dimension, each 34
    /// bytes (f16 scale `d`, then 32 int8 `q`; `w = d·q`).
    Q8_0,
}

impl DType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "F32" => Self::F32,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I64" => Self::I64,
            "I32" => Self::I32,
            "U32" => Self::U32,
            "U8" => Self::U8,
            "I8" => Self::I8,
            "BOOL" => Self::Bool,
            _ => return None,
        })
    }
    /// Bytes per element; for a block type ([`DType::Q8_0`]) bytes per block of
    /// [`DType::block_len`] elements.
    pub fn size(self) -> usize {
        match self {
            Self::F32 | Self::I32 | Self::U32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::I64 => 8,
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::Q8_0 => 34,
        }
    }
    /// Elements per block: 1, or 32 for [`DType::Q8_0`] (blocks run along the innermost dim).
    pub fn block_len(self) -> usize {
        match self {
            Self::Q8_0 => 32,
            _ => 1,
        }
    }
    /// Bytes of a tensor of this type with shape `shape` (row-major, innermost last), or `None`
    /// when the innermost dimension is not a whole number of blocks or the size overflows.
    pub fn nbytes(self, shape: &[usize]) -> Option<u64> {
        let numel = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))?;
        let inner = shape.last().copied().unwrap_or(1) as u64;
        let b = self.block_len() as u64;
        if !inner.is_multiple_of(b) {
            return None;
        }
        (numel / b).checked_mul(self.size() as u64)
    }
    /// True for F32, F16 and BF16.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::I64 => "I64",
            Self::I32 => "I32",
            Self::U32 => "U32",
            Self::U8 => "U8",
            Self::I8 => "I8",
            Self::Bool => "BOOL",
            Self::Q8_0 => "Q8_0",
        }
    }
}

/// One tensor of a checkpoint: where its bytes are in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    pub start: u64,
    /// Absolute end offset (exclusive).
    pub end: u64,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed safetensors header.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    pub file: String,
    pub tensors: BTreeMap<String, TensorEntry>,
    pub metadata: BTreeMap<String, String>,
    /// Bytes taken by the length prefix and the JSON header.
    pub data_start: u64,
}

const MAX_HEADER: u64 = 100 << 20;

impl SafetensorsHeader {
    /// Length of the JSON header given the first 8 bytes of the file.
    pub fn header_len(file: &str, first8: &[u8]) -> Result<u64, WeightsError> {
        let bad = |why: &str| WeightsError::NotSafetensors {
            file: file.into(),
            why: why.into(),
        };
        if first8.len() < 8 {
            return Err(bad("shorter than 8 bytes"));
        }
        let n = u64::from_le_bytes(first8[..8].try_into().expect("8 bytes"));
        if !(2..=MAX_HEADER).contains(&n) {
            return Err(bad(&format!("header length {n} is implausible")));
        }
        Ok(n)
    }

    /// Parse the JSON header (`json` = the `header_len` bytes after the 8-byte prefix) and check
    /// every tensor against the total file length.
    pub fn parse(file: &str, json: &[u8], file_len: u64) -> Result<Self, WeightsError> {
        let bad = |why: String| WeightsError::NotSafetensors {
            file: file.into(),
            why,
        };
        let data_start = 8 + json.len() as u64;
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| bad(format!("header is not JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| bad("header is not a JSON object".into()))?;
        let mut tensors = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (name, v) in obj {
            if name == "__metadata__" {
                if let Some(m) = v.as_object() {
                    for (k, v) in m {
                        metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                    }
                }
                continue;
            }
            let dtype_s = v["dtype"]
                .as_str()
                .ok_or_else(|| bad(format!("tensor '{name}' has no dtype")))?;
            let dtype = DType::parse(dtype_s)
                .ok_or_else(|| bad(format!("tensor '{name}' has unsupported dtype {dtype_s}")))?;
            let shape: Vec<usize> = v["shape"]
                .as_array()
                .ok_or_else(|| bad(format!("tensor '{name}' has no shape")))?
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("tensor '{name}' has a bad shape")))?;
            let offs = v["data_offsets"]
                .as_array()
                .filter(|a| a.len() == 2)
                .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
                .ok_or_else(|| bad(format!("tensor '{name}' has bad data_offsets")))?;
            // Offsets and sizes come from the file: every sum and product is checked.
            let (Some(start), Some(end)) = (
                data_start.checked_add(offs.0),
                data_start.checked_add(offs.1),
            ) else {
                return Err(bad(format!("tensor '{name}' has bad data_offsets")));
            };
            let nbytes = shape
                .iter()
                .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d as u64));
            if end < start || Some(end - start) != nbytes {
                return Err(bad(format!(
                    "tensor '{name}' has {} bytes for shape {shape:?} of {dtype_s}",
                    end.saturating_sub(start)
                )));
            }
            if end > file_len {
                return Err(WeightsError::Truncated {
                    file: file.into(),
                    tensor: name.clone(),
                    end,
                    len: file_len,
                });
            }
            tensors.insert(
                name.clone(),
                TensorEntry {
                    dtype,
                    shape,
                    start,
                    end,
                },
            );
        }
        // No two tensors may share bytes (the format requires it; a damaged header may not).
        let mut ranges: Vec<(&String, &TensorEntry)> =
            tensors.iter().filter(|(_, e)| e.end > e.start).collect();
        ranges.sort_by_key(|(_, e)| e.start);
        for w in ranges.windows(2) {
            if w[1].1.start < w[0].1.end {
                return Err(bad(format!(
                    "tensors '{}' and '{}' overlap (bytes {}..{} and {}..{})",
                    w[0].0, w[1].0, w[0].1.start, w[0].1.end, w[1].1.start, w[1].1.end
                )));
            }
        }
        Ok(Self {
            file: file.into(),
            tensors,
            metadata,
            data_start,
        })
    }

    /// The entry for `name`, checked against the expected shape.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<&TensorEntry, WeightsError> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| WeightsError::Missing {
                file: self.file.clone(),
                tensor: name.into(),
                expected: shape.to_vec(),
            })?;
        if e.shape != shape {
            return Err(WeightsError::Shape {
                file: self.file.clone(),
                tensor: name.into(),
                found: e.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        Ok(e)
    }

    /// Read the header of a file on disk (native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_file(path: &std::path::Path) -> Result<Self, WeightsError> {
        use std::io::Read;
        let file = path.display().to_string();
        let io = |e: std::io::Error| WeightsError::Io {
            file: file.clone(),
            message: e.to_string(),
        };
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let mut first8 = [0u8; 8];
        let got = f.read(&mut first8).map_err(io)?;
        let n = Self::header_len(&file, &first8[..got])?;
        if 8 + n > len {
            return Err(WeightsError::NotSafetensors {
                file,
                why: format!("header of {n} bytes does not fit in {len} bytes"),
            });
        }
        let mut json = vec![0u8; n as usize];
        f.read_exact(&mut json).map_err(io)?;
        Self::parse(&file, &json, len)
    }
}

/// Convert raw tensor bytes to f32 (F32, F16, BF16 and Q8_0 inputs).
pub fn to_f32(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        DType::F32 => bytemuck::pod_collect_to_vec(bytes),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DType::Q8_0 => bytes
            .chunks_exact(34)
            .flat_map(|b| {
                let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                b[2..].iter().map(move |&q| d * q as i8 as f32)
            })
            .collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tensors: &str, data: usize) -> Vec<u8> {
        let json = tensors.as_bytes();
        let mut v = (json.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(json);
        v.extend(std::iter::repeat_n(0u8, data));
        v
    }

    #[test]
    fn parses_and_checks() {
        let f = file(
            r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"__metadata__":{"k":"v"}}"#,
            24,
        );
        let n = SafetensorsHeader::header_len("t", &f).unwrap();
        let h = SafetensorsHeader::parse("t", &f[8..8 + n as usize], f.len() as u64).unwrap();
        assert_eq!(h.expect("a", &[2, 3]).unwrap().numel(), 6);
        assert!(matches!(
            h.expect("a", &[3, 2]),
            Err(WeightsError::Shape { .. })
        ));
        assert!(matches!(
            h.expect("b", &[1]),
            Err(WeightsError::Missing { .. })
        ));
        assert_eq!(h.metadata["k"], "v");
        // Truncated data.
        let err =
            SafetensorsHeader::parse("t", &f[8..8 + n as usize], f.len() as u64 - 1).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Wrong byte count for the shape.
        let g = file(
            r#"{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#,
            24,
        );
        let n = SafetensorsHeader::header_len("t", &g).unwrap();
        assert!(SafetensorsHeader::parse("t", &g[8..8 + n as usize], g.len() as u64).is_err());
        assert!(SafetensorsHeader::header_len("t", b"RIFF\0\0\0\0").is_err());
    }

    #[test]
    fn damaged_headers_are_errors_not_panics() {
        let cases = [
            // Offsets that overflow when added to the data start.
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551615,4]}}"#,
                "data_offsets",
            ),
            // A shape whose byte count overflows.
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#,
                "bytes for shape",
            ),
            // Two tensors sharing bytes.
            (
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#,
                "overlap",
            ),
        ];
        for (json, want) in cases {
            let f = file(json, 8);
            let n = SafetensorsHeader::header_len("t", &f).unwrap() as usize;
            let e = SafetensorsHeader::parse("t", &f[8..8 + n], f.len() as u64)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{json}: {e}");
        }
    }
}
