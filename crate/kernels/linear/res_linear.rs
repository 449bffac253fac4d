//! A linear on the residual stream of a split transformer (`layer.wgsl`'s `res_linear` entry
//! point, defines `RES_LINEAR` + `RES_IN`): `y = W · x_L` where `x_L = x_{L−1} + ls2 ⊙ Σ_j
//! part[j]` is summed from the last layer's [`super::mlp_split`] partials inside the launch, so
//! that a head after a split transformer (the depformer's `linears.k`) needs no
//! [`crate::kernels::elementwise::residual_sum`] launch before it.
//!
//! Workgroup `t` (grid `[ceil(N / `[`RL_ROWS`]`)]`, split 2-D by [`crate::kernels::grid_1d`],
//! [`super::WG`] invocations) forms `x_L` for the `m ≤ `[`RL_MAX_ROWS`] batch rows in workgroup
//! memory (every workgroup reads all `parts · m · K` partial floats, hence the tall tile: few
//! workgroups), then computes output rows `[t·RL_ROWS, t·RL_ROWS + RL_ROWS)` as row quads,
//! [`super::QA_LANES`] invocations per quad striding over K with the linear kernel's per-format
//! `step`, `WG / QA_LANES` quads at a time, a shared-memory tree over the lanes. Workgroup 0 also
//! stores `x_L` at the stream's `write` offset. Plain input (no norm), no bias, store only.

use super::{define, err, group_shift, need, one_part, step, variant, within_binding};
use super::{LinearWeights, ResidualIn, FORMAT_DEFINES, QA_LANES, QA_RES_MAX, WG};
use super::{Params, CONSTS, INPUT_DEFINES};
use crate::gpu::{Binding, GpuResult, Kernel, Recorder, Variant, View};

/// Output rows per workgroup (injected as `RL_ROWS`): 16 row quads, 4 rounds of
/// `WG / QA_LANES` quads.
pub const RL_ROWS: u32 = 64;
/// Most batch rows per call (the batch tiles 1 and 2).
pub const RL_MAX_ROWS: u32 = 2;

const _: () = assert!(RL_ROWS.is_multiple_of(4 * WG / QA_LANES));
// xr + the reduction slots of the largest tile.
const _: () = assert!(QA_RES_MAX * 4 + WG * RL_MAX_ROWS * 16 <= 16384);

const RL_CONSTS: &[(&str, u32)] = &[
    ("QL", QA_LANES),
    ("RES_MAX", QA_RES_MAX),
    ("RL_ROWS", RL_ROWS),
];

/// [`CONSTS`] followed by [`RL_CONSTS`].
const ALL_CONSTS: [(&str, u32); CONSTS.len() + RL_CONSTS.len()] = super::consts_with(RL_CONSTS);

static KERNEL_RES_LINEAR: Kernel = Kernel {
    name: "linear_res",
    source: super::LAYER_SRC,
    entry: "res_linear",
    bindings: &[
        Binding::Read,      // w
        Binding::Read,      // s
        Binding::Read,      // x (the partial outputs)
        Binding::Read,      // bias (unread)
        Binding::ReadWrite, // y
        Binding::ReadWrite, // res
        Binding::Read,      // pk
        Binding::Read,      // scale (unread)
    ],
    defines: &["RES_IN", "RES_LINEAR"],
    consts: &ALL_CONSTS,
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The variants [`linear_res`] launches: every weight format × batch tiles 1 and 2, plain input.
pub(super) fn variants() -> Vec<(&'static Kernel, Variant)> {
    FORMAT_DEFINES
        .iter()
        .flat_map(|f| {
            (1..=RL_MAX_ROWS).map(move |mt| (&KERNEL_RES_LINEAR, variant(f, INPUT_DEFINES[0], mt)))
        })
        .collect()
}

/// `y[i, :] = W · x_L[i, :]` for the `m ≤ `[`RL_MAX_ROWS`] rows of `x_L = x_{L−1} + ls2 ⊙ Σ_j
/// parts[j]` (see [`ResidualIn`]; `packed`'s third row is `ls2`, its norm rows and
/// `res.layer_norm` / `res.eps` are not read: the input is plain), `w` `[N, K]` in one weight part,
/// `y` `[m, N]` f32; `x_L` is also written to the stream at `res.write`. `m · K ≤
/// `[`QA_RES_MAX`]. Equals `residual_sum` followed by [`super::linear`] up to f32 rounding (sums
/// in another order).
pub fn linear_res(
    rec: &mut Recorder,
    w: &LinearWeights,
    res: &ResidualIn,
    y: View,
    m: u32,
) -> GpuResult<()> {
    let (n, k) = (w.n, w.k);
    if m == 0 || m > RL_MAX_ROWS {
        return Err(err(format!(
            "the residual-input linear takes 1 to {RL_MAX_ROWS} rows per call, got {m}"
        )));
    }
    res.check(k, m)?;
    let part = one_part(w, "the residual-input linear needs its weight rows")?;
    let id = y.buffer.id();
    for (what, v) in [
        ("the partial outputs", res.parts),
        ("the residual stream", res.stream),
        ("the packed layer scale", res.packed),
    ] {
        if v.buffer.id() == id {
            return Err(err(format!(
                "y must be a different buffer from {what} (a written binding cannot alias a read one)"
            )));
        }
    }
    need(&y, "y", m as u64 * n as u64)?;
    let caps = rec.ctx().caps();
    within_binding(part, caps.max_storage_binding)?;
    let p = Params {
        n,
        k,
        m,
        row_offset: w.row_offset - part.first_row,
        chunks: k / step(w.format),
        group_shift: group_shift(w.format),
        y_stride: n,
        x_stride: k / 4,
        res_in: res.read / 4,
        res_out: res.write / 4,
        parts: res.count,
        ..Params::default()
    };
    rec.note_reads(w.bytes() + m as u64 * k as u64 * 4 * (1 + res.count as u64));
    let data = part.data.view();
    let scales = part.scales.as_ref().map(|s| s.view()).unwrap_or(data);
    let x = res.parts;
    rec.launch(
        &KERNEL_RES_LINEAR,
        &variant(define(w.format), INPUT_DEFINES[0], m),
        &[data, scales, x, x, y, res.stream, res.packed, x],
        &p,
        crate::kernels::grid_1d(n.div_ceil(RL_ROWS), caps.max_workgroups_per_dimension),
    )
}
