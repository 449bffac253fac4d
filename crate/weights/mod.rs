//! Checkpoint readers: they turn a published file into `(name, dtype, shape, byte range)` entries
//! so that each tensor can be streamed into its GPU buffer on its own, never the whole file.
//!
//! Layers, bottom up:
//! * containers: [`SafetensorsFile`] / [`MemorySafetensors`] and [`GgufFile`] / [`MemoryGguf`]
//!   (our own GGUF reader): file names, dtypes, shapes, byte ranges; one tensor read at a time.
//! * [`Checkpoint`]: a container seen through a name map ([`names`]): every published naming
//!   (PyTorch, MLX, candle; spec §4.8) under one canonical set of names and shapes, the
//!   format detected from the file's contents.
//! * [`linear_weight`] hands a linear (or embedding) weight out as a [`LinearTensor`] in its
//!   published layout (f32, bf16, Q8_0 blocks, MLX affine codes + scales + biases);
//!   [`LinearTensor::into_host`] repacks it into a [`HostLinear`], the streams of its
//!   [`WeightFormat`] that the GPU side uploads without knowing the file format. [`quant`] holds
//!   the quantizers of the published formats (`--quant`, [`quant_format`]).
//! * [`UsageTracker`] records which tensors a model asked for, so a load can fail on tensors it
//!   did not use; [`ModelFiles`] finds the files of a model directory (native).
//! * [`estimate`]: the GPU memory a model will take, from headers and config, before a load.

mod checkpoint;
pub mod config;
pub mod estimate;
mod format;
mod gguf;
mod host;
mod linear;
#[cfg(not(target_arch = "wasm32"))]
mod loader;
mod memory;
pub mod names;
pub mod quant;
pub mod resolve;
mod rows;
mod safetensors;
mod table;
mod usage;

#[cfg(not(target_arch = "wasm32"))]
mod dir;
#[cfg(not(target_arch = "wasm32"))]
pub mod inspect;

pub use checkpoint::{Checkpoint, Container, ContainerKind};
pub use config::{config_file_name, ConfigFiles, CONFIG_FILE_KEYS, RESERVED_FILE_NAMES};
pub use format::{quant_format, WeightFormat};
pub use gguf::{dtype_ggml, ggml_type_name, write_gguf, GgufHeader, GgufValue, MemoryGguf};
pub use host::HostLinear;
pub use linear::{embedding_table, linear_weight, scb_companion, LinearTensor};
pub use memory::{MemorySafetensors, RandomWeights};
pub use names::Naming;
pub use quant::MlxAffine;
pub use resolve::{resolve_layout, Layout, Pick, Role};
pub use rows::RowChunk;
pub use table::{
    gather_format, gather_reads, loaded_table_format, random_table_format, stored_table_format,
    table_bytes, table_chunk_offsets, table_data_words, table_element_bits, table_gpu_bytes,
    table_in_format, table_piece, table_piece_parts, TABLE_ALIGN_WORDS, TABLE_CHUNK_ROWS,
};
pub use usage::UsageTracker;

#[cfg(not(target_arch = "wasm32"))]
pub use checkpoint::open_container;
#[cfg(not(target_arch = "wasm32"))]
pub use dir::ModelFiles;
#[cfg(not(target_arch = "wasm32"))]
pub use gguf::GgufFile;
#[cfg(not(target_arch = "wasm32"))]
pub use loader::SafetensorsFile;

pub use safetensors::{to_f32, DType, SafetensorsHeader, TensorEntry};

use thiserror::Error;

/// LM checkpoint names of the published repos (spec §4.1), in the order they are looked for:
/// PyTorch / MLX / candle bf16, MLX or PyTorch (bitsandbytes int8) q8, MLX q4, candle Q8_0 GGUF.
pub const LM_FILE_NAMES: &[&str] = &[
    "model.safetensors",
    "model.q8.safetensors",
    "model.q4.safetensors",
    "model.q8.gguf",
];
/// Mimi's published checkpoint (every Moshi repo bundles it).
pub const MIMI_FILE_NAME: &str = "tokenizer-e351c8d8-checkpoint125.safetensors";
/// The text tokenizer of the Moshi 7B repos.
pub const TOKENIZER_FILE_NAME: &str = "tokenizer_spm_32k_3.model";

