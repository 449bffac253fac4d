//! `Linear`: `y[m, n] = Σ_k x[m, k] · W[n, k] (+ bias[n])`, i.e. `y = x · Wᵀ` with `W` in PyTorch
//! `[out = N, in = K]` row-major layout, for f32, bf16, Q8_0 (ggml) and MLX affine 4/8-bit weights
//! (`shaders/linear.wgsl`). Built for small M (the LM's batch-1 gemv is the hot path); any M works.
//!
//! Layouts: `x` `[M, K]` f32 row-major, `y` `[M, N]` f32 row-major, `bias` `[N]` f32. The weight
//! streams on the GPU ([`WeightFormat`] documents each):
//! * f32: `[rows, K]` f32. bf16: `[rows, K/2]` u32, element `2i` in the low 16 bits of word `i`
//!   (the published little-endian bf16 bytes, reinterpreted).
//! * Q8_0: the published 34-byte blocks are split on the host into a code stream (int8 codes, 4 per
//!   u32 in element order; row `n` block `b` at word `(n·K/32 + b)·8`) and a scale stream that keeps
//!   the f16 `d` exactly: two blocks per u32 (flat block `f = n·K/32 + b` in word `f/2`, low half when
//!   `f` is even; the kernel reads it with `unpack2x16float`). 34 bytes per 32 weights, as published.
//! * MLX affine (bits 4 or 8, group 32 or 64): the published u32 code words unchanged, and one u32 per
//!   group holding the bf16 scale (low half) and bf16 bias (high half), kept exact; `w = s·q + β`.
//!
//! Dispatch: workgroups of 64 invocations, each computing 4 consecutive output rows for a tile of
//! `MT ∈ {1, 2, 4, 8}` batch rows (`MT` = the smallest that covers `min(M, 8)`); grid
//! `[ceil(N/4)]` (split 2-D by [`super::grid_1d`]) × `ceil(M / MT)` in z. A row is read in steps
//! of 8 weights (4 for f32): invocation `l` takes steps `l, l + 64, …`, four independent steps per
//! loop iteration, so loads are coalesced and many are in flight; every weight byte is read once
//! per dispatch when `M ≤ 8` (once per batch tile otherwise). Quantized codes are turned into
//! floats with the `2^23` mantissa trick (no int→float conversions, no shifts: x is prescaled by
//! powers of two). The partial sums are reduced with `subgroupAdd` + one shared slot per subgroup
//! (subgroups taken as consecutive invocations; any size) or a shared-memory tree.
//!
//! Measured (`parle bench kernels --only linear`, M = 1) on an NVIDIA H100 (Vulkan): bf16 at
//! 2.3–2.8 TB/s, Q8_0 1.5–2.3 TB/s, q4 1.2–1.6 TB/s of weight + activation bytes.
//!
//! A [`LinearWeights`] may expose a block of rows of a larger (stacked) weight with
//! [`LinearWeights::rows`], e.g. the depformer's `[8·3072, 1024]` in-projection; no copy is made.
//!
//! Fusion ([`linear_with`], [`LinearOpts`]): the input can be normalized or activated as it is
//! loaded — RMSNorm (the sum of squares is accumulated in the main loop, which reads each x
//! element once per workgroup, and the 1/rms factor is applied to the sums), LayerNorm (mean and
//! variance in one shifted pass over the tile's rows before the main loop), the SiLU gate of
//! `[m, 2K]` rows, exact GELU — and the result can be stored, added to `y` (a residual add) or
//! added scaled per output column (Mimi's layer scale). So a transformer layer is six dispatches:
//! norm→qkv, KV append (+RoPE), attention (+RoPE), out-projection + residual, norm→FFN in,
//! gated FFN out + residual. Every workgroup recomputes its rows' statistics and activations
//! (K values each): cheap next to the weight stream on a GPU; on CPU rasterizers (lavapipe) the
//! fused forms cost more than a separate norm dispatch.

use bytemuck::{Pod, Zeroable};
use half::{bf16, f16};

use crate::gpu::{
    wgsl_contains, Binding, Context, GpuBuffer, GpuError, GpuResult, Kernel, Recorder, Variant,
    View,
};

const SRC: &str = include_str!("../../shaders/linear.wgsl");
/// Invocations per workgroup; must match `@workgroup_size` in the WGSL.
pub const WG: u32 = 64;
/// Output rows per workgroup.
pub const ROWS_PER_GROUP: u32 = 4;
/// Largest batch tile (batch rows per workgroup).
pub const MAX_BATCH_TILE: u32 = 8;
const _: () = assert!(wgsl_contains(
    SRC,
    "@compute @workgroup_size(64)\nfn linear("
));
const _: () = assert!(wgsl_contains(SRC, "const WG: u32 = 64u;"));
const _: () = assert!(wgsl_contains(SRC, "const R: u32 = 4u;"));
const _: () = assert!(wgsl_contains(SRC, "const MT: u32 = 8u;"));
const _: () = assert!(wgsl_contains(
    SRC,
    "var<workgroup> red: array<vec4<f32>, WG * MT>;"
));
// Shared memory of the largest tile fits WebGPU's guaranteed 16 KiB.
const _: () = assert!(WG * MAX_BATCH_TILE * 16 <= 16384);
const _: () = assert!(wgsl_contains(
    SRC,
    "@binding(4) var<storage, read_write> y: array<f32>;"
));
const _: () = assert!(wgsl_contains(
    SRC,
    "@binding(5) var<storage, read> nw: array<vec4<f32>>;"
));
const _: () = assert!(wgsl_contains(
    SRC,
    "@binding(6) var<storage, read> nb: array<vec4<f32>>;"
));
const _: () = assert!(wgsl_contains(
    SRC,
    "@binding(7) var<storage, read> scale: array<f32>;"
));
const _: () = assert!(wgsl_contains(SRC, "@binding(8) var<uniform> p: Params"));

