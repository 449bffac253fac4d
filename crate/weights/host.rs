//! [`HostLinear`]: a linear weight repacked on the host into the streams the linear kernel reads,
//! from the published bytes (or quantized from f32). The layouts, per [`WeightFormat`]:
//! * f32: `[rows, K]` f32. bf16: `[rows, K/2]` u32, element `2i` in the low 16 bits of word `i`
//!   (the published little-endian bf16 bytes, reinterpreted).
//! * Q8_0: the published 34-byte blocks are split into a code stream (int8 codes, 4 per u32 in
//!   element order; row `n` block `b` at word `(n·K/32 + b)·8`) and a scale stream that keeps the
//!   f16 `d` exactly: two blocks per u32 (flat block `f = n·K/32 + b` in word `f/2`, low half when
//!   `f` is even). 34 bytes per 32 weights, as published.
//! * MLX affine (bits 4 or 8, group 32 or 64): the published u32 code words unchanged, and one u32
//!   per group holding the bf16 scale (low half) and bf16 bias (high half), kept exact.

use half::{bf16, f16};

use super::quant::{self, MlxAffine};
use super::{WeightFormat, WeightsError};

/// A weight in its GPU layout, on the host: what the GPU side uploads, built from the
/// published bytes (or quantized from f32 for tests).
#[derive(Debug, Clone)]
pub struct HostLinear {
    pub format: WeightFormat,
    pub rows: u32,
    pub k: u32,
    /// Codes / values (the streams of the module documentation).
    pub data: Vec<u32>,
    /// Q8_0: f16 scales two per word; affine: `bf16 scale | bf16 bias << 16` per group; else empty.
    pub scales: Vec<u32>,
}

fn check_len(what: &str, got: usize, want: u64) -> Result<(), WeightsError> {
    if got as u64 != want {
        return Err(WeightsError::Layout(format!(
            "{what}: got {got} bytes, want {want}"
        )));
    }
    Ok(())
}

impl HostLinear {
    /// f32 weights `[rows, k]`.
    pub fn from_f32(w: &[f32], rows: u32, k: u32) -> Result<Self, WeightsError> {
        WeightFormat::F32.check_k(k)?;
        check_len("f32 weight", w.len() * 4, rows as u64 * k as u64 * 4)?;
        Ok(Self {
            format: WeightFormat::F32,
            rows,
            k,
            data: bytemuck::cast_slice(w).to_vec(),
            scales: Vec::new(),
        })
    }

    /// Published bf16 bytes (little-endian) of a `[rows, k]` tensor.
    pub fn from_bf16_bytes(bytes: &[u8], rows: u32, k: u32) -> Result<Self, WeightsError> {
        WeightFormat::Bf16.check_k(k)?;
        check_len("bf16 weight", bytes.len(), rows as u64 * k as u64 * 2)?;
        Ok(Self {
            format: WeightFormat::Bf16,
            rows,
            k,
            data: bytes_to_words(bytes),
            scales: Vec::new(),
        })
    }

