//! A [`LinearTensor`]'s GPU streams (the layouts of [`super::HostLinear`]) handed out in row
//! chunks, straight from the published bytes: the stored codes are already the code stream (MLX,
//! bf16, int8, f32), and only what must be repacked (Q8_0 blocks split into codes and scales, MLX
//! scales and biases interleaved) goes through one scratch buffer of a chunk's size. So a weight
//! reaches the GPU without a second whole copy of it in host memory (the wasm heap holds the
//! stored tensor and one chunk), and the GPU side uploads each chunk at its offset.

use super::{LinearTensor, WeightFormat, WeightsError};

/// Rows `first_row .. first_row + rows` of a weight in its GPU layout: `data` goes at byte
/// `data_offset` of the code stream, `scales` at byte `scales_offset` of the scale stream (empty
/// for f32 and bf16). Offsets count from the first row of the range asked for.
#[derive(Debug, Clone, Copy)]
pub struct RowChunk<'a> {
    pub first_row: u32,
    pub rows: u32,
    pub data: &'a [u8],
    pub data_offset: u64,
    pub scales: &'a [u8],
    pub scales_offset: u64,
}

/// Bytes of code stream per row and of scale stream per row of a `[_, k]` weight in `format`
/// (Q8_0: two bytes, one f16 `d`, per 32-weight block).
fn per_row(format: WeightFormat, k: u32) -> (u64, u64) {
    let k = k as u64;
    match format {
        WeightFormat::F32 => (4 * k, 0),
        WeightFormat::Bf16 => (2 * k, 0),
        WeightFormat::Q8_0 => (k, k / 16),
        WeightFormat::Affine { bits, group } => (k * bits as u64 / 8, 4 * k / group as u64),
        WeightFormat::Int8Row => (k, 4),
    }
}

impl LinearTensor {
    /// Check that this tensor holds a `[rows, k]` weight its format's kernel can read (the
    /// checks of [`LinearTensor::into_host`]), so that [`LinearTensor::row_chunks`] cannot fail.
    pub fn check_layout(&self, rows: u32, k: u32) -> Result<WeightFormat, WeightsError> {
        let format = self.format();
        format.check_k(k)?;
        let (d, s) = per_row(format, k);
        let (rows64, want) = (rows as u64, |per: u64| per * rows as u64);
        let lens: Vec<(&str, usize, u64)> = match self {
            Self::F32(v) => vec![("f32 weight", 4 * v.len(), want(d))],
            Self::Bf16(b) => vec![("bf16 weight", b.len(), want(d))],
            Self::Q8_0(b) => vec![("Q8_0 weight", b.len(), rows64 * (k as u64 / 32) * 34)],
            Self::MlxAffine {
                codes,
                scales,
                biases,
                ..
            } => vec![
                ("MLX weight", codes.len(), want(d)),
                ("MLX scales", scales.len(), want(s) / 2),
                ("MLX biases", biases.len(), want(s) / 2),
            ],
            Self::Int8Row { codes, scb } => vec![
                ("int8 weight", codes.len(), want(d)),
                ("int8 weight_scb", 4 * scb.len(), want(s)),
            ],
        };
        for (what, got, want) in lens {
            if got as u64 != want {
                return Err(WeightsError::Layout(format!(
                    "{what}: got {got} bytes, want {want}"
                )));
            }
        }
        Ok(format)
    }

    /// Hand rows `r0 .. r1` of this `[_, k]` weight (checked by [`LinearTensor::check_layout`])
    /// to `f` in GPU layout, `chunk_rows` rows at a time (rounded down to a multiple of 4, at
    /// least 4, so that Q8_0's scale pairs are never split; `r0` must be a multiple of 4 too
    /// unless it is the only chunk). Repacked streams go through one scratch buffer of a chunk's
    /// size; the others are slices of the stored bytes.
    pub fn row_chunks<E>(
        &self,
        k: u32,
        r0: u32,
        r1: u32,
        chunk_rows: u32,
        mut f: impl FnMut(RowChunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let format = self.format();
        let (d, s) = per_row(format, k);
        let step = (chunk_rows / 4 * 4).max(4);
        let mut scratch: Vec<u8> = Vec::new();
        let mut scales_scratch: Vec<u8> = Vec::new();
        let mut a = r0;
        while a < r1 {
            let n = step.min(r1 - a);
            let (lo, hi) = (a as usize, (a + n) as usize);
            let rng = |per: u64| lo * per as usize..hi * per as usize;
            let (data, scales): (&[u8], &[u8]) = match self {
                Self::F32(v) => (&bytemuck::cast_slice(v)[rng(d)], &[]),
                Self::Bf16(b) => (&b[rng(d)], &[]),
                Self::Q8_0(b) => {
                    scratch.clear();
                    scales_scratch.clear();
                    for blk in b[rng(d / 32 * 34)].chunks_exact(34) {
                        scales_scratch.extend_from_slice(&blk[..2]);
                        scratch.extend_from_slice(&blk[2..]);
                    }
                    (&scratch, &scales_scratch)
                }
                Self::MlxAffine {
                    codes,
                    scales,
                    biases,
                    ..
                } => {
                    scales_scratch.clear();
                    let half = rng(s / 2);
                    for (sc, bi) in scales[half.clone()]
                        .chunks_exact(2)
                        .zip(biases[half].chunks_exact(2))
                    {
                        scales_scratch.extend_from_slice(sc);
                        scales_scratch.extend_from_slice(bi);
                    }
                    (&codes[rng(d)], &scales_scratch)
                }
                Self::Int8Row { codes, scb } => {
                    (&codes[rng(d)], &bytemuck::cast_slice(scb)[rng(s)])
                }
            };
            f(RowChunk {
                first_row: a,
                rows: n,
                data,
                data_offset: (a - r0) as u64 * d,
                scales,
                scales_offset: (a - r0) as u64 * s,
            })?;
            a += n;
        }
        Ok(())
    }
}