/// What can be wrong with a checkpoint, naming the tensor and what was expected.
#[derive(Debug, Error)]
pub enum WeightsError {
    #[error("{file}: not a safetensors file ({why}). Download it again or check the path.")]
    NotSafetensors { file: String, why: String },
    #[error("{file}: not a readable GGUF file ({why}). Download it again or check the path.")]
    NotGguf { file: String, why: String },
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
    #[error("{file}: {count} tensor(s) of the checkpoint were not used by the model: {}. Is this the right checkpoint for this model/config?", list_names(.tensors))]
    Unused {
        file: String,
        count: usize,
        tensors: Vec<String>,
    },
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    #[error("config: {0}")]
    Config(String),
    /// A config error found in a named file.
    #[error("{file}: {message}")]
    ConfigFile { file: String, message: String },
    /// A model directory without a file it needs (the resolver's verdict, naming what was looked
    /// for and what is there).
    #[error("{0}")]
    MissingFiles(String),
    /// A model directory without the codec's weights.
    #[error("{dir}: no Mimi weights found (looked for {looked_for}). Add the Mimi checkpoint to the directory.")]
    NoMimi { dir: String, looked_for: String },
    /// A weight that does not fit its format's layout (K not a multiple of the block, stream
    /// lengths that disagree with the shape, an unsupported quantization).
    #[error("weight layout: {0}")]
    Layout(String),
}

impl WeightsError {
    /// The kind of this error: the config's own faults are [`crate::ErrorCode::Config`], the
    /// rest concern the weights files.
    pub fn code(&self) -> crate::ErrorCode {
        match self {
            WeightsError::Config(_) | WeightsError::ConfigFile { .. } => crate::ErrorCode::Config,
            _ => crate::ErrorCode::Weights,
        }
    }

    /// A [`WeightsError::Missing`] from a lookup that did not know the shape, completed with the
    /// shape the model expected; other errors unchanged.
    pub fn expecting(self, shape: &[usize]) -> Self {
        match self {
            Self::Missing {
                file,
                tensor,
                expected,
            } if expected.is_empty() => Self::Missing {
                file,
                tensor,
                expected: shape.to_vec(),
            },
            e => e,
        }
    }
}

/// At most 20 names, then how many more.
fn list_names(names: &[String]) -> String {
    let mut s: Vec<String> = names.iter().take(20).map(|n| format!("'{n}'")).collect();
    if names.len() > 20 {
        s.push(format!("… and {} more", names.len() - 20));
    }
    s.join(", ")
}

/// One tensor as stored: element type, shape (row-major, innermost last) and little-endian bytes.
///
/// For [`DType::Q8_0`] the shape is the logical one (`[rows, k]`) and the bytes are the
/// 34-byte blocks; for an MLX-quantized weight `X.weight` is [`DType::U32`] codes
/// `[rows, k·bits/32]` (see [`linear_weight`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Anything that yields named tensors: a checkpoint (file on disk or bytes in memory, under
/// canonical names), or generated random weights (benchmarks). Model loaders take
/// `&dyn TensorSource` and upload each tensor as it comes.
pub trait TensorSource {
    /// The tensor `name` converted to f32, after checking its shape. Q8_0 and MLX-quantized
    /// weights are dequantized (`shape` is then the logical `[rows, k]`).
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        tensor_f32(self, name, shape)
    }

    /// The tensor `name` as stored (dtype, shape, bytes), read from the file on its own.
    fn raw(&self, name: &str) -> Result<RawTensor, WeightsError> {
        Err(WeightsError::Format {
            file: self.file(),
            message: format!("this source cannot hand out raw tensors (asked for '{name}')"),
        })
    }

    /// Dtype and shape of `name` without reading it (`None`: no such tensor, or not known).
    fn info(&self, name: &str) -> Option<(DType, Vec<usize>)> {
        let _ = name;
        None
    }

    /// The stored element type of `name`, when the source knows it (`None`: unknown or absent).
    /// MLX-quantized weights report [`DType::U32`] (their codes).
    fn dtype(&self, name: &str) -> Option<DType> {
        self.info(name).map(|(d, _)| d)
    }

    /// Every tensor name the source holds (empty when it generates tensors on demand).
    fn names(&self) -> Vec<String> {
        Vec::new()
    }

    /// The file (or source) name used in error messages.
    fn file(&self) -> String {
        "weights".into()
    }

    /// True for sources that make up tensors on demand (benchmarks' random weights): they
    /// answer [`TensorSource::f32`] for any name and shape, and have no raw tensors.
    fn is_generator(&self) -> bool {
        false
    }

    /// The name `name` is stored under in the file, when it differs (for messages).
    fn stored_name(&self, name: &str) -> Option<String> {
        let _ = name;
        None
    }
}

