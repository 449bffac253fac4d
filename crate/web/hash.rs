//! SHA-256 for the worker's downloads (`web/store.js`): the bytes are hashed as they stream in,
//! chunk by chunk, and the digest is compared with the one the host publishes (Hugging Face's
//! LFS ETag) before the file counts as stored. RustCrypto's `sha2` does the hashing.

use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

/// An incremental SHA-256: `update(bytes)` any number of times, then `finish()` → 64 hex digits.
#[wasm_bindgen(js_name = Sha256)]
pub struct Sha256Hasher {
    inner: Option<Sha256>,
    bytes: f64,
}

impl Default for Sha256Hasher {
    fn default() -> Self {
        Self::new()
    }
}

#[wasm_bindgen(js_class = Sha256)]
impl Sha256Hasher {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self {
            inner: Some(Sha256::new()),
            bytes: 0.0,
        }
    }

    /// Hash `bytes` after what came before. Errors once `finish()` was called.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), JsError> {
        let h = self
            .inner
            .as_mut()
            .ok_or_else(|| JsError::new("Sha256.update() after finish(): make a new hasher"))?;
        h.update(bytes);
        self.bytes += bytes.len() as f64;
        Ok(())
    }

    /// How many bytes were hashed so far.
    #[wasm_bindgen(getter)]
    pub fn bytes(&self) -> f64 {
        self.bytes
    }

    /// The digest of everything given to `update()`, as 64 lower-case hex digits. The hasher
    /// cannot be used again afterwards.
    pub fn finish(&mut self) -> Result<String, JsError> {
        let h = self
            .inner
            .take()
            .ok_or_else(|| JsError::new("Sha256.finish() called twice: make a new hasher"))?;
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}