static KERNEL: Kernel = Kernel {
    name: "linear",
    source: SRC,
    entry: "linear",
    bindings: &[
        Binding::Read,      // w
        Binding::Read,      // s
        Binding::Read,      // x
        Binding::Read,      // bias
        Binding::ReadWrite, // y
        Binding::Read,      // nw
        Binding::Read,      // nb
        Binding::Read,      // scale
    ],
};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
struct Params {
    n: u32,
    k: u32,
    m: u32,
    row_offset: u32,
    chunks: u32,
    group_shift: u32,
    has_bias: u32,
    y_stride: u32,
    y_col: u32,
    x_stride: u32,
    out_mode: u32,
    eps: f32,
    _pad: u32,
}
crate::assert_params_fit!(Params);

fn err(message: impl Into<String>) -> GpuError {
    GpuError::Launch {
        kernel: "linear",
        message: message.into(),
    }
}

/// How a linear layer's weight is stored (published formats of spec §4, in their GPU layouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// f32 `[rows, K]`; K a multiple of 4.
    F32,
    /// bf16, two per u32 (element `2i` in the low half of word `i`); K a multiple of 8.
    Bf16,
    /// ggml Q8_0: blocks of 32 along K, `w = d·q`, int8 `q`, f16 `d`; K a multiple of 32.
    Q8_0,
    /// MLX affine group quantization, `w = s·q + β` per group of `group` weights along K,
    /// unsigned `bits`-bit codes; `bits ∈ {4, 8}`, `group ∈ {32, 64}`, K a multiple of `group`.
    Affine { bits: u32, group: u32 },
}

impl WeightFormat {
    /// MLX q4 as published by Kyutai (group 32).
    pub const MLX_Q4: Self = Self::Affine { bits: 4, group: 32 };
    /// MLX q8 as published by Kyutai (group 64).
    pub const MLX_Q8: Self = Self::Affine { bits: 8, group: 64 };

    /// Short name, e.g. `bf16`, `q8_0`, `q4g32`.
    pub fn name(&self) -> String {
        match self {
            Self::F32 => "f32".into(),
            Self::Bf16 => "bf16".into(),
            Self::Q8_0 => "q8_0".into(),
            Self::Affine { bits, group } => format!("q{bits}g{group}"),
        }
    }

    /// Weights per kernel step.
    fn step(&self) -> u32 {
        match self {
            Self::F32 => 4,
            _ => 8,
        }
    }

    /// The K granularity of the format.
    fn k_multiple(&self) -> u32 {
        match self {
            Self::F32 => 4,
            Self::Bf16 => 8,
            Self::Q8_0 => 32,
            Self::Affine { group, .. } => *group,
        }
    }

    fn define(&self) -> &'static str {
        match self {
            Self::F32 => "W_F32",
            Self::Bf16 => "W_BF16",
            Self::Q8_0 => "W_Q8_0",
            Self::Affine { bits: 4, .. } => "W_AFF4",
            Self::Affine { .. } => "W_AFF8",
        }
    }

    /// Check that this format supports rows of `k` weights.
    pub fn check_k(&self, k: u32) -> GpuResult<()> {
        if let Self::Affine { bits, group } = self {
            if !matches!(bits, 4 | 8) || !matches!(group, 32 | 64) {
                return Err(err(format!(
                    "affine weights need bits 4 or 8 and group 32 or 64, got bits {bits} group {group}"
                )));
            }
        }
        let q = self.k_multiple();
        if k == 0 || !k.is_multiple_of(q) {
            return Err(err(format!(
                "{} weights need K to be a positive multiple of {q}, got {k}",
                self.name()
            )));
        }
        Ok(())
    }

    /// u32 words of the code/value stream for `rows × k` weights.
    pub fn data_words(&self, rows: u32, k: u32) -> u64 {
        let e = rows as u64 * k as u64;
        match self {
            Self::F32 => e,
            Self::Bf16 => e / 2,
            Self::Q8_0 => e / 4,
            Self::Affine { bits, .. } => e * *bits as u64 / 32,
        }
    }

    /// u32 words of the scale stream (0 for f32 and bf16).
    pub fn scale_words(&self, rows: u32, k: u32) -> u64 {
        let e = rows as u64 * k as u64;
        match self {
            Self::F32 | Self::Bf16 => 0,
            Self::Q8_0 => (e / 32).div_ceil(2),
            Self::Affine { group, .. } => e / *group as u64,
        }
    }

    /// Bytes the GPU reads for `rows × k` weights (both streams).
    pub fn gpu_bytes(&self, rows: u32, k: u32) -> u64 {
        match self {
            // Q8_0 scales: exactly 2 bytes per block.
            Self::Q8_0 => 4 * self.data_words(rows, k) + rows as u64 * k as u64 / 16,
            _ => 4 * (self.data_words(rows, k) + self.scale_words(rows, k)),
        }
    }
}

