use anyhow::Result;
use parle::gpu::Context;
use parle::kernels::softmax;

use super::{buf, Case};

/// Row softmax over the text vocabulary (32000) and an audio codebook (2048).
pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let (x, y) = (buf(ctx, "x", 32000)?, buf(ctx, "y", 32000)?);
    let mut v = Vec::new();
    for n in [32000u32, 2048] {
        let (x, y) = (x.clone(), y.clone());
        v.push(Case::new(
            format!("softmax 1x{n}"),
            2 * n as u64 * 4,
            move |r| softmax::softmax(r, x.view(), y.view(), 1, n, 1.0),
        ));
    }
    let n = 32000u32;
    v.push(Case::new(
        format!("softmax_inplace 1x{n}"),
        2 * n as u64 * 4,
        move |r| softmax::softmax_inplace(r, y.view(), 1, n, 1.0),
    ));
    Ok(v)
}
