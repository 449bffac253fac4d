//! [`Checkpoint`]: one LM checkpoint file (safetensors or GGUF, on disk or in memory) under the
//! canonical names of [`super::names`], its container and naming detected from its contents.

use std::collections::BTreeMap;

use super::names::{stored_hint, NameMap, Naming, Stored};
use super::{
    DType, GgufHeader, MemoryGguf, MemorySafetensors, RawTensor, TensorEntry, TensorSource,
    WeightsError,
};

/// The file format holding the tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    Safetensors,
    Gguf,
}

impl ContainerKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Safetensors => "safetensors",
            Self::Gguf => "GGUF",
        }
    }
}

/// A checkpoint file as stored: tensor entries and reads of byte ranges.
pub trait Container {
    fn file(&self) -> &str;
    fn kind(&self) -> ContainerKind;
    fn entries(&self) -> &BTreeMap<String, TensorEntry>;
    /// `len` bytes at absolute offset `start`.
    fn read_at(&self, start: u64, len: u64) -> Result<Vec<u8>, WeightsError>;
}

impl Container for MemorySafetensors {
    fn file(&self) -> &str {
        &self.header.file
    }
    fn kind(&self) -> ContainerKind {
        ContainerKind::Safetensors
    }
    fn entries(&self) -> &BTreeMap<String, TensorEntry> {
        &self.header.tensors
    }
    fn read_at(&self, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        Ok(self.range(start, len)?.to_vec())
    }
}

