//! Streaming causal Conv1d and ConvTranspose1d (spec §1.3): `shaders/conv1d.wgsl` and
//! `shaders/convtr1d.wgsl`. Used by Mimi's SEANet encoder/decoder, its resampling convs and the
//! quantizer projections (1×1 convs).
//!
//! Layouts: activations are channel-major `[C, T]` f32 (PyTorch `[B=1, C, T]`), contiguous.
//! Conv1d weights `[C_out, C_in/G, K]`, ConvTranspose1d weights `[C_in, C_out/G, K]` (PyTorch),
//! biases `[C_out]`.
//!
//! **Conv1d** ([`conv1d`]): `K_eff = (K−1)·d + 1`, left padding `P = K_eff − S` kept as a state
//! `[C_in, P]`. A call with `T` new samples (`T` a positive multiple of `S`) computes exactly
//! `T/S` outputs, a VALID conv over `cat(state, x)`, and the new state is the last `P` columns of
//! that concatenation. At stream start the state is zeros ([`PadMode::Zeros`]) or `P` copies of
//! the stream's first input column ([`PadMode::Replicate`]); this is a flag in the kernel
//! parameters, so neither a reset nor the first call needs a host round trip.
//!
//! **ConvTranspose1d** ([`conv_tr1d`]): a call with `T` inputs computes the `(T−1)·S + K` raw
//! outputs, adds the carried partial (`[C_out, K−S]`, zero at stream start) into the first `K−S`,
//! emits the first `T·S` (plus bias) and keeps the last `K−S` (without bias) as the new partial.
//!
//! **State ping-pong**: [`Conv1dState`] / [`ConvTr1dState`] own two state buffers and a parity.
//! A call reads one and writes the other, then flips the parity (at record time), so a call never
//! reads and writes the same buffer and several calls may be recorded into one submit. A recorded
//! call must be submitted: the state struct assumes it ran.
//!
//! **Fusions**: [`ConvOpts::elu_input`] applies ELU (alpha 1) to every input sample as it is
//! read (SEANet's `ELU → conv`; the state holds ELU'd samples, as PyTorch's conv state does).
//! [`ConvOpts::accumulate`] (Conv1d only) adds the result to `y` (`y += conv(x)`), for residual
//! branches. [`ConvOpts::input_rows`] (Conv1d only) reads `x` as time-major `[T, C_in]` rows and
//! [`ConvOpts::output_rows`] (both) writes `y` as `[T_out, C_out]` rows, so Mimi's codec
//! transformers need no transpose on either side.
//!
//! **Dispatch geometry** (workgroups of 256; linear group index via [`crate::kernels::grid_1d`]):
//! * `conv1d_direct` ([`ConvAlgo::Direct`]): one invocation per output time and `COT` output
//!   channels (`COT` = 4 when it divides `C_out/G` and still gives ≥ 128 workgroups or the
//!   device is a software rasterizer, else 1); a workgroup is 64 times × `4·COT` channels;
//!   `ceil(T_out/64) · ceil(C_out/(4·COT))` groups.
//! * `conv1d_rows` ([`ConvAlgo::Reduce`]): a workgroup computes 4 output channels × 8 output
//!   times, 64 lanes per channel striding over the contiguous weight row (`C_in/G · K`),
//!   shared-memory reduction; `ceil(C_out/4) · ceil(T_out/8)` groups. Chosen by
//!   [`ConvAlgo::Auto`] for `T_out ≤ 16` (streaming frames, weight-bound) and, on hardware
//!   adapters, for reductions `C_in/G · K ≥ 128` at any `T`. Weights are read as vec4 (define `W_VEC4`) when
//!   `C_in/G · K` is a multiple of 4 and the weight view is 16-byte aligned.
//! * `conv1d_tiled` ([`ConvAlgo::Tiled`]): implicit GEMM, 32 output channels × 64 output times
//!   per workgroup, reduction chunks of 32 staged in shared memory; `ceil(T_out/64) ·
//!   ceil(C_out/32)` groups. Needs `G = 1` or `C_out/G` a multiple of 32. Chosen by
//!   [`ConvAlgo::Auto`] for short reductions at `T_out > 16` (e.g. the first conv, `C_in·K = 7`,
//!   and the 1×1 convs of the first ResBlocks).
//! * `conv1d_direct` is [`ConvAlgo::Auto`]'s last resort (grouped convs the tiled kernel cannot
//!   take, with short reductions and long `T`).
//! * both Conv1d kernels: `ceil(C_in·P/256)` extra groups write the new state.
//! * `convtr_direct` ([`ConvAlgo::Direct`]): one invocation per raw output, `ceil(C_out·L/256)`
//!   groups, `L = (T−1)·S + K`.
//! * `convtr_cols` ([`ConvAlgo::Reduce`]): a workgroup owns `max(1, 32/K)` whole output channels
//!   (their `(co, k)` weight columns, 32 at a time × 8 input-channel slices), reduces in shared
//!   memory, then overlap-adds; `ceil(C_out/co_per_wg)` groups. Needs `K ≤ 64` and
//!   `T · co_per_wg · K ≤ 2048`; chosen by [`ConvAlgo::Auto`] for `T ≤ 16` when it fits.
//!
//! Files: `shape.rs` (the layers' geometry), `state.rs` (the ping-pong streaming states),
//! `conv1d.rs` and `convtr.rs` (the launchers and their parameter blocks), `reference.rs`.

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Variant, View};
use conv1d::Conv1dParams;
use convtr::ConvTrParams;

