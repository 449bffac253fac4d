//! Fusions that remove dispatches from a Moshi frame, each against a CPU reference and against
//! the unfused kernels it replaces: the attention in-projection writing k and v straight into
//! the ring KV cache (`LinearOutput::StoreKv`, replacing `AttnConfig::kv_append`); the
//! out-projection computing a short-window attention as its input (`LinearInput::Attention`,
//! replacing `AttnConfig::attention_with`).

use parle::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use parle::kernels::attention::{self, AttnBuffers, AttnConfig};
use parle::kernels::linear::{
    self, reference, LinearInput, LinearOpts, LinearOutput, LinearWeights,
};
use parle::kernels::rope::{self, Rope, RopeLayout};
use parle::weights::HostLinear;

use crate::cases;
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

cases!(
    linear_kv_append,
    linear_kv_append_rejects,
    linear_attention_input,
    linear_attention_input_rejects
);

/// A cache pre-filled with a pattern that no write produces (slots the call must not touch keep
/// it).
fn sentinel_cache(ctx: &Context, bytes: u64) -> Result<GpuBuffer, String> {
    gpu(ctx.upload("kv cache", &vec![0x7fc0_1234u32; (bytes / 4) as usize]))
}

fn cache_values(bytes: &[u8], f16: bool) -> Vec<f32> {
    if f16 {
        let h: Vec<u16> = bytemuck::pod_collect_to_vec(bytes);
        h.iter()
            .map(|&b| half::f16::from_bits(b).to_f32())
            .collect()
    } else {
        bytemuck::pod_collect_to_vec(bytes)
    }
}

struct KvCase {
    heads: u32,
    head_dim: u32,
    capacity: u32,
    m: u32,
    pos0: u32,
    rope: bool,
    f32_cache: bool,
}

