//! Embedding tables in the layout the GPU gather reads (`kernels::embed`): a table keeps the format
//! its checkpoint stores it in (f32, bf16, ggml Q8_0, MLX affine 4/8-bit), and the gather
//! dequantizes each element exactly in f32 (other formats are dequantized to f32 at load). [`table_bytes`] is the size of one table
//! (or of a row range of one) on the GPU, for loaders and memory estimates alike.
//!
//! Layout of a table piece (rows `first .. first + n` of one table), u32 words, flat row-major
//! element index `i = r·dim + d` (`r` counted from the piece's first row):
//! * data: `ceil(n·dim·b / 32)` words of `b`-bit elements, element `i` in word `i / (32/b)` at bit
//!   `b·(i mod 32/b)` (`b` = 32 f32, 16 bf16, 8 Q8_0 / MLX q8, 4 MLX q4): the
//!   published little-endian arrays (Q8_0: the codes of the 34-byte blocks, in order);
//! * padding to a multiple of 64 words (256 bytes), then the scales (quantized formats only):
//!   Q8_0 the f16 `d` of block `i/32`, two per word (even blocks in the low half); MLX one word per
//!   group `i/group` (bf16 scale low, bf16 bias high);
//! * padding to a multiple of 64 words, so that the next piece starts 256-byte aligned.

use super::{companion, DType, HostLinear, LinearTensor, TensorSource, WeightFormat, WeightsError};

/// Words a piece is padded to (256 bytes: the storage-binding offset alignment WebGPU guarantees).
pub const TABLE_ALIGN_WORDS: u64 = 64;

/// Bits of one element in the data stream of `format`.
pub fn table_element_bits(format: WeightFormat) -> u32 {
    match format {
        WeightFormat::F32 => 32,
        WeightFormat::Bf16 => 16,
        WeightFormat::Q8_0 | WeightFormat::Int8Row => 8,
        WeightFormat::Affine { bits, .. } => bits,
    }
}

/// Whether the gather reads tables of width `dim` in `format` as stored: f32 and bf16 always,
/// Q8_0 with `dim` a multiple of 32, MLX affine 4 or 8 bits with group 32 or 64 dividing `dim`.
/// Anything else (MLX 2-bit or other groups, PyTorch int8 rows — whose `(q·scb)·(1/127)` a
/// shader compiler may reassociate, so it would not be exact) is dequantized to f32 at load
/// ([`gather_format`]).
pub fn gather_reads(format: WeightFormat, dim: u32) -> bool {
    match format {
        WeightFormat::F32 | WeightFormat::Bf16 => dim > 0,
        WeightFormat::Int8Row => false,
        _ => format.check_k(dim).is_ok(),
    }
}

/// The format a table stored as `stored` keeps on the GPU: `stored` where the gather reads it,
/// else f32 (exact dequantization).
pub fn gather_format(stored: WeightFormat, dim: u32) -> WeightFormat {
    if gather_reads(stored, dim) {
        stored
    } else {
        WeightFormat::F32
    }
}

fn align(words: u64) -> u64 {
    words.next_multiple_of(TABLE_ALIGN_WORDS)
}

/// Data words of `rows × dim` elements (unpadded).
pub fn table_data_words(format: WeightFormat, rows: u32, dim: u32) -> u64 {
    (rows as u64 * dim as u64 * table_element_bits(format) as u64).div_ceil(32)
}

fn scale_words(format: WeightFormat, rows: u32, dim: u32) -> u64 {
    let e = rows as u64 * dim as u64;
    match format {
        WeightFormat::F32 | WeightFormat::Bf16 => 0,
        WeightFormat::Q8_0 => (e / 32).div_ceil(2),
        WeightFormat::Affine { group, .. } => e / group as u64,
        WeightFormat::Int8Row => rows as u64,
    }
}

/// GPU bytes of `rows` rows of a table of width `dim` held in `format` (one piece of the layout
/// in the module docs, padding included). A whole table is `table_bytes(format, vocab, dim)`;
/// a table split over several buffers costs the sum of its pieces.
pub fn table_bytes(format: WeightFormat, rows: u32, dim: u32) -> u64 {
    let data = table_data_words(format, rows, dim);
    let scales = scale_words(format, rows, dim);
    4 * if scales == 0 {
        align(data)
    } else {
        align(align(data) + scales)
    }
}

/// Where the parts of rows `from .. from + n` of a piece of `rows` rows go, in words from the
/// piece's start (module docs): their data words and their scale words. `from` must be even
/// (so that no data or scale word is shared with the rows before: [`TABLE_CHUNK_ROWS`] is).
pub fn table_chunk_offsets(format: WeightFormat, rows: u32, dim: u32, from: u32) -> (u64, u64) {
    let data = table_data_words(format, from, dim);
    let scales = align(table_data_words(format, rows, dim)) + scale_words(format, from, dim);
    (data, scales)
}

