//! Native tensor-by-tensor loading: each tensor's byte range is read from the file and uploaded
//! to its own GPU buffer, so a checkpoint never sits whole in memory.

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{DType, RawTensor, SafetensorsHeader, TensorSource, WeightsError};

/// `len` bytes at absolute offset `start` of an open file.
pub(crate) fn read_range(
    file: &RefCell<File>,
    name: &str,
    start: u64,
    len: u64,
) -> Result<Vec<u8>, WeightsError> {
    let io = |err: std::io::Error| WeightsError::Io {
        file: name.into(),
        message: format!("reading bytes {start}+{len}: {err}"),
    };
    let n = usize::try_from(len).map_err(|_| WeightsError::Io {
        file: name.into(),
        message: format!("a read of {len} bytes does not fit in memory"),
    })?;
    let mut f = file.borrow_mut();
    f.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut buf = vec![0u8; n];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}

/// An open safetensors checkpoint.
pub struct SafetensorsFile {
    pub header: SafetensorsHeader,
    file: RefCell<File>,
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
            file: RefCell::new(file),
        })
    }

    /// The raw bytes of one tensor, after checking its shape.
    pub fn bytes(&self, name: &str, shape: &[usize]) -> Result<Vec<u8>, WeightsError> {
        let e = self.header.expect(name, shape)?;
        self.range(e.start, e.end - e.start)
    }

    /// `len` bytes at absolute offset `start`.
    pub fn range(&self, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        read_range(&self.file, &self.header.file, start, len)
    }
}

impl TensorSource for SafetensorsFile {
    fn raw(&self, name: &str) -> Result<RawTensor, WeightsError> {
        let e = self.header.tensors.get(name).ok_or(WeightsError::Missing {
            file: self.header.file.clone(),
            tensor: name.into(),
            expected: Vec::new(),
        })?;
        Ok(RawTensor {
            dtype: e.dtype,
            shape: e.shape.clone(),
            bytes: self.range(e.start, e.end - e.start)?,
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
