use anyhow::Result;
use parle::gpu::{BufferUsage, Context, GpuBuffer};
use parle::kernels::embed::{self, EmbedTable, Stream};
use parle::weights::{table_bytes, WeightFormat};

use super::{buf, Case};

/// Moshi's 17-stream input embedding (text 32001 rows, 16 audio tables of 2049 rows, d 4096) in
/// bf16 and in the published quantized formats (MLX q4, Q8_0), tables packed into as few buffers
/// as the device binds (one launch per buffer).
pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    [WeightFormat::Bf16, WeightFormat::MLX_Q4, WeightFormat::Q8_0]
        .into_iter()
        .map(|f| case(ctx, f))
        .collect()
}

fn case(ctx: &Context, format: WeightFormat) -> Result<Case> {
    let dim = 4096u32;
    let rows: Vec<u32> = (0..17).map(|s| if s == 0 { 32001 } else { 2049 }).collect();
    let caps = ctx.caps();
    let limit = caps.max_storage_binding.min(caps.max_buffer_size);
    // Whole tables per buffer where they fit; a table split by rows (halved until it fits) if not.
    let mut plan: Vec<(u64, Vec<Stream>)> = vec![(0, Vec::new())];
    for (s, &r) in rows.iter().enumerate() {
        let mut first = 0u32;
        while first < r {
            let mut take = r - first;
            while take > 1 && table_bytes(format, take, dim) > limit {
                take = take.div_ceil(2);
            }
            if plan.last().unwrap().0 + table_bytes(format, take, dim) > limit {
                plan.push((0, Vec::new()));
            }
            let (used, streams) = plan.last_mut().unwrap();
            streams.push(Stream {
                token: s as u32,
                format,
                base: (*used / 4) as u32,
                first_id: first,
                rows: take,
            });
            *used += table_bytes(format, take, dim);
            first += take;
        }
    }
    let tables: Vec<(GpuBuffer, Vec<Stream>)> = plan
        .into_iter()
        .map(|(used, streams)| {
            ctx.create_buffer("emb table", used, BufferUsage::Storage)
                .map(|b| (b, streams))
        })
        .collect::<Result<_, _>>()?;
    let ids: Vec<u32> = (0..17)
        .map(|s| if s == 0 { 31999 } else { 1000 + s })
        .collect();
    let tokens = ctx.upload("tokens", &ids)?;
    let out = buf(ctx, "out", dim as usize)?;
    let n_buffers = tables.len() as u64;
    // One row of each table (its scales included, as if the row were a table of its own).
    let row = table_bytes(format, 1, dim).min(dim as u64 * 4);
    let bytes = 17 * row + (2 * n_buffers - 1) * dim as u64 * 4;
    Ok(Case::new(
        format!(
            "embed_sum 17 streams d{dim} {} ({n_buffers} buffers)",
            format.name()
        ),
        bytes,
        move |r| {
            for (i, (t, streams)) in tables.iter().enumerate() {
                embed::embed_sum(
                    r,
                    &EmbedTable {
                        view: t.view(),
                        dim,
                    },
                    tokens.view(),
                    streams,
                    out.view(),
                    i > 0,
                )?;
            }
            Ok(())
        },
    ))
}