    /// Published ggml Q8_0 blocks (34 bytes: f16 `d`, then 32 int8) of a `[rows, k]` tensor.
    pub fn from_q8_0_blocks(blocks: &[u8], rows: u32, k: u32) -> Result<Self, WeightsError> {
        WeightFormat::Q8_0.check_k(k)?;
        let nb = rows as usize * k as usize / 32;
        check_len("Q8_0 weight", blocks.len(), nb as u64 * 34)?;
        let mut data = Vec::with_capacity(nb * 8);
        let mut scales = vec![0u32; nb.div_ceil(2)];
        for (f, b) in blocks.chunks_exact(34).enumerate() {
            let d = u16::from_le_bytes([b[0], b[1]]) as u32;
            scales[f / 2] |= d << (16 * (f % 2));
            data.extend(
                b[2..]
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        Ok(Self {
            format: WeightFormat::Q8_0,
            rows,
            k,
            data,
            scales,
        })
    }

    /// Published MLX affine tensors of a `[rows, k]` weight: `weight` u32 `[rows, k·bits/32]`,
    /// `scales` and `biases` bf16 `[rows, k/group]`, all little-endian bytes.
    pub fn from_mlx_bytes(
        weight: &[u8],
        scales: &[u8],
        biases: &[u8],
        rows: u32,
        k: u32,
        bits: u32,
        group: u32,
    ) -> Result<Self, WeightsError> {
        let s: Vec<u16> = bytes_to_u16(scales);
        let b: Vec<u16> = bytes_to_u16(biases);
        Self::from_mlx(
            &MlxAffine {
                bits,
                group,
                weight: bytes_to_words(weight),
                scales: s,
                biases: b,
            },
            rows,
            k,
        )
    }

    /// MLX affine tensors already in memory (see [`MlxAffine`]).
    pub fn from_mlx(q: &MlxAffine, rows: u32, k: u32) -> Result<Self, WeightsError> {
        let format = WeightFormat::Affine {
            bits: q.bits,
            group: q.group,
        };
        format.check_k(k)?;
        let groups = rows as u64 * k as u64 / q.group as u64;
        check_len(
            "MLX weight",
            q.weight.len() * 4,
            4 * format.data_words(rows, k),
        )?;
        check_len("MLX scales", q.scales.len() * 2, groups * 2)?;
        check_len("MLX biases", q.biases.len() * 2, groups * 2)?;
        Ok(Self {
            format,
            rows,
            k,
            data: q.weight.clone(),
            scales: q
                .scales
                .iter()
                .zip(&q.biases)
                .map(|(&s, &b)| s as u32 | (b as u32) << 16)
                .collect(),
        })
    }

    /// Quantize (or convert) f32 weights `[rows, k]` into `format` the way the published
    /// checkpoints were made: bf16 round-to-nearest-even, ggml's Q8_0 reference quantizer, MLX's
    /// affine quantizer.
    pub fn quantize(
        format: WeightFormat,
        w: &[f32],
        rows: u32,
        k: u32,
    ) -> Result<Self, WeightsError> {
        format.check_k(k)?;
        check_len("f32 weight", w.len() * 4, rows as u64 * k as u64 * 4)?;
        match format {
            WeightFormat::F32 => Self::from_f32(w, rows, k),
            WeightFormat::Bf16 => {
                let b: Vec<u8> = w
                    .iter()
                    .flat_map(|&v| bf16::from_f32(v).to_bits().to_le_bytes())
                    .collect();
                Self::from_bf16_bytes(&b, rows, k)
            }
            WeightFormat::Q8_0 => Self::from_q8_0_blocks(&quant::q8_0_quantize(w, k)?, rows, k),
            WeightFormat::Affine { bits, group } => {
                Self::from_mlx(&quant::mlx_quantize(w, k, bits, group)?, rows, k)
            }
        }
    }

    /// The f32 weights this layout represents, `[rows, k]` (host dequantization, from the GPU layout).
    pub fn dequantize(&self) -> Vec<f32> {
        let (rows, k) = (self.rows as usize, self.k as usize);
        match self.format {
            WeightFormat::F32 => bytemuck::cast_slice(&self.data).to_vec(),
            WeightFormat::Bf16 => self
                .data
                .iter()
                .flat_map(|&w| [f32::from_bits(w << 16), f32::from_bits(w & 0xffff_0000)])
                .collect(),
            WeightFormat::Q8_0 => {
                let mut out = Vec::with_capacity(rows * k);
                for (f, blk) in self.data.chunks_exact(8).enumerate() {
                    let d = f16::from_bits((self.scales[f / 2] >> (16 * (f % 2))) as u16).to_f32();
                    for &wd in blk {
                        for j in 0..4 {
                            out.push(d * ((wd >> (8 * j)) as u8 as i8) as f32);
                        }
                    }
                }
                out
            }
            WeightFormat::Affine { bits, group } => {
                let per_word = 32 / bits as usize;
                let mask = (1u32 << bits) - 1;
                let mut out = Vec::with_capacity(rows * k);
                for (i, &wd) in self.data.iter().enumerate() {
                    for j in 0..per_word {
                        let e = i * per_word + j;
                        let sb = self.scales[e / group as usize];
                        let (s, b) = (f32::from_bits(sb << 16), f32::from_bits(sb & 0xffff_0000));
                        out.push(s * ((wd >> (bits as usize * j)) & mask) as f32 + b);
                    }
                }
                out
            }
        }
    }
}

fn bytes_to_words(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

fn bytes_to_u16(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}
