//! A transformer's MLP split by hidden units (`layer.wgsl`'s `mlp_split` entry point, define
//! `MLP_SPLIT`): one launch computes `part[j] = W2[:, j·S ..+S] · act(W1[j·S ..+S, :] · norm(x))`
//! for every block `j` of [`MS_BLOCK`] hidden units, one workgroup per block, so that the MLP's
//! output is `Σ_j part[j]`, summed by whatever reads it next (a few-workgroup launch that can
//! afford to read `H / S` partial vectors: the next layer's fused in-projection, or
//! [`crate::kernels::elementwise::residual_sum`]).
//!
//! Workgroup `j` (grid `[H / S, 1, 1]`) computes its `S` hidden units (GELU MLP: rows `j·S + r`
//! of `W1`; SiLU-gated: the gate rows `j·S + r` and the up rows `H + j·S + r` of `linear_in`) for
//! the `m ≤ `[`MS_MAX_ROWS`] batch rows with the norm applied as `x` is loaded (as the linear
//! kernel and [`super::qkv_attention`] do), applies the activation into workgroup memory, then
//! reads its column block of `W2` (`[N, H]`, the same format) with the same per-format loads and
//! writes `part` `[H / S, m, N]` f32.

use super::{define, err, group_shift, need, one_part, step, variant, within_binding};
use super::{LinearInput, LinearWeights, FORMAT_DEFINES, QA_LANES, WG};
use super::{Params, CONSTS, INPUT_DEFINES};
use crate::gpu::{Binding, GpuResult, Kernel, Recorder, Variant, View};

/// Hidden units per workgroup (`S`, injected as `MS_S`): a multiple of every format's block or
/// group along K (32 or 64 weights).
pub const MS_BLOCK: u32 = 64;
/// Most batch rows per call (the kernel's batch tiles 1 and 2).
pub const MS_MAX_ROWS: u32 = 2;

// hu + ha + the reduction slots of the largest tile.
const _: () = assert!(
    MS_MAX_ROWS * 2 * MS_BLOCK * 4 + MS_MAX_ROWS * MS_BLOCK * 4 + WG * MS_MAX_ROWS * 16 <= 16384
);

const MS_CONSTS: &[(&str, u32)] = &[("QL", QA_LANES), ("MS_S", MS_BLOCK)];

/// [`CONSTS`] followed by [`MS_CONSTS`].
const ALL_CONSTS: [(&str, u32); CONSTS.len() + MS_CONSTS.len()] = super::consts_with(MS_CONSTS);

static KERNEL_MLP_SPLIT: Kernel = Kernel {
    name: "linear_mlp_split",
    source: super::LAYER_SRC,
    entry: "mlp_split",
    bindings: &[
        Binding::Read,      // w (W1)
        Binding::Read,      // s
        Binding::Read,      // x
        Binding::Read,      // w2
        Binding::ReadWrite, // part (y)
        Binding::Read,      // nw
        Binding::Read,      // nb
        Binding::Read,      // s2
    ],
    defines: &["MLP_SPLIT"],
    consts: &ALL_CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The MLP's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlpAct {
    /// `W1` is `[H, K]`; `a = GELU(W1·x)` (exact erf).
    Gelu,
    /// `W1` is `[2H, K]` (gate rows, then up rows); `a = silu(g) · u`.
    SiluGate,
}

/// The variants [`mlp_split`] launches: every weight format × {plain, RMSNorm, LayerNorm} input
/// × both activations × batch tiles 1 and 2.
pub(super) fn variants() -> Vec<(&'static Kernel, Variant)> {
    let mut out = Vec::new();
    for f in FORMAT_DEFINES {
        for i in &INPUT_DEFINES[..3] {
            for mt in 1..=MS_MAX_ROWS {
                for silu in [false, true] {
                    let v = variant(f, i, mt);
                    out.push((
                        &KERNEL_MLP_SPLIT,
                        if silu { v.define("ACT_SILU") } else { v },
                    ));
                }
            }
        }
    }
    out
}

