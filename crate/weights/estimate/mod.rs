//! The GPU-memory estimate of a model before it is loaded: [`estimate`] adds up, from tensor
//! headers and the parsed config (no GPU), every buffer a load allocates — the LM's weights as
//! stored, its embedding tables as converted at load, the KV caches at the config's context,
//! activations and scratch, Mimi's weights, streaming state and activations, and the frame
//! loop's output and readback buffers — each rounded as the GPU runtime rounds a buffer (to 4
//! bytes, at least 4). `parle info --model`, `parle bench lm|mimi` and the page's
//! `engine.inspect()` print it; `tests/memory.rs` checks it against what loads allocate.
//!
//! The size rules that loaders share with the estimate live here ([`kv_cache_bytes`],
//! [`attention_split_bytes`], the table rules of `weights::table`, [`stored_format`]),
//! so that the two cannot drift apart; the rest mirrors the loaders' buffer plans, which the
//! memory test compares buffer total by buffer total.

mod lm;
mod mimi;
mod transformer;

pub use lm::{stacks_depformer_inputs, LmShape, STACKED_ROW_ALIGN};
pub use mimi::MimiShape;
pub use transformer::TransformerShape;

use std::fmt;

use super::{
    companion, loaded_table_format, random_table_format, DType, TensorSource, WeightFormat,
};

/// Head dimensions are padded to a multiple of this in KV cache rows and attention scratch.
pub const HEAD_DIM_ALIGN: u32 = 8;
/// Workgroups the split-key attention aims for (its scratch holds their partials).
pub const SPLIT_TARGET_GROUPS: u32 = 256;

/// `head_dim` rounded up to [`HEAD_DIM_ALIGN`].
pub fn padded_head_dim(head_dim: u32) -> u32 {
    head_dim.div_ceil(HEAD_DIM_ALIGN) * HEAD_DIM_ALIGN
}

/// Bytes of one layer's KV cache: `[2, capacity, heads, padded head dim]` elements of
/// `elem_bytes` (2 for an f16 cache, 4 for f32).
pub fn kv_cache_bytes(capacity: u32, heads: u32, head_dim: u32, elem_bytes: u64) -> u64 {
    2 * capacity as u64 * heads as u64 * padded_head_dim(head_dim) as u64 * elem_bytes
}

/// Bytes of the split-key attention scratch for up to `max_t` queries per call.
pub fn attention_split_bytes(heads: u32, head_dim: u32, split_groups: u32, max_t: u32) -> u64 {
    let pairs = heads as u64 * max_t.max(1) as u64;
    (split_groups as u64 + pairs) * (padded_head_dim(head_dim) as u64 + 2) * 4
}

/// Bytes the GPU runtime allocates for a buffer of `bytes` (a multiple of 4, at least 4).
pub fn buffer_bytes(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(4) * 4
}

/// A buffer of `floats` f32 (or u32) elements as the loaders allocate it (at least one).
fn floats(n: u64) -> u64 {
    buffer_bytes(n.max(1) * 4)
}

/// The format a stored linear weight `name` with `k` inputs keeps on the GPU, read from the
/// source's header only (`None`: not in the source, or a dtype no linear has).
pub fn stored_format(src: &dyn TensorSource, name: &str, k: usize) -> Option<WeightFormat> {
    let (dtype, shape) = src.info(name)?;
    Some(match dtype {
        DType::F32 | DType::F16 => WeightFormat::F32,
        DType::BF16 => WeightFormat::Bf16,
        DType::Q8_0 => WeightFormat::Q8_0,
        DType::I8 => WeightFormat::Int8Row,
        DType::U32 => {
            let cols = *shape.last()?;
            let (_, s) = src.info(&companion(name, "scales"))?;
            let groups = *s.last()?;
            if k == 0 || groups == 0 {
                return None;
            }
            WeightFormat::Affine {
                bits: (cols * 32 / k) as u32,
                group: (k / groups) as u32,
            }
        }
        _ => return None,
    })
}

/// Where linear weights come from, which decides their GPU format.
#[derive(Clone, Copy)]
pub enum LinearSource<'a> {
    /// A checkpoint's tensors (canonical names), each in its stored format, or all converted to
    /// `quant` at load.
    Checkpoint {
        src: &'a dyn TensorSource,
        quant: Option<WeightFormat>,
    },
    /// Random weights made on the GPU in one format (benchmarks).
    Random(WeightFormat),
}