/// Rows written at a time when a table is uploaded ([`table_piece_parts`] per chunk, placed by
/// [`table_chunk_offsets`]): even, and a few MiB at the 7B's width, so the host never holds more
/// than the stored table plus one chunk in the GPU layout.
pub const TABLE_CHUNK_ROWS: u32 = 2048;

/// The words of rows `first .. first + n` of the `[rows, dim]` table `t` in the gather layout
/// (module docs); `t` must be in a format the gather reads ([`gather_reads`]).
pub fn table_piece(
    t: &LinearTensor,
    dim: u32,
    first: u32,
    n: u32,
) -> Result<Vec<u32>, WeightsError> {
    let format = t.format();
    let (data, scales) = table_piece_parts(t, dim, first, n)?;
    let mut out = data;
    out.resize(table_data_words(format, n, dim) as usize, 0);
    if !scales.is_empty() {
        out.resize(align(out.len() as u64) as usize, 0);
        out.extend_from_slice(&scales);
    }
    out.resize((table_bytes(format, n, dim) / 4) as usize, 0);
    Ok(out)
}

/// Rows `first .. first + n` of the table `t` in the gather layout, as two parts: their data
/// words and their scale words (empty for f32 and bf16), unpadded.
pub fn table_piece_parts(
    t: &LinearTensor,
    dim: u32,
    first: u32,
    n: u32,
) -> Result<(Vec<u32>, Vec<u32>), WeightsError> {
    let format = t.format();
    if !gather_reads(format, dim) {
        return Err(WeightsError::Layout(format!(
            "embedding tables of width {dim} cannot be gathered in {}; dequantize them first",
            format.name()
        )));
    }
    let (d, a, b) = (dim as usize, first as usize, (first + n) as usize);
    let slice = |bytes: &[u8], per_row: usize| -> Result<Vec<u8>, WeightsError> {
        bytes
            .get(a * per_row..b * per_row)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                WeightsError::Layout(format!(
                    "table rows {a}..{b} of width {dim} are past its {} bytes",
                    bytes.len()
                ))
            })
    };
    let (data, scales) = match t {
        LinearTensor::F32(v) => {
            let rows = v.get(a * d..b * d).ok_or_else(|| {
                WeightsError::Layout(format!("table rows {a}..{b} of width {dim} are missing"))
            })?;
            (bytemuck::cast_slice(rows).to_vec(), Vec::new())
        }
        LinearTensor::Bf16(bytes) => (words(&slice(bytes, 2 * d)?), Vec::new()),
        LinearTensor::Q8_0(blocks) => {
            let h = HostLinear::from_q8_0_blocks(&slice(blocks, d / 32 * 34)?, n, dim)?;
            (h.data, h.scales)
        }
        LinearTensor::MlxAffine {
            bits,
            group,
            codes,
            scales,
            biases,
        } => {
            let gs = d / *group as usize * 2;
            let h = HostLinear::from_mlx_bytes(
                &slice(codes, d * *bits as usize / 8)?,
                &slice(scales, gs)?,
                &slice(biases, gs)?,
                n,
                dim,
                *bits,
                *group,
            )?;
            (h.data, h.scales)
        }
        LinearTensor::Int8Row { .. } => unreachable!("gather_reads refuses int8 rows"),
    };
    Ok((data, scales))
}

/// Bring a table to the format it is kept in on the GPU: `target` (`Some(F32)`: exact f32
/// dequantization; `Some(Bf16)`: rounded to bf16; a quantized format: quantized from a bf16 or
/// f32 table), or, with `None`, its stored format where the gather reads it, else f32.
pub fn table_in_format(
    t: LinearTensor,
    target: Option<WeightFormat>,
    dim: u32,
) -> Result<LinearTensor, WeightsError> {
    let target = target.unwrap_or_else(|| gather_format(t.format(), dim));
    Ok(match target {
        _ if t.format() == target => t,
        WeightFormat::F32 => LinearTensor::F32(t.to_f32()),
        WeightFormat::Bf16 => LinearTensor::Bf16(t.to_bf16_bytes()),
        q => t.quantized(Some(q), dim as usize)?,
    })
}

