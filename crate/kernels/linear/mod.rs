//! `Linear`: `y[m, n] = Σ_k x[m, k] · W[n, k] (+ bias[n])`, i.e. `y = x · Wᵀ` with `W` in PyTorch
//! `[out = N, in = K]` row-major layout, for f32, bf16, Q8_0 (ggml), MLX affine 4/8-bit and
//! PyTorch int8 row-wise (bitsandbytes) weights (`shaders/linear.wgsl`). Built for small M (the LM's batch-1 gemv is the hot path); any M works.
//!
//! Layouts: `x` `[M, K]` f32 row-major, `y` `[M, N]` f32 row-major, `bias` `[N]` f32. The weight
//! streams on the GPU are those of [`crate::weights::HostLinear`] (one per
//! [`crate::weights::WeightFormat`]): f32 values, bf16 pairs in u32 words, Q8_0 int8 codes plus
//! f16 scales two per word (the kernel reads them with `unpack2x16float`), MLX affine code words
//! plus one `bf16 scale | bf16 bias << 16` word per group (`w = s·q + β`), int8 row-wise codes
//! plus one f32 `scb` per row (`y = scb/127 · Σ q·x`, the row scale applied to the sum). [`LinearWeights`]
//! (`buffers.rs`) holds them on the GPU and uploads them from the host.
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

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};
use crate::weights::WeightFormat;

mod buffers;
pub mod reference;

pub use buffers::LinearWeights;

const SRC: &str = include_str!("../../../shaders/linear.wgsl");
/// Invocations per workgroup (injected into the WGSL as `WG`).
pub const WG: u32 = 64;
/// Output rows per workgroup (injected as `R`; one vec4 lane each, so 4).
pub const ROWS_PER_GROUP: u32 = 4;
/// Largest batch tile (batch rows per workgroup; injected as `MAX_MT`, the `MT8` tile).
pub const MAX_BATCH_TILE: u32 = 8;
// Shared memory of the largest tile fits WebGPU's guaranteed 16 KiB.
const _: () = assert!(WG * MAX_BATCH_TILE * 16 <= 16384);
const _: () = assert!(WG.is_power_of_two());

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
    defines: &[],
    consts: &[
        ("WG", WG),
        ("R", ROWS_PER_GROUP),
        ("MAX_MT", MAX_BATCH_TILE),
    ],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

crate::params_struct! {
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
}

fn err(message: impl Into<String>) -> GpuError {
    GpuError::Launch {
        kernel: "linear",
        message: message.into(),
    }
}

/// Weights per kernel step of `format`.
fn step(format: WeightFormat) -> u32 {
    match format {
        WeightFormat::F32 => 4,
        _ => 8,
    }
}

/// The WGSL defines that select a weight format's loads ([`define`]).
const FORMAT_DEFINES: [&str; 6] = ["W_F32", "W_BF16", "W_Q8_0", "W_AFF4", "W_AFF8", "W_I8ROW"];
/// The WGSL defines that select what is applied to `x` as it is loaded ([`LinearInput`]).
const INPUT_DEFINES: [&str; 5] = ["IN_PLAIN", "IN_RMS", "IN_LAYER", "IN_SILU", "IN_GELU"];
/// The batch tiles (`MT`) and the defines that select them.
const TILES: [(u32, Option<&str>); 4] = [
    (1, None),
    (2, Some("MT2")),
    (4, Some("MT4")),
    (MAX_BATCH_TILE, Some("MT8")),
];

/// The WGSL define that selects `format`'s weight loads.
fn define(format: WeightFormat) -> &'static str {
    FORMAT_DEFINES[match format {
        WeightFormat::F32 => 0,
        WeightFormat::Bf16 => 1,
        WeightFormat::Q8_0 => 2,
        WeightFormat::Affine { bits: 4, .. } => 3,
        WeightFormat::Affine { .. } => 4,
        WeightFormat::Int8Row => 5,
    }]
}

/// The variant for a weight format's define, an input define and a batch tile of [`TILES`].
fn variant(format_define: &'static str, input_define: &'static str, mt: u32) -> Variant {
    let mut v = Variant::none().define(format_define).define(input_define);
    if let Some(&(_, Some(d))) = TILES.iter().find(|(t, _)| *t == mt) {
        v = v.define(d);
    }
    v
}

/// The kernel variants this module launches (for `tests/reflect.rs`): every weight format ×
/// input transform × batch tile.
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    let mut out = Vec::new();
    for f in FORMAT_DEFINES {
        for i in INPUT_DEFINES {
            for (mt, _) in TILES {
                out.push((&KERNEL, variant(f, i, mt)));
            }
        }
    }
    out
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
        LinearInput::Plain => (INPUT_DEFINES[0], None, None, 0.0),
        LinearInput::RmsNorm { weight, eps } => (INPUT_DEFINES[1], Some(weight), None, eps),
        LinearInput::LayerNorm { weight, bias, eps } => {
            (INPUT_DEFINES[2], Some(weight), Some(bias), eps)
        }
        LinearInput::SiluGate => (INPUT_DEFINES[3], None, None, 0.0),
        LinearInput::GeluErf => (INPUT_DEFINES[4], None, None, 0.0),
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
    let variant = variant(define(w.format), input_define, mt);
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
            chunks: k / step(w.format),
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
