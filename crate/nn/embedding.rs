//! Token embedding tables on the GPU and their gathered sum (`kernels::embed`): the LM's 17
//! input streams, the depformer's previous-token tables. Each table stays in the format its
//! checkpoint stores it in (MLX q4/q8, Q8_0, bf16, …; the gather dequantizes exactly in f32)
//! unless the caller asks for f32 or bf16. Tables are packed into as few buffers as the
//! storage-binding limit allows (a table larger than one binding is split by rows), whatever
//! their formats, so summing all streams of a step takes one launch per buffer (and per 31
//! streams).

use crate::gpu::{BufferUsage, Context, GpuBuffer, GpuError, Recorder, View};
use crate::kernels::embed::{self, EmbedTable, Stream};
use crate::kernels::fill::{self, FillMode};
use crate::kernels::sampling::EmbedRow;
use crate::weights::{
    embedding_table, gather_format, gather_reads, random_table_format, stored_table_format,
    table_bytes, table_chunk_offsets, table_data_words, table_in_format, table_piece_parts,
    LinearTensor, WeightFormat, TABLE_CHUNK_ROWS,
};

use super::source::Weights;

/// A table to load: tensor `name`, `rows` ids.
#[derive(Debug, Clone)]
pub struct EmbeddingTable {
    pub name: String,
    pub rows: u32,
}

/// What [`Embeddings::load_with`] adds to the tables read from the weights: tables given as f32
/// rows by the caller (kept in f32, numbered after the loaded tables), and rows of a loaded
/// table that read another of its rows.
#[derive(Debug, Clone, Default)]
pub struct TableExtras {
    /// `[rows, dim]` row-major f32 values of each caller table.
    pub host: Vec<Vec<f32>>,
    /// `(table, dst, src)`: row `dst` of loaded table `table` holds row `src`'s values
    /// (checkpoints only; random tables are left as drawn).
    pub aliases: Vec<(usize, u32, u32)>,
}

/// Where rows `first_id .. first_id + rows` of a table live.
#[derive(Debug, Clone, Copy)]
struct Piece {
    buffer: usize,
    /// Word offset in the buffer.
    base: u32,
    first_id: u32,
    rows: u32,
    format: WeightFormat,
}

/// A set of tables of one width.
pub struct Embeddings {
    dim: u32,
    buffers: Vec<GpuBuffer>,
    tables: Vec<Vec<Piece>>,
    bytes: u64,
}

/// Fill a buffer of random table pieces on the GPU (values of magnitude about 1).
fn fill_random(
    ctx: &Context,
    buf: &GpuBuffer,
    pieces: &[Piece],
    dim: u32,
    seed: u32,
) -> crate::Result<()> {
    let mut rec = Recorder::new(ctx, "random embeddings");
    let format = pieces.first().map_or(WeightFormat::Bf16, |p| p.format);
    let mode = match format {
        WeightFormat::F32 => FillMode::F32,
        WeightFormat::Bf16 => FillMode::Bf16Pair,
        _ => FillMode::Bits,
    };
    fill::fill(&mut rec, buf.view(), mode, seed, 1.0)?;
    for (i, p) in pieces.iter().enumerate() {
        let (s_mode, s_scale) = match p.format {
            WeightFormat::Q8_0 => (FillMode::F16PairPositive, 1.0 / 64.0),
            WeightFormat::Affine { bits, .. } => {
                (FillMode::AffineScaleBias, 2.0 / (1u32 << bits) as f32)
            }
            WeightFormat::F32 | WeightFormat::Bf16 | WeightFormat::Int8Row => continue,
        };
        let data = table_data_words(p.format, p.rows, dim).next_multiple_of(64);
        let start = 4 * (p.base as u64 + data);
        let end = 4 * p.base as u64 + table_bytes(p.format, p.rows, dim);
        let s = buf.slice(start, end - start);
        fill::fill(
            &mut rec,
            s,
            s_mode,
            seed ^ (i as u32 + 1).wrapping_mul(0x5bd1_e995),
            s_scale,
        )?;
    }
    rec.submit()?;
    Ok(())
}

