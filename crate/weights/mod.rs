//! Checkpoint readers: they turn a published file into `(name, dtype, shape, byte range)` entries
//! so that each tensor can be streamed into its GPU buffer on its own, never the whole file.

#[cfg(not(target_arch = "wasm32"))]
mod loader;
mod memory;
mod safetensors;

pub use memory::{MemorySafetensors, RandomWeights};

#[cfg(not(target_arch = "wasm32"))]
pub use loader::SafetensorsFile;

pub use safetensors::{to_f32, DType, SafetensorsHeader, TensorEntry};

use thiserror::Error;

/// What can be wrong with a checkpoint, naming the tensor and what was expected.
#[derive(Debug, Error)]
pub enum WeightsError {
    #[error("{file}: not a safetensors file ({why}). Download it again or check the path.")]
    NotSafetensors { file: String, why: String },
    #[error("{file}: the file is truncated: tensor '{tensor}' ends at byte {end} but the file has {len} bytes. Download it again.")]
    Truncated {
        file: String,
        tensor: String,
        end: u64,
        len: u64,
    },
    #[error("{file}: tensor '{tensor}' is missing (expected shape {expected:?}). Is this the right checkpoint for this model/config?")]
    Missing {
        file: String,
        tensor: String,
        expected: Vec<usize>,
    },
    #[error("{file}: tensor '{tensor}' has shape {found:?}, expected {expected:?}. The checkpoint does not match the model config.")]
    Shape {
        file: String,
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("{file}: tensor '{tensor}' has dtype {found}, expected one of {expected}")]
    DType {
        file: String,
        tensor: String,
        found: String,
        expected: String,
    },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    #[error("config: {0}")]
    Config(String),
}

/// Anything that yields named f32 tensors of a checked shape: a file on disk, bytes in memory,
/// or generated random weights (benchmarks). Model loaders take `&dyn TensorSource` and upload
/// each tensor as it comes.
pub trait TensorSource {
    /// The tensor `name` converted to f32, after checking its shape.
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError>;

    /// The stored element type of `name`, when the source knows it (`None`: unknown or absent).
    fn dtype(&self, _name: &str) -> Option<DType> {
        None
    }
}
