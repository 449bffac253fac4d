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
//!
//! [`qkv_attention`] (`qkv_attn.rs`, the `qkv_attention` entry point of the same WGSL) runs a
//! whole attention block but the out-projection in one launch, one workgroup per head, for
//! few heads and short windows (Mimi's codec transformers).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};
use crate::weights::WeightFormat;

mod buffers;
mod mlp_split;
mod qkv_attn;
pub mod reference;
mod res_linear;

pub use buffers::LinearWeights;
pub use mlp_split::{mlp_split, MlpAct, MS_BLOCK, MS_MAX_ROWS};
pub use qkv_attn::{
    qkv_attention, qkv_attention_res, QkvAttn, ResidualIn, QA_LANES, QA_MAX_HEAD_DIM, QA_MAX_KEYS,
    QA_MAX_ROWS, QA_RES_MAX,
};
pub use res_linear::{linear_res, RL_MAX_ROWS, RL_ROWS};

const SRC: &str = include_str!("../../../shaders/linear.wgsl");
/// The transformer-layer entry points (`qkv_attention`, `mlp_split`, `res_linear`) on the same shared core
/// (`shaders/common/linear_core.wgsl`).
const LAYER_SRC: &str = include_str!("../../../shaders/layer.wgsl");
/// Invocations per workgroup (injected into the WGSL as `WG`).
pub const WG: u32 = 64;
/// Output rows per workgroup (injected as `R`; one vec4 lane each, so 4).
pub const ROWS_PER_GROUP: u32 = 4;
/// Largest batch tile (batch rows per workgroup; injected as `MAX_MT`, the `MT8` tile).
pub const MAX_BATCH_TILE: u32 = 8;
// Shared memory of the largest tile fits WebGPU's guaranteed 16 KiB.
const _: () = assert!(WG * MAX_BATCH_TILE * 16 <= 16384);
const _: () = assert!(WG.is_power_of_two());

/// The constants injected into `linear.wgsl` (its three kernels) and `layer.wgsl` (with more).
const CONSTS: &[(&str, u32)] = &[
    ("WG", WG),
    ("R", ROWS_PER_GROUP),
    ("MAX_MT", MAX_BATCH_TILE),
    ("ATTN_MAX_SCORES", ATTN_MAX_SCORES),
    ("ATTN_MAX_HD", ATTN_MAX_HD),
];

