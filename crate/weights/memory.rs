//! In-memory tensor sources: a safetensors file held as bytes (small models, browser tests) and
//! deterministic random weights (benchmarks at the real size without a download).

use super::{DType, RawTensor, SafetensorsHeader, TensorSource, WeightsError};

/// A whole safetensors file in memory.
pub struct MemorySafetensors {
    pub header: SafetensorsHeader,
    bytes: Vec<u8>,
}

impl MemorySafetensors {
    pub fn new(name: &str, bytes: Vec<u8>) -> Result<Self, WeightsError> {
        let n = SafetensorsHeader::header_len(name, &bytes)?;
        let end = 8 + n as usize;
        if end > bytes.len() {
            return Err(WeightsError::NotSafetensors {
                file: name.into(),
                why: format!("header of {n} bytes does not fit in {} bytes", bytes.len()),
            });
        }
        let header = SafetensorsHeader::parse(name, &bytes[8..end], bytes.len() as u64)?;
        Ok(Self { header, bytes })
    }

    /// Raw bytes of one tensor after checking its shape.
    pub fn bytes(&self, name: &str, shape: &[usize]) -> Result<&[u8], WeightsError> {
        let e = self.header.expect(name, shape)?;
        Ok(&self.bytes[e.start as usize..e.end as usize])
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

impl TensorSource for MemorySafetensors {
    fn raw(&self, name: &str) -> Result<RawTensor, WeightsError> {
        let e = self.header.tensors.get(name).ok_or(WeightsError::Missing {
            file: self.header.file.clone(),
            tensor: name.into(),
            expected: Vec::new(),
        })?;
        Ok(RawTensor {
            dtype: e.dtype,
            shape: e.shape.clone(),
            bytes: self.bytes[e.start as usize..e.end as usize].to_vec(),
        })
    }

    fn info(&self, name: &str) -> Option<(DType, Vec<usize>)> {
        self.header
            .tensors
            .get(name)
            .map(|e| (e.dtype, e.shape.clone()))
    }

    fn names(&self) -> Vec<String> {
        self.header.tensors.keys().cloned().collect()
    }

    fn file(&self) -> String {
        self.header.file.clone()
    }
}

/// Deterministic random weights for benchmarks: uniform in ±1/sqrt(fan_in) (the last dims of
/// the shape), norm and layer-scale vectors near 1 and 0.1, codebook usage 1.
pub struct RandomWeights {
    pub seed: u64,
}

impl TensorSource for RandomWeights {
    fn file(&self) -> String {
        format!("random weights (seed {})", self.seed)
    }

    fn is_generator(&self) -> bool {
        true
    }

    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let n: usize = shape.iter().product();
        let mut h: u64 = self.seed ^ 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        let mut next = move || {
            h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = h;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let v = if name.ends_with("cluster_usage") {
            vec![1.0; n]
        } else if name.contains("norm") && name.ends_with("weight") || name.ends_with("alpha") {
            (0..n).map(|_| 1.0 + 0.1 * next()).collect()
        } else if name.contains("layer_scale") {
            (0..n).map(|_| 0.1 + 0.05 * next()).collect()
        } else {
            let s = 1.0 / (fan_in as f32).sqrt();
            (0..n).map(|_| s * next()).collect()
        };
        Ok(v)
    }
}
