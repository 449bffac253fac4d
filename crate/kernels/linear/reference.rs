//! Plain Rust references for the tests.

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
        Input::RmsNorm { weight, eps } => norm::reference::rms_norm(&x[..m * k], weight, k, eps),
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