/// A weight in its GPU layout, on the host: what [`HostLinear::upload`] writes, built from the
/// published bytes (or quantized from f32 for tests).
#[derive(Debug, Clone)]
pub struct HostLinear {
    pub format: WeightFormat,
    pub rows: u32,
    pub k: u32,
    /// Codes / values (see [`WeightFormat`]).
    pub data: Vec<u32>,
    /// Q8_0: f16 scales two per word; affine: `bf16 scale | bf16 bias << 16` per group; else empty.
    pub scales: Vec<u32>,
}

fn check_len(what: &str, got: usize, want: u64) -> GpuResult<()> {
    if got as u64 != want {
        return Err(err(format!("{what}: got {got} bytes, want {want}")));
    }
    Ok(())
}

impl HostLinear {
    /// f32 weights `[rows, k]`.
    pub fn from_f32(w: &[f32], rows: u32, k: u32) -> GpuResult<Self> {
        WeightFormat::F32.check_k(k)?;
        check_len("f32 weight", w.len() * 4, rows as u64 * k as u64 * 4)?;
        Ok(Self {
            format: WeightFormat::F32,
            rows,
            k,
            data: bytemuck::cast_slice(w).to_vec(),
            scales: Vec::new(),
        })
    }

    /// Published bf16 bytes (little-endian) of a `[rows, k]` tensor.
    pub fn from_bf16_bytes(bytes: &[u8], rows: u32, k: u32) -> GpuResult<Self> {
        WeightFormat::Bf16.check_k(k)?;
        check_len("bf16 weight", bytes.len(), rows as u64 * k as u64 * 2)?;
        Ok(Self {
            format: WeightFormat::Bf16,
            rows,
            k,
            data: bytes_to_words(bytes),
            scales: Vec::new(),
        })
    }