/// In-projection with the KV write fused: y as the plain linear computes it, the cache equal bit
/// for bit to `linear` + `kv_append`, and both within tolerance of the f64 reference (RMSNorm →
/// matmul → RoPE on k → f16 rounding when the cache is f16); untouched ring slots unchanged.
async fn one_kv_case(ctx: &Context, c: &KvCase, seed: u64) -> CaseResult {
    let what = format!(
        "{} heads × {}, capacity {}, {} rows at {}, rope {}, {} cache",
        c.heads,
        c.head_dim,
        c.capacity,
        c.m,
        c.pos0,
        c.rope,
        if c.f32_cache { "f32" } else { "device" }
    );
    let hd = c.heads * c.head_dim;
    let (n, k, m) = (3 * hd, 40u32, c.m);
    let mut rng = Rng::new(seed);
    let w = rng.vec((n * k) as usize, 0.5);
    let x = rng.vec((m * k) as usize, 2.0);
    let nw: Vec<f32> = (0..k).map(|_| 1.0 + 0.3 * rng.uniform()).collect();
    let eps = 1e-6;
    let host = gpu(HostLinear::from_f32(&w, n, k))?;
    let wt = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    let xb = gpu(ctx.upload("x", &x))?;
    let nwb = gpu(ctx.upload("nw", &nw))?;
    let mut cfg = AttnConfig::new(c.heads, c.head_dim, c.capacity, c.capacity);
    if c.f32_cache {
        cfg = cfg.with_f32_cache();
    }
    let max_period = 10000.0;
    if c.rope {
        cfg = cfg.with_rope(&gpu(Rope::new(ctx, c.head_dim, max_period))?);
    }
    let f16 = cfg.kv16(ctx);
    let bytes = cfg.cache_bytes(ctx);
    let (cache_a, cache_b) = (sentinel_cache(ctx, bytes)?, sentinel_cache(ctx, bytes)?);
    let storage = |l| ctx.create_buffer(l, (m * n * 4) as u64, BufferUsage::Storage);
    let (ya, yb) = (gpu(storage("ya"))?, gpu(storage("yb"))?);
    let input = LinearInput::RmsNorm {
        weight: nwb.view(),
        eps,
    };
    let kv = cfg
        .fused_append(ctx, cache_a.view(), c.pos0)
        .ok_or(format!("{what}: no fused form"))?;
    let mut rec = Recorder::new(ctx, "test");
    let fused = LinearOpts {
        bias: None,
        input,
        out: LinearOutput::StoreKv(kv),
    };
    gpu(linear::linear_with(
        &mut rec,
        &wt,
        xb.view(),
        ya.view(),
        m,
        &fused,
    ))?;
    let before = rec.dispatch_count();
    let plain = LinearOpts {
        bias: None,
        input,
        out: LinearOutput::Store,
    };
    gpu(linear::linear_with(
        &mut rec,
        &wt,
        xb.view(),
        yb.view(),
        m,
        &plain,
    ))?;
    gpu(cfg.kv_append(&mut rec, yb.view(), cache_b.view(), m, c.pos0))?;
    if before != 1 || rec.dispatch_count() != 3 {
        return Err(format!(
            "{what}: the fused call took {before} dispatches, want 1"
        ));
    }
    gpu(rec.submit())?;
    let (ga, gb) = (gpu(ctx.read_f32(&ya).await)?, gpu(ctx.read_f32(&yb).await)?);
    if ga.iter().zip(&gb).any(|(a, b)| a.to_bits() != b.to_bits()) {
        return Err(format!("{what}: y differs from the plain linear's"));
    }
    let ca = gpu(ctx.read(&cache_a, 0, bytes).await)?;
    let cb = gpu(ctx.read(&cache_b, 0, bytes).await)?;
    if let Some(i) = (0..ca.len()).find(|&i| ca[i] != cb[i]) {
        return Err(format!(
            "{what}: cache byte {i} is {:#04x}, linear + kv_append wrote {:#04x}",
            ca[i], cb[i]
        ));
    }
    // The f64 reference.
    let xin = reference::input(
        &x,
        m as usize,
        k as usize,
        reference::Input::RmsNorm { weight: &nw, eps },
    );
    let mut want_y = reference::linear(&xin, &w, None, m as usize, n as usize, k as usize);
    assert_close(&format!("{what}: y"), &ga, &want_y, 1e-4, 1e-4)?;
    if c.rope {
        let layout = RopeLayout {
            heads: c.heads,
            row_stride: n,
            q_offset: 0,
            k_offset: Some(hd),
        };
        rope::reference::rope(
            &mut want_y,
            &layout,
            c.head_dim as usize,
            max_period,
            m as usize,
            c.pos0 as usize,
        );
    }
    let got = cache_values(&ca, f16);
    let sentinel = cache_values(
        &gpu(ctx.read(&sentinel_cache(ctx, bytes)?, 0, bytes).await)?,
        f16,
    );
    let mut want = sentinel.clone();
    let hdu = hd as usize;
    for r in 0..m as usize {
        let slot = (c.pos0 as usize + r) % c.capacity as usize;
        let row = &want_y[r * n as usize..];
        for (which, off) in [(0usize, hdu), (1, 2 * hdu)] {
            let at = (which * c.capacity as usize + slot) * hdu;
            for j in 0..hdu {
                let v = row[off + j];
                want[at + j] = if f16 {
                    half::f16::from_f32(v).to_f32()
                } else {
                    v
                };
            }
        }
    }
    let (atol, rtol) = if f16 { (2e-3, 2e-3) } else { (1e-4, 1e-4) };
    for (i, (g, s)) in got.iter().zip(&sentinel).enumerate() {
        let touched = want[i].to_bits() != s.to_bits();
        if !touched && g.to_bits() != s.to_bits() {
            return Err(format!(
                "{what}: cache element {i} outside the new rows changed"
            ));
        }
    }
    let mask = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .zip(&sentinel)
            .map(|(a, s)| if a.to_bits() == s.to_bits() { 0.0 } else { *a })
            .collect()
    };
    assert_close(
        &format!("{what}: cache"),
        &mask(&got),
        &mask(&want),
        atol,
        rtol,
    )
}