mod conv1d;
mod convtr;
pub mod reference;
mod shape;
mod state;

pub use conv1d::conv1d;
pub use convtr::conv_tr1d;
pub use shape::{Conv1d, ConvTr1d};
pub use state::{Conv1dState, ConvTr1dState};

const SRC1: &str = include_str!("../../../shaders/conv1d.wgsl");
const SRCT: &str = include_str!("../../../shaders/convtr1d.wgsl");
/// Invocations per workgroup of every conv kernel (injected into the WGSL as `WG`).
pub const WG: u32 = 256;
// The geometry below is injected into the WGSL (`conv1d.wgsl`: `TILE_T`, `TILE_CO`, `ROWS_CO`,
// `ROWS_T`; `convtr1d.wgsl`: `COLS`, `ZC`), whose kernels are written for these values and
// `const_assert` them.
/// Output times per `conv1d_direct` (and `conv1d_tiled`) workgroup.
const DIRECT_TILE_T: u32 = 64;
/// Output channel groups (of `COT` channels) per `conv1d_direct` workgroup.
const DIRECT_CO_PER_WG: u32 = WG / DIRECT_TILE_T;
/// `conv1d_direct` computes 4 output channels per invocation only when that still makes this
/// many workgroups (or on a software rasterizer, where parallelism is low anyway).
const DIRECT_MIN_GROUPS: u32 = 128;
/// Output channels per `conv1d_tiled` workgroup (its times: [`DIRECT_TILE_T`]).
const TILE_CO: u32 = 32;
/// Output channels and output times per `conv1d_rows` workgroup.
const ROWS_PER_WG: u32 = 4;
const ROWS_TILE_T: u32 = 8;
/// `convtr_cols`: weight columns per pass and the shared `zc` capacity (floats).
const COLS: u32 = 32;
const ZC_CAPACITY: u32 = 2048;
/// Largest `K` `convtr_cols` handles (two column passes per channel).
const COLS_MAX_K: u32 = 64;
/// [`ConvAlgo::Auto`] uses the reduction kernels up to this many output (conv1d) or input
/// (convtr) times per call.
const AUTO_REDUCE_MAX_T: u32 = 16;
/// ... and for Conv1d also for any `T` when the reduction (`C_in/G · K`) is at least this long:
/// measured on an H100 (Vulkan) at Mimi's shapes, `conv1d_rows` beat `conv1d_tiled` by 1.1–5×
/// for reductions of 192 to 1280 (T_out 96 to 1920), and lost 3.7× at `C_in·K = 32`.
const AUTO_REDUCE_MIN_R: u32 = 128;