    /// Published ggml Q8_0 blocks (34 bytes: f16 `d`, then 32 int8) of a `[rows, k]` tensor.
    pub fn from_q8_0_blocks(blocks: &[u8], rows: u32, k: u32) -> GpuResult<Self> {
        WeightFormat::Q8_0.check_k(k)?;
        let nb = rows as usize * k as usize / 32;
        check_len("Q8_0 weight", blocks.len(), nb as u64 * 34)?;
        let mut data = Vec::with_capacity(nb * 8);
        let mut scales = vec![0u32; nb.div_ceil(2)];
        for (f, b) in blocks.chunks_exact(34).enumerate() {
            let d = u16::from_le_bytes([b[0], b[1]]) as u32;
            scales[f / 2] |= d << (16 * (f % 2));
            data.extend(
                b[2..]
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        Ok(Self {
            format: WeightFormat::Q8_0,
            rows,
            k,
            data,
            scales,
        })
    }

    /// Published MLX affine tensors of a `[rows, k]` weight: `weight` u32 `[rows, k·bits/32]`,
    /// `scales` and `biases` bf16 `[rows, k/group]`, all little-endian bytes.
    pub fn from_mlx_bytes(
        weight: &[u8],
        scales: &[u8],
        biases: &[u8],
        rows: u32,
        k: u32,
        bits: u32,
        group: u32,
    ) -> GpuResult<Self> {
        let s: Vec<u16> = bytes_to_u16(scales);
        let b: Vec<u16> = bytes_to_u16(biases);
        Self::from_mlx(
            &MlxAffine {
                bits,
                group,
                weight: bytes_to_words(weight),
                scales: s,
                biases: b,
            },
            rows,
            k,
        )
    }

    /// MLX affine tensors already in memory (see [`MlxAffine`]).
    pub fn from_mlx(q: &MlxAffine, rows: u32, k: u32) -> GpuResult<Self> {
        let format = WeightFormat::Affine {
            bits: q.bits,
            group: q.group,
        };
        format.check_k(k)?;
        let groups = rows as u64 * k as u64 / q.group as u64;
        check_len(
            "MLX weight",
            q.weight.len() * 4,
            4 * format.data_words(rows, k),
        )?;
        check_len("MLX scales", q.scales.len() * 2, groups * 2)?;
        check_len("MLX biases", q.biases.len() * 2, groups * 2)?;
        Ok(Self {
            format,
            rows,
            k,
            data: q.weight.clone(),
            scales: q
                .scales
                .iter()
                .zip(&q.biases)
                .map(|(&s, &b)| s as u32 | (b as u32) << 16)
                .collect(),
        })
    }

    /// Quantize (or convert) f32 weights `[rows, k]` into `format` the way the published
    /// checkpoints were made: bf16 round-to-nearest-even, ggml's Q8_0 reference quantizer, MLX's
    /// affine quantizer.
    pub fn quantize(format: WeightFormat, w: &[f32], rows: u32, k: u32) -> GpuResult<Self> {
        format.check_k(k)?;
        check_len("f32 weight", w.len() * 4, rows as u64 * k as u64 * 4)?;
        match format {
            WeightFormat::F32 => Self::from_f32(w, rows, k),
            WeightFormat::Bf16 => {
                let b: Vec<u8> = w
                    .iter()
                    .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
                    .collect();
                Self::from_bf16_bytes(&b, rows, k)
            }
            WeightFormat::Q8_0 => Self::from_q8_0_blocks(&quant::q8_0_quantize(w, k)?, rows, k),
            WeightFormat::Affine { bits, group } => {
                Self::from_mlx(&quant::mlx_quantize(w, k, bits, group)?, rows, k)
            }
        }
    }

    /// The f32 weights this layout represents, `[rows, k]` (host dequantization, from the GPU layout).
    pub fn dequantize(&self) -> Vec<f32> {
        let (rows, k) = (self.rows as usize, self.k as usize);
        match self.format {
            WeightFormat::F32 => bytemuck::cast_slice(&self.data).to_vec(),
            WeightFormat::Bf16 => self
                .data
                .iter()
                .flat_map(|&w| [f32::from_bits(w << 16), f32::from_bits(w & 0xffff_0000)])
                .collect(),
            WeightFormat::Q8_0 => {
                let mut out = Vec::with_capacity(rows * k);
                for (f, blk) in self.data.chunks_exact(8).enumerate() {
                    let d = f16::from_bits((self.scales[f / 2] >> (16 * (f % 2))) as u16).to_f32();
                    for &wd in blk {
                        for j in 0..4 {
                            out.push(d * ((wd >> (8 * j)) as u8 as i8) as f32);
                        }
                    }
                }
                out
            }
            WeightFormat::Affine { bits, group } => {
                let per_word = 32 / bits as usize;
                let mask = (1u32 << bits) - 1;
                let mut out = Vec::with_capacity(rows * k);
                for (i, &wd) in self.data.iter().enumerate() {
                    for j in 0..per_word {
                        let e = i * per_word + j;
                        let sb = self.scales[e / group as usize];
                        let (s, b) = (f32::from_bits(sb << 16), f32::from_bits(sb & 0xffff_0000));
                        out.push(s * ((wd >> (bits as usize * j)) & mask) as f32 + b);
                    }
                }
                out
            }
        }
    }

    /// Upload both streams and wrap them as [`LinearWeights`]. A weight larger than the device's
    /// storage-binding limit is split into row ranges (multiples of 4 rows), one buffer set each.
    pub fn upload(&self, ctx: &Context, label: &str) -> GpuResult<LinearWeights> {
        let max = ctx.caps().max_storage_binding;
        let per_row = (4 * self.format.data_words(1, self.k))
            .max(4 * self.format.scale_words(4, self.k).div_ceil(4));
        self.upload_split(ctx, label, (max / per_row).min(u32::MAX as u64) as u32)
    }

    /// [`HostLinear::upload`] with at most `max_rows` rows per part (rounded down to a multiple
    /// of 4, at least 4).
    pub fn upload_split(
        &self,
        ctx: &Context,
        label: &str,
        max_rows: u32,
    ) -> GpuResult<LinearWeights> {
        let max_rows = (max_rows / 4 * 4).max(4);
        let (dw, sw) = (
            self.format.data_words(1, self.k) as usize,
            self.format.scale_words(4, self.k) as usize / 4,
        );
        let mut parts = Vec::new();
        let mut r0 = 0u32;
        while r0 < self.rows {
            let rows = max_rows.min(self.rows - r0);
            let tag = if rows == self.rows {
                String::new()
            } else {
                format!(" rows {r0}..{}", r0 + rows)
            };
            let (a, b) = (r0 as usize, (r0 + rows) as usize);
            let data = ctx.upload(&format!("{label} w{tag}"), &self.data[a * dw..b * dw])?;
            let scales = if self.scales.is_empty() {
                None
            } else {
                // Q8_0 packs two block scales per word: parts start on an even block (4 rows).
                let s = if self.format == WeightFormat::Q8_0 {
                    let nb = self.k as usize / 32;
                    &self.scales[a * nb / 2..(b * nb).div_ceil(2)]
                } else {
                    &self.scales[a * sw..b * sw]
                };
                Some(ctx.upload(&format!("{label} s{tag}"), s)?)
            };
            parts.push((rows, data, scales));
            r0 += rows;
        }
        LinearWeights::from_parts(self.format, self.k, parts)
    }
}

fn bytes_to_words(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

fn bytes_to_u16(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// MLX affine-quantized tensors as published: codes u32 `[rows, k·bits/32]` (low bits first),
/// scales and biases as bf16 bit patterns `[rows, k/group]`.
#[derive(Debug, Clone)]
pub struct MlxAffine {
    pub bits: u32,
    pub group: u32,
    pub weight: Vec<u32>,
    pub scales: Vec<u16>,
    pub biases: Vec<u16>,
}

/// Quantizers and dequantizers on the *published* layouts (used by tests and tools).
pub mod quant {
    use half::{bf16, f16};

    use super::{MlxAffine, WeightFormat};
    use crate::gpu::GpuResult;

    /// ggml `quantize_row_q8_0_ref` on rows of `k` weights: per 32 weights, `d = max|w| / 127`,
    /// `q = round(w / d)` (half away from zero), stored as f16 `d` + 32 int8 (34 bytes).
    pub fn q8_0_quantize(w: &[f32], k: u32) -> GpuResult<Vec<u8>> {
        WeightFormat::Q8_0.check_k(k)?;
        rows_of(w, k)?;
        let mut out = Vec::with_capacity(w.len() / 32 * 34);
        for blk in w.chunks_exact(32) {
            let amax = blk.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
            out.extend(blk.iter().map(|&v| (v * id).round() as i8 as u8));
        }
        Ok(out)
    }

    /// Dequantize published Q8_0 blocks: `w = f16 d · q`.
    pub fn q8_0_dequantize(blocks: &[u8]) -> Vec<f32> {
        blocks
            .chunks_exact(34)
            .flat_map(|b| {
                let d = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                b[2..].iter().map(move |&q| d * q as i8 as f32)
            })
            .collect()
    }

    /// MLX `affine_quantize` on rows of `k` weights: per group, the scale spans `[min, max]` over
    /// `2^bits − 1` steps with the sign and edge chosen so that the larger-magnitude end is exact
    /// and zero stays representable; `q = round((w − β) / s)` clamped; `s`, `β` stored as bf16.
    pub fn mlx_quantize(w: &[f32], k: u32, bits: u32, group: u32) -> GpuResult<MlxAffine> {
        WeightFormat::Affine { bits, group }.check_k(k)?;
        rows_of(w, k)?;
        let n_bins = ((1u32 << bits) - 1) as f32;
        let per_word = 32 / bits as usize;
        let mut codes = Vec::with_capacity(w.len());
        let (mut scales, mut biases) = (Vec::new(), Vec::new());
        for g in w.chunks_exact(group as usize) {
            let (lo, hi) = g
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let mut scale = ((hi - lo) / n_bins).max(1e-7);
            let side = lo.abs() > hi.abs();
            if !side {
                scale = -scale;
            }
            let edge = if side { lo } else { hi };
            let q0 = (edge / scale).round();
            let (scale, bias) = if q0 == 0.0 {
                (scale, 0.0)
            } else {
                (edge / q0, edge)
            };
            scales.push(bf16::from_f32(scale).to_bits());
            biases.push(bf16::from_f32(bias).to_bits());
            codes.extend(
                g.iter()
                    .map(|&v| ((v - bias) / scale).round().clamp(0.0, n_bins) as u32),
            );
        }
        let weight = codes
            .chunks_exact(per_word)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u32, |a, (j, &q)| a | q << (bits as usize * j))
            })
            .collect();
        Ok(MlxAffine {
            bits,
            group,
            weight,
            scales,
            biases,
        })
    }

    fn rows_of(w: &[f32], k: u32) -> GpuResult<()> {
        if !w.len().is_multiple_of(k as usize) {
            return Err(super::err(format!(
                "{} weights are not whole rows of {k}",
                w.len()
            )));
        }
        Ok(())
    }

    /// Dequantize published MLX affine tensors (`mx.dequantize`): `w = s·q + β`.
    pub fn mlx_dequantize(q: &MlxAffine) -> Vec<f32> {
        let per_word = 32 / q.bits as usize;
        let mask = (1u32 << q.bits) - 1;
        let mut out = Vec::with_capacity(q.weight.len() * per_word);
        for (i, &wd) in q.weight.iter().enumerate() {
            for j in 0..per_word {
                let g = (i * per_word + j) / q.group as usize;
                let s = bf16::from_bits(q.scales[g]).to_f32();
                let b = bf16::from_bits(q.biases[g]).to_f32();
                out.push(s * ((wd >> (q.bits as usize * j)) & mask) as f32 + b);
            }
        }
        out
    }
}

/// One row range of a weight that lives in its own buffers (weights larger than the GPU's
/// storage-binding limit are split by rows).
#[derive(Debug, Clone)]
struct Part {
    /// First row of the tensor held by this part.
    first_row: u32,
    rows: u32,
    data: GpuBuffer,
    scales: Option<GpuBuffer>,
}

/// A linear layer's weight on the GPU: format, shape, and the buffers of its streams (one set,
/// or several row ranges when the weight exceeds the storage-binding limit). Cheap to clone
/// (buffers are shared handles). Rows `row_offset .. row_offset + n` of the `[total_rows, k]`
/// tensor are used (see [`LinearWeights::rows`]).
#[derive(Debug, Clone)]
pub struct LinearWeights {
    format: WeightFormat,
    total_rows: u32,
    row_offset: u32,
    n: u32,
    k: u32,
    parts: Vec<Part>,
}

impl LinearWeights {
    /// Wrap buffers that already hold a `[rows, k]` weight in `format`'s GPU layout (e.g. written
    /// by a streaming uploader). Checks the buffer sizes.
    pub fn new(
        format: WeightFormat,
        rows: u32,
        k: u32,
        data: GpuBuffer,
        scales: Option<GpuBuffer>,
    ) -> GpuResult<Self> {
        Self::from_parts(format, k, vec![(rows, data, scales)])
    }

