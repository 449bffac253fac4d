//! Row softmax (`shaders/softmax.wgsl`).
//!
//! Layout: `x`, `y` row-major `[rows, n]` f32; `y[r, i] = exp(s·x[r, i] − m) / Σ_j exp(s·x[r, j] − m)`
//! with `m` the row max of `s·x` and `s` a scale (1/temperature, 1 for a plain softmax).
//! Out of place ([`softmax`], `y` must not alias `x`) or in place ([`softmax_inplace`]).
//! Dispatch: one workgroup of 256 invocations per row (grid from [`super::grid_1d`]); one pass
//! keeps an online (max, sum) per invocation, merged across the workgroup (subgroups when on,
//! shared memory otherwise), a second pass writes. Any `n >= 1` (Moshi's text head: 32000).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};

const SRC: &str = include_str!("../../shaders/softmax.wgsl");
/// Invocations per workgroup (one workgroup per row; injected into the WGSL as `WG`). A power of
/// two (the shared-memory tree halves it).
pub const WG: u32 = 256;
const _: () = assert!(WG.is_power_of_two());

static SOFTMAX: Kernel = Kernel {
    name: "softmax",
    source: SRC,
    entry: "entry",
    bindings: &[Binding::Read, Binding::ReadWrite],
    defines: &[],
    consts: &[("WG", WG)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};
static SOFTMAX_INPLACE: Kernel = Kernel {
    name: "softmax_inplace",
    source: SRC,
    entry: "entry",
    bindings: &[Binding::ReadWrite],
    defines: &["INPLACE"],
    consts: &[("WG", WG)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    vec![
        (&SOFTMAX, Variant::none()),
        (&SOFTMAX_INPLACE, Variant::none()),
    ]
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default)]
    struct Params {
        rows: u32,
        n: u32,
        scale: f32,
        _pad: u32,
    }
}

fn check(kernel: &'static str, views: &[(&str, &View)], rows: u32, n: u32) -> GpuResult<()> {
    let need = rows as u64 * n as u64 * 4;
    if n == 0 {
        return Err(GpuError::Launch {
            kernel,
            message: "row length n must be at least 1".into(),
        });
    }
    for (name, v) in views {
        if v.size < need {
            return Err(GpuError::Launch {
                kernel,
                message: format!(
                    "{name} has {} bytes, needs {need} for rows={rows} n={n}",
                    v.size
                ),
            });
        }
    }
    Ok(())
}

/// `y = softmax(scale · x)` over each of `rows` rows of `n`, out of place.
pub fn softmax(
    rec: &mut Recorder,
    x: View,
    y: View,
    rows: u32,
    n: u32,
    scale: f32,
) -> GpuResult<()> {
    check(SOFTMAX.name, &[("x", &x), ("y", &y)], rows, n)?;
    let p = Params {
        rows,
        n,
        scale,
        _pad: 0,
    };
    let groups = super::grid_1d(rows, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(&SOFTMAX, &Variant::none(), &[x, y], &p, groups)
}

/// `y = softmax(scale · y)` over each of `rows` rows of `n`, in place.
pub fn softmax_inplace(
    rec: &mut Recorder,
    y: View,
    rows: u32,
    n: u32,
    scale: f32,
) -> GpuResult<()> {
    check(SOFTMAX_INPLACE.name, &[("y", &y)], rows, n)?;
    let p = Params {
        rows,
        n,
        scale,
        _pad: 0,
    };
    let groups = super::grid_1d(rows, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(&SOFTMAX_INPLACE, &Variant::none(), &[y], &p, groups)
}

/// Plain Rust reference (f64) for the tests.
pub mod reference {
    /// Softmax of `scale · x` over each `n`-row.
    pub fn softmax(x: &[f32], n: usize, scale: f32) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for (xr, yr) in x.chunks(n).zip(y.chunks_mut(n)) {
            let m = xr
                .iter()
                .map(|&v| v as f64 * scale as f64)
                .fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = xr
                .iter()
                .map(|&v| (v as f64 * scale as f64 - m).exp())
                .collect();
            let s: f64 = e.iter().sum();
            for (o, v) in yr.iter_mut().zip(e) {
                *o = (v / s) as f32;
            }
        }
        y
    }
}
