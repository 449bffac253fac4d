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
//! branches.
//!
//! **Dispatch geometry** (workgroups of 256; linear group index via [`super::grid_1d`]):
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

use bytemuck::{Pod, Zeroable};

use crate::gpu::{
    wgsl_contains, Binding, BufferUsage, Context, GpuBuffer, GpuError, GpuResult, Kernel, Recorder,
    Variant, View,
};

const SRC1: &str = include_str!("../../shaders/conv1d.wgsl");
const SRCT: &str = include_str!("../../shaders/convtr1d.wgsl");
/// Invocations per workgroup of every conv kernel; must match `@workgroup_size` in the WGSL.
pub const WG: u32 = 256;
const _: () = assert!(wgsl_contains(
    SRC1,
    "@compute @workgroup_size(256)\nfn conv1d_direct("
));
const _: () = assert!(wgsl_contains(
    SRC1,
    "@compute @workgroup_size(256)\nfn conv1d_rows("
));
const _: () = assert!(wgsl_contains(
    SRC1,
    "@compute @workgroup_size(256)\nfn conv1d_tiled("
));
const _: () = assert!(wgsl_contains(SRC1, "let m0 = (g / p.tiles_t) * 32u;"));
const _: () = assert!(wgsl_contains(SRC1, "let n0 = (g % p.tiles_t) * 64u;"));
const _: () = assert!(wgsl_contains(
    SRCT,
    "@compute @workgroup_size(256)\nfn convtr_direct("
));
const _: () = assert!(wgsl_contains(
    SRCT,
    "@compute @workgroup_size(256)\nfn convtr_cols("
));
// Geometry constants the launcher relies on.
const _: () = assert!(wgsl_contains(
    SRC1,
    "let t = (g % p.tiles_t) * 64u + lid.x % 64u;"
));
const _: () = assert!(wgsl_contains(
    SRC1,
    "let co0 = ((g / p.tiles_t) * 4u + lid.x / 64u) * COT;"
));
const _: () = assert!(wgsl_contains(SRC1, "let t0 = (g % p.tiles_t) * 8u;"));
const _: () = assert!(wgsl_contains(
    SRC1,
    "let co = min(cg * 4u + lid.x / 64u, p.c_out - 1u);"
));
const _: () = assert!(wgsl_contains(
    SRC1,
    "let i = (g - p.main_groups) * 256u + lid;"
));
const _: () = assert!(wgsl_contains(SRCT, "var<workgroup> zc: array<f32, 2048>;"));
const _: () = assert!(wgsl_contains(
    SRCT,
    "for (var c0 = 0u; c0 < p.n_cols; c0 += 32u)"
));
const _: () = assert!(wgsl_contains(SRC1, "@binding(6) var<uniform> p: Params"));
const _: () = assert!(wgsl_contains(SRCT, "@binding(6) var<uniform> p: Params"));

/// Output times per `conv1d_direct` workgroup.
const DIRECT_TILE_T: u32 = 64;
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
};
static CONV1D_TILED: Kernel = Kernel {
    name: "conv1d_tiled",
    source: SRC1,
    entry: "conv1d_tiled",
    bindings: BINDINGS,
};
static CONV1D_ROWS: Kernel = Kernel {
    name: "conv1d_rows",
    source: SRC1,
    entry: "conv1d_rows",
    bindings: BINDINGS,
};
static CONVTR_DIRECT: Kernel = Kernel {
    name: "convtr_direct",
    source: SRCT,
    entry: "convtr_direct",
    bindings: BINDINGS,
};
static CONVTR_COLS: Kernel = Kernel {
    name: "convtr_cols",
    source: SRCT,
    entry: "convtr_cols",
    bindings: BINDINGS,
};