/// The name of the scale (`what = "scales"`) or bias (`"biases"`) companion of an MLX-quantized
/// weight: `X.weight` → `X.scales`, `X_weight` → `X_scales` (canonical `in_proj_weight`).
pub fn companion(name: &str, what: &str) -> String {
    if let Some(p) = name.strip_suffix(".weight") {
        format!("{p}.{what}")
    } else if let Some(p) = name.strip_suffix("_weight") {
        format!("{p}_{what}")
    } else {
        format!("{name}.{what}")
    }
}

/// [`TensorSource::f32`] for any source that implements [`TensorSource::raw`]: float dtypes and
/// Q8_0 are converted, MLX affine codes (U32 + `scales` + `biases` companions) and PyTorch int8
/// codes (I8 + `weight_scb`) dequantized.
pub fn tensor_f32<S: TensorSource + ?Sized>(
    src: &S,
    name: &str,
    shape: &[usize],
) -> Result<Vec<f32>, WeightsError> {
    let file = src.file();
    let shape_err = |found: Vec<usize>| WeightsError::Shape {
        file: file.clone(),
        tensor: name.into(),
        found,
        expected: shape.to_vec(),
    };
    // Check the shape before reading when the source knows it.
    if let Some((dtype, found)) = src.info(name) {
        if dtype != DType::U32 && found != shape {
            return Err(shape_err(found));
        }
    }
    let t = src.raw(name).map_err(|e| e.expecting(shape))?;
    if t.dtype == DType::U32 {
        let rows = shape.first().copied().unwrap_or(0);
        let k = shape.get(1).copied().unwrap_or(0);
        if shape.len() != 2 {
            return Err(shape_err(t.shape));
        }
        return Ok(linear::mlx_from_raw(src, name, t, rows, k)?.to_f32());
    }
    if t.shape != shape {
        return Err(shape_err(t.shape));
    }
    if t.dtype == DType::I8 && shape.len() == 2 {
        return Ok(linear::int8_from_raw(src, name, t, shape[0])?.to_f32());
    }
    to_f32(t.dtype, &t.bytes).ok_or_else(|| WeightsError::DType {
        file,
        tensor: name.into(),
        found: t.dtype.name().into(),
        expected: "F32, F16, BF16, Q8_0 or MLX U32 codes".into(),
    })
}

/// A config's `depformer_weights_per_step_schedule` (depformer slice → weight set; absent or
/// null: one set per slice), which the MLX and candle name maps need.
pub fn schedule_from_config(
    config: &serde_json::Value,
) -> Result<Option<Vec<usize>>, WeightsError> {
    let Some(v) = config.get("depformer_weights_per_step_schedule") else {
        return Ok(None);
    };
    if v.is_null() {
        return Ok(None);
    }
    v.as_array()
        .filter(|a| a.len() <= 4096)
        .and_then(|a| {
            a.iter()
                .map(|x| x.as_u64().filter(|&x| x < 4096).map(|x| x as usize))
                .collect::<Option<Vec<usize>>>()
        })
        .map(Some)
        .ok_or_else(|| {
            WeightsError::Config(format!(
                "depformer_weights_per_step_schedule is {v}, expected a list of weight-set indices"
            ))
        })
}