async fn linear_kv_append(ctx: &Context, size: Size) -> CaseResult {
    let mut cases = vec![
        // The depformer: no RoPE, one row per call.
        KvCase {
            heads: 3,
            head_dim: 8,
            capacity: 4,
            m: 1,
            pos0: 2,
            rope: false,
            f32_cache: false,
        },
        // Moshi's temporal layer: RoPE, one row, the ring wrapped.
        KvCase {
            heads: 2,
            head_dim: 16,
            capacity: 5,
            m: 1,
            pos0: 13,
            rope: true,
            f32_cache: false,
        },
        // Mimi: two rows per call, f32 cache, wrapping inside the call.
        KvCase {
            heads: 3,
            head_dim: 8,
            capacity: 5,
            m: 2,
            pos0: 4,
            rope: true,
            f32_cache: true,
        },
        // Batch tiles of 4 and 8 with rows past M.
        KvCase {
            heads: 1,
            head_dim: 24,
            capacity: 7,
            m: 3,
            pos0: 6,
            rope: true,
            f32_cache: false,
        },
        KvCase {
            heads: 5,
            head_dim: 8,
            capacity: 6,
            m: 5,
            pos0: 0,
            rope: true,
            f32_cache: true,
        },
    ];
    if size == Size::Full {
        cases.push(KvCase {
            heads: 16,
            head_dim: 64,
            capacity: 8,
            m: 1,
            pos0: 7,
            rope: false,
            f32_cache: false,
        });
        cases.push(KvCase {
            heads: 4,
            head_dim: 128,
            capacity: 9,
            m: 1,
            pos0: 100,
            rope: true,
            f32_cache: false,
        });
    }
    for (i, c) in cases.iter().enumerate() {
        one_kv_case(ctx, c, 70 + i as u64).await?;
    }
    Ok(())
}