impl LinearSource<'_> {
    /// The GPU format of the linear `name` (`[rows, k]`).
    pub fn format(&self, name: &str, k: usize) -> WeightFormat {
        match self {
            Self::Checkpoint { src, quant } => quant.unwrap_or_else(|| {
                if src.is_generator() {
                    WeightFormat::F32
                } else {
                    stored_format(*src, name, k).unwrap_or(WeightFormat::F32)
                }
            }),
            Self::Random(f) => *f,
        }
    }

    /// GPU bytes of the linear `name` (`[rows, k]`, K zero-padded to the format's granularity).
    pub fn bytes(&self, name: &str, rows: usize, k: usize) -> u64 {
        let f = self.format(name, k);
        f.gpu_bytes(rows as u32, f.padded_k(k as u32))
    }

    /// The K the linear `name` reads per row (its padded input width).
    pub fn padded_k(&self, name: &str, k: usize) -> u64 {
        self.format(name, k).padded_k(k as u32) as u64
    }

    /// The format the embedding table `name` (`[rows, dim]`) is kept in on the GPU, or `target`
    /// when the load options force one (the loader's rule: [`crate::weights::loaded_table_format`]
    /// for checkpoints, [`crate::weights::random_table_format`] for random weights).
    pub fn table_format(&self, name: &str, dim: u32, target: Option<WeightFormat>) -> WeightFormat {
        match self {
            Self::Checkpoint { src, .. } => loaded_table_format(*src, name, dim, target),
            Self::Random(f) => target.unwrap_or(random_table_format(*f)),
        }
    }
}

/// What the adapter and the load options change in the sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The adapter has shader-f16: LM KV caches are f16 unless `f32_cache` (Mimi's always f32).
    pub f16: bool,
    /// Keep the LM's KV caches in f32.
    pub f32_cache: bool,
    /// The LM's table format when the load options force one (`None`: each table as the loader
    /// keeps it, [`LinearSource::table_format`]).
    pub tables: Option<WeightFormat>,
}

/// A model's GPU memory, part by part (bytes, each buffer rounded as the runtime rounds it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuEstimate {
    /// LM linears in the GPU format they are loaded in (as stored, or converted by `--quant`),
    /// norms and layer scales in f32.
    pub lm_weights: u64,
    /// LM embedding tables as kept on the GPU (in their stored format where the gather reads it).
    pub lm_tables: u64,
    /// LM KV caches (temporal transformer at the config's context, depformer ring).
    pub lm_kv_cache: u64,
    /// LM activations, logits, the token ring and attention scratch.
    pub lm_activations: u64,
    /// Mimi's weights (f32, codebooks divided by their usage at load, only the codebooks used).
    pub mimi_weights: u64,
    /// Mimi's codec-transformer KV caches (f32).
    pub mimi_kv_cache: u64,
    /// Mimi's streaming state: every conv's ping-pong state buffers.
    pub mimi_state: u64,
    /// Mimi's activations and scratch.
    pub mimi_activations: u64,
    /// The frame loop's input, output and readback staging buffers.
    pub io: u64,
}

impl GpuEstimate {
    /// Every part added up.
    pub fn total(&self) -> u64 {
        self.lm_weights
            + self.lm_tables
            + self.lm_kv_cache
            + self.lm_activations
            + self.mimi_weights
            + self.mimi_kv_cache
            + self.mimi_state
            + self.mimi_activations
            + self.io
    }

    /// The LM's parts.
    pub fn lm(&self) -> u64 {
        self.lm_weights + self.lm_tables + self.lm_kv_cache + self.lm_activations
    }

    /// Mimi's parts.
    pub fn mimi(&self) -> u64 {
        self.mimi_weights + self.mimi_kv_cache + self.mimi_state + self.mimi_activations
    }
}

/// A model with an optional LM, as a session loads it.
pub struct ModelShape {
    pub lm: Option<LmShape>,
    pub mimi: MimiShape,
    /// Tokens per frame the session reads back next to the PCM (`n_q + 1` with an LM, the
    /// codebooks in loopback).
    pub width: u64,
}

/// The estimate of a whole session: the LM (`lm` says where its linears come from), Mimi, and
/// the frame loop's output buffer with its two readback slots.
pub fn estimate(shape: &ModelShape, lm: LinearSource, facts: Facts) -> GpuEstimate {
    let mut e = GpuEstimate::default();
    if let Some(s) = &shape.lm {
        s.add_to(&mut e, lm, facts);
    }
    shape.mimi.add_to(&mut e);
    let out = buffer_bytes((shape.mimi.frame + shape.width) * 4);
    e.io += 3 * out;
    e
}

fn size(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

impl fmt::Display for GpuEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "GPU memory estimate: {} ({} bytes)",
            size(self.total()),
            self.total()
        )?;
        if self.lm() > 0 {
            writeln!(
                f,
                "  LM {}: weights {}, embedding tables as loaded {}, KV cache {}, activations {}",
                size(self.lm()),
                size(self.lm_weights),
                size(self.lm_tables),
                size(self.lm_kv_cache),
                size(self.lm_activations)
            )?;
        }
        writeln!(
            f,
            "  Mimi {}: weights {}, KV cache {}, streaming state {}, activations {}",
            size(self.mimi()),
            size(self.mimi_weights),
            size(self.mimi_kv_cache),
            size(self.mimi_state),
            size(self.mimi_activations)
        )?;
        write!(f, "  frame input/output and readback: {}", size(self.io))
    }
}