const F_HAS_BIAS: u32 = 1;
const F_FIRST: u32 = 2;
const F_REPLICATE: u32 = 4;
const F_ELU_IN: u32 = 8;
const F_ACCUMULATE: u32 = 16;
const F_X_ROWS: u32 = 32;
const F_Y_ROWS: u32 = 64;

const CONSTS1: &[(&str, u32)] = &[
    ("WG", WG),
    ("TILE_T", DIRECT_TILE_T),
    ("TILE_CO", TILE_CO),
    ("ROWS_CO", ROWS_PER_WG),
    ("ROWS_T", ROWS_TILE_T),
    ("HAS_BIAS", F_HAS_BIAS),
    ("FIRST", F_FIRST),
    ("REPLICATE", F_REPLICATE),
    ("ELU_IN", F_ELU_IN),
    ("ACCUMULATE", F_ACCUMULATE),
    ("X_ROWS", F_X_ROWS),
    ("Y_ROWS", F_Y_ROWS),
];
const CONSTST: &[(&str, u32)] = &[
    ("WG", WG),
    ("COLS", COLS),
    ("ZC", ZC_CAPACITY),
    ("HAS_BIAS", F_HAS_BIAS),
    ("FIRST", F_FIRST),
    ("ELU_IN", F_ELU_IN),
    ("Y_ROWS", F_Y_ROWS),
];

const BINDINGS: &[Binding] = &[
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::ReadWrite,
];
static CONV1D_DIRECT: Kernel = Kernel {
    name: "conv1d_direct",
    source: SRC1,
    entry: "conv1d_direct",
    bindings: BINDINGS,
    defines: &[],
    consts: CONSTS1,
    workgroup: [WG, 1, 1],
    params: &Conv1dParams::LAYOUT,
};
static CONV1D_TILED: Kernel = Kernel {
    name: "conv1d_tiled",
    source: SRC1,
    entry: "conv1d_tiled",
    bindings: BINDINGS,
    defines: &[],
    consts: CONSTS1,
    workgroup: [WG, 1, 1],
    params: &Conv1dParams::LAYOUT,
};
static CONV1D_ROWS: Kernel = Kernel {
    name: "conv1d_rows",
    source: SRC1,
    entry: "conv1d_rows",
    bindings: BINDINGS,
    defines: &[],
    consts: CONSTS1,
    workgroup: [WG, 1, 1],
    params: &Conv1dParams::LAYOUT,
};
static CONVTR_DIRECT: Kernel = Kernel {
    name: "convtr_direct",
    source: SRCT,
    entry: "convtr_direct",
    bindings: BINDINGS,
    defines: &[],
    consts: CONSTST,
    workgroup: [WG, 1, 1],
    params: &ConvTrParams::LAYOUT,
};
static CONVTR_COLS: Kernel = Kernel {
    name: "convtr_cols",
    source: SRCT,
    entry: "convtr_cols",
    bindings: BINDINGS,
    defines: &[],
    consts: CONSTST,
    workgroup: [WG, 1, 1],
    params: &ConvTrParams::LAYOUT,
};

/// `conv1d_rows` reads the weights as vec4 (`W_VEC4`) when every row starts 16-byte aligned.
fn rows_variant(vec4: bool) -> Variant {
    if vec4 {
        Variant::none().define("W_VEC4")
    } else {
        Variant::none()
    }
}

