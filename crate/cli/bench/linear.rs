//! `linear` at the LM's shapes, batch 1: the temporal transformer's FFN in (4096 → 2·11264) and
//! out (11264 → 4096), the text head (4096 → 32000), each in bf16, Q8_0 and MLX q4; and a
//! depformer-sized f32 in-projection (1024 → 3072). Bytes = weight streams + x + y.
//! Weights are zero-filled buffers of the right size (the timing does not depend on values);
//! weights over the storage-binding limit are split into parts as the loader would.

use anyhow::Result;
use parle::gpu::{BufferUsage, Context};
use parle::kernels::linear::{self, LinearWeights, WeightFormat};

use super::{buf, Case};

/// A zero-filled weight of `rows × k`, split into parts under the binding limit.
fn weight(ctx: &Context, f: WeightFormat, rows: u32, k: u32) -> Result<LinearWeights> {
    let max = ctx.caps().max_storage_binding;
    let per_row = 4 * f.data_words(1, k);
    let max_rows = ((max / per_row) as u32 / 4 * 4).max(4);
    let mut parts = Vec::new();
    let mut r0 = 0;
    while r0 < rows {
        let r = max_rows.min(rows - r0);
        let data = ctx.create_buffer("w", 4 * f.data_words(r, k), BufferUsage::Storage)?;
        let scales = match f.scale_words(r, k) {
            0 => None,
            n => Some(ctx.create_buffer("s", 4 * n, BufferUsage::Storage)?),
        };
        parts.push((r, data, scales));
        r0 += r;
    }
    Ok(LinearWeights::from_parts(f, k, parts)?)
}

pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let x = buf(ctx, "x", 11264)?;
    let y = buf(ctx, "y", 32000)?;
    let mut v = Vec::new();
    let shapes: [(u32, u32, &str); 3] = [
        (4096, 22528, "FFN in"),
        (11264, 4096, "FFN out"),
        (4096, 32000, "text head"),
    ];
    let mut list: Vec<(WeightFormat, u32, u32, &str)> = Vec::new();
    for (k, n, what) in shapes {
        for f in [WeightFormat::Bf16, WeightFormat::Q8_0, WeightFormat::MLX_Q4] {
            list.push((f, k, n, what));
        }
    }
    list.push((WeightFormat::F32, 1024, 3072, "depformer in_proj"));
    for (f, k, n, what) in list {
        let w = weight(ctx, f, n, k)?;
        let bytes = w.bytes() + 4 * (k as u64 + n as u64);
        let parts = w.part_count();
        let (x1, y1) = (x.clone(), y.clone());
        v.push(Case::new(
            format!(
                "linear {} {k}→{n} M=1 ({what}{})",
                f.name(),
                if parts > 1 {
                    format!(", {parts} parts")
                } else {
                    String::new()
                }
            ),
            bytes,
            move |r| linear::linear(r, &w, x1.view(), y1.view(), 1, None),
        ));
    }
    Ok(v)
}
