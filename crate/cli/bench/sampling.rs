use anyhow::Result;
use parle::gpu::Context;
use parle::kernels::sampling::{self, SampleConfig};

use super::Case;

/// One draw per dispatch at Moshi's shapes: audio (2048, τ 0.8, top-250) and text (32000,
/// τ 0.7, top-25), and greedy for both.
pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    // Bell-shaped logits so the radix select sees a realistic value distribution.
    let mut s = 0x1234_5678u32;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        (s >> 8) as f32 / (1u32 << 24) as f32
    };
    let logits: Vec<f32> = (0..32000)
        .map(|_| (next() + next() + next() - 1.5) * 6.0)
        .collect();
    let lb = ctx.upload("logits", &logits)?;
    let tokens = ctx.upload("tokens", &[0u32; 4])?;
    let mut v = Vec::new();
    for (n, cfg, name) in [
        (2048u32, SampleConfig::greedy(), "greedy n=2048"),
        (32000, SampleConfig::greedy(), "greedy n=32000"),
        (
            2048,
            SampleConfig::top_k(0.8, 250, 1, 0, 0),
            "τ 0.8 top-k 250 n=2048",
        ),
        (
            32000,
            SampleConfig::top_k(0.7, 25, 1, 0, 0),
            "τ 0.7 top-k 25 n=32000",
        ),
        (
            32000,
            SampleConfig::top_k(0.7, 0, 1, 0, 0),
            "τ 0.7 no top-k n=32000",
        ),
    ] {
        let (lb, tb) = (lb.clone(), tokens.clone());
        v.push(Case::new(
            format!("sample {name}"),
            n as u64 * 4,
            move |r| sampling::sample(r, lb.view(), 0, n, &cfg, tb.view(), 0),
        ));
    }
    Ok(v)
}
