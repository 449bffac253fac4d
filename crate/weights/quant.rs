//! Quantizers and dequantizers on the *published* layouts (ggml Q8_0 blocks, MLX affine codes),
//! written to reproduce the reference tools bit for bit (used by `--quant`, tests and tools).

use half::{bf16, f16};

use super::{WeightFormat, WeightsError};

/// MLX affine-quantized tensors as published: codes u32 `[rows, k·bits/32]` (low bits first),
/// scales and biases as bf16 bit patterns `[rows, k/group]`.
#[derive(Debug, Clone)]
pub struct MlxAffine {
    pub bits: u32,
    pub group: u32,
    pub weight: Vec<u32>,
    pub scales: Vec<u16>,
    pub biases: Vec<u16>,
}

/// ggml `quantize_row_q8_0_ref` on rows of `k` weights: per 32 weights, `d = max|w| / 127`,
/// `q = round(w / d)` (half away from zero), stored as f16 `d` + 32 int8 (34 bytes).
pub fn q8_0_quantize(w: &[f32], k: u32) -> Result<Vec<u8>, WeightsError> {
    WeightFormat::Q8_0.check_k(k)?;
    rows_of(w, k)?;
    let mut out = Vec::with_capacity(w.len() / 32 * 34);
    for blk in w.chunks_exact(32) {
        let amax = blk.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        out.extend(blk.iter().map(|&v| (v * id).round() as i8 as u8));
    }
    Ok(out)
}

/// Dequantize published Q8_0 blocks: `w = f16 d · q`.
pub fn q8_0_dequantize(blocks: &[u8]) -> Vec<f32> {
    blocks
        .chunks_exact(34)
        .flat_map(|b| {
            let d = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            b[2..].iter().map(move |&q| d * q as i8 as f32)
        })
        .collect()
}

/// MLX `affine_quantize` on rows of `k` weights: per group, the scale spans `[min, max]` over
/// `2^bits − 1` steps with the sign and edge chosen so that the larger-magnitude end is exact
/// and zero stays representable; `q = round((w − β) / s)` clamped; `s`, `β` stored as bf16.
pub fn mlx_quantize(w: &[f32], k: u32, bits: u32, group: u32) -> Result<MlxAffine, WeightsError> {
    WeightFormat::Affine { bits, group }.check_k(k)?;
    rows_of(w, k)?;
    let n_bins = ((1u32 << bits) - 1) as f32;
    let per_word = 32 / bits as usize;
    let mut codes = Vec::with_capacity(w.len());
    let (mut scales, mut biases) = (Vec::new(), Vec::new());
    for g in w.chunks_exact(group as usize) {
        let (lo, hi) = g
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let mut scale = ((hi - lo) / n_bins).max(1e-7);
        let side = lo.abs() > hi.abs();
        if !side {
            scale = -scale;
        }
        let edge = if side { lo } else { hi };
        let q0 = (edge / scale).round();
        let (scale, bias) = if q0 == 0.0 {
            (scale, 0.0)
        } else {
            (edge / q0, edge)
        };
        scales.push(bf16::from_f32(scale).to_bits());
        biases.push(bf16::from_f32(bias).to_bits());
        codes.extend(
            g.iter()
                .map(|&v| ((v - bias) / scale).round().clamp(0.0, n_bins) as u32),
        );
    }
    let weight = codes
        .chunks_exact(per_word)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |a, (j, &q)| a | q << (bits as usize * j))
        })
        .collect();
    Ok(MlxAffine {
        bits,
        group,
        weight,
        scales,
        biases,
    })
}

fn rows_of(w: &[f32], k: u32) -> Result<(), WeightsError> {
    if !w.len().is_multiple_of(k as usize) {
        return Err(WeightsError::Layout(format!(
            "{} weights are not whole rows of {k}",
            w.len()
        )));
    }
    Ok(())
}

/// Dequantize published MLX affine tensors (`mx.dequantize`): `w = s·q + β`.
pub fn mlx_dequantize(q: &MlxAffine) -> Vec<f32> {
    let per_word = 32 / q.bits as usize;
    let mask = (1u32 << q.bits) - 1;
    let mut out = Vec::with_capacity(q.weight.len() * per_word);
    for (i, &wd) in q.weight.iter().enumerate() {
        for j in 0..per_word {
            let g = (i * per_word + j) / q.group as usize;
            let s = bf16::from_bits(q.scales[g]).to_f32();
            let b = bf16::from_bits(q.biases[g]).to_f32();
            out.push(s * ((wd >> (q.bits as usize * j)) & mask) as f32 + b);
        }
    }
    out
}
