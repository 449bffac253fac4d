use anyhow::Result;
use parle::gpu::Context;
use parle::kernels::elementwise;

use super::{buf, Case};

pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let n = 1usize << 20;
    let (a, y) = (buf(ctx, "a", 2 * n)?, buf(ctx, "y", 2 * n)?);
    let mut v = Vec::new();
    let (a1, y1) = (a.clone(), y.clone());
    v.push(Case::new(
        "empty (elu n=1): per-dispatch overhead",
        8,
        move |r| elementwise::elu(r, a1.view(), y1.view(), 1),
    ));
    let (a1, y1) = (a.clone(), y.clone());
    v.push(Case::new(format!("elu n={n}"), 8 * n as u64, move |r| {
        elementwise::elu(r, a1.view(), y1.view(), n as u32)
    }));
    let (a1, y1) = (a.clone(), y.clone());
    v.push(Case::new(
        format!("gelu_erf n={n}"),
        8 * n as u64,
        move |r| elementwise::gelu_erf(r, a1.view(), y1.view(), n as u32),
    ));
    v.push(Case::new("silu_gate 1x11264", 3 * 11264 * 4, move |r| {
        elementwise::silu_gate(r, a.view(), y.view(), 1, 11264)
    }));
    Ok(v)
}