/// [`CONSTS`] followed by `extra`, as one array of `N = CONSTS.len() + extra.len()` entries (a
/// kernel takes one static slice of constants).
pub(super) const fn consts_with<const N: usize>(
    extra: &[(&'static str, u32)],
) -> [(&'static str, u32); N] {
    assert!(N == CONSTS.len() + extra.len());
    let mut out = [("", 0u32); N];
    let mut i = 0;
    while i < CONSTS.len() {
        out[i] = CONSTS[i];
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        out[i + j] = extra[j];
        j += 1;
    }
    out
}

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
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The fused in-projection (`KV_OUT`): binding 3 is the RoPE table, binding 7 the written cache.
static KERNEL_KV: Kernel = Kernel {
    name: "linear_kv",
    source: SRC,
    entry: "linear",
    bindings: &[
        Binding::Read,      // w
        Binding::Read,      // s
        Binding::Read,      // x
        Binding::Read,      // freqs
        Binding::ReadWrite, // y
        Binding::Read,      // nw
        Binding::Read,      // nb
        Binding::ReadWrite, // cache
    ],
    defines: &["KV_OUT"],
    consts: CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The out-projection with the attention fused into its input (`IN_ATTN`, chosen by the
/// variant's input define): binding 3 is the cache.
static KERNEL_ATTN: Kernel = Kernel {
    name: "linear_attn",
    source: SRC,
    entry: "linear",
    bindings: &[
        Binding::Read,      // w
        Binding::Read,      // s
        Binding::Read,      // x (the qkv row)
        Binding::Read,      // kvc
        Binding::ReadWrite, // y
        Binding::Read,      // nw
        Binding::Read,      // nb
        Binding::Read,      // scale
    ],
    defines: &[],
    consts: CONSTS,
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
        kv_k_offset: u32,
        kv_v_offset: u32,
        kv_hd: u32,
        kv_head_dim: u32,
        kv_capacity: u32,
        kv_pos0: u32,
        kv_rope: u32,
        attn_window: u32,
        attn_scale: f32,
        chunks2: u32,
        hidden: u32,
        row_offset2: u32,
        res_in: u32,
        res_out: u32,
        parts: u32,
        _pad: u32,
    }
}

/// An input transform's WGSL define, the norm's weight and bias views (`None` where it has none)
/// and its eps (0 without a norm), checked finite and ≥ 0.
fn input_parts<'a>(
    input: LinearInput<'a>,
) -> GpuResult<(&'static str, Option<View<'a>>, Option<View<'a>>, f32)> {
    let (define, weight, bias, eps) = match input {
        LinearInput::Plain => (INPUT_DEFINES[0], None, None, 0.0),
        LinearInput::RmsNorm { weight, eps } => (INPUT_DEFINES[1], Some(weight), None, eps),
        LinearInput::LayerNorm { weight, bias, eps } => {
            (INPUT_DEFINES[2], Some(weight), Some(bias), eps)
        }
        LinearInput::SiluGate => (INPUT_DEFINES[3], None, None, 0.0),
        LinearInput::GeluErf => (INPUT_DEFINES[4], None, None, 0.0),
        LinearInput::Attention(_) => ("IN_ATTN", None, None, 0.0),
    };
    if !eps.is_finite() || eps < 0.0 {
        return Err(err(format!("norm eps {eps} must be finite and ≥ 0")));
    }
    Ok((define, weight, bias, eps))
}

fn err(message: impl Into<String>) -> GpuError {
    GpuError::Launch {
        kernel: "linear",
        message: message.into(),
    }
}

/// `v` holds at least `floats` f32, else a refusal naming `what`.
fn need(v: &View, what: &str, floats: u64) -> GpuResult<()> {
    if v.size < floats * 4 {
        return Err(err(format!(
            "{what} needs {} bytes ({floats} f32), view has {}",
            floats * 4,
            v.size
        )));
    }
    Ok(())
}

/// The kernel's `group_shift` for `format`: affine group size = 32 << shift (0 otherwise).
fn group_shift(format: WeightFormat) -> u32 {
    match format {
        WeightFormat::Affine { group: 64, .. } => 1,
        _ => 0,
    }
}

/// The one weight part holding all of `w`'s selected rows (the fused launchers bind one part);
/// refused as "`needs` in one weight part".
fn one_part<'w>(w: &'w LinearWeights, needs: &str) -> GpuResult<&'w buffers::Part> {
    let (lo, hi) = (w.row_offset, w.row_offset + w.n);
    w.parts
        .iter()
        .find(|p| p.first_row <= lo && hi <= p.first_row + p.rows)
        .ok_or_else(|| err(format!("{needs} in one weight part")))
}

/// `part`'s code and scale buffers each fit one storage binding of `max_binding` bytes.
fn within_binding(part: &buffers::Part, max_binding: u64) -> GpuResult<()> {
    for buf in std::iter::once(&part.data).chain(part.scales.iter()) {
        if buf.size() > max_binding {
            return Err(err(format!(
                "weight buffer '{}' ({} bytes) exceeds this GPU's storage binding limit of {max_binding} bytes",
                buf.label(),
                buf.size()
            )));
        }
    }
    Ok(())
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
pub fn variants(device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    let mut out = Vec::new();
    let kv16s: &[bool] = if device.contains(&"F16") {
        &[false, true]
    } else {
        &[false]
    };
    let with_cache = |v: Variant, kv16: bool| if kv16 { v.define("KV16") } else { v };
    for f in FORMAT_DEFINES {
        for i in INPUT_DEFINES {
            for (mt, _) in TILES {
                out.push((&KERNEL, variant(f, i, mt)));
                // The fused KV write follows the in-projection's norm (or none).
                if matches!(i, "IN_PLAIN" | "IN_RMS" | "IN_LAYER") {
                    for &kv16 in kv16s {
                        out.push((&KERNEL_KV, with_cache(variant(f, i, mt), kv16)));
                    }
                }
            }
        }
        // The fused attention reads one query row.
        for &kv16 in kv16s {
            out.push((&KERNEL_ATTN, with_cache(variant(f, "IN_ATTN", 1), kv16)));
        }
    }
    out.extend(qkv_attn::variants(kv16s));
    out.extend(mlp_split::variants());
    out.extend(res_linear::variants());
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
    /// `x` is the fused in-projection's `[1, ≥ K]` qkv row: the input is the attention output of
    /// its q over a short ring KV cache, computed inside every workgroup (the depformer's
    /// attention fused into its out-projection).
    Attention(AttnInput<'a>),
}

/// The attention that [`LinearInput::Attention`] computes: one query (`q` = the first `hd`
/// columns of `x`, `hd` = K of the linear) at position `pos0` over the keys at positions
/// `[max(0, pos0 + 1 − min(window, capacity)), pos0]` of `cache` = `[2, capacity, hd]` (K slots
/// then V, slot `pos % capacity`; f16 pairs in u32 words when `kv16`, else f32) — the layout of
/// [`crate::kernels::attention`] for a head dim that needs no padding. Scores `q·k · scale`,
/// softmax with the max subtracted, per head. No RoPE. At most [`ATTN_MAX_SCORES`]
/// (heads × visible keys) scores and `hd ≤` [`ATTN_MAX_HD`].
#[derive(Clone, Copy, Debug)]
pub struct AttnInput<'a> {
    pub cache: View<'a>,
    pub kv16: bool,
    pub head_dim: u32,
    pub capacity: u32,
    pub window: u32,
    pub pos0: u32,
    pub scale: f32,
}

/// Most scores (heads × visible keys) [`LinearInput::Attention`] keeps in workgroup memory.
pub const ATTN_MAX_SCORES: u32 = 256;
/// Widest attention output (`heads · head_dim`) [`LinearInput::Attention`] takes.
pub const ATTN_MAX_HD: u32 = 1024;
// (`ATTN_MAX_SCORES` and `ATTN_MAX_HD` size the shader's workgroup arrays: injected.)
const _: () = assert!(ATTN_MAX_HD.is_multiple_of(4));
// ax + sc + hsum + the MT = 1 reduction slots fit 16 KiB.
const _: () = assert!(ATTN_MAX_HD * 4 + ATTN_MAX_SCORES * 4 + 64 * 4 + WG * 16 <= 16384);

impl AttnInput<'_> {
    fn check(&self, k: u32, m: u32) -> GpuResult<()> {
        let dh = self.head_dim;
        if m != 1 {
            return Err(err(format!(
                "the fused attention input takes one query row, got {m}"
            )));
        }
        if dh == 0 || !dh.is_multiple_of(8) || !k.is_multiple_of(dh) || k > ATTN_MAX_HD {
            return Err(err(format!(
                "the fused attention input needs a head dim that is a multiple of 8 dividing K ≤ {ATTN_MAX_HD}, got head_dim {dh}, K {k}"
            )));
        }
        let heads = k / dh;
        let keys = self.window.min(self.capacity);
        if self.capacity == 0 || self.window == 0 || heads > 64 || heads * keys > ATTN_MAX_SCORES {
            return Err(err(format!(
                "the fused attention input keeps heads × keys ≤ {ATTN_MAX_SCORES} scores (heads ≤ 64), got {heads} heads × {keys} keys"
            )));
        }
        let elem = if self.kv16 { 2 } else { 4 };
        let need = 2 * self.capacity as u64 * k as u64 * elem;
        if self.cache.size < need || self.pos0 >= u32::MAX / 2 {
            return Err(err(format!(
                "the KV cache needs {need} bytes, view has {} (position {})",
                self.cache.size, self.pos0
            )));
        }
        if !self.scale.is_finite() {
            return Err(err("the attention scale must be finite"));
        }
        Ok(())
    }
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
    /// `y = v`, and the k and v columns of each row also go into a ring KV cache (RoPE on k):
    /// the attention in-projection with the KV append fused in (no bias).
    StoreKv(KvAppend<'a>),
}

/// Where [`LinearOutput::StoreKv`] writes k and v: batch row `m` is position `pos0 + m`, stored
/// in slot `(pos0 + m) % capacity` of `cache` = `[2, capacity, hd]` (K slots then V slots; f16
/// pairs in u32 words when `kv16`, else f32), columns `[k_offset, k_offset + hd)` of the output
/// row as k, `[v_offset, v_offset + hd)` as v — the layout of [`crate::kernels::attention`] for
/// a head dim that needs no padding (a multiple of 8). With `freqs` (`[head_dim / 2]` inverse
/// frequencies, [`crate::kernels::rope::Rope::freqs`]) k is rotated by interleaved RoPE at its
/// position exactly as the attention's `kv_append` does.
#[derive(Clone, Copy, Debug)]
pub struct KvAppend<'a> {
    pub cache: View<'a>,
    pub freqs: Option<View<'a>>,
    pub k_offset: u32,
    pub v_offset: u32,
    pub hd: u32,
    pub head_dim: u32,
    pub capacity: u32,
    pub pos0: u32,
    pub kv16: bool,
}

impl KvAppend<'_> {
    fn check(&self, n: u32, m: u32) -> GpuResult<()> {
        let elem = if self.kv16 { 2 } else { 4 };
        let need = 2 * self.capacity as u64 * self.hd as u64 * elem;
        if self.head_dim == 0
            || !self.head_dim.is_multiple_of(8)
            || !self.hd.is_multiple_of(self.head_dim)
        {
            return Err(err(format!(
                "the fused KV write needs a head dim that is a multiple of 8 dividing hd, got head_dim {} and hd {}",
                self.head_dim, self.hd
            )));
        }
        if !self.k_offset.is_multiple_of(2) || !self.v_offset.is_multiple_of(2) {
            return Err(err("the fused KV write needs even k and v offsets"));
        }
        for (name, off) in [("k", self.k_offset), ("v", self.v_offset)] {
            if off as u64 + self.hd as u64 > n as u64 {
                return Err(err(format!(
                    "{name} columns {off} + {} exceed the {n} output columns",
                    self.hd
                )));
            }
        }
        if self.capacity < m || self.cache.size < need {
            return Err(err(format!(
                "the KV cache must hold the {m} new rows (capacity {}) in {need} bytes, view has {}",
                self.capacity, self.cache.size
            )));
        }
        if self.pos0 as u64 + m as u64 > 1 << 24 {
            return Err(err(format!(
                "position {} is beyond f32's exact integers (RoPE angles)",
                self.pos0 as u64 + m as u64
            )));
        }
        if let Some(f) = &self.freqs {
            if f.size < (self.head_dim / 2) as u64 * 4 {
                return Err(err(format!(
                    "the RoPE table has {} bytes, head_dim {} needs {}",
                    f.size,
                    self.head_dim,
                    self.head_dim / 2 * 4
                )));
            }
        }
        Ok(())
    }
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
    let (input_define, norm_w, norm_b, eps) = input_parts(opts.input)?;
    let attn = match opts.input {
        LinearInput::Attention(a) => Some(a),
        _ => None,
    };
    let (out_mode, scale, kv) = match opts.out {
        LinearOutput::Store => (0, None, None),
        LinearOutput::Accumulate => (1, None, None),
        LinearOutput::AccumulateScaled { scale } => (2, Some(scale), None),
        LinearOutput::StoreKv(kv) => (0, None, Some(kv)),
    };
    if let Some(kv) = &kv {
        kv.check(n, m)?;
        if opts.bias.is_some() {
            return Err(err("the fused KV write takes no bias"));
        }
    }
    if let Some(a) = &attn {
        a.check(k, m)?;
        if opts.bias.is_some() || kv.is_some() {
            return Err(err(
                "the fused attention input takes no bias and no fused KV write",
            ));
        }
        if a.cache.buffer.id() == y.buffer.id() {
            return Err(err("y must be a different buffer from the KV cache"));
        }
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
        ("the RoPE table", kv.and_then(|kv| kv.freqs)),
    ];
    if let Some(kv) = &kv {
        let c = kv.cache.buffer.id();
        if [Some(x), Some(y), norm_w, norm_b, kv.freqs]
            .iter()
            .any(|v| v.is_some_and(|v| v.buffer.id() == c))
        {
            return Err(err(
                "the KV cache must be a different buffer from every other binding",
            ));
        }
    }
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
    let mut variant = variant(define(w.format), input_define, mt);
    if kv.is_some_and(|kv| kv.kv16) || attn.is_some_and(|a| a.kv16) {
        variant = variant.define("KV16");
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
        if kv.is_some() && !(a - lo).is_multiple_of(2) {
            return Err(err(format!(
                "the fused KV write needs weight parts that start on even rows, one starts at row {}",
                a - lo
            )));
        }
        let mut groups = super::grid_1d(rows.div_ceil(ROWS_PER_GROUP), max_groups);
        groups[2] = batch_tiles;
        let p = Params {
            n: rows,
            k,
            m,
            row_offset: a - part.first_row,
            chunks: k / step(w.format),
            group_shift: group_shift(w.format),
            has_bias: opts.bias.is_some() as u32,
            y_stride: n,
            y_col: a - lo,
            x_stride: (x_cols / 4) as u32,
            out_mode,
            eps: attn.map_or(eps, |a| a.scale),
            kv_k_offset: kv.map_or(0, |kv| kv.k_offset),
            kv_v_offset: kv.map_or(0, |kv| kv.v_offset),
            kv_hd: kv.map_or(attn.map_or(0, |_| k), |kv| kv.hd),
            kv_head_dim: kv.map_or(attn.map_or(1, |a| a.head_dim), |kv| kv.head_dim),
            kv_capacity: kv.map_or(attn.map_or(1, |a| a.capacity), |kv| kv.capacity),
            kv_pos0: kv.map_or(attn.map_or(0, |a| a.pos0), |kv| kv.pos0),
            kv_rope: kv.is_some_and(|kv| kv.freqs.is_some()) as u32,
            attn_window: attn.map_or(0, |a| a.window),
            ..Params::default()
        };
        let data = part.data.view();
        let scales = part.scales.as_ref().map(|s| s.view()).unwrap_or(data);
        let (kernel, b3, b7) = match (&kv, &attn) {
            (Some(kv), _) => (&KERNEL_KV, kv.freqs.unwrap_or(x), kv.cache),
            (None, Some(a)) => (&KERNEL_ATTN, a.cache, scale.unwrap_or(x)),
            (None, None) => (&KERNEL, opts.bias.unwrap_or(x), scale.unwrap_or(x)),
        };
        rec.launch(
            kernel,
            &variant,
            &[
                data,
                scales,
                x,
                b3,
                y,
                norm_w.unwrap_or(x),
                norm_b.unwrap_or(x),
                b7,
            ],
            &p,
            groups,
        )?;
    }
    Ok(())
}