    /// A weight stored as consecutive row ranges `(rows, data, scales)`, each in `format`'s GPU
    /// layout in its own buffers (the first range holds rows `0 .. rows₀`, the next the following
    /// rows, …). For Q8_0 every range but the last must have an even number of rows times K/32
    /// blocks (so that scale pairs are not split); [`HostLinear::upload`] splits this way.
    pub fn from_parts(
        format: WeightFormat,
        k: u32,
        parts: Vec<(u32, GpuBuffer, Option<GpuBuffer>)>,
    ) -> GpuResult<Self> {
        format.check_k(k)?;
        let mut out = Vec::with_capacity(parts.len());
        let mut first_row = 0u32;
        for (rows, data, scales) in parts {
            if rows == 0 {
                return Err(err("a weight part needs at least one row"));
            }
            let need = 4 * format.data_words(rows, k);
            if data.size() < need {
                return Err(err(format!(
                    "{} weight [{rows}, {k}] needs {need} bytes, buffer '{}' has {}",
                    format.name(),
                    data.label(),
                    data.size()
                )));
            }
            let sneed = 4 * format.scale_words(rows, k);
            match (&scales, sneed) {
                (None, 0) => {}
                (Some(s), n) if n > 0 && s.size() >= n => {}
                (s, n) => {
                    return Err(err(format!(
                        "{} weight [{rows}, {k}] needs a scale buffer of {n} bytes, got {:?}",
                        format.name(),
                        s.as_ref().map(|b| b.size())
                    )))
                }
            }
            if format == WeightFormat::Q8_0
                && !out.is_empty()
                && !(out.last().map_or(0, |p: &Part| p.rows as u64) * (k as u64 / 32))
                    .is_multiple_of(2)
            {
                return Err(err(
                    "Q8_0 parts before the last need an even number of blocks (rows · K/32)",
                ));
            }
            out.push(Part {
                first_row,
                rows,
                data,
                scales,
            });
            first_row = first_row
                .checked_add(rows)
                .ok_or_else(|| err("too many rows"))?;
        }
        if out.is_empty() {
            return Err(err("a weight needs at least one part"));
        }
        Ok(Self {
            format,
            total_rows: first_row,
            row_offset: 0,
            n: first_row,
            k,
            parts: out,
        })
    }