/// The format the `[rows, dim]` table `name` of `src` is stored in, from the source's tensor info
/// (nothing is read): F32 and F16 files give f32 (F16 is converted exactly), BF16 bf16, Q8_0
/// Q8_0, I8 int8 rows, U32 MLX affine (bits from the code columns, group from the `scales`
/// companion). `None` when the source does not say (or the shapes do not fit `dim`).
pub fn stored_table_format(src: &dyn TensorSource, name: &str, dim: usize) -> Option<WeightFormat> {
    let (dtype, shape) = src.info(name)?;
    Some(match dtype {
        DType::F32 | DType::F16 => WeightFormat::F32,
        DType::BF16 => WeightFormat::Bf16,
        DType::Q8_0 => WeightFormat::Q8_0,
        DType::I8 => WeightFormat::Int8Row,
        DType::U32 => {
            let cols = *shape.get(1)?;
            let (_, s) = src.info(&companion(name, "scales"))?;
            let g = *s.get(1)?;
            if dim == 0 || g == 0 || !(cols * 32).is_multiple_of(dim) || !dim.is_multiple_of(g) {
                return None;
            }
            WeightFormat::Affine {
                bits: (cols * 32 / dim) as u32,
                group: (dim / g) as u32,
            }
        }
        _ => return None,
    })
}

/// The format tables take when a benchmark makes them up on the GPU next to linears in `linear`:
/// the linears' format where it is Q8_0 or MLX affine, else bf16.
pub fn random_table_format(linear: WeightFormat) -> WeightFormat {
    match linear {
        WeightFormat::Q8_0 | WeightFormat::Affine { .. } => linear,
        _ => WeightFormat::Bf16,
    }
}

/// The format the table `name` (width `dim`) of `src` is kept in on the GPU: `target`, or its
/// stored format where the gather reads it, else f32 ([`gather_format`]; also f32 where the
/// header does not say, as the loader then dequantizes what it reads).
pub fn loaded_table_format(
    src: &dyn TensorSource,
    name: &str,
    dim: u32,
    target: Option<WeightFormat>,
) -> WeightFormat {
    target.unwrap_or_else(|| {
        stored_table_format(src, name, dim as usize)
            .map(|f| gather_format(f, dim))
            .unwrap_or(WeightFormat::F32)
    })
}

/// GPU bytes of the `[rows, dim]` table `name` of `src` as one piece, kept in `target` or (with
/// `None`) its stored format where the gather reads it ([`gather_format`]); `None` when the
/// source does not say how the table is stored.
pub fn table_gpu_bytes(
    src: &dyn TensorSource,
    name: &str,
    rows: u32,
    dim: u32,
    target: Option<WeightFormat>,
) -> Option<u64> {
    let format = match target {
        Some(t) => t,
        None => gather_format(stored_table_format(src, name, dim as usize)?, dim),
    };
    Some(table_bytes(format, rows, dim))
}

fn words(b: &[u8]) -> Vec<u32> {
    b.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uploading a piece chunk by chunk (parts placed by `table_chunk_offsets`) gives the same
    /// words as the whole piece, for every format the gather reads, widths whose rows share
    /// scale words (Q8_0 with an odd block count) and pieces of more than two chunks.
    #[test]
    fn chunked_pieces_equal_whole_pieces() {
        let formats = [
            WeightFormat::F32,
            WeightFormat::Bf16,
            WeightFormat::Q8_0,
            WeightFormat::Affine { bits: 4, group: 32 },
            WeightFormat::Affine { bits: 8, group: 32 },
            WeightFormat::Affine { bits: 4, group: 64 },
        ];
        let rows = 2 * TABLE_CHUNK_ROWS + 7;
        let mut checked = 0;
        for dim in [64u32, 96, 128] {
            let values: Vec<f32> = (0..rows as usize * dim as usize)
                .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
                .collect();
            for format in formats {
                if !gather_reads(format, dim) {
                    continue;
                }
                let t =
                    table_in_format(LinearTensor::F32(values.clone()), Some(format), dim).unwrap();
                let (first, n) = (3, rows - 3);
                let whole = table_piece(&t, dim, first, n).unwrap();
                let mut chunked = vec![0u32; (table_bytes(format, n, dim) / 4) as usize];
                let mut from = 0;
                while from < n {
                    let m = (n - from).min(TABLE_CHUNK_ROWS);
                    let (data, scales) = table_piece_parts(&t, dim, first + from, m).unwrap();
                    let (d, s) = table_chunk_offsets(format, n, dim, from);
                    chunked[d as usize..d as usize + data.len()].copy_from_slice(&data);
                    chunked[s as usize..s as usize + scales.len()].copy_from_slice(&scales);
                    from += m;
                }
                assert_eq!(chunked, whole, "{} at width {dim}", format.name());
                checked += 1;
            }
        }
        assert!(checked >= 14, "{checked} cases");
    }
}