const F_HAS_BIAS: u32 = 1;
const F_FIRST: u32 = 2;
const F_REPLICATE: u32 = 4;
const F_ELU_IN: u32 = 8;
const F_ACCUMULATE: u32 = 16;
const _: () = assert!(wgsl_contains(SRC1, "const HAS_BIAS: u32 = 1u;"));
const _: () = assert!(wgsl_contains(SRC1, "const FIRST: u32 = 2u;"));
const _: () = assert!(wgsl_contains(SRC1, "const REPLICATE: u32 = 4u;"));
const _: () = assert!(wgsl_contains(SRC1, "const ELU_IN: u32 = 8u;"));
const _: () = assert!(wgsl_contains(SRC1, "const ACCUMULATE: u32 = 16u;"));
const _: () = assert!(wgsl_contains(SRCT, "const HAS_BIAS: u32 = 1u;"));
const _: () = assert!(wgsl_contains(SRCT, "const FIRST: u32 = 2u;"));
const _: () = assert!(wgsl_contains(SRCT, "const ELU_IN: u32 = 8u;"));

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
struct Conv1dParams {
    c_in: u32,
    c_out: u32,
    k: u32,
    stride: u32,
    dilation: u32,
    cin_g: u32,
    cout_g: u32,
    pad: u32,
    t_in: u32,
    t_out: u32,
    flags: u32,
    main_groups: u32,
    tiles_t: u32,
    state_n: u32,
    _pad: [u32; 2],
}
crate::assert_params_fit!(Conv1dParams);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default, Debug)]
struct ConvTrParams {
    c_in: u32,
    c_out: u32,
    k: u32,
    stride: u32,
    cin_g: u32,
    cout_g: u32,
    t_in: u32,
    l_full: u32,
    emit: u32,
    pk: u32,
    flags: u32,
    co_per_wg: u32,
    n_cols: u32,
    n_out: u32,
    _pad: [u32; 2],
}
crate::assert_params_fit!(ConvTrParams);

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
    pub algo: ConvAlgo,
}

/// Geometry of a causal Conv1d (weight `[c_out, c_in/groups, kernel]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1d {
    pub c_in: u32,
    pub c_out: u32,
    pub kernel: u32,
    pub stride: u32,
    pub dilation: u32,
    pub groups: u32,
    pub pad_mode: PadMode,
}

impl Conv1d {
    /// Stride 1, dilation 1, one group, zero padding.
    pub fn new(c_in: u32, c_out: u32, kernel: u32) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride: 1,
            dilation: 1,
            groups: 1,
            pad_mode: PadMode::Zeros,
        }
    }
    pub fn stride(mut self, s: u32) -> Self {
        self.stride = s;
        self
    }
    pub fn dilation(mut self, d: u32) -> Self {
        self.dilation = d;
        self
    }
    pub fn groups(mut self, g: u32) -> Self {
        self.groups = g;
        self
    }
    pub fn pad_mode(mut self, m: PadMode) -> Self {
        self.pad_mode = m;
        self
    }
    /// `(K−1)·d + 1`.
    pub fn k_eff(&self) -> u32 {
        (self.kernel.max(1) - 1) * self.dilation + 1
    }
    /// Left padding / state length `P = K_eff − S`.
    pub fn padding(&self) -> u32 {
        self.k_eff().saturating_sub(self.stride)
    }
    /// Elements of the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.c_out as usize * (self.c_in / self.groups.max(1)) as usize * self.kernel as usize
    }
    /// Output length for `t` input samples.
    pub fn out_len(&self, t: u32) -> u32 {
        t / self.stride.max(1)
    }
    fn validate(&self, kernel: &'static str) -> GpuResult<()> {
        let bad = |m: String| Err(launch_err(kernel, m));
        if self.c_in == 0 || self.c_out == 0 || self.kernel == 0 {
            return bad(format!("empty conv {self:?}"));
        }
        if self.stride == 0 || self.dilation == 0 || self.groups == 0 {
            return bad(format!("stride, dilation and groups must be ≥ 1: {self:?}"));
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return bad(format!("groups must divide c_in and c_out: {self:?}"));
        }
        if self.k_eff() < self.stride {
            return bad(format!(
                "effective kernel {} is shorter than the stride: {self:?}",
                self.k_eff()
            ));
        }
        Ok(())
    }
}

