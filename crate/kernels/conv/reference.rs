//! Plain Rust references (f64 accumulation) for the tests: whole signals from a fresh stream.

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