/// What the fused write cannot take is refused with a message, never written wrongly.
async fn linear_kv_append_rejects(ctx: &Context, _size: Size) -> CaseResult {
    // A head dim that the cache pads has no fused form.
    if AttnConfig::new(2, 12, 4, 4)
        .fused_append(ctx, gpu(ctx.upload("c", &[0u32; 4]))?.view(), 0)
        .is_some()
    {
        return Err("head_dim 12 (padded cache rows) must have no fused KV write".into());
    }
    let (heads, dh, k) = (2u32, 8u32, 16u32);
    let n = 3 * heads * dh;
    let host = gpu(HostLinear::from_f32(&vec![0.5; (n * k) as usize], n, k))?;
    let wt = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    let x = gpu(ctx.upload("x", &vec![1f32; k as usize]))?;
    let cfg = AttnConfig::new(heads, dh, 4, 4);
    // y as large as a cache, so that using it as the cache fails only on the aliasing.
    let y_len = (n as u64).max(cfg.cache_bytes(ctx) / 4) as usize;
    let y = gpu(ctx.upload("y", &vec![0f32; y_len]))?;
    let bias = gpu(ctx.upload("b", &vec![0f32; n as usize]))?;
    let cache = sentinel_cache(ctx, cfg.cache_bytes(ctx))?;
    let small = sentinel_cache(ctx, 16)?;
    let ok = cfg
        .fused_append(ctx, cache.view(), 0)
        .ok_or("no fused form")?;
    let attempts = [
        ("a bias", Some(bias.view()), ok, "bias"),
        (
            "a cache too small",
            None,
            cfg.fused_append(ctx, small.view(), 0)
                .ok_or("no fused form")?,
            "bytes",
        ),
        (
            "the cache aliasing y",
            None,
            cfg.fused_append(ctx, y.view(), 0).ok_or("no fused form")?,
            "different buffer",
        ),
        (
            "more rows than the ring holds",
            None,
            linear::KvAppend { capacity: 0, ..ok },
            "capacity",
        ),
    ];
    for (what, bias, kv, needle) in attempts {
        let mut rec = Recorder::new(ctx, "test");
        let opts = LinearOpts {
            bias,
            input: LinearInput::Plain,
            out: LinearOutput::StoreKv(kv),
        };
        match linear::linear_with(&mut rec, &wt, x.view(), y.view(), 1, &opts) {
            Ok(()) => return Err(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(needle) => {
                return Err(format!("{what}: message '{e}' does not mention '{needle}'"))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

struct AttnCase {
    heads: u32,
    head_dim: u32,
    capacity: u32,
    window: u32,
    pos0: u32,
    f32_cache: bool,
}

/// Out-projection + residual with the attention fused into its input: within tolerance of
/// `attention_with` + the plain linear and of the f64 reference (keys and values rounded to f16
/// when the cache is f16), the residual added.
async fn one_attn_case(ctx: &Context, c: &AttnCase, seed: u64) -> CaseResult {
    let what = format!(
        "{} heads × {}, capacity {}, window {}, query at {}, {} cache",
        c.heads,
        c.head_dim,
        c.capacity,
        c.window,
        c.pos0,
        if c.f32_cache { "f32" } else { "device" }
    );
    let hd = c.heads * c.head_dim;
    let (n, k) = (hd + 4, hd);
    let mut cfg = AttnConfig::new(c.heads, c.head_dim, c.capacity, c.window);
    if c.f32_cache {
        cfg = cfg.with_f32_cache();
    }
    let f16 = cfg.kv16(ctx);
    let mut rng = Rng::new(seed);
    let w = rng.vec((n * k) as usize, 0.5);
    let host = gpu(HostLinear::from_f32(&w, n, k))?;
    let wt = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    let resid = rng.vec(n as usize, 1.0);
    let cache = gpu(ctx.create_buffer("cache", cfg.cache_bytes(ctx), BufferUsage::Storage))?;
    let attn_out = gpu(ctx.create_buffer("attn", (hd * 4) as u64, BufferUsage::Storage))?;
    let scratch = gpu(ctx.create_buffer("split", cfg.scratch_bytes(1), BufferUsage::Storage))?;
    let ya = gpu(ctx.upload("ya", &resid))?;
    let yb = gpu(ctx.upload("yb", &resid))?;
    let mut rec = Recorder::new(ctx, "test");
    let (mut k_hist, mut v_hist) = (Vec::new(), Vec::new());
    let round = |v: &[f32]| {
        if f16 {
            attention::reference::round_f16(v)
        } else {
            v.to_vec()
        }
    };
    let hdu = hd as usize;
    let mut rows = Vec::new();
    for pos in 0..=c.pos0 {
        let row = rng.vec(3 * hdu, 1.5);
        let rb = gpu(ctx.upload("qkv", &row))?;
        gpu(cfg.kv_append(&mut rec, rb.view(), cache.view(), 1, pos))?;
        k_hist.push(round(&row[hdu..2 * hdu]));
        v_hist.push(round(&row[2 * hdu..]));
        rows.push((row, rb));
    }
    let (q, qb) = rows.last().ok_or("no rows")?;
    let a = cfg
        .fused_input(ctx, cache.view(), 1, c.pos0)
        .ok_or(format!("{what}: no fused form"))?;
    let before = rec.dispatch_count();
    let fused = LinearOpts {
        bias: None,
        input: LinearInput::Attention(a),
        out: LinearOutput::Accumulate,
    };
    gpu(linear::linear_with(
        &mut rec,
        &wt,
        qb.view(),
        ya.view(),
        1,
        &fused,
    ))?;
    if rec.dispatch_count() != before + 1 {
        return Err(format!(
            "{what}: the fused call took {} dispatches",
            rec.dispatch_count() - before
        ));
    }
    let bufs = AttnBuffers {
        qkv: qb.view(),
        cache: cache.view(),
        out: attn_out.view(),
        scratch: Some(scratch.view()),
    };
    gpu(cfg.attention_with(&mut rec, &bufs, 1, c.pos0))?;
    let plain = LinearOpts {
        bias: None,
        input: LinearInput::Plain,
        out: LinearOutput::Accumulate,
    };
    gpu(linear::linear_with(
        &mut rec,
        &wt,
        attn_out.view(),
        yb.view(),
        1,
        &plain,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&ya).await)?;
    let unfused = gpu(ctx.read_f32(&yb).await)?;
    assert_close(
        &format!("{what}: vs attention + linear"),
        &got,
        &unfused,
        1e-5,
        1e-5,
    )?;
    let att =
        attention::reference::attention(&cfg, &q[..hdu], &k_hist, &v_hist, 1, c.pos0 as usize);
    let mut want = resid.clone();
    let v = reference::linear(&att, &w, None, 1, n as usize, k as usize);
    reference::output(&mut want, &v, n as usize, true, None);
    assert_close(&format!("{what}: vs reference"), &got, &want, 1e-4, 1e-4)
}

async fn linear_attention_input(ctx: &Context, size: Size) -> CaseResult {
    let mut cases = vec![
        AttnCase {
            heads: 3,
            head_dim: 8,
            capacity: 4,
            window: 4,
            pos0: 0,
            f32_cache: false,
        },
        AttnCase {
            heads: 3,
            head_dim: 8,
            capacity: 4,
            window: 4,
            pos0: 2,
            f32_cache: true,
        },
        // The ring wrapped, and a window shorter than the ring.
        AttnCase {
            heads: 2,
            head_dim: 16,
            capacity: 5,
            window: 5,
            pos0: 7,
            f32_cache: false,
        },
        AttnCase {
            heads: 5,
            head_dim: 8,
            capacity: 6,
            window: 3,
            pos0: 4,
            f32_cache: false,
        },
    ];
    if size == Size::Full {
        // The depformer: 16 heads of 64, 8 positions per frame.
        for pos0 in [0, 7] {
            cases.push(AttnCase {
                heads: 16,
                head_dim: 64,
                capacity: 8,
                window: 8,
                pos0,
                f32_cache: false,
            });
        }
    }
    let mut failed = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        if let Err(e) = one_attn_case(ctx, c, 90 + i as u64).await {
            failed.push(e);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n"))
    }
}

/// Shapes the fused attention input cannot take have no fused form, or are refused by the
/// launcher with a message.
async fn linear_attention_input_rejects(ctx: &Context, _size: Size) -> CaseResult {
    let dummy = gpu(ctx.upload("c", &[0u32; 4]))?;
    let none = [
        ("two query rows", AttnConfig::new(2, 8, 4, 4), 2u32),
        ("a padded head dim", AttnConfig::new(2, 12, 4, 4), 1),
        (
            "too many scores (Mimi's window)",
            AttnConfig::new(8, 64, 250, 250),
            1,
        ),
        (
            "K over 1024 (Moshi's temporal layer)",
            AttnConfig::new(32, 128, 8, 8),
            1,
        ),
    ];
    for (what, cfg, t) in none {
        if cfg.fused_input(ctx, dummy.view(), t, 0).is_some() {
            return Err(format!("{what}: has a fused attention input"));
        }
    }
    let cfg = AttnConfig::new(2, 8, 4, 4);
    let (n, k) = (8u32, 16u32);
    let host = gpu(HostLinear::from_f32(&vec![0.5; (n * k) as usize], n, k))?;
    let wt = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    let x = gpu(ctx.upload("x", &vec![1f32; 2 * 3 * k as usize]))?;
    let y_len = (2 * n as u64).max(cfg.cache_bytes(ctx) / 4) as usize;
    let y = gpu(ctx.upload("y", &vec![0f32; y_len]))?;
    let cache = sentinel_cache(ctx, cfg.cache_bytes(ctx))?;
    let ok = cfg
        .fused_input(ctx, cache.view(), 1, 0)
        .ok_or("no fused form")?;
    let attempts = [
        ("two rows", 2u32, ok, "one query row"),
        (
            "a small cache",
            1,
            attention_with_cache(ok, dummy.view()),
            "bytes",
        ),
        (
            "the cache as y",
            1,
            attention_with_cache(ok, y.view()),
            "different buffer",
        ),
        (
            "too many scores",
            1,
            linear::AttnInput {
                capacity: 200,
                window: 200,
                ..ok
            },
            "scores",
        ),
    ];
    for (what, m, a, needle) in attempts {
        let mut rec = Recorder::new(ctx, "test");
        let opts = LinearOpts {
            bias: None,
            input: LinearInput::Attention(a),
            out: LinearOutput::Accumulate,
        };
        match linear::linear_with(&mut rec, &wt, x.view(), y.view(), m, &opts) {
            Ok(()) => return Err(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(needle) => {
                return Err(format!("{what}: message '{e}' does not mention '{needle}'"))
            }
            Err(_) => {}
        }
    }
    Ok(())
}

fn attention_with_cache<'a>(
    a: linear::AttnInput<'a>,
    cache: parle::gpu::View<'a>,
) -> linear::AttnInput<'a> {
    linear::AttnInput { cache, ..a }
}