/// `part[j, i, :] = w2[:, jS..jS+S] · act(w1 rows of block j · norm(x[i]))` for the `m ≤
/// `[`MS_MAX_ROWS`] rows of `x` `[m, K]` (see the module doc): `w1` `[H, K]` (GELU) or `[2H, K]`
/// (SiLU-gated), `w2` `[N, H]` in the same format, `H` a multiple of [`MS_BLOCK`]; `part`
/// `[H / MS_BLOCK, m, N]` f32. No biases. `Σ_j part[j]` equals the unfused MLP up to f32
/// rounding (sums in another order).
#[allow(clippy::too_many_arguments)]
pub fn mlp_split(
    rec: &mut Recorder,
    w1: &LinearWeights,
    w2: &LinearWeights,
    x: View,
    part: View,
    m: u32,
    input: LinearInput,
    act: MlpAct,
) -> GpuResult<()> {
    let (k, hidden, n) = (w1.k, w2.k, w2.n);
    let rows1 = match act {
        MlpAct::Gelu => hidden,
        MlpAct::SiluGate => 2 * hidden,
    };
    if m == 0 || m > MS_MAX_ROWS {
        return Err(err(format!(
            "the split MLP takes 1 to {MS_MAX_ROWS} rows per call, got {m}"
        )));
    }
    if hidden == 0 || !hidden.is_multiple_of(MS_BLOCK) || w1.n != rows1 {
        return Err(err(format!(
            "the split MLP needs a hidden size that is a positive multiple of {MS_BLOCK} and a first weight of {} × hidden rows ({act:?}), got hidden {hidden} and {} rows",
            if act == MlpAct::Gelu { 1 } else { 2 },
            w1.n
        )));
    }
    if w1.format != w2.format || n == 0 || !n.is_multiple_of(4) {
        return Err(err(format!(
            "the split MLP needs both weights in one format and an output width that is a multiple of 4, got {:?} and {:?}, width {n}",
            w1.format, w2.format
        )));
    }
    if !matches!(
        input,
        LinearInput::Plain | LinearInput::RmsNorm { .. } | LinearInput::LayerNorm { .. }
    ) {
        return Err(err(format!(
            "the split MLP takes a plain, RMSNorm or LayerNorm input, got {input:?}"
        )));
    }
    let (input_define, norm_w, norm_b, eps) = super::input_parts(input)?;
    let (p1, p2) = (
        one_part(w1, "the split MLP needs the first weight's rows")?,
        one_part(w2, "the split MLP needs the second weight's rows")?,
    );
    for (what, v) in [
        ("x", Some(x)),
        ("the norm weight", norm_w),
        ("the norm bias", norm_b),
    ] {
        if let Some(v) = v {
            if v.buffer.id() == part.buffer.id() {
                return Err(err(format!(
                    "part must be a different buffer from {what} (a written binding cannot alias a read one)"
                )));
            }
        }
    }
    let blocks = hidden / MS_BLOCK;
    need(&x, "x", m as u64 * k as u64)?;
    need(&part, "part", blocks as u64 * m as u64 * n as u64)?;
    for (v, what) in [(&norm_w, "norm weight"), (&norm_b, "norm bias")] {
        if let Some(v) = v {
            need(v, what, k as u64)?;
        }
    }
    let max_binding = rec.ctx().caps().max_storage_binding;
    within_binding(p1, max_binding)?;
    within_binding(p2, max_binding)?;
    let mut variant = variant(define(w1.format), input_define, m);
    if act == MlpAct::SiluGate {
        variant = variant.define("ACT_SILU");
    }
    let p = Params {
        n,
        k,
        m,
        row_offset: w1.row_offset - p1.first_row,
        chunks: k / step(w1.format),
        group_shift: group_shift(w1.format),
        x_stride: k / 4,
        eps,
        chunks2: hidden / step(w2.format),
        hidden,
        row_offset2: w2.row_offset - p2.first_row,
        ..Params::default()
    };
    rec.note_reads(w1.bytes() + w2.bytes() + m as u64 * k as u64 * 4);
    let data = p1.data.view();
    let scales = p1.scales.as_ref().map(|s| s.view()).unwrap_or(data);
    let data2 = p2.data.view();
    let scales2 = p2.scales.as_ref().map(|s| s.view()).unwrap_or(data2);
    rec.launch(
        &KERNEL_MLP_SPLIT,
        &variant,
        &[
            data,
            scales,
            x,
            data2,
            part,
            norm_w.unwrap_or(x),
            norm_b.unwrap_or(x),
            scales2,
        ],
        &p,
        [blocks, 1, 1],
    )
}