    /// Rows `start .. start + count` of this weight (relative to its current view), sharing the
    /// buffers: a block of a stacked weight without a copy.
    pub fn rows(&self, start: u32, count: u32) -> GpuResult<Self> {
        if count == 0 || start as u64 + count as u64 > self.n as u64 {
            return Err(err(format!(
                "row block {start}..{} outside the weight's {} rows",
                start as u64 + count as u64,
                self.n
            )));
        }
        let mut w = self.clone();
        w.row_offset += start;
        w.n = count;
        Ok(w)
    }

    pub fn format(&self) -> WeightFormat {
        self.format
    }
    /// Output features (rows used).
    pub fn n(&self) -> u32 {
        self.n
    }
    /// Input features.
    pub fn k(&self) -> u32 {
        self.k
    }
    /// First row used of the underlying tensor.
    pub fn row_offset(&self) -> u32 {
        self.row_offset
    }
    /// Rows of the underlying tensor.
    pub fn total_rows(&self) -> u32 {
        self.total_rows
    }
    /// Number of buffer sets (dispatches of a full-weight [`linear`]).
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }
    /// Bytes of weight data one [`linear`] call reads (for bandwidth figures).
    pub fn bytes(&self) -> u64 {
        self.format.gpu_bytes(self.n, self.k)
    }
}

/// What [`linear_with`] applies to `x` as it loads it (per batch row, in f32, inside the kernel).
#[derive(Clone, Copy, Debug)]
pub enum LinearInput<'a> {
    /// `x` `[m, K]` as is.
    Plain,
    /// RMSNorm of each row of `x` `[m, K]`: `x·weight / sqrt(mean(x²) + eps)` (Moshi's
    /// `rms_norm_f32`); `weight` `[K]`.
    RmsNorm { weight: View<'a>, eps: f32 },
    /// LayerNorm of each row of `x` `[m, K]` (`torch.nn.LayerNorm`, biased variance):
    /// `(x − mean)/sqrt(var + eps)·weight + bias`; `weight`, `bias` `[K]`.
    LayerNorm {
        weight: View<'a>,
        bias: View<'a>,
        eps: f32,
    },
    /// `x` is `[m, 2K]`: the input is `silu(x[:, :K]) · x[:, K:]` (Moshi's gated FFN).
    SiluGate,
    /// The exact (erf) GELU of `x` `[m, K]` (Mimi's FFN).
    GeluErf,
}

/// How [`linear_with`] writes its result `v = W·X (+ bias)` into `y`.
#[derive(Clone, Copy, Debug)]
pub enum LinearOutput<'a> {
    /// `y = v`.
    Store,
    /// `y += v` (a residual add).
    Accumulate,
    /// `y[m, n] += scale[n] · v[m, n]` (Mimi's layer scale); `scale` `[N]`, indexed like `bias`.
    AccumulateScaled { scale: View<'a> },
}

/// Options of [`linear_with`]: bias, input transform and output mode.
#[derive(Clone, Copy, Debug)]
pub struct LinearOpts<'a> {
    /// `[N]`, added to `W·X` (indexed by the output column, not offset by a row block).
    pub bias: Option<View<'a>>,
    pub input: LinearInput<'a>,
    pub out: LinearOutput<'a>,
}