impl Container for MemoryGguf {
    fn file(&self) -> &str {
        &self.header.file
    }
    fn kind(&self) -> ContainerKind {
        ContainerKind::Gguf
    }
    fn entries(&self) -> &BTreeMap<String, TensorEntry> {
        &self.header.tensors
    }
    fn read_at(&self, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        Ok(self.range(start, len)?.to_vec())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Container for super::SafetensorsFile {
    fn file(&self) -> &str {
        &self.header.file
    }
    fn kind(&self) -> ContainerKind {
        ContainerKind::Safetensors
    }
    fn entries(&self) -> &BTreeMap<String, TensorEntry> {
        &self.header.tensors
    }
    fn read_at(&self, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        self.range(start, len)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Container for super::GgufFile {
    fn file(&self) -> &str {
        &self.header.file
    }
    fn kind(&self) -> ContainerKind {
        ContainerKind::Gguf
    }
    fn entries(&self) -> &BTreeMap<String, TensorEntry> {
        &self.header.tensors
    }
    fn read_at(&self, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        self.range(start, len)
    }
}

/// A canonical tensor: what it is and where it is stored.
#[derive(Debug, Clone)]
struct Canonical {
    dtype: DType,
    shape: Vec<usize>,
    stored: Vec<Stored>,
}

/// An LM checkpoint under canonical names ([`super::names`]): a [`TensorSource`] whose
/// [`TensorSource::raw`] reads one canonical tensor (a row block of a stacked one, a reshaped
/// norm, …) from the file, in its stored dtype.
pub struct Checkpoint {
    container: Box<dyn Container>,
    naming: Naming,
    schedule: Option<Vec<usize>>,
    tensors: BTreeMap<String, Canonical>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("file", &self.container.file())
            .field("container", &self.container.kind())
            .field("naming", &self.naming)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Checkpoint {
    /// Present `container` under canonical names, its naming detected from its tensor names.
    /// `schedule` is the config's `depformer_weights_per_step_schedule` (slice → weight set).
    pub fn new(
        container: Box<dyn Container>,
        schedule: Option<&[usize]>,
    ) -> Result<Self, WeightsError> {
        let naming = Naming::detect(container.entries().keys().map(|s| s.as_str()));
        Self::with_naming(container, naming, schedule)
    }

    /// [`Checkpoint::new`] with the naming given.
    pub fn with_naming(
        container: Box<dyn Container>,
        naming: Naming,
        schedule: Option<&[usize]>,
    ) -> Result<Self, WeightsError> {
        let entries = container.entries();
        let map =
            NameMap::build(naming, entries, schedule).map_err(|message| WeightsError::Format {
                file: container.file().into(),
                message,
            })?;
        let tensors = map
            .map
            .into_iter()
            .map(|(name, stored)| {
                let e = &entries[&stored[0].name];
                let c = Canonical {
                    dtype: e.dtype,
                    shape: stored[0].transform.shape(&e.shape),
                    stored,
                };
                (name, c)
            })
            .collect();
        Ok(Self {
            container,
            naming,
            schedule: schedule.map(|s| s.to_vec()),
            tensors,
        })
    }

    /// A checkpoint held in memory (safetensors or GGUF, told apart by the first bytes).
    pub fn from_bytes(
        name: &str,
        bytes: Vec<u8>,
        schedule: Option<&[usize]>,
    ) -> Result<Self, WeightsError> {
        let c: Box<dyn Container> = if GgufHeader::is_gguf(&bytes) {
            Box::new(MemoryGguf::new(name, bytes)?)
        } else {
            Box::new(MemorySafetensors::new(name, bytes)?)
        };
        Self::new(c, schedule)
    }

    /// A checkpoint on disk (safetensors or GGUF, told apart by the first bytes; native).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path, schedule: Option<&[usize]>) -> Result<Self, WeightsError> {
        Self::new(open_container(path)?, schedule)
    }

    pub fn naming(&self) -> Naming {
        self.naming
    }

    pub fn container(&self) -> &dyn Container {
        self.container.as_ref()
    }

    /// Number of tensors stored in the file.
    pub fn stored_count(&self) -> usize {
        self.container.entries().len()
    }

    /// The stored tensors behind canonical `name` (the first is the one read).
    pub fn stored(&self, name: &str) -> Option<Vec<&str>> {
        self.tensors
            .get(name)
            .map(|c| c.stored.iter().map(|s| s.name.as_str()).collect())
    }
}

impl TensorSource for Checkpoint {
    fn raw(&self, name: &str) -> Result<RawTensor, WeightsError> {
        let file = self.container.file();
        let Some(c) = self.tensors.get(name) else {
            let tensor = match stored_hint(self.naming, name, self.schedule.as_deref()) {
                Some(h) => format!("{name} ({} name: {h})", self.naming.name()),
                None => name.to_string(),
            };
            return Err(WeightsError::Missing {
                file: file.into(),
                tensor,
                expected: Vec::new(),
            });
        };
        let s = &c.stored[0];
        let e = &self.container.entries()[&s.name];
        let (off, len) = s.transform.range(e.end - e.start);
        Ok(RawTensor {
            dtype: c.dtype,
            shape: c.shape.clone(),
            bytes: self.container.read_at(e.start + off, len)?,
        })
    }

    fn info(&self, name: &str) -> Option<(DType, Vec<usize>)> {
        self.tensors.get(name).map(|c| (c.dtype, c.shape.clone()))
    }

    fn names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn file(&self) -> String {
        self.container.file().into()
    }

    fn stored_name(&self, name: &str) -> Option<String> {
        let s = &self.tensors.get(name)?.stored;
        (s.len() != 1 || s[0].name != name).then(|| {
            let n: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
            n.join(" + ")
        })
    }
}

/// A weights file on disk as stored (safetensors or GGUF, told apart by the first bytes; native).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_container(path: &std::path::Path) -> Result<Box<dyn Container>, WeightsError> {
    use std::io::Read;
    let file = path.display().to_string();
    let mut first = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut first))
        .map_err(|e| WeightsError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
    Ok(if GgufHeader::is_gguf(&first[..n]) {
        Box::new(super::GgufFile::open(path)?)
    } else {
        Box::new(super::SafetensorsFile::open(path)?)
    })
}
