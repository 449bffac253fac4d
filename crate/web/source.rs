//! Tensor sources over files that live on the JavaScript side: a model file in the Origin
//! Private File System (read through a `FileSystemSyncAccessHandle`), a `File` the user picked
//! (read through `FileReaderSync`), or a `Blob` from the Cache Storage fallback. The worker hands
//! each file to Rust as an object with a `size` and a synchronous `readInto(dest, at)`; Rust asks
//! for one tensor's byte range at a time, read straight into wasm memory, so a checkpoint is never
//! whole in wasm memory (the largest tensor is: its bytes, and the chunk of its GPU layout being
//! written). Safetensors and GGUF files are read the same way as natively
//! (`crate::weights::Checkpoint` over a [`Container`]).

use wasm_bindgen::prelude::*;

use std::collections::BTreeMap;

use crate::weights::{
    Container, ContainerKind, DType, GgufHeader, RawTensor, SafetensorsHeader, TensorEntry,
    TensorSource, WeightsError,
};

#[wasm_bindgen]
extern "C" {
    /// `{ name: string, size: number, readInto(dest: Uint8Array, at: number): number }`
    /// (`readInto` fills `dest` from byte `at` and returns how many bytes it read).
    #[derive(Clone)]
    pub type JsFile;

    #[wasm_bindgen(method, getter)]
    pub fn name(this: &JsFile) -> String;

    #[wasm_bindgen(method, getter)]
    pub fn size(this: &JsFile) -> f64;

    #[wasm_bindgen(method, catch, js_name = readInto)]
    fn read_into_js(this: &JsFile, dest: &js_sys::Uint8Array, at: f64) -> Result<f64, JsValue>;
}

fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

impl JsFile {
    /// `len` bytes from byte `at`, read into a new vector (one copy, JS → wasm memory).
    pub fn read_at(&self, at: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        let io = |message: String| WeightsError::Io {
            file: self.name(),
            message,
        };
        if at + len > self.size() as u64 {
            return Err(io(format!(
                "bytes {at}..{} are past the end of the file ({} bytes): the file is truncated, download it again",
                at + len,
                self.size()
            )));
        }
        let mut buf = vec![0u8; len as usize];
        // Read in pieces of at most 64 MiB: one view of wasm memory per piece, re-made after
        // each call because a read could grow the memory (detaching the old view).
        const PIECE: usize = 64 << 20;
        let mut done = 0usize;
        while done < buf.len() {
            let n = (buf.len() - done).min(PIECE);
            // SAFETY: the view covers `buf[done..done + n]`, which lives until the end of this
            // function; nothing allocates in Rust while the JS side fills it.
            let view = unsafe { js_sys::Uint8Array::view_mut_raw(buf.as_mut_ptr().add(done), n) };
            let got = self
                .read_into_js(&view, (at + done as u64) as f64)
                .map_err(|e| {
                    io(format!(
                        "reading bytes at {}: {}",
                        at + done as u64,
                        js_message(&e)
                    ))
                })? as usize;
            if got != n {
                return Err(io(format!(
                    "short read at byte {}: got {got} of {n} bytes (the file may have changed or been truncated)",
                    at + done as u64
                )));
            }
            done += n;
        }
        Ok(buf)
    }

    /// The whole file (small files only: configs, tokenizers).
    pub fn read_all(&self) -> Result<Vec<u8>, WeightsError> {
        self.read_at(0, self.size() as u64)
    }
}

/// `std::io::Read` over a [`JsFile`] (for the GGUF header reader).
struct JsReader<'a> {
    file: &'a JsFile,
    pos: u64,
    len: u64,
}

impl std::io::Read for JsReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len - self.pos);
        if n == 0 {
            return Ok(0);
        }
        let bytes = self
            .file
            .read_at(self.pos, n)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.pos += n;
        Ok(n as usize)
    }
}

/// A checkpoint file (safetensors or GGUF, told apart by its first bytes) read tensor by tensor
/// from a [`JsFile`]: a [`Container`] for [`crate::weights::Checkpoint`] (the LM, under canonical
/// names, any published format) and a [`TensorSource`] under its stored names (Mimi).
pub struct JsContainer {
    name: String,
    kind: ContainerKind,
    entries: BTreeMap<String, TensorEntry>,
    file: JsFile,
}

impl JsContainer {
    /// Read and check the header (every tensor's byte range against the file's length).
    pub fn open(file: JsFile) -> Result<Self, WeightsError> {
        let name = file.name();
        let len = file.size() as u64;
        let first8 = file.read_at(0, 8.min(len))?;
        let (kind, entries) = if GgufHeader::is_gguf(&first8) {
            let mut r = std::io::BufReader::with_capacity(
                1 << 20,
                JsReader {
                    file: &file,
                    pos: 0,
                    len,
                },
            );
            let h = GgufHeader::read(&name, &mut r, len)?;
            (ContainerKind::Gguf, h.tensors)
        } else {
            let n = SafetensorsHeader::header_len(&name, &first8)?;
            if 8 + n > len {
                return Err(WeightsError::NotSafetensors {
                    file: name,
                    why: format!(
                        "header of {n} bytes does not fit in {len} bytes (the file is truncated)"
                    ),
                });
            }
            let json = file.read_at(8, n)?;
            let h = SafetensorsHeader::parse(&name, &json, len)?;
            (ContainerKind::Safetensors, h.tensors)
        };
        Ok(Self {
            name,
            kind,
            entries,
            file,
        })
    }

    /// The largest tensor's size in bytes (wasm memory holds at most this much of the file).
    pub fn largest_tensor(&self) -> u64 {
        self.entries
            .values()
            .map(|e| e.end - e.start)
            .max()
            .unwrap_or(0)
    }
}

impl Container for JsContainer {
    fn file(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> ContainerKind {
        self.kind
    }
    fn entries(&self) -> &BTreeMap<String, TensorEntry> {
        &self.entries
    }
    fn read_at(&self, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        self.file.read_at(start, len)
    }
}

impl TensorSource for JsContainer {
    fn raw(&self, name: &str) -> Result<RawTensor, WeightsError> {
        let e = self.entries.get(name).ok_or(WeightsError::Missing {
            file: self.name.clone(),
            tensor: name.into(),
            expected: Vec::new(),
        })?;
        Ok(RawTensor {
            dtype: e.dtype,
            shape: e.shape.clone(),
            bytes: self.file.read_at(e.start, e.end - e.start)?,
        })
    }

    fn info(&self, name: &str) -> Option<(DType, Vec<usize>)> {
        self.entries.get(name).map(|e| (e.dtype, e.shape.clone()))
    }

    fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn file(&self) -> String {
        self.name.clone()
    }
}