/// Write rows `from .. from + n` of piece `p` (ids `p.first_id + from …`) from `table`'s rows
/// shifted by `shift`, in chunks, each placed where the piece's layout puts its data and scale
/// words: the host holds the table and one chunk.
#[allow(clippy::too_many_arguments)]
fn write_rows(
    ctx: &Context,
    buf: &GpuBuffer,
    p: &Piece,
    table: &LinearTensor,
    dim: u32,
    from: u32,
    n: u32,
    shift: i64,
) -> crate::Result<()> {
    let mut at_row = from;
    while at_row < from + n {
        let k = (from + n - at_row).min(TABLE_CHUNK_ROWS);
        let src = (p.first_id as i64 + at_row as i64 + shift) as u32;
        let (data, scales) = table_piece_parts(table, dim, src, k)?;
        let (d_at, s_at) = table_chunk_offsets(p.format, p.rows, dim, at_row);
        let at = |words: u64| 4 * (p.base as u64 + words);
        ctx.write(buf, at(d_at), bytemuck::cast_slice(&data));
        if !scales.is_empty() {
            ctx.write(buf, at(s_at), bytemuck::cast_slice(&scales));
        }
        at_row += k;
    }
    Ok(())
}

impl Embeddings {
    /// Load `tables` of width `dim`, each kept in `target` (`Some(F32)`: exact f32 dequantization,
    /// `Some(Bf16)`: rounded to bf16) or, with `None`, in the format its checkpoint stores it in
    /// where the gather reads it (else f32). Random weights: bf16 tables, or the linears'
    /// format when that is Q8_0 or MLX affine (as the published files).
    pub fn load(
        ctx: &Context,
        w: &Weights,
        tables: &[EmbeddingTable],
        dim: u32,
        target: Option<WeightFormat>,
    ) -> crate::Result<Self> {
        Self::load_with(ctx, w, tables, dim, target, &TableExtras::default())
    }

