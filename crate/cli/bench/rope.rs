use std::rc::Rc;

use anyhow::Result;
use parle::gpu::Context;
use parle::kernels::rope::{Rope, RopeLayout};

use super::{buf, Case};

/// RoPE on q and k of the fused qkv rows: Moshi (32 heads × 128, one step) and Mimi (8 × 64,
/// two steps), at positions near the end of the context.
pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let mut v = Vec::new();
    for (heads, dh, rows, pos0) in [(32u32, 128u32, 1u32, 2999u32), (8, 64, 2, 249)] {
        let rope = Rc::new(Rope::new(ctx, dh, 1e4)?);
        let layout = RopeLayout::fused_qkv(heads, dh);
        let x = buf(ctx, "qkv", (rows * 3 * heads * dh) as usize)?;
        // q and k read and written.
        let bytes = rows as u64 * 2 * heads as u64 * dh as u64 * 4 * 2;
        v.push(Case::new(
            format!("rope q+k {rows}x{heads}x{dh} pos {pos0}"),
            bytes,
            move |r| rope.apply(r, x.view(), &layout, rows, pos0),
        ));
    }
    Ok(v)
}
