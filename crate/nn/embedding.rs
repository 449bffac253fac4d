//! Token embedding tables on the GPU and their gathered sum (`kernels::embed`): the LM's 17
//! input streams, the depformer's previous-token tables. Tables are packed into as few buffers
//! as the storage-binding limit allows (a table larger than one binding is split by rows), so
//! summing all streams of a step takes one launch per buffer (and per 15 streams).

use crate::gpu::{BufferUsage, Context, GpuBuffer, GpuError, Recorder, View};
use crate::kernels::embed::{self, EmbedTable, Stream, TableFormat};
use crate::kernels::fill::{self, FillMode};

use super::source::Weights;

/// A table to load: tensor `name`, `rows` ids.
#[derive(Debug, Clone)]
pub struct EmbeddingTable {
    pub name: String,
    pub rows: u32,
}

/// Where rows `first_id .. first_id + rows` of a table live.
#[derive(Debug, Clone, Copy)]
struct Piece {
    buffer: usize,
    row_offset: u32,
    first_id: u32,
    rows: u32,
}

/// A set of tables of one width.
pub struct Embeddings {
    dim: u32,
    format: TableFormat,
    buffers: Vec<GpuBuffer>,
    tables: Vec<Vec<Piece>>,
    bytes: u64,
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
        .collect()
}

impl Embeddings {
    /// Load `tables` of width `dim` in `format` (f32, or bf16 as the published checkpoints).
    pub fn load(
        ctx: &Context,
        w: &Weights,
        tables: &[EmbeddingTable],
        dim: u32,
        format: TableFormat,
    ) -> crate::Result<Self> {
        let row_bytes = dim as u64 * format.bytes_per_element();
        let max_rows = (ctx.caps().max_storage_binding / row_bytes).min(u32::MAX as u64) as u32;
        if max_rows == 0 || (format == TableFormat::Bf16 && !dim.is_multiple_of(2)) {
            return Err(GpuError::Launch {
                kernel: "embeddings",
                message: format!("cannot store {format:?} rows of width {dim}"),
            }
            .into());
        }
        // Plan: fill buffers of up to `max_rows` rows, splitting tables where needed.
        let mut plan: Vec<Vec<(usize, u32, u32)>> = vec![Vec::new()]; // (table, first_id, rows)
        let mut used = 0u32;
        let mut pieces = vec![Vec::new(); tables.len()];
        for (ti, t) in tables.iter().enumerate() {
            let mut id = 0;
            while id < t.rows {
                if used == max_rows {
                    plan.push(Vec::new());
                    used = 0;
                }
                let n = (t.rows - id).min(max_rows - used);
                pieces[ti].push(Piece {
                    buffer: plan.len() - 1,
                    row_offset: used,
                    first_id: id,
                    rows: n,
                });
                plan.last_mut().expect("a buffer").push((ti, id, n));
                used += n;
                id += n;
            }
        }
        let mut buffers = Vec::with_capacity(plan.len());
        let mut bytes = 0u64;
        for (bi, entries) in plan.iter().enumerate() {
            let rows: u64 = entries.iter().map(|e| e.2 as u64).sum();
            let label = format!("embeddings {bi}");
            let size = crate::weights::estimate::table_buffer_bytes(rows, row_bytes);
            bytes += size;
            let buf = ctx.create_buffer(&label, size, BufferUsage::Storage)?;
            match w {
                Weights::Random { seed, .. } => {
                    let mut rec = Recorder::new(ctx, "random embeddings");
                    let mode = match format {
                        TableFormat::F32 => FillMode::F32,
                        TableFormat::Bf16 => FillMode::Bf16Pair,
                    };
                    fill::fill(&mut rec, buf.view(), mode, seed ^ bi as u32, 1.0)?;
                    rec.submit()?;
                }
                Weights::Checkpoint { .. } => {
                    let mut at = 0u64;
                    let mut whole: Option<(usize, Vec<f32>)> = None;
                    for &(ti, first, n) in entries {
                        let t = &tables[ti];
                        if whole.as_ref().is_none_or(|(i, _)| *i != ti) {
                            let v = w
                                .host_f32(&t.name, &[t.rows as usize, dim as usize])?
                                .unwrap_or_default();
                            whole = Some((ti, v));
                        }
                        let v = &whole.as_ref().expect("loaded").1;
                        let rows = &v[(first * dim) as usize..((first + n) * dim) as usize];
                        let data = match format {
                            TableFormat::F32 => bytemuck::cast_slice(rows).to_vec(),
                            TableFormat::Bf16 => bf16_bytes(rows),
                        };
                        ctx.write(&buf, at, &data);
                        at += data.len() as u64;
                    }
                }
            }
            buffers.push(buf);
        }
        Ok(Self {
            dim,
            format,
            buffers,
            tables: pieces,
            bytes,
        })
    }

    pub fn dim(&self) -> u32 {
        self.dim
    }

    /// Bytes stored on the GPU.
    pub fn bytes(&self) -> u64 {
        self.bytes
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
                            row_offset: p.row_offset,
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
                format: self.format,
                dim: self.dim,
            };
            embed::embed_sum(rec, &table, tokens, &list, out, !first)?;
            first = false;
        }
        if first {
            // No stream touched any buffer: the sum is zero.
            let table = EmbedTable {
                view: self.buffers[0].view(),
                format: self.format,
                dim: self.dim,
            };
            embed::embed_sum(rec, &table, tokens, &[], out, false)?;
        }
        Ok(())
    }
}
