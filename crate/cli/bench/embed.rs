use anyhow::Result;
use parle::gpu::{BufferUsage, Context, GpuBuffer};
use parle::kernels::embed::{self, EmbedTable, Stream, TableFormat};

use super::{buf, Case};

/// Moshi's 17-stream input embedding (text 32001 rows, 16 audio tables of 2049 rows, d 4096,
/// bf16), tables packed into as few buffers as the device binds (one launch per buffer).
pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let dim = 4096u32;
    let rows: Vec<u32> = (0..17).map(|s| if s == 0 { 32001 } else { 2049 }).collect();
    let row_bytes = dim as u64 * 2;
    let caps = ctx.caps();
    let max_rows = caps.max_storage_binding.min(caps.max_buffer_size) / row_bytes;
    // Whole tables per buffer where they fit; the text table split by rows if it must be.
    let mut plan: Vec<(u64, Vec<Stream>)> = vec![(0, Vec::new())];
    for (s, &r) in rows.iter().enumerate() {
        let mut first = 0u32;
        while first < r {
            if plan.last().unwrap().0 == max_rows {
                plan.push((0, Vec::new()));
            }
            let (used, streams) = plan.last_mut().unwrap();
            let take = ((r - first) as u64).min(max_rows - *used) as u32;
            if take < r - first && first == 0 && *used > 0 && r as u64 <= max_rows {
                plan.push((0, Vec::new()));
                continue;
            }
            streams.push(Stream {
                token: s as u32,
                row_offset: *used as u32,
                first_id: first,
                rows: take,
            });
            *used += take as u64;
            first += take;
        }
    }
    let tables: Vec<(GpuBuffer, Vec<Stream>)> = plan
        .into_iter()
        .map(|(used, streams)| {
            ctx.create_buffer("emb table", used * row_bytes, BufferUsage::Storage)
                .map(|b| (b, streams))
        })
        .collect::<Result<_, _>>()?;
    let ids: Vec<u32> = (0..17)
        .map(|s| if s == 0 { 31999 } else { 1000 + s })
        .collect();
    let tokens = ctx.upload("tokens", &ids)?;
    let out = buf(ctx, "out", dim as usize)?;
    let n_buffers = tables.len() as u64;
    let bytes = 17 * row_bytes + (2 * n_buffers - 1) * dim as u64 * 4;
    Ok(vec![Case::new(
        format!("embed_sum 17 streams d{dim} bf16 ({n_buffers} buffers)"),
        bytes,
        move |r| {
            for (i, (t, streams)) in tables.iter().enumerate() {
                embed::embed_sum(
                    r,
                    &EmbedTable {
                        view: t.view(),
                        format: TableFormat::Bf16,
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
    )])
}
