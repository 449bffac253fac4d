use anyhow::Result;
use parle::gpu::{BufferUsage, Context};
use parle::kernels::attention::{kv_elem_bytes, AttnBuffers, AttnConfig};
use parle::kernels::rope::Rope;

use super::{buf, Case};

/// Attention at the real shapes with the cache full: Moshi (32 heads × 128, 3000 keys, one
/// query; single dispatch and split), Mimi (8 × 64, 250 keys, two queries), the depformer
/// (16 × 64, 8 keys, one query); and the KV append of one step. Moshi and Mimi also with RoPE
/// fused into the append and the query load (what replaces the separate `rope` dispatch).
pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let elem = kv_elem_bytes(ctx);
    let mut v = Vec::new();
    let shapes = [
        ("Moshi", AttnConfig::new(32, 128, 3000, 3000), 1u32),
        ("Mimi", AttnConfig::new(8, 64, 250, 250), 2),
        ("depformer", AttnConfig::new(16, 64, 8, 8), 1),
    ];
    for (name, base, t) in shapes {
        let rope = Rope::new(ctx, base.head_dim, 1e4)?;
        let variants = if name == "depformer" {
            vec![(base.clone(), "")]
        } else {
            vec![
                (base.clone(), ""),
                (base.clone().with_rope(&rope), ", RoPE fused"),
            ]
        };
        for (cfg, fused) in variants {
            let hd = (cfg.heads * cfg.head_dim) as u64;
            let cache =
                ctx.create_buffer("kv cache", cfg.cache_bytes(ctx), BufferUsage::Storage)?;
            let qkv = buf(ctx, "qkv", (t as u64 * 3 * hd) as usize)?;
            let out = buf(ctx, "out", (t as u64 * hd) as usize)?;
            // Positions with the window full.
            let pos0 = cfg.window.max(cfg.capacity);
            let keys = cfg.window.min(cfg.capacity) as u64;
            let bytes = 2 * keys * hd * elem + 2 * t as u64 * hd * 4;
            // Split targets: never, then 128, 256 (the default), 384 workgroups.
            let targets: &[u32] = match (name, fused) {
                ("Moshi", "") => &[0, 128, 256, 384],
                _ => &[0, 256],
            };
            for &target in targets {
                let cfg = AttnConfig {
                    split_groups: target,
                    ..cfg.clone()
                };
                let scratch =
                    ctx.create_buffer("scratch", cfg.scratch_bytes(t), BufferUsage::Storage)?;
                let (cache, qkv, out) = (cache.clone(), qkv.clone(), out.clone());
                v.push(Case::new(
                    format!(
                        "attention {name} {}x{} {keys} keys T={t} split target {target}{fused}",
                        cfg.heads, cfg.head_dim
                    ),
                    bytes,
                    move |r| {
                        let bufs = AttnBuffers {
                            qkv: qkv.view(),
                            cache: cache.view(),
                            out: out.view(),
                            scratch: (target > 1).then(|| scratch.view()),
                        };
                        cfg.attention_with(r, &bufs, t, pos0)
                    },
                ));
            }
            v.push(Case::new(
                format!("kv_append {name} T={t}{fused}"),
                2 * t as u64 * hd * (4 + elem),
                move |r| cfg.kv_append(r, qkv.view(), cache.view(), t, pos0),
            ));
        }
    }
    Ok(v)
}
