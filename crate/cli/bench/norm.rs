use anyhow::Result;
use parle::gpu::Context;
use parle::kernels::norm::{self, LayerNorm};

use super::{buf, Case};

/// RMSNorm at Moshi's (1×4096) and the depformer's (1×1024) rows, LayerNorm at Mimi's
/// (2×512, two 25 Hz steps per frame).
pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let (x, w, b, y) = (
        buf(ctx, "x", 4096)?,
        buf(ctx, "w", 4096)?,
        buf(ctx, "b", 4096)?,
        buf(ctx, "y", 4096)?,
    );
    let mut v = Vec::new();
    for (rows, d) in [(1u32, 4096u32), (1, 1024)] {
        let (x, w, y) = (x.clone(), w.clone(), y.clone());
        v.push(Case::new(
            format!("rms_norm {rows}x{d}"),
            (2 * rows as u64 + 1) * d as u64 * 4,
            move |r| norm::rms_norm(r, x.view(), w.view(), y.view(), rows, d, 1e-8),
        ));
    }
    let (rows, d) = (2u32, 512u32);
    v.push(Case::new(
        format!("layer_norm {rows}x{d}"),
        (2 * rows as u64 + 2) * d as u64 * 4,
        move |r| {
            LayerNorm {
                weight: w.view(),
                bias: b.view(),
                eps: 1e-5,
            }
            .apply(r, x.view(), y.view(), rows, d)
        },
    ));
    Ok(v)
}