    /// [`Embeddings::load`] plus `extras`: the caller's f32 tables share the buffers (and so
    /// the launches) of the loaded ones.
    pub fn load_with(
        ctx: &Context,
        w: &Weights,
        loaded: &[EmbeddingTable],
        dim: u32,
        target: Option<WeightFormat>,
        extras: &TableExtras,
    ) -> crate::Result<Self> {
        let mut tables = loaded.to_vec();
        for (i, h) in extras.host.iter().enumerate() {
            tables.push(EmbeddingTable {
                name: format!("caller table {i}"),
                rows: (h.len() / dim.max(1) as usize) as u32,
            });
        }
        let bad = |message: String| -> crate::Error {
            GpuError::Launch {
                kernel: "embeddings",
                message,
            }
            .into()
        };
        // The format of each table on the GPU, known before anything is read where the source
        // says how the table is stored.
        let mut formats = Vec::with_capacity(tables.len());
        for (ti, t) in tables.iter().enumerate() {
            let f = match (w, target) {
                _ if ti >= loaded.len() => WeightFormat::F32,
                (_, Some(f)) => f,
                (Weights::Random { format, .. }, None) => random_table_format(*format),
                (Weights::Checkpoint { source, .. }, None) => {
                    match stored_table_format(*source, &t.name, dim as usize) {
                        Some(f) => gather_format(f, dim),
                        None => gather_format(
                            embedding_table(*source, &t.name, t.rows as usize, dim as usize)?
                                .format(),
                            dim,
                        ),
                    }
                }
            };
            if !gather_reads(f, dim) {
                return Err(bad(format!(
                    "cannot keep embedding tables of width {dim} in {}",
                    f.name()
                )));
            }
            formats.push(f);
        }
        // Plan: fill buffers of up to one binding, splitting tables by rows where needed.
        let caps = ctx.caps();
        let limit = caps.max_storage_binding.min(caps.max_buffer_size);
        let max_piece_rows = ((u32::MAX as u64 - 32) / dim as u64).min(u32::MAX as u64) as u32;
        let mut used = vec![0u64]; // bytes per buffer
        let mut pieces = vec![Vec::new(); tables.len()];
        for (ti, t) in tables.iter().enumerate() {
            let f = formats[ti];
            let mut id = 0;
            while id < t.rows {
                let room = limit - used.last().copied().unwrap_or(0);
                // The most rows that fit in `room` (table_bytes grows with rows).
                let (mut lo, mut hi) = (0u32, (t.rows - id).min(max_piece_rows));
                while lo < hi {
                    let mid = lo + (hi - lo).div_ceil(2);
                    if table_bytes(f, mid, dim) <= room {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                if lo == 0 {
                    if used.last() == Some(&0) {
                        return Err(bad(format!(
                            "one {} row of width {dim} does not fit a {limit}-byte binding",
                            f.name()
                        )));
                    }
                    used.push(0);
                    continue;
                }
                let buffer = used.len() - 1;
                let at = &mut used[buffer];
                pieces[ti].push(Piece {
                    buffer,
                    base: (*at / 4) as u32,
                    first_id: id,
                    rows: lo,
                    format: f,
                });
                *at += table_bytes(f, lo, dim);
                id += lo;
            }
        }
        let mut buffers: Vec<GpuBuffer> = Vec::with_capacity(used.len());
        for (bi, &size) in used.iter().enumerate() {
            buffers.push(ctx.create_buffer(
                &format!("embeddings {bi}"),
                size.max(4),
                BufferUsage::Storage,
            )?);
        }
        if let Weights::Random { seed, .. } = w {
            for (bi, buf) in buffers.iter().enumerate() {
                let mine: Vec<Piece> = pieces
                    .iter()
                    .flatten()
                    .filter(|p| p.buffer == bi)
                    .copied()
                    .collect();
                fill_random(ctx, buf, &mine, dim, seed ^ bi as u32)?;
            }
        }
        for (ti, t) in tables.iter().enumerate() {
            let table = match (w, extras.host.get(ti.wrapping_sub(loaded.len()))) {
                (_, Some(h)) if ti >= loaded.len() => LinearTensor::F32(h.clone()),
                (Weights::Checkpoint { source, .. }, _) => {
                    let stored = embedding_table(*source, &t.name, t.rows as usize, dim as usize)?;
                    table_in_format(stored, Some(formats[ti]), dim)?
                }
                _ => continue,
            };
            for p in &pieces[ti] {
                write_rows(ctx, &buffers[p.buffer], p, &table, dim, 0, p.rows, 0)?;
            }
            for &(_, dst, src) in extras.aliases.iter().filter(|a| a.0 == ti) {
                let Some(p) = pieces[ti]
                    .iter()
                    .find(|p| (p.first_id..p.first_id + p.rows).contains(&dst))
                else {
                    return Err(bad(format!("row {dst} is outside table {}", t.name)));
                };
                if src >= t.rows {
                    return Err(bad(format!("row {src} is outside table {}", t.name)));
                }
                let (from, shift) = (dst - p.first_id, src as i64 - dst as i64);
                write_rows(ctx, &buffers[p.buffer], p, &table, dim, from, 1, shift)?;
            }
        }
        Ok(Self {
            dim,
            bytes: used.iter().sum(),
            buffers,
            tables: pieces,
        })
    }

    pub fn dim(&self) -> u32 {
        self.dim
    }

    /// Bytes stored on the GPU.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The format table `i` is kept in on the GPU.
    pub fn format(&self, i: usize) -> Option<WeightFormat> {
        self.tables.get(i)?.first().map(|p| p.format)
    }

    /// Where a fused gather ([`crate::kernels::sampling::sample_embed`]) finds table `i`:
    /// the target `out[offset ..]` (= or += its row), when the table is one piece in one
    /// buffer in a format the gather reads; `None` otherwise (then [`Embeddings::sum`]).
    pub fn row_target<'a>(
        &'a self,
        i: usize,
        out: View<'a>,
        offset: u32,
        accumulate: bool,
    ) -> Option<EmbedRow<'a>> {
        let [p] = self.tables.get(i)?.as_slice() else {
            return None;
        };
        gather_reads(p.format, self.dim).then(|| EmbedRow {
            table: self.buffers[p.buffer].view(),
            format: p.format,
            base: p.base,
            first_id: p.first_id,
            rows: p.rows,
            dim: self.dim,
            out,
            offset,
            accumulate,
        })
    }

    /// `out (= or +=) Σ table_i[tokens[token_i]]` over `streams` = `(table, token index)`.
    /// Ids outside a table (such as −1) add zero.
    pub fn sum(
        &self,
        rec: &mut Recorder,
        tokens: View,
        streams: &[(usize, u32)],
        out: View,
        accumulate: bool,
    ) -> crate::Result<()> {
        let mut first = !accumulate;
        for (bi, buf) in self.buffers.iter().enumerate() {
            let list: Vec<Stream> = streams
                .iter()
                .flat_map(|&(table, token)| {
                    self.tables[table]
                        .iter()
                        .filter(move |p| p.buffer == bi)
                        .map(move |p| Stream {
                            token,
                            format: p.format,
                            base: p.base,
                            first_id: p.first_id,
                            rows: p.rows,
                        })
                })
                .collect();
            if list.is_empty() {
                continue;
            }
            let table = EmbedTable {
                view: buf.view(),
                dim: self.dim,
            };
            embed::embed_sum(rec, &table, tokens, &list, out, !first)?;
            first = false;
        }
        if first {
            // No stream touched any buffer: the sum is zero.
            let table = EmbedTable {
                view: self.buffers[0].view(),
                dim: self.dim,
            };
            embed::embed_sum(rec, &table, tokens, &[], out, false)?;
        }
        Ok(())
    }
}