/// `conv1d_direct` computing `cot` (1 or 4) output channels per invocation (override `COT`).
fn direct_variant(cot: u32) -> Variant {
    Variant::none().constant("COT", cot as i64)
}

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    vec![
        (&CONV1D_DIRECT, direct_variant(1)),
        (&CONV1D_DIRECT, direct_variant(4)),
        (&CONV1D_TILED, Variant::none()),
        (&CONV1D_ROWS, rows_variant(false)),
        (&CONV1D_ROWS, rows_variant(true)),
        (&CONVTR_DIRECT, Variant::none()),
        (&CONVTR_COLS, Variant::none()),
    ]
}

/// How a Conv1d fills its left padding at stream start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PadMode {
    /// Zeros (`pad_mode="constant"`, every SEANet conv).
    #[default]
    Zeros,
    /// `P` copies of the stream's first input column (the 25→12.5 Hz downsample conv).
    Replicate,
}

/// Which kernel computes a conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvAlgo {
    /// Conv1d: `Reduce` for `T_out ≤ 16` (streaming frames) or a reduction `C_in/G · K ≥ 128`,
    /// else `Tiled` (or `Direct` where `Tiled` does not apply). ConvTranspose1d: `Reduce` for
    /// `T ≤ 16` where it fits, else `Direct`.
    #[default]
    Auto,
    /// One invocation per output (or per 4 output channels).
    Direct,
    /// Split the reduction over a workgroup (`conv1d_rows` / `convtr_cols`): best for short `T`,
    /// where reading the weights dominates.
    Reduce,
    /// Conv1d only: implicit GEMM with shared-memory tiles of 32 channels × 64 times, for long
    /// `T`; needs `G = 1` or `C_out/G` a multiple of 32 (else falls back to `Direct`). A
    /// ConvTranspose1d treats it as `Direct`.
    Tiled,
}

/// A conv layer's parameters on the GPU: `weight` (Conv1d `[C_out, C_in/G, K]`,
/// ConvTranspose1d `[C_in, C_out/G, K]`, f32) and the optional `bias` `[C_out]`.
#[derive(Debug, Clone, Copy)]
pub struct ConvWeights<'a> {
    pub weight: View<'a>,
    pub bias: Option<View<'a>>,
}

/// Per-call options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConvOpts {
    /// Apply ELU (alpha 1) to every input sample as it is read: computes `conv(ELU(x))`.
    pub elu_input: bool,
    /// Conv1d only: `y += conv(x)` instead of `y = conv(x)`.
    pub accumulate: bool,
    /// Conv1d only: `x` is time-major, `[T_in, C_in]` (a transformer's rows), instead of
    /// `[C_in, T_in]`: the transpose between a codec transformer and the next conv is folded
    /// into the conv's loads.
    pub input_rows: bool,
    /// `y` is time-major, `[T_out, C_out]` (the rows a codec transformer runs on), instead of
    /// `[C_out, T_out]`: the transpose between a conv and the next codec transformer is folded
    /// into the conv's stores.
    pub output_rows: bool,
    pub algo: ConvAlgo,
}

fn launch_err(kernel: &'static str, message: String) -> GpuError {
    GpuError::Launch { kernel, message }
}

/// Check the views' sizes and that no read binding shares a buffer with a written one (WebGPU
/// forbids it within one dispatch).
fn check_views(
    kernel: &'static str,
    reads: &[(&str, View, u64)],
    writes: &[(&str, View, u64)],
) -> GpuResult<()> {
    for (name, v, floats) in reads.iter().chain(writes) {
        if v.size < floats * 4 {
            return Err(launch_err(
                kernel,
                format!(
                    "{name} view has {} bytes, needs {} ({floats} f32)",
                    v.size,
                    floats * 4
                ),
            ));
        }
    }
    for (rn, r, _) in reads {
        for (wn, w, _) in writes {
            if r.buffer.id() == w.buffer.id() {
                return Err(launch_err(
                    kernel,
                    format!(
                        "{rn} and {wn} share buffer '{}': a dispatch cannot read one binding of a buffer it writes",
                        r.buffer.label()
                    ),
                ));
            }
        }
    }
    Ok(())
}
