//! Pointwise activations, residual adds, a transpose and a plain copy (`shaders/elementwise.wgsl`).
//!
//! Layouts and dispatch: flat f32 arrays, one invocation per output element, workgroups of 256,
//! grid from [`super::grid_1d`].

use bytemuck::{Pod, Zeroable};

use crate::gpu::{Binding, GpuError, GpuResult, Kernel, Recorder, Variant, View};

const SRC: &str = include_str!("../../shaders/elementwise.wgsl");
/// Invocations per workgroup (injected into the WGSL as `WG`).
pub const WG: u32 = 256;

const BINDINGS: &[Binding] = &[Binding::Read, Binding::Read, Binding::ReadWrite];
const fn kernel(entry: &'static str, defines: &'static [&'static str]) -> Kernel {
    Kernel {
        name: entry,
        source: SRC,
        entry,
        bindings: BINDINGS,
        defines,
        consts: &[("WG", WG)],
        workgroup: [WG, 1, 1],
        params: &Params::LAYOUT,
    }
}
static ELU: Kernel = kernel("elu", &[]);
static GELU: Kernel = kernel("gelu_erf", &[]);
static SILU_GATE: Kernel = kernel("silu_gate", &[]);
static TRANSPOSE: Kernel = kernel("transpose", &[]);
static COPY: Kernel = kernel("copy", &["COPY"]);
static RESIDUAL: Kernel = kernel("residual_add", &[]);
static RESIDUAL_SUM: Kernel = kernel("residual_sum", &[]);

/// The kernel variants this module launches (for `tests/reflect.rs`).
pub fn variants(_device: &[&str]) -> Vec<(&'static Kernel, Variant)> {
    [
        &ELU,
        &GELU,
        &SILU_GATE,
        &TRANSPOSE,
        &COPY,
        &RESIDUAL,
        &RESIDUAL_SUM,
    ]
    .into_iter()
    .map(|k| (k, Variant::none()))
    .collect()
}

crate::params_struct! {
    #[derive(Clone, Copy, Pod, Zeroable, Default)]
    struct Params {
        n: u32,
        hidden: u32,
        channels: u32,
        channel_stride: u32,
        use_scale: u32,
        parts: u32,
        _pad: [u32; 2],
    }
}

fn launch(rec: &mut Recorder, k: &'static Kernel, views: [View; 3], p: Params) -> GpuResult<()> {
    let groups = super::grid_1d(
        p.n.div_ceil(WG),
        rec.ctx().caps().max_workgroups_per_dimension,
    );
    rec.launch(k, &Variant::none(), &views, &p, groups)
}

/// `y[i] = x[i]` for `n` f32, `n` a multiple of 4 (one vec4 per invocation): a plain streaming
/// copy, the bandwidth yardstick of `parle bench kernels`. `y` must not share `x`'s buffer.
pub fn copy(rec: &mut Recorder, x: View, y: View, n: u32) -> GpuResult<()> {
    let bad = |message: String| GpuError::Launch {
        kernel: COPY.name,
        message,
    };
    if !n.is_multiple_of(4) {
        return Err(bad(format!("n = {n} must be a multiple of 4")));
    }
    if x.buffer.id() == y.buffer.id() {
        return Err(bad("y must be a different buffer from x".into()));
    }
    if x.size < n as u64 * 4 || y.size < n as u64 * 4 {
        return Err(bad(format!(
            "{n} f32 need {} bytes: x has {}, y has {}",
            n as u64 * 4,
            x.size,
            y.size
        )));
    }
    let p = Params {
        n: n / 4,
        ..Default::default()
    };
    launch(rec, &COPY, [x, x, y], p)
}

/// `y = ELU(x)` (alpha 1) over `n` elements. `y` may not alias `x`.
pub fn elu(rec: &mut Recorder, x: View, y: View, n: u32) -> GpuResult<()> {
    launch(
        rec,
        &ELU,
        [x, x, y],
        Params {
            n,
            ..Default::default()
        },
    )
}

/// `y = GELU(x)` with the exact erf form, over `n` elements.
pub fn gelu_erf(rec: &mut Recorder, x: View, y: View, n: u32) -> GpuResult<()> {
    launch(
        rec,
        &GELU,
        [x, x, y],
        Params {
            n,
            ..Default::default()
        },
    )
}

/// `u` is `[rows, 2H]`; `y[r, j] = silu(u[r, j]) * u[r, H + j]`, `y` is `[rows, H]`.
pub fn silu_gate(rec: &mut Recorder, u: View, y: View, rows: u32, hidden: u32) -> GpuResult<()> {
    launch(
        rec,
        &SILU_GATE,
        [u, u, y],
        Params {
            n: rows * hidden,
            hidden,
            ..Default::default()
        },
    )
}

/// `y += scale ⊙ r` (or `y += r` when `scale` is `None`) over `n` elements, in place.
/// The channel of element `i` is `(i / channel_stride) % channels`: use `channel_stride = 1`
/// for `[T, C]` layouts and `channel_stride = T` for `[C, T]` layouts.
pub fn residual_add(
    rec: &mut Recorder,
    r: View,
    scale: Option<View>,
    y: View,
    n: u32,
    channels: u32,
    channel_stride: u32,
) -> GpuResult<()> {
    let p = Params {
        n,
        channels: channels.max(1),
        channel_stride: channel_stride.max(1),
        use_scale: scale.is_some() as u32,
        ..Default::default()
    };
    launch(rec, &RESIDUAL, [r, scale.unwrap_or(r), y], p)
}

/// `y[i] += scale[i % channels] · Σ_{j < parts} partials[j·n + i]` (or without the scale) over
/// the `n` elements of `y` `[rows, channels]`, in place: the sum of [`crate::kernels::linear::mlp_split`]'s
/// partial outputs `[parts, n]` added to the residual stream.
pub fn residual_sum(
    rec: &mut Recorder,
    partials: View,
    parts: u32,
    scale: Option<View>,
    y: View,
    n: u32,
    channels: u32,
) -> GpuResult<()> {
    if parts == 0 || partials.size < parts as u64 * n as u64 * 4 || y.size < n as u64 * 4 {
        return Err(GpuError::Launch {
            kernel: "residual_sum",
            message: format!(
                "needs ≥ 1 part, {parts} × {n} partial f32 and {n} outputs, got views of {} and {} bytes",
                partials.size, y.size
            ),
        });
    }
    let p = Params {
        n,
        channels: channels.max(1),
        use_scale: scale.is_some() as u32,
        parts,
        ..Default::default()
    };
    launch(
        rec,
        &RESIDUAL_SUM,
        [partials, scale.unwrap_or(partials), y],
        p,
    )
}

/// `x` is `[rows, cols]` row-major; `y = xᵀ` is `[cols, rows]`. Converts between the codec's
/// channel-major `[C, T]` and the transformer's `[T, C]`.
pub fn transpose(rec: &mut Recorder, x: View, y: View, rows: u32, cols: u32) -> GpuResult<()> {
    launch(
        rec,
        &TRANSPOSE,
        [x, x, y],
        Params {
            n: rows * cols,
            hidden: cols,
            channels: rows,
            ..Default::default()
        },
    )
}

/// Plain Rust references for the tests.
pub mod reference {
    pub fn elu(x: &[f32]) -> Vec<f32> {
        x.iter()
            .map(|&v| if v > 0.0 { v } else { v.exp() - 1.0 })
            .collect()
    }
    pub fn erf(x: f64) -> f64 {
        // Abramowitz–Stegun 7.1.26 is too coarse; use a series / continued fraction in f64.
        let z = x.abs();
        let r = if z < 3.0 {
            // Maclaurin series: erf z = 2/sqrt(pi) Σ (-1)^n z^(2n+1) / (n! (2n+1))
            let mut sum: f64 = 0.0;
            let mut term: f64 = z;
            let mut n = 0.0;
            while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -z * z / n;
                if n > 200.0 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // Continued fraction for erfc at large z.
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (z + f);
            }
            1.0 - (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + f)
        };
        if x < 0.0 {
            -r
        } else {
            r
        }
    }
    pub fn gelu_erf(x: &[f32]) -> Vec<f32> {
        x.iter()
            .map(|&v| (0.5 * v as f64 * (1.0 + erf(v as f64 / std::f64::consts::SQRT_2))) as f32)
            .collect()
    }
    pub fn silu_gate(u: &[f32], rows: usize, hidden: usize) -> Vec<f32> {
        let mut y = vec![0.0; rows * hidden];
        for r in 0..rows {
            for j in 0..hidden {
                let g = u[r * 2 * hidden + j];
                let v = u[r * 2 * hidden + hidden + j];
                y[r * hidden + j] = g / (1.0 + (-g).exp()) * v;
            }
        }
        y
    }
    pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut y = vec![0.0; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                y[c * rows + r] = x[r * cols + c];
            }
        }
        y
    }
    pub fn residual_add(
        y: &mut [f32],
        r: &[f32],
        scale: Option<&[f32]>,
        channels: usize,
        channel_stride: usize,
    ) {
        for i in 0..y.len() {
            let s = scale
                .map(|s| s[(i / channel_stride) % channels])
                .unwrap_or(1.0);
            y[i] += s * r[i];
        }
    }
}