/// Geometry of a causal ConvTranspose1d (weight `[c_in, c_out/groups, kernel]`, `kernel ≥ stride`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTr1d {
    pub c_in: u32,
    pub c_out: u32,
    pub kernel: u32,
    pub stride: u32,
    pub groups: u32,
}

impl ConvTr1d {
    /// One group.
    pub fn new(c_in: u32, c_out: u32, kernel: u32, stride: u32) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride,
            groups: 1,
        }
    }
    pub fn groups(mut self, g: u32) -> Self {
        self.groups = g;
        self
    }
    /// Length of the carried partial, `K − S`.
    pub fn partial_len(&self) -> u32 {
        self.kernel.saturating_sub(self.stride)
    }
    /// Elements of the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.c_in as usize * (self.c_out / self.groups.max(1)) as usize * self.kernel as usize
    }
    /// Output length for `t` inputs: `t·S`.
    pub fn out_len(&self, t: u32) -> u32 {
        t * self.stride
    }
    fn validate(&self, kernel: &'static str) -> GpuResult<()> {
        let bad = |m: String| Err(launch_err(kernel, m));
        if self.c_in == 0 || self.c_out == 0 || self.kernel == 0 {
            return bad(format!("empty conv-transpose {self:?}"));
        }
        if self.stride == 0 || self.groups == 0 {
            return bad(format!("stride and groups must be ≥ 1: {self:?}"));
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return bad(format!("groups must divide c_in and c_out: {self:?}"));
        }
        if self.kernel < self.stride {
            return bad(format!("kernel must be ≥ stride: {self:?}"));
        }
        Ok(())
    }
}

fn launch_err(kernel: &'static str, message: String) -> GpuError {
    GpuError::Launch { kernel, message }
}

/// Two state buffers, the parity saying which one holds the current state, and the
/// stream-start flag.
struct PingPong {
    bufs: [GpuBuffer; 2],
    parity: usize,
    first: bool,
}

impl PingPong {
    fn new(ctx: &Context, label: &str, bytes: u64) -> GpuResult<Self> {
        let a = ctx.create_buffer(&format!("{label} state a"), bytes, BufferUsage::Storage)?;
        let b = ctx.create_buffer(&format!("{label} state b"), bytes, BufferUsage::Storage)?;
        Ok(Self {
            bufs: [a, b],
            parity: 0,
            first: true,
        })
    }
    fn from_buffers(bufs: [GpuBuffer; 2], bytes: u64, kernel: &'static str) -> GpuResult<Self> {
        if bufs[0].id() == bufs[1].id() {
            return Err(launch_err(
                kernel,
                "the two state buffers must differ".into(),
            ));
        }
        for b in &bufs {
            if b.size() < bytes {
                return Err(launch_err(
                    kernel,
                    format!(
                        "state buffer '{}' has {} bytes, needs {bytes}",
                        b.label(),
                        b.size()
                    ),
                ));
            }
        }
        Ok(Self {
            bufs,
            parity: 0,
            first: true,
        })
    }
    /// (read, write) views of the first `bytes` bytes.
    fn pair(&self, bytes: u64) -> (View<'_>, View<'_>) {
        (
            self.bufs[self.parity].slice(0, bytes),
            self.bufs[self.parity ^ 1].slice(0, bytes),
        )
    }
    fn advance(&mut self) {
        self.parity ^= 1;
        self.first = false;
    }
}

/// Bytes of one state buffer: at least 4 (a binding is never empty).
fn state_bytes(elems: u64) -> u64 {
    (elems * 4).max(4)
}

/// The streaming state of one [`Conv1d`]: two `[C_in, P]` buffers (ping-pong) and whether the
/// stream has just started.
pub struct Conv1dState {
    conv: Conv1d,
    pp: PingPong,
}

