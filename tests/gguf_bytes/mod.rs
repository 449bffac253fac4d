//! Hand-made GGUF bytes shared by the reader tests.
#![allow(dead_code)]

/// A GGUF file built byte by byte (header, key/values, tensor infos, data), for tests of the
/// GGUF reader: tests/formats.rs and tests/mutation.rs.
pub struct Gguf(pub Vec<u8>);

impl Gguf {
    pub fn new(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut v = b"GGUF".to_vec();
        v.extend(version.to_le_bytes());
        v.extend(n_tensors.to_le_bytes());
        v.extend(n_kv.to_le_bytes());
        Self(v)
    }
    pub fn u32(mut self, x: u32) -> Self {
        self.0.extend(x.to_le_bytes());
        self
    }
    pub fn u64(mut self, x: u64) -> Self {
        self.0.extend(x.to_le_bytes());
        self
    }
    pub fn str(self, s: &str) -> Self {
        let mut r = self.u64(s.len() as u64);
        r.0.extend(s.as_bytes());
        r
    }
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend(b);
        self
    }
    pub fn pad(mut self, a: usize) -> Self {
        while !self.0.len().is_multiple_of(a) {
            self.0.push(0);
        }
        self
    }

    /// A version-2 header whose key/values are arrays (kv 1: 3 strings; kv 2: 2 arrays of
    /// u16; kv 3: 2 f64) and one Q8_0 tensor `w` `[rows, 32]` at offset 0, padded to 32 bytes:
    /// the tensor data follows.
    pub fn arrays_v2(rows: u64) -> Self {
        Self::new(2, 1, 3)
            .str("tokenizer.tokens")
            .u32(9)
            .u32(8)
            .u64(3)
            .str("a")
            .str("")
            .str("ccc")
            .str("nested")
            .u32(9)
            .u32(9)
            .u64(2)
            .u32(2)
            .u64(1)
            .bytes(&[1, 0])
            .u32(2)
            .u64(0)
            .str("floats")
            .u32(9)
            .u32(12)
            .u64(2)
            .bytes(&[0; 16])
            .str("w")
            .u32(2)
            .u64(32)
            .u64(rows)
            .u32(8)
            .u64(0)
            .pad(32)
    }
}
