//! Native tensor-by-tensor loading: each tensor's byte range is read from the file and uploaded
//! to its own GPU buffer, so a checkpoint never sits whole in memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{to_f32, SafetensorsHeader, TensorSource, WeightsError};

/// An open safetensors checkpoint.
pub struct SafetensorsFile {
    pub header: SafetensorsHeader,
    file: std::cell::RefCell<File>,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<Self, WeightsError> {
        let header = SafetensorsHeader::read_file(path)?;
        let file = File::open(path).map_err(|e| WeightsError::Io {
            file: header.file.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            header,
            file: std::cell::RefCell::new(file),
        })
    }

    /// The raw bytes of one tensor, after checking its shape.
    pub fn bytes(&self, name: &str, shape: &[usize]) -> Result<Vec<u8>, WeightsError> {
        let e = self.header.expect(name, shape)?;
        let io = |err: std::io::Error| WeightsError::Io {
            file: self.header.file.clone(),
            message: format!("reading '{name}': {err}"),
        };
        let mut f = self.file.borrow_mut();
        f.seek(SeekFrom::Start(e.start)).map_err(io)?;
        let mut buf = vec![0u8; (e.end - e.start) as usize];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }
}

impl TensorSource for SafetensorsFile {
    fn dtype(&self, name: &str) -> Option<super::DType> {
        self.header.tensors.get(name).map(|e| e.dtype)
    }

    /// One tensor as f32 (from F32, F16 or BF16), after checking its shape.
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let dtype = self.header.expect(name, shape)?.dtype;
        let bytes = self.bytes(name, shape)?;
        to_f32(dtype, &bytes).ok_or_else(|| WeightsError::DType {
            file: self.header.file.clone(),
            tensor: name.into(),
            found: dtype.name().into(),
            expected: "F32, F16 or BF16".into(),
        })
    }
}
