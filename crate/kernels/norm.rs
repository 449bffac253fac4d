//! RMSNorm and LayerNorm over rows (`shaders/norm.wgsl`).
//!
//! Layouts: `x` and `y` are row-major `[rows, d]` f32, out of place (`y` must not alias `x`);
//! `w` (RMSNorm alpha or LayerNorm weight) and `b` (LayerNorm bias) are `[d]` f32.
//! Dispatch: one workgroup of 256 invocations per row (grid from [`super::grid_1d`]), each
//! invocation striding over the row; f32 accumulation, subgroup reductions when the device has
//! them, a shared-memory tree otherwise. Any `d >= 1` works (Moshi 4096 and 1024, Mimi 512).

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};

const SRC: &str = include_str!("../../shaders/norm.wgsl");
/// Invocations per workgroup (one workgroup per row; injected into the WGSL as `WG`). A power of
/// two (the shared-memory tree halves it).
pub const WG: u32 = 256;
const _: () = assert!(WG.is_power_of_two());

/// Moshi's RMSNorm epsilon (`rms_norm_f32`).
pub const RMS_EPS_MOSHI: f32 = 1e-8;
/// Mimi's LayerNorm epsilon (`nn.LayerNorm` default).
pub const LAYER_EPS_MIMI: f32 = 1e-5;

static RMS: Kernel = Kernel {
    name: "rms_norm",
    source: SRC,
    entry: "entry",
    bindings: &[Binding::Read, Binding::Read, Binding::ReadWrite],
    defines: &[],
    consts: &[("WG", WG)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};
static LAYER: Kernel = Kernel {
    name: "layer_norm",
    source: SRC,
    entry: "entry",
    bindings: &[
        Binding::Read,
        Binding::Read,
        Binding::Read,
        Binding::ReadWrite,
    ],
    defines: &["LAYER"],
    consts: &[("WG", WG)],
    workgroup: [WG, 1, 1],
    params: &Params::LAYOUT,
};

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    vec![(&RMS, Variant::none()), (&LAYER, Variant::none())]
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default)]
    struct Params {
        rows: u32,
        d: u32,
        eps: f32,
        _pad: u32,
    }
}

fn check(kernel: &'static str, rows: u32, d: u32, views: &[(&str, &View, u64)]) -> GpuResult<()> {
    let bad = |message: String| GpuError::Launch { kernel, message };
    if d == 0 {
        return Err(bad("row length d must be at least 1".into()));
    }
    for (name, v, floats) in views {
        if v.size < floats * 4 {
            return Err(bad(format!(
                "{name} has {} bytes, needs {} ({floats} f32) for rows={rows} d={d}",
                v.size,
                floats * 4
            )));
        }
    }
    Ok(())
}

/// RMSNorm: `y[r, i] = x[r, i] * w[i] / sqrt(mean_i(x[r, i]^2) + eps)` for `rows` rows of `d`.
/// Moshi uses `eps = 1e-8` ([`RMS_EPS_MOSHI`]).
pub fn rms_norm(
    rec: &mut Recorder,
    x: View,
    w: View,
    y: View,
    rows: u32,
    d: u32,
    eps: f32,
) -> GpuResult<()> {
    let n = rows as u64 * d as u64;
    check(
        RMS.name,
        rows,
        d,
        &[("x", &x, n), ("w", &w, d as u64), ("y", &y, n)],
    )?;
    let p = Params {
        rows,
        d,
        eps,
        _pad: 0,
    };
    let groups = super::grid_1d(rows, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(&RMS, &Variant::none(), &[x, w, y], &p, groups)
}

/// A LayerNorm's parameters: `weight` and `bias` `[d]` f32 and `eps` (Mimi: 1e-5,
/// [`LAYER_EPS_MIMI`]).
#[derive(Debug, Clone, Copy)]
pub struct LayerNorm<'a> {
    pub weight: View<'a>,
    pub bias: View<'a>,
    pub eps: f32,
}

impl LayerNorm<'_> {
    /// `y = (x - mean) / sqrt(var + eps) * weight + bias` per row (biased variance), for `rows`
    /// rows of `d`.
    pub fn apply(&self, rec: &mut Recorder, x: View, y: View, rows: u32, d: u32) -> GpuResult<()> {
        layer_norm_launch(rec, x, self, y, rows, d)
    }
}

fn layer_norm_launch(
    rec: &mut Recorder,
    x: View,
    ln: &LayerNorm,
    y: View,
    rows: u32,
    d: u32,
) -> GpuResult<()> {
    let LayerNorm {
        weight: w,
        bias: b,
        eps,
    } = *ln;
    let n = rows as u64 * d as u64;
    check(
        LAYER.name,
        rows,
        d,
        &[
            ("x", &x, n),
            ("w", &w, d as u64),
            ("b", &b, d as u64),
            ("y", &y, n),
        ],
    )?;
    let p = Params {
        rows,
        d,
        eps,
        _pad: 0,
    };
    let groups = super::grid_1d(rows, rec.ctx().caps().max_workgroups_per_dimension);
    rec.launch(&LAYER, &Variant::none(), &[x, w, b, y], &p, groups)
}

/// Plain Rust references (f64 accumulation) for the tests.
pub mod reference {
    /// RMSNorm of each `d`-row of `x`.
    pub fn rms_norm(x: &[f32], w: &[f32], d: usize, eps: f32) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for (xr, yr) in x.chunks(d).zip(y.chunks_mut(d)) {
            let ms = xr.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64;
            let r = 1.0 / (ms + eps as f64).sqrt();
            for i in 0..d {
                yr[i] = (xr[i] as f64 * r * w[i] as f64) as f32;
            }
        }
        y
    }

    /// LayerNorm (biased variance) of each `d`-row of `x`.
    pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], d: usize, eps: f32) -> Vec<f32> {
        let mut y = vec![0.0; x.len()];
        for (xr, yr) in x.chunks(d).zip(y.chunks_mut(d)) {
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = xr
                .iter()
                .map(|&v| (v as f64 - mean) * (v as f64 - mean))
                .sum::<f64>()
                / d as f64;
            let r = 1.0 / (var + eps as f64).sqrt();
            for i in 0..d {
                yr[i] = ((xr[i] as f64 - mean) * r * w[i] as f64 + b[i] as f64) as f32;
            }
        }
        y
    }
}
