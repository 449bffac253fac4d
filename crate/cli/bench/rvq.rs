use anyhow::Result;
use parle::gpu::Context;
use parle::kernels::rvq::{
    self, Codebooks, CodesLayout, CodesView, EncodeScratch, Frames, IoLayout,
};

use super::{buf, Case};

/// Mimi's acoustic RVQ at its real size: 8 levels × 2048 bins × 256, one frame (T = 1) and a
/// 1-second batch (T = 13), plus the decode gather-sum.
pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let (levels, bins, dim) = (8u32, 2048u32, 256u32);
    let cb = buf(ctx, "codebooks", (levels * bins * dim) as usize)?;
    let mut v = Vec::new();
    for t in [1u32, 13] {
        let x = buf(ctx, "x", (t * dim) as usize)?;
        let codes = buf(ctx, "codes", (levels * t) as usize)?;
        let res = buf(ctx, "residual", (2 * t * dim) as usize)?;
        let dist = buf(ctx, "parts", (rvq::parts_bytes(t, bins) / 4) as usize)?;
        let cb = cb.clone();
        let book_bytes = levels as u64 * bins as u64 * dim as u64 * 4;
        v.push(Case::new(
            format!(
                "encode {levels}x{bins}x{dim} T={t} ({} launches)",
                levels + 1
            ),
            book_bytes + (t * dim * 4 * 3 * levels) as u64,
            move |r| {
                let book = Codebooks {
                    view: cb.view(),
                    levels,
                    bins,
                    dim,
                };
                rvq::encode(
                    r,
                    &book,
                    levels,
                    Frames {
                        view: x.view(),
                        layout: IoLayout::time_major(dim),
                        frames: t,
                    },
                    CodesView {
                        view: codes.view(),
                        layout: CodesLayout::levels_major(t),
                    },
                    EncodeScratch {
                        residual: res.view(),
                        parts: dist.view(),
                    },
                )
            },
        ));
    }
    let codes = buf(ctx, "codes", levels as usize)?;
    let out = buf(ctx, "q", dim as usize)?;
    v.push(Case::new(
        format!("decode {levels}x{bins}x{dim} T=1"),
        (levels * dim * 4 + dim * 4) as u64,
        move |r| {
            let book = Codebooks {
                view: cb.view(),
                levels,
                bins,
                dim,
            };
            rvq::decode(
                r,
                &book,
                levels,
                CodesView {
                    view: codes.view(),
                    layout: CodesLayout::levels_major(1),
                },
                Frames {
                    view: out.view(),
                    layout: IoLayout::time_major(dim),
                    frames: 1,
                },
            )
        },
    ));
    Ok(v)
}