impl Conv1dState {
    /// Bytes of each of the two state buffers (`C_in · P · 4`, at least 4).
    pub fn buffer_bytes(conv: &Conv1d) -> u64 {
        state_bytes(conv.c_in as u64 * conv.padding() as u64)
    }
    /// Allocate the two state buffers.
    pub fn new(ctx: &Context, label: &str, conv: Conv1d) -> GpuResult<Self> {
        conv.validate("conv1d")?;
        Ok(Self {
            conv,
            pp: PingPong::new(ctx, label, Self::buffer_bytes(&conv))?,
        })
    }
    /// Use two preallocated buffers of at least [`Self::buffer_bytes`] each (e.g. from a
    /// [`crate::gpu::BufferPlan`]); their content is ignored until the first call.
    pub fn from_buffers(conv: Conv1d, bufs: [GpuBuffer; 2]) -> GpuResult<Self> {
        conv.validate("conv1d")?;
        Ok(Self {
            conv,
            pp: PingPong::from_buffers(bufs, Self::buffer_bytes(&conv), "conv1d")?,
        })
    }
    pub fn conv(&self) -> &Conv1d {
        &self.conv
    }
    /// Start a new stream: the next call pads with zeros or replicates its first column.
    /// Records nothing (the state buffers are simply not read by the next call).
    pub fn reset(&mut self) {
        self.pp.first = true;
    }
    /// `true` until the first call after creation or [`Self::reset`].
    pub fn is_fresh(&self) -> bool {
        self.pp.first
    }
    /// The buffer holding the state after the last recorded call (`[C_in, P]`; meaningless
    /// while [`Self::is_fresh`]).
    pub fn current(&self) -> &GpuBuffer {
        &self.pp.bufs[self.pp.parity]
    }
}

/// The streaming state of one [`ConvTr1d`]: two `[C_out, K−S]` partial buffers (ping-pong).
pub struct ConvTr1dState {
    conv: ConvTr1d,
    pp: PingPong,
}