impl Default for LinearOpts<'_> {
    fn default() -> Self {
        Self {
            bias: None,
            input: LinearInput::Plain,
            out: LinearOutput::Store,
        }
    }
}

impl<'a> LinearOpts<'a> {
    /// Plain input, stored output, with an optional bias (what [`linear`] does).
    pub fn store(bias: Option<View<'a>>) -> Self {
        Self {
            bias,
            ..Self::default()
        }
    }
}

/// `y[m, n] = Σ_k x[m, k] · W[n, k] (+ bias[n])` for `m` batch rows: `x` `[m, K]`, `y` `[m, N]`,
/// `bias` `[N]` (indexed by the output row, not offset by a row block), all f32. `y` must be a
/// different buffer from `x` and `bias`. `m == 0` records nothing. One dispatch per weight part
/// that the selected rows touch (one, unless the weight exceeds the storage-binding limit).
/// The same as [`linear_with`] with [`LinearOpts::store`].
pub fn linear(
    rec: &mut Recorder,
    w: &LinearWeights,
    x: View,
    y: View,
    m: u32,
    bias: Option<View>,
) -> GpuResult<()> {
    linear_with(rec, w, x, y, m, &LinearOpts::store(bias))
}

/// `y (=, +=, += scale ⊙) W · X(x) (+ bias)` for `m` batch rows, `X` the input transform of
/// `opts.input` ([`LinearInput`]), the write of `opts.out` ([`LinearOutput`]). `x` is `[m, K]`
/// (`[m, 2K]` for [`LinearInput::SiluGate`]), `y` `[m, N]`, all f32. `y` must be a different
/// buffer from every other view. Norm statistics are computed per batch row inside every
/// workgroup, so a norm, an activation or a residual add costs no dispatch of its own. `m == 0`
/// records nothing. One dispatch per weight part that the selected rows touch.
pub fn linear_with(
    rec: &mut Recorder,
    w: &LinearWeights,
    x: View,
    y: View,
    m: u32,
    opts: &LinearOpts,
) -> GpuResult<()> {
    let (n, k) = (w.n, w.k);
    if m == 0 {
        return Ok(());
    }
    let need = |v: &View, what: &str, floats: u64| -> GpuResult<()> {
        if v.size < floats * 4 {
            return Err(err(format!(
                "{what} needs {} bytes ({floats} f32), view has {}",
                floats * 4,
                v.size
            )));
        }
        Ok(())
    };
    let (input_define, norm_w, norm_b, eps) = match opts.input {
        LinearInput::Plain => ("IN_PLAIN", None, None, 0.0),
        LinearInput::RmsNorm { weight, eps } => ("IN_RMS", Some(weight), None, eps),
        LinearInput::LayerNorm { weight, bias, eps } => ("IN_LAYER", Some(weight), Some(bias), eps),
        LinearInput::SiluGate => ("IN_SILU", None, None, 0.0),
        LinearInput::GeluErf => ("IN_GELU", None, None, 0.0),
    };
    let (out_mode, scale) = match opts.out {
        LinearOutput::Store => (0, None),
        LinearOutput::Accumulate => (1, None),
        LinearOutput::AccumulateScaled { scale } => (2, Some(scale)),
    };
    if !eps.is_finite() || eps < 0.0 {
        return Err(err(format!("norm eps {eps} must be finite and ≥ 0")));
    }
    let x_cols = match opts.input {
        LinearInput::SiluGate => 2 * k as u64,
        _ => k as u64,
    };
    let reads = [
        ("x", Some(x)),
        ("bias", opts.bias),
        ("norm weight", norm_w),
        ("norm bias", norm_b),
        ("scale", scale),
    ];
    for (what, v) in reads {
        if v.is_some_and(|v| v.buffer.id() == y.buffer.id()) {
            return Err(err(format!(
                "y must be a different buffer from {what} (a written binding cannot alias a read one)"
            )));
        }
    }
    need(&x, "x", m as u64 * x_cols)?;
    need(&y, "y", m as u64 * n as u64)?;
    if let Some(b) = &opts.bias {
        need(b, "bias", n as u64)?;
    }
    if let Some(s) = &scale {
        need(s, "scale", n as u64)?;
    }
    if let Some(v) = &norm_w {
        need(v, "norm weight", k as u64)?;
    }
    if let Some(v) = &norm_b {
        need(v, "norm bias", k as u64)?;
    }
    let caps = rec.ctx().caps();
    let max_groups = caps.max_workgroups_per_dimension;
    let max_binding = caps.max_storage_binding;
    let mt = match m {
        1 => 1,
        2 => 2,
        3 | 4 => 4,
        _ => MAX_BATCH_TILE,
    };
    let batch_tiles = m.div_ceil(mt);
    if batch_tiles > max_groups {
        return Err(err(format!(
            "M = {m} needs {batch_tiles} batch tiles, more than {max_groups}"
        )));
    }
    let mut variant = Variant::none()
        .define(w.format.define())
        .define(input_define);
    match mt {
        2 => variant = variant.define("MT2"),
        4 => variant = variant.define("MT4"),
        8 => variant = variant.define("MT8"),
        _ => {}
    }
    let (lo, hi) = (w.row_offset, w.row_offset + n);
    for part in w.parts.iter() {
        let (a, b) = (lo.max(part.first_row), hi.min(part.first_row + part.rows));
        if a >= b {
            continue;
        }
        for buf in std::iter::once(&part.data).chain(part.scales.iter()) {
            if buf.size() > max_binding {
                return Err(err(format!(
                    "weight buffer '{}' ({} bytes) exceeds this GPU's storage binding limit of {} bytes: split the weight into parts",
                    buf.label(),
                    buf.size(),
                    max_binding
                )));
            }
        }
        let rows = b - a;
        let mut groups = super::grid_1d(rows.div_ceil(ROWS_PER_GROUP), max_groups);
        groups[2] = batch_tiles;
        let p = Params {
            n: rows,
            k,
            m,
            row_offset: a - part.first_row,
            chunks: k / w.format.step(),
            group_shift: match w.format {
                WeightFormat::Affine { group: 64, .. } => 1,
                _ => 0,
            },
            has_bias: opts.bias.is_some() as u32,
            y_stride: n,
            y_col: a - lo,
            x_stride: (x_cols / 4) as u32,
            out_mode,
            eps,
            _pad: 0,
        };
        let data = part.data.view();
        let scales = part.scales.as_ref().map(|s| s.view()).unwrap_or(data);
        rec.launch(
            &KERNEL,
            &variant,
            &[
                data,
                scales,
                x,
                opts.bias.unwrap_or(x),
                y,
                norm_w.unwrap_or(x),
                norm_b.unwrap_or(x),
                scale.unwrap_or(x),
            ],
            &p,
            groups,
        )?;
    }
    Ok(())
}

