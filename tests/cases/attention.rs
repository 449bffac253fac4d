use parle::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use parle::kernels::attention::{reference, AttnBuffers, AttnConfig, QkvLayout};
use parle::kernels::rope::{self, Rope, RopeLayout};

use crate::cases;
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

cases!(
    kv_append_cache_layout,
    mimi_streaming,
    moshi_ring_wraps,
    depformer_frames,
    causal_prefill,
    split_matches_single,
    kv_append_padded_layout,
    any_head_dim,
    fused_rope_matches_reference,
    fused_rope_equals_rope_apply,
    attention_rejects_bad_args
);

/// Keys/values by absolute position, as written most recently (what the ring should hold).
#[derive(Default)]
struct History {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl History {
    fn put(&mut self, pos: usize, k: &[f32], v: &[f32], f16: bool) {
        if self.k.len() <= pos {
            self.k.resize(pos + 1, Vec::new());
            self.v.resize(pos + 1, Vec::new());
        }
        let r = |x: &[f32]| {
            if f16 {
                reference::round_f16(x)
            } else {
                x.to_vec()
            }
        };
        self.k[pos] = r(k);
        self.v[pos] = r(v);
    }
}

/// One call: `t` new rows at `pos0`, queries scaled by `qscale`; `attend: false` only appends.
struct Step {
    t: usize,
    pos0: usize,
    qscale: f32,
    attend: bool,
}

fn qkv_rows(rng: &mut Rng, cfg: &AttnConfig, t: usize, qscale: f32) -> Vec<f32> {
    let l = cfg.qkv;
    let hd = (cfg.heads * cfg.head_dim) as usize;
    let mut x = rng.vec(t * l.row_stride as usize, 1.0);
    for r in 0..t {
        for e in &mut x[r * l.row_stride as usize + l.q_offset as usize..][..hd] {
            *e *= qscale;
        }
    }
    x
}

fn storage(ctx: &Context, label: &str, bytes: u64) -> Result<GpuBuffer, String> {
    gpu(ctx.create_buffer(label, bytes, BufferUsage::Storage))
}

/// What the reference sees of `t` qkv rows at `pos0`: the rows themselves, or with q and k
/// rotated (f64 RoPE reference) when the layer has RoPE fused in.
fn reference_rows(cfg: &AttnConfig, x: &[f32], t: usize, pos0: usize) -> Vec<f32> {
    let mut x = x.to_vec();
    if let Some(r) = &cfg.rope {
        let layout = RopeLayout {
            heads: cfg.heads,
            row_stride: cfg.qkv.row_stride,
            q_offset: cfg.qkv.q_offset,
            k_offset: Some(cfg.qkv.k_offset),
        };
        let dh = cfg.head_dim as usize;
        rope::reference::rope(&mut x, &layout, dh, r.max_period(), t, pos0);
    }
    x
}

/// Record every step (append, then attend) in one recorder over one cache, read all outputs
/// back and compare each with the f64 reference over the history (RoPE applied first when the
/// layer fuses it). Returns the largest |error|.
async fn stream(
    ctx: &Context,
    what: &str,
    cfg: &AttnConfig,
    steps: &[Step],
    split: bool,
    seed: u64,
) -> Result<f32, String> {
    let f16 = cfg.kv16(ctx);
    let hd = (cfg.heads * cfg.head_dim) as usize;
    let l = cfg.qkv;
    let mut rng = Rng::new(seed);
    let cache = storage(ctx, "kv cache", cfg.cache_bytes(ctx))?;
    let max_t = steps.iter().map(|s| s.t).max().unwrap_or(1) as u32;
    let scratch = storage(ctx, "scratch", cfg.scratch_bytes(max_t))?;
    let mut hist = History::default();
    let mut rec = Recorder::new(ctx, "test");
    let mut outs = Vec::new();
    let mut wants = Vec::new();
    for s in steps {
        let x = qkv_rows(&mut rng, cfg, s.t, s.qscale);
        let xb = gpu(ctx.upload("qkv", &x))?;
        let ob = gpu(ctx.upload("out", &vec![f32::NAN; s.t * hd]))?;
        gpu(cfg.kv_append(&mut rec, xb.view(), cache.view(), s.t as u32, s.pos0 as u32))?;
        if s.attend {
            let bufs = AttnBuffers {
                qkv: xb.view(),
                cache: cache.view(),
                out: ob.view(),
                scratch: split.then(|| scratch.view()),
            };
            gpu(cfg.attention_with(&mut rec, &bufs, s.t as u32, s.pos0 as u32))?;
        }
        let x = reference_rows(cfg, &x, s.t, s.pos0);
        let mut q = Vec::with_capacity(s.t * hd);
        for r in 0..s.t {
            let row = &x[r * l.row_stride as usize..];
            q.extend_from_slice(&row[l.q_offset as usize..][..hd]);
            hist.put(
                s.pos0 + r,
                &row[l.k_offset as usize..][..hd],
                &row[l.v_offset as usize..][..hd],
                f16,
            );
        }
        if s.attend {
            wants.push(reference::attention(cfg, &q, &hist.k, &hist.v, s.t, s.pos0));
            outs.push((ob, s));
        }
    }
    gpu(rec.submit())?;
    let mut worst = 0f32;
    for (i, ((ob, s), want)) in outs.iter().zip(&wants).enumerate() {
        let got = gpu(ctx.read_f32(ob).await)?;
        assert_close(
            &format!(
                "{what} step {i} (T={} pos0={}, {} cache{}{})",
                s.t,
                s.pos0,
                if f16 { "f16" } else { "f32" },
                if split { ", split" } else { "" },
                if cfg.rope.is_some() { ", rope" } else { "" }
            ),
            &got,
            want,
            1e-6,
            1e-5,
        )?;
        worst = got
            .iter()
            .zip(want)
            .fold(worst, |a, (g, w)| a.max((g - w).abs()));
    }
    Ok(worst)
}

fn steps(t: usize, from: usize, to: usize, qscale: f32) -> Vec<Step> {
    (from..to)
        .step_by(t)
        .map(|pos0| Step {
            t,
            pos0,
            qscale,
            attend: true,
        })
        .collect()
}

/// The cache bytes themselves: slot = pos % capacity, K then V, f16 rounded to nearest even
/// (compared bit for bit with the `half` crate) or f32.
async fn kv_append_cache_layout(ctx: &Context, _size: Size) -> CaseResult {
    let cfg = AttnConfig::new(2, 8, 5, 5);
    let hd = 16;
    let mut rng = Rng::new(41);
    let mut x = qkv_rows(&mut rng, &cfg, 3, 1.0);
    // Values that round differently under truncation / ties-away: 1 + 2^-11 (a tie: stays 1),
    // 1 + 3·2^-11 (a tie: rounds up to even), 1 + 2^-11 + 2^-20 (rounds up), subnormals.
    let k_off = cfg.qkv.k_offset as usize;
    let tricky = [
        1.0 + 2f32.powi(-11),
        1.0 + 3.0 * 2f32.powi(-11),
        1.0 + 2f32.powi(-11) + 2f32.powi(-20),
        -1.0 - 2f32.powi(-11),
        3.0e-6,
        -7.0e-8,
        65504.0,
        1.0e-3,
    ];
    x[k_off..k_off + tricky.len()].copy_from_slice(&tricky);
    let xb = gpu(ctx.upload("qkv", &x))?;
    let cache = storage(ctx, "cache", cfg.cache_bytes(ctx))?;
    let mut rec = Recorder::new(ctx, "test");
    // positions 3, 4, 5: slots 3, 4, 0
    gpu(cfg.kv_append(&mut rec, xb.view(), cache.view(), 3, 3))?;
    gpu(rec.submit())?;
    let bytes = gpu(ctx.read(&cache, 0, cache.size()).await)?;
    let mut want = vec![0f32; 2 * 5 * hd];
    for r in 0..3 {
        let slot = (3 + r) % 5;
        let row = &x[r * 48..];
        want[slot * hd..][..hd].copy_from_slice(&row[16..32]);
        want[(5 + slot) * hd..][..hd].copy_from_slice(&row[32..48]);
    }
    if ctx.caps().f16 {
        let got: Vec<u16> = bytemuck::pod_collect_to_vec(&bytes);
        let want_bits: Vec<u16> = want
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        if let Some(i) = (0..want_bits.len()).find(|&i| got[i] != want_bits[i]) {
            return Err(format!(
                "f16 cache element {i}: bits {:#06x}, want {:#06x} (from {})",
                got[i], want_bits[i], want[i]
            ));
        }
        Ok(())
    } else {
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        assert_close("f32 cache", &got, &want, 0.0, 0.0)
    }
}

/// Mimi's transformer: 8 heads of 64, window = capacity = 250, two 25 Hz steps per call,
/// streamed past the capacity so the ring wraps.
async fn mimi_streaming(ctx: &Context, size: Size) -> CaseResult {
    let (cfg, end) = match size {
        Size::Small => (AttnConfig::new(2, 64, 20, 20), 24),
        Size::Full => (AttnConfig::new(8, 64, 250, 250), 300),
    };
    stream(ctx, "Mimi", &cfg, &steps(2, 0, end, 3.0), false, 42).await?;
    Ok(())
}

/// Moshi's temporal transformer: 32 heads of 128, window = capacity = 3000, the ring filled
/// (wrapping) by one large append, then single-query steps, split and not.
async fn moshi_ring_wraps(ctx: &Context, size: Size) -> CaseResult {
    let (heads, dh, cap, fill_from) = match size {
        Size::Small => (1, 64, 300, 100),
        Size::Full => (32, 128, 3000, 200),
    };
    let cfg = AttnConfig::new(heads, dh, cap, cap);
    let hd = (heads * dh) as usize;
    let f16 = ctx.caps().f16;
    let mut rng = Rng::new(43);
    // Fill: rows [k | v] for positions fill_from .. fill_from + cap (slots wrap).
    let fill_cfg = AttnConfig {
        qkv: QkvLayout {
            row_stride: 2 * hd as u32,
            q_offset: 0,
            k_offset: 0,
            v_offset: hd as u32,
        },
        ..cfg.clone()
    };
    let kv = rng.vec(cap as usize * 2 * hd, 1.0);
    let kvb = gpu(ctx.upload("kv rows", &kv))?;
    let cache = storage(ctx, "kv cache", cfg.cache_bytes(ctx))?;
    let scratch = storage(ctx, "scratch", cfg.scratch_bytes(2))?;
    let mut hist = History::default();
    for r in 0..cap as usize {
        let row = &kv[r * 2 * hd..];
        hist.put(fill_from + r, &row[..hd], &row[hd..2 * hd], f16);
    }
    let mut rec = Recorder::new(ctx, "test");
    gpu(fill_cfg.kv_append(&mut rec, kvb.view(), cache.view(), cap, fill_from as u32))?;
    let mut checks = Vec::new();
    let mut pos = fill_from + cap as usize;
    for (t, qscale) in [(1usize, 6.0f32), (2, 1.0), (1, 0.3)] {
        let x = qkv_rows(&mut rng, &cfg, t, qscale);
        let xb = gpu(ctx.upload("qkv", &x))?;
        gpu(cfg.kv_append(&mut rec, xb.view(), cache.view(), t as u32, pos as u32))?;
        let mut q = Vec::new();
        for r in 0..t {
            let row = &x[r * 3 * hd..];
            q.extend_from_slice(&row[..hd]);
            hist.put(pos + r, &row[hd..2 * hd], &row[2 * hd..3 * hd], f16);
        }
        let want = reference::attention(&cfg, &q, &hist.k, &hist.v, t, pos);
        for split in [false, true] {
            let ob = gpu(ctx.upload("out", &vec![f32::NAN; t * hd]))?;
            let bufs = AttnBuffers {
                qkv: xb.view(),
                cache: cache.view(),
                out: ob.view(),
                scratch: split.then(|| scratch.view()),
            };
            gpu(cfg.attention_with(&mut rec, &bufs, t as u32, pos as u32))?;
            checks.push((format!("T={t} pos0={pos} split={split}"), ob, want.clone()));
        }
        pos += t;
    }
    gpu(rec.submit())?;
    for (what, ob, want) in checks {
        let got = gpu(ctx.read_f32(&ob).await)?;
        assert_close(
            &format!(
                "Moshi {heads}x{dh} window {cap} {what} ({} cache)",
                if f16 { "f16" } else { "f32" }
            ),
            &got,
            &want,
            1e-6,
            1e-5,
        )?;
    }
    Ok(())
}

/// The depformer: 16 heads of 64, capacity 8, positions = codebook step 0..7, restarting every
/// frame over the previous frame's stale slots.
async fn depformer_frames(ctx: &Context, size: Size) -> CaseResult {
    let heads = match size {
        Size::Small => 2,
        Size::Full => 16,
    };
    let cfg = AttnConfig::new(heads, 64, 8, 8);
    let mut all = Vec::new();
    for frame in 0..3 {
        for k in 0..8 {
            all.push(Step {
                t: 1,
                pos0: k,
                qscale: [1.0, 4.0, 0.5][frame],
                attend: true,
            });
        }
    }
    stream(ctx, "depformer", &cfg, &all, false, 44).await?;
    Ok(())
}

/// Many queries at once (non-streaming use): causal inside the new rows and the window mask;
/// capacity ≥ window + T − 1 gives the exact window, a smaller one the ring's truncation.
async fn causal_prefill(ctx: &Context, size: Size) -> CaseResult {
    let cases: &[(u32, u32, u32, u32, usize)] = match size {
        // heads, head_dim, capacity, window, T
        Size::Small => &[(2, 64, 60, 16, 40), (1, 64, 12, 30, 10)],
        Size::Full => &[
            (8, 64, 79, 16, 64),
            (8, 64, 250, 250, 100),
            (4, 128, 100, 3000, 100),
            (3, 8, 37, 5, 37),
        ],
    };
    for (i, &(h, dh, cap, win, t)) in cases.iter().enumerate() {
        let cfg = AttnConfig::new(h, dh, cap, win);
        let s = [
            Step {
                t,
                pos0: 0,
                qscale: 2.0,
                attend: true,
            },
            Step {
                t: t.min(cap as usize),
                pos0: t,
                qscale: 2.0,
                attend: true,
            },
        ];
        let what = format!("prefill {h}x{dh} cap {cap} window {win}");
        stream(ctx, &what, &cfg, &s, false, 45 + i as u64).await?;
    }
    Ok(())
}

/// The split path (several workgroups per query, then a merge) agrees with the reference on
/// shapes where it really splits, including queries whose ranges leave some splits empty.
async fn split_matches_single(ctx: &Context, size: Size) -> CaseResult {
    // (The small run keeps head dim 64 and few steps: SwiftShader compiles and runs slowly.)
    let (cfg, prefill, to) = match size {
        Size::Small => (AttnConfig::new(1, 64, 700, 650), 500, 560),
        Size::Full => (AttnConfig::new(2, 64, 1500, 1300), 700, 1560),
    };
    // A prefill (many queries: not split; only appended on the small run), then steps of 7
    // queries whose key counts cross chunk boundaries (some splits of the shorter queries are
    // empty) and then reach the window.
    let mut s = vec![Step {
        t: prefill,
        pos0: 0,
        qscale: 2.0,
        attend: size == Size::Full,
    }];
    s.extend(steps(7, prefill, to, 5.0));
    stream(ctx, "split", &cfg, &s, true, 46).await?;
    Ok(())
}

/// Head dims that are not multiples of 8 sit in padded cache rows: [2, capacity, heads, Dp],
/// Dp = Dh rounded up to 8, the padding written as zeros (the cache starts poisoned).
async fn kv_append_padded_layout(ctx: &Context, _size: Size) -> CaseResult {
    for (heads, dh) in [(3u32, 5u32), (2, 12), (1, 1)] {
        let cfg = AttnConfig::new(heads, dh, 4, 4);
        let (hd, dp) = ((heads * dh) as usize, cfg.padded_head_dim() as usize);
        let row = heads as usize * dp;
        let mut rng = Rng::new(60 + dh as u64);
        let x = qkv_rows(&mut rng, &cfg, 3, 1.0);
        let xb = gpu(ctx.upload("qkv", &x))?;
        let words = cfg.cache_bytes(ctx).div_ceil(4) as usize;
        let cache = gpu(ctx.upload("cache", &vec![u32::MAX; words]))?;
        let mut rec = Recorder::new(ctx, "test");
        // positions 2, 3, 4: slots 2, 3, 0
        gpu(cfg.kv_append(&mut rec, xb.view(), cache.view(), 3, 2))?;
        gpu(rec.submit())?;
        let bytes = gpu(ctx.read(&cache, 0, cache.size()).await)?;
        let got: Vec<f32> = if cfg.kv16(ctx) {
            bytemuck::pod_collect_to_vec::<u8, u16>(&bytes)
                .iter()
                .map(|&b| half::f16::from_bits(b).to_f32())
                .collect()
        } else {
            bytemuck::pod_collect_to_vec(&bytes)
        };
        let round = |v: &[f32]| {
            if cfg.kv16(ctx) {
                reference::round_f16(v)
            } else {
                v.to_vec()
            }
        };
        for r in 0..3 {
            let slot = (2 + r) % 4;
            let xr = &x[r * 3 * hd..];
            for (which, src) in [(0, &xr[hd..2 * hd]), (1, &xr[2 * hd..3 * hd])] {
                let base = (which * 4 + slot) * row;
                for h in 0..heads as usize {
                    let head = &got[base + h * dp..base + (h + 1) * dp];
                    let want = round(&src[h * dh as usize..(h + 1) * dh as usize]);
                    let ok = head[..dh as usize] == want[..]
                        && head[dh as usize..].iter().all(|&v| v.to_bits() == 0);
                    if !ok {
                        return Err(format!(
                            "Dh {dh}: slot {slot} {} head {h} is {head:?}, want {want:?} then zeros",
                            ["K", "V"][which]
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Head dims 1..=256 that are not multiples of 8 (and 8, 256), streamed past the ring's
/// capacity, single and split, against the reference.
async fn any_head_dim(ctx: &Context, size: Size) -> CaseResult {
    let list: &[(u32, u32, u32, usize, usize)] = match size {
        // heads, head_dim, capacity, T, steps
        Size::Small => &[(2, 12, 10, 2, 14), (1, 20, 9, 1, 12), (1, 3, 6, 3, 9)],
        Size::Full => &[
            (3, 12, 40, 2, 60),
            (2, 20, 33, 1, 50),
            (3, 3, 17, 3, 30),
            (1, 1, 9, 1, 12),
            (2, 250, 20, 2, 30),
            (2, 256, 20, 1, 25),
            (4, 36, 300, 1, 310),
        ],
    };
    let mut worst = 0f32;
    for (i, &(h, dh, cap, t, n)) in list.iter().enumerate() {
        let cfg = AttnConfig::new(h, dh, cap, cap);
        let what = format!("{h}x{dh} cap {cap}");
        let split = cfg.capacity > 256 || i % 2 == 1;
        let e = stream(ctx, &what, &cfg, &steps(t, 0, n, 2.0), split, 70 + i as u64).await?;
        worst = worst.max(e);
    }
    crate::common::log(&format!("     any head dim: max |error| {worst:.2e}"));
    Ok(())
}

/// RoPE fused into kv_append (k) and attention (q) against "RoPE reference, then attention
/// reference", head dims 12, 20, 64, 128, f32 caches (an f16 cache may round a rotated key the
/// other way than the reference does; `fused_rope_equals_rope_apply` covers it).
async fn fused_rope_matches_reference(ctx: &Context, size: Size) -> CaseResult {
    let list: &[(u32, u32, u32, usize, usize, usize)] = match size {
        // heads, head_dim, capacity, T, first position, last position
        Size::Small => &[
            (2, 12, 8, 2, 0, 12),
            (1, 20, 6, 1, 3, 10),
            (1, 64, 10, 1, 90, 96),
        ],
        Size::Full => &[
            (3, 12, 40, 2, 0, 60),
            (2, 20, 30, 1, 500, 540),
            (4, 64, 250, 2, 2000, 2300),
            (4, 128, 300, 1, 2990, 3310),
        ],
    };
    let mut worst = 0f32;
    for (i, &(h, dh, cap, t, from, to)) in list.iter().enumerate() {
        let rope = gpu(Rope::new(ctx, dh, 10000.0))?;
        let cfg = AttnConfig::new(h, dh, cap, cap)
            .with_f32_cache()
            .with_rope(&rope);
        let what = format!("rope {h}x{dh} cap {cap}");
        // The positions before `from` that the first queries see, appended only.
        let fill = from.saturating_sub(cap as usize);
        let mut s = Vec::new();
        if from > 0 {
            s.push(Step {
                t: from - fill,
                pos0: fill,
                qscale: 1.0,
                attend: false,
            });
        }
        s.extend(steps(t, from, to, 2.0));
        let e = stream(ctx, &what, &cfg, &s, i % 2 == 1 || cap > 256, 80 + i as u64).await?;
        worst = worst.max(e);
    }
    crate::common::log(&format!(
        "     fused rope vs reference: max |error| {worst:.2e}"
    ));
    Ok(())
}

/// The fused rotation is rope.wgsl's, bit for bit: kv_append + attention with RoPE fused give
/// the same cache bytes and outputs as `Rope::apply` followed by the plain kernels, on the
/// device's cache precision (f16 where available), head dims 12, 20, 64, 128.
async fn fused_rope_equals_rope_apply(ctx: &Context, size: Size) -> CaseResult {
    let list: &[(u32, u32, u32, usize)] = match size {
        Size::Small => &[(2, 12, 6, 2), (1, 64, 4, 1)],
        Size::Full => &[
            (3, 12, 10, 2),
            (2, 20, 7, 1),
            (4, 64, 12, 2),
            (2, 128, 9, 1),
        ],
    };
    for (i, &(h, dh, cap, t)) in list.iter().enumerate() {
        let rope = gpu(Rope::new(ctx, dh, 10000.0))?;
        let plain = AttnConfig::new(h, dh, cap, cap);
        let fused = plain.clone().with_rope(&rope);
        let layout = RopeLayout::fused_qkv(h, dh);
        let hd = (h * dh) as usize;
        let mut rng = Rng::new(90 + i as u64);
        let caches = [
            storage(ctx, "cache fused", plain.cache_bytes(ctx))?,
            storage(ctx, "cache plain", plain.cache_bytes(ctx))?,
        ];
        let mut rec = Recorder::new(ctx, "test");
        let mut outs = Vec::new();
        // Positions up to ~3000 (large angles), wrapping the ring.
        for pos0 in (2980..2980 + 2 * cap as usize).step_by(t) {
            let x = qkv_rows(&mut rng, &plain, t, 2.0);
            let xf = gpu(ctx.upload("qkv fused", &x))?;
            let xp = gpu(ctx.upload("qkv plain", &x))?;
            gpu(rope.apply(&mut rec, xp.view(), &layout, t as u32, pos0 as u32))?;
            let mut pair = Vec::new();
            for (cfg, xb, cache) in [(&fused, &xf, &caches[0]), (&plain, &xp, &caches[1])] {
                let ob = gpu(ctx.upload("out", &vec![f32::NAN; t * hd]))?;
                gpu(cfg.kv_append(&mut rec, xb.view(), cache.view(), t as u32, pos0 as u32))?;
                let bufs = AttnBuffers {
                    qkv: xb.view(),
                    cache: cache.view(),
                    out: ob.view(),
                    scratch: None,
                };
                gpu(cfg.attention_with(&mut rec, &bufs, t as u32, pos0 as u32))?;
                pair.push(ob);
            }
            outs.push((pos0, pair));
        }
        gpu(rec.submit())?;
        let a = gpu(ctx.read(&caches[0], 0, caches[0].size()).await)?;
        let b = gpu(ctx.read(&caches[1], 0, caches[1].size()).await)?;
        if a != b {
            let i = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(0);
            return Err(format!(
                "{h}x{dh}: fused-RoPE cache differs from Rope::apply + kv_append at byte {i}"
            ));
        }
        for (pos0, pair) in outs {
            let of = gpu(ctx.read_f32(&pair[0]).await)?;
            let op = gpu(ctx.read_f32(&pair[1]).await)?;
            if of.iter().zip(&op).any(|(x, y)| x.to_bits() != y.to_bits()) {
                assert_close(
                    &format!("{h}x{dh} pos0 {pos0}: fused RoPE attention vs Rope::apply"),
                    &of,
                    &op,
                    0.0,
                    0.0,
                )?;
            }
        }
    }
    Ok(())
}

async fn attention_rejects_bad_args(ctx: &Context, _size: Size) -> CaseResult {
    let good = AttnConfig::new(2, 64, 8, 8);
    let x = gpu(ctx.upload("qkv", &vec![0f32; 4 * 384]))?;
    let cache = storage(ctx, "cache", good.cache_bytes(ctx))?;
    let small = storage(ctx, "small", good.cache_bytes(ctx) / 2)?;
    let out = gpu(ctx.upload("out", &vec![0f32; 4 * 128]))?;
    let mut rec = Recorder::new(ctx, "test");
    let bad_dim = AttnConfig::new(2, 264, 8, 8);
    let no_room = AttnConfig::new(2, 64, 2, 8);
    let mut errs = vec![
        bad_dim
            .kv_append(&mut rec, x.view(), cache.view(), 1, 0)
            .is_err(),
        no_room
            .kv_append(&mut rec, x.view(), cache.view(), 3, 0)
            .is_err(),
        good.kv_append(&mut rec, x.view(), small.view(), 1, 0)
            .is_err(),
        good.kv_append(&mut rec, x.view(), cache.view(), 5, 0)
            .is_err(),
        good.attention_with(&mut rec, &plain(&x, &cache, &out), 5, 0)
            .is_err(),
    ];
    let mut wide = good.clone();
    wide.qkv.v_offset = 300;
    errs.push(
        wide.attention_with(&mut rec, &plain(&x, &cache, &out), 1, 0)
            .is_err(),
    );
    // A RoPE table for another head dim, and RoPE positions beyond f32's exact integers.
    let rope32 = gpu(Rope::new(ctx, 32, 10000.0))?;
    let rope64 = gpu(Rope::new(ctx, 64, 10000.0))?;
    errs.push(
        good.clone()
            .with_rope(&rope32)
            .kv_append(&mut rec, x.view(), cache.view(), 1, 0)
            .is_err(),
    );
    errs.push(
        good.clone()
            .with_rope(&rope64)
            .kv_append(&mut rec, x.view(), cache.view(), 1, 1 << 24)
            .is_err(),
    );
    errs.push(
        AttnConfig::new(2, 0, 8, 8)
            .kv_append(&mut rec, x.view(), cache.view(), 1, 0)
            .is_err(),
    );
    let ok = good.kv_append(&mut rec, x.view(), cache.view(), 4, 0);
    let ok2 = good.attention_with(&mut rec, &plain(&x, &cache, &out), 4, 0);
    gpu(rec.submit())?;
    if let Some(i) = errs.iter().position(|e| !e) {
        return Err(format!("bad launch {i} accepted"));
    }
    ok.and(ok2)
        .map_err(|e| format!("good launch rejected: {e}"))
}

/// Buffers of a single-dispatch attention call.
fn plain<'a>(x: &'a GpuBuffer, cache: &'a GpuBuffer, out: &'a GpuBuffer) -> AttnBuffers<'a> {
    AttnBuffers {
        qkv: x.view(),
        cache: cache.view(),
        out: out.view(),
        scratch: None,
    }
}