impl ConvTr1dState {
    /// Bytes of each of the two partial buffers (`C_out · (K−S) · 4`, at least 4).
    pub fn buffer_bytes(conv: &ConvTr1d) -> u64 {
        state_bytes(conv.c_out as u64 * conv.partial_len() as u64)
    }
    /// Allocate the two partial buffers.
    pub fn new(ctx: &Context, label: &str, conv: ConvTr1d) -> GpuResult<Self> {
        conv.validate("conv_tr1d")?;
        Ok(Self {
            conv,
            pp: PingPong::new(ctx, label, Self::buffer_bytes(&conv))?,
        })
    }
    /// Use two preallocated buffers of at least [`Self::buffer_bytes`] each.
    pub fn from_buffers(conv: ConvTr1d, bufs: [GpuBuffer; 2]) -> GpuResult<Self> {
        conv.validate("conv_tr1d")?;
        Ok(Self {
            conv,
            pp: PingPong::from_buffers(bufs, Self::buffer_bytes(&conv), "conv_tr1d")?,
        })
    }
    pub fn conv(&self) -> &ConvTr1d {
        &self.conv
    }
    /// Start a new stream: the next call treats the partial as zeros. Records nothing.
    pub fn reset(&mut self) {
        self.pp.first = true;
    }
    /// `true` until the first call after creation or [`Self::reset`].
    pub fn is_fresh(&self) -> bool {
        self.pp.first
    }
    /// The buffer holding the partial after the last recorded call (`[C_out, K−S]`).
    pub fn current(&self) -> &GpuBuffer {
        &self.pp.bufs[self.pp.parity]
    }
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

/// Streaming causal Conv1d: `y [C_out, T/S] = conv(cat(state, x))`, `x [C_in, T]`; updates the
/// state. `weights.weight` is `[C_out, C_in/G, K]`, `weights.bias` `[C_out]`. `t` must be a
/// positive multiple of the stride. `x` and the weights must not share a buffer with `y` (they
/// may share one another's).
pub fn conv1d(
    rec: &mut Recorder,
    state: &mut Conv1dState,
    weights: &ConvWeights,
    x: View,
    y: View,
    t: u32,
    opts: ConvOpts,
) -> GpuResult<()> {
    let ConvWeights { weight: w, bias } = *weights;
    let c = state.conv;
    let name = "conv1d";
    if t == 0 || !t.is_multiple_of(c.stride) {
        return Err(launch_err(
            name,
            format!(
                "t = {t} must be a positive multiple of the stride {}",
                c.stride
            ),
        ));
    }
    let t_out = t / c.stride;
    let pad = c.padding();
    let (cin_g, cout_g) = (c.c_in / c.groups, c.c_out / c.groups);
    let sbytes = Conv1dState::buffer_bytes(&c);
    let (s_in, s_out) = state.pp.pair(sbytes);
    let mut reads = vec![
        ("x", x, c.c_in as u64 * t as u64),
        ("w", w, c.weight_len() as u64),
    ];
    if let Some(b) = bias {
        reads.push(("bias", b, c.c_out as u64));
    }
    check_views(
        name,
        &reads,
        &[("y", y, c.c_out as u64 * t_out as u64), ("state", s_out, 0)],
    )?;
    check_views(name, &[("state", s_in, 0)], &[("y", y, 0)])?;

    let tiled_ok = c.groups == 1 || cout_g % TILE_CO == 0;
    let r_len = cin_g * c.kernel;
    // CPU adapters (lavapipe, SwiftShader) run the shared-memory reduction slowly: there the
    // long-T convs go to the tiled kernel (lavapipe, Mimi's encoder: 5–19× faster).
    let long_reduce = r_len >= AUTO_REDUCE_MIN_R && !rec.ctx().caps().is_software;
    let algo = match opts.algo {
        ConvAlgo::Auto if t_out <= AUTO_REDUCE_MAX_T || long_reduce => ConvAlgo::Reduce,
        ConvAlgo::Auto | ConvAlgo::Tiled if tiled_ok => ConvAlgo::Tiled,
        ConvAlgo::Auto | ConvAlgo::Tiled => ConvAlgo::Direct,
        a => a,
    };
    let tiles_t = t_out.div_ceil(if algo == ConvAlgo::Reduce {
        ROWS_TILE_T
    } else {
        DIRECT_TILE_T
    });
    // 4 output channels per invocation reuse each input sample 4 times, but make 4 times fewer
    // workgroups: on a GPU, keep at least DIRECT_MIN_GROUPS of them.
    let cot: u32 = if cout_g % 4 == 0
        && (rec.ctx().caps().is_software || tiles_t * c.c_out.div_ceil(16) >= DIRECT_MIN_GROUPS)
    {
        4
    } else {
        1
    };
    // conv1d_rows reads the weights as vec4 when every row starts 16-byte aligned.
    let vec4 = r_len.is_multiple_of(4) && w.offset.is_multiple_of(16);
    let main_groups = match algo {
        ConvAlgo::Reduce => c.c_out.div_ceil(ROWS_PER_WG) * tiles_t,
        ConvAlgo::Tiled => tiles_t * c.c_out.div_ceil(TILE_CO),
        _ => tiles_t * c.c_out.div_ceil(4 * cot),
    };
    let state_n = c.c_in * pad;
    let groups = main_groups + state_n.div_ceil(WG);
    let mut flags = 0;
    if bias.is_some() {
        flags |= F_HAS_BIAS;
    }
    if state.pp.first {
        flags |= F_FIRST;
    }
    if c.pad_mode == PadMode::Replicate {
        flags |= F_REPLICATE;
    }
    if opts.elu_input {
        flags |= F_ELU_IN;
    }
    if opts.accumulate {
        flags |= F_ACCUMULATE;
    }
    let p = Conv1dParams {
        c_in: c.c_in,
        c_out: c.c_out,
        k: c.kernel,
        stride: c.stride,
        dilation: c.dilation,
        cin_g,
        cout_g,
        pad,
        t_in: t,
        t_out,
        flags,
        main_groups,
        tiles_t,
        state_n,
        _pad: [0; 2],
    };
    let (kernel, variant, w) = match algo {
        ConvAlgo::Reduce if vec4 => (
            &CONV1D_ROWS,
            Variant::none().define("W_VEC4"),
            // Exactly the weights, so that the binding is a whole number of vec4s.
            View {
                size: c.weight_len() as u64 * 4,
                ..w
            },
        ),
        ConvAlgo::Reduce => (&CONV1D_ROWS, Variant::none(), w),
        ConvAlgo::Tiled => (&CONV1D_TILED, Variant::none(), w),
        _ => (
            &CONV1D_DIRECT,
            Variant::none().constant("COT", cot as i64),
            w,
        ),
    };
    let grid = super::grid_1d(groups, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(
        kernel,
        &variant,
        &[x, s_in, w, bias.unwrap_or(x), y, s_out],
        &p,
        grid,
    )?;
    state.pp.advance();
    Ok(())
}

/// Streaming causal ConvTranspose1d: `y [C_out, T·S]` from `x [C_in, T]`; updates the partial.
/// `weights.weight` is `[C_in, C_out/G, K]`, `weights.bias` `[C_out]`. `x` and the weights must
/// not share a buffer with `y`. `opts.accumulate` is not supported.
pub fn conv_tr1d(
    rec: &mut Recorder,
    state: &mut ConvTr1dState,
    weights: &ConvWeights,
    x: View,
    y: View,
    t: u32,
    opts: ConvOpts,
) -> GpuResult<()> {
    let ConvWeights { weight: w, bias } = *weights;
    let c = state.conv;
    let name = "conv_tr1d";
    if t == 0 {
        return Err(launch_err(name, "t must be positive".into()));
    }
    if opts.accumulate {
        return Err(launch_err(
            name,
            "accumulate is not supported by the conv-transpose".into(),
        ));
    }
    let (cin_g, cout_g) = (c.c_in / c.groups, c.c_out / c.groups);
    let pk = c.partial_len();
    let emit = t * c.stride;
    let l_full = (t - 1) * c.stride + c.kernel;
    let sbytes = ConvTr1dState::buffer_bytes(&c);
    let (s_in, s_out) = state.pp.pair(sbytes);
    let mut reads = vec![
        ("x", x, c.c_in as u64 * t as u64),
        ("w", w, c.weight_len() as u64),
    ];
    if let Some(b) = bias {
        reads.push(("bias", b, c.c_out as u64));
    }
    check_views(
        name,
        &reads,
        &[
            ("y", y, c.c_out as u64 * emit as u64),
            ("partial", s_out, 0),
        ],
    )?;
    check_views(name, &[("partial", s_in, 0)], &[("y", y, 0)])?;

    let co_per_wg = (COLS / c.kernel).max(1);
    let n_cols = co_per_wg * c.kernel;
    let cols_fit = c.kernel <= COLS_MAX_K && t as u64 * n_cols as u64 <= ZC_CAPACITY as u64;
    let algo = match opts.algo {
        ConvAlgo::Auto if cols_fit && t <= AUTO_REDUCE_MAX_T => ConvAlgo::Reduce,
        ConvAlgo::Auto | ConvAlgo::Tiled => ConvAlgo::Direct,
        ConvAlgo::Reduce if !cols_fit => {
            return Err(launch_err(
                name,
                format!(
                    "ConvAlgo::Reduce needs K ≤ {COLS_MAX_K} and T·{n_cols} ≤ {ZC_CAPACITY} (K = {}, T = {t})",
                    c.kernel
                ),
            ))
        }
        a => a,
    };
    let n_out = c.c_out as u64 * l_full as u64;
    if n_out > u32::MAX as u64 {
        return Err(launch_err(name, format!("too many outputs ({n_out})")));
    }
    let mut flags = 0;
    if bias.is_some() {
        flags |= F_HAS_BIAS;
    }
    if state.pp.first {
        flags |= F_FIRST;
    }
    if opts.elu_input {
        flags |= F_ELU_IN;
    }
    let p = ConvTrParams {
        c_in: c.c_in,
        c_out: c.c_out,
        k: c.kernel,
        stride: c.stride,
        cin_g,
        cout_g,
        t_in: t,
        l_full,
        emit,
        pk,
        flags,
        co_per_wg,
        n_cols,
        n_out: n_out as u32,
        _pad: [0; 2],
    };
    let (kernel, groups) = match algo {
        ConvAlgo::Reduce => (&CONVTR_COLS, c.c_out.div_ceil(co_per_wg)),
        _ => (&CONVTR_DIRECT, (n_out as u32).div_ceil(WG)),
    };
    let grid = super::grid_1d(groups, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(
        kernel,
        &Variant::none(),
        &[x, s_in, w, bias.unwrap_or(w), y, s_out],
        &p,
        grid,
    )?;
    state.pp.advance();
    Ok(())
}

/// Plain Rust references (f64 accumulation) for the tests: whole signals from a fresh stream.
pub mod reference {
    use super::{Conv1d, ConvTr1d, PadMode};

    pub fn elu(v: f32) -> f32 {
        if v > 0.0 {
            v
        } else {
            v.exp() - 1.0
        }
    }

    /// Causal Conv1d of a whole signal `x [c_in, t]` from a fresh state (left padding `P`:
    /// zeros or the first column replicated), optionally on `ELU(x)`. Returns `[c_out, t/S]`.
    pub fn conv1d(
        c: &Conv1d,
        x: &[f32],
        t: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        elu_input: bool,
    ) -> Vec<f32> {
        let (c_in, c_out, k, s, d) = (
            c.c_in as usize,
            c.c_out as usize,
            c.kernel as usize,
            c.stride as usize,
            c.dilation as usize,
        );
        let (cin_g, cout_g) = (c_in / c.groups as usize, c_out / c.groups as usize);
        let pad = c.padding() as usize;
        let len = pad + t;
        // The padded (and activated) input, [c_in, P + t].
        let mut xp = vec![0f32; c_in * len];
        for ci in 0..c_in {
            for j in 0..len {
                let v = if j >= pad {
                    x[ci * t + j - pad]
                } else {
                    match c.pad_mode {
                        PadMode::Zeros => {
                            continue;
                        }
                        PadMode::Replicate => x[ci * t],
                    }
                };
                xp[ci * len + j] = if elu_input { elu(v) } else { v };
            }
        }
        let t_out = t / s;
        let mut y = vec![0f32; c_out * t_out];
        for co in 0..c_out {
            let g = co / cout_g;
            for to in 0..t_out {
                let mut acc = bias.map(|b| b[co] as f64).unwrap_or(0.0);
                for cl in 0..cin_g {
                    let ci = g * cin_g + cl;
                    for kk in 0..k {
                        acc += w[(co * cin_g + cl) * k + kk] as f64
                            * xp[ci * len + to * s + kk * d] as f64;
                    }
                }
                y[co * t_out + to] = acc as f32;
            }
        }
        y
    }

    /// Causal ConvTranspose1d of a whole signal `x [c_in, t]`: the full transposed conv trimmed
    /// to its first `t·S` outputs, optionally on `ELU(x)`. Returns `[c_out, t·S]`.
    pub fn conv_tr1d(
        c: &ConvTr1d,
        x: &[f32],
        t: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        elu_input: bool,
    ) -> Vec<f32> {
        let (c_in, c_out, k, s) = (
            c.c_in as usize,
            c.c_out as usize,
            c.kernel as usize,
            c.stride as usize,
        );
        let (cin_g, cout_g) = (c_in / c.groups as usize, c_out / c.groups as usize);
        let full = (t - 1) * s + k;
        let mut z = vec![0f64; c_out * full];
        for ci in 0..c_in {
            let g = ci / cin_g;
            for cl in 0..cout_g {
                let co = g * cout_g + cl;
                for tt in 0..t {
                    let xv = x[ci * t + tt];
                    let xv = if elu_input { elu(xv) } else { xv } as f64;
                    for kk in 0..k {
                        z[co * full + tt * s + kk] += xv * w[(ci * cout_g + cl) * k + kk] as f64;
                    }
                }
            }
        }
        let emit = t * s;
        let mut y = vec![0f32; c_out * emit];
        for co in 0..c_out {
            let b = bias.map(|b| b[co] as f64).unwrap_or(0.0);
            for o in 0..emit {
                y[co * emit + o] = (z[co * full + o] + b) as f32;
            }
        }
        y
    }
}