/// Plain Rust references for the tests.
pub mod reference {
    /// The input transform of [`super::LinearInput`] on host slices.
    #[derive(Clone, Copy, Debug)]
    pub enum Input<'a> {
        Plain,
        RmsNorm {
            weight: &'a [f32],
            eps: f32,
        },
        LayerNorm {
            weight: &'a [f32],
            bias: &'a [f32],
            eps: f32,
        },
        SiluGate,
        GeluErf,
    }

    /// The `[m, k]` matrix the weights multiply: `x` (`[m, k]`, or `[m, 2k]` for
    /// [`Input::SiluGate`]) transformed per row, in f64 (RMSNorm and LayerNorm as
    /// [`crate::kernels::norm::reference`]; GELU with the exact erf).
    pub fn input(x: &[f32], m: usize, k: usize, how: Input) -> Vec<f32> {
        use crate::kernels::{elementwise, norm};
        match how {
            Input::Plain => x[..m * k].to_vec(),
            Input::RmsNorm { weight, eps } => {
                norm::reference::rms_norm(&x[..m * k], weight, k, eps)
            }
            Input::LayerNorm { weight, bias, eps } => {
                norm::reference::layer_norm(&x[..m * k], weight, bias, k, eps)
            }
            Input::SiluGate => {
                let mut y = Vec::with_capacity(m * k);
                for r in 0..m {
                    for j in 0..k {
                        let g = x[r * 2 * k + j] as f64;
                        let u = x[r * 2 * k + k + j] as f64;
                        y.push((g / (1.0 + (-g).exp()) * u) as f32);
                    }
                }
                y
            }
            Input::GeluErf => elementwise::reference::gelu_erf(&x[..m * k]),
        }
    }

    /// Write `v` into `y` as [`super::LinearOutput`] does: store (`accumulate == false`),
    /// `y += v`, or `y[m, n] += scale[n]·v[m, n]` when `scale` is given (then `accumulate` is
    /// implied). In f64.
    pub fn output(y: &mut [f32], v: &[f32], n: usize, accumulate: bool, scale: Option<&[f32]>) {
        for (i, (yo, &vi)) in y.iter_mut().zip(v).enumerate() {
            *yo = match scale {
                Some(s) => (*yo as f64 + s[i % n] as f64 * vi as f64) as f32,
                None if accumulate => (*yo as f64 + vi as f64) as f32,
                None => vi,
            };
        }
    }

    /// `y[m, n] = Σ_k x[m, k] · w[n, k] + bias[n]`, accumulated in f64.
    pub fn linear(
        x: &[f32],
        w: &[f32],
        bias: Option<&[f32]>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            let xr = &x[i * k..(i + 1) * k];
            for j in 0..n {
                let wr = &w[j * k..(j + 1) * k];
                let s: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
                y[i * n + j] = (s + bias.map_or(0.0, |b| b[j] as f64)) as f32;
            }
        }
        y
    }

    /// `Σ_k |x[m, k] · w[n, k]|` for every output: the scale of its rounding error.
    pub fn abs_linear(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            let xr = &x[i * k..(i + 1) * k];
            for j in 0..n {
                let wr = &w[j * k..(j + 1) * k];
                y[i * n + j] = xr
                    .iter()
                    .zip(wr)
                    .map(|(&a, &b)| (a as f64 * b as f64).abs())
                    .sum::<f64>() as f32;
            }
        }
        y
    }
}
