//! The attention in one launch per layer (`linear::qkv_attention`, from `AttnConfig::fused_qkv`:
//! the norm-fused in-projection, the KV append and the attention, one workgroup per head) against
//! the launches it replaces (the in-projection with the fused KV write, then `attention_with`)
//! and the f64 reference, over a stream of calls that wraps the ring past its capacity.

use parle::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use parle::kernels::attention::{self, AttnBuffers, AttnConfig};
use parle::kernels::linear::{
    self, reference, LinearInput, LinearOpts, LinearOutput, LinearWeights, QA_MAX_KEYS,
};
use parle::kernels::rope::{self, Rope, RopeLayout};
use parle::weights::{HostLinear, WeightFormat};

use crate::cases;
use crate::common::{assert_close, gpu, log, CaseResult, Rng, Size};

cases!(qkv_attention_stream, qkv_attention_rejects);

#[derive(Clone, Copy, Debug, PartialEq)]
enum NormIn {
    Plain,
    Rms,
    Layer,
}

struct Case {
    heads: u32,
    head_dim: u32,
    k: u32,
    capacity: u32,
    window: u32,
    t: u32,
    /// Calls of `t` rows from position 0.
    calls: u32,
    rope: bool,
    f32_cache: bool,
    norm: NormIn,
    format: WeightFormat,
}

fn cache_f32(bytes: &[u8], f16: bool) -> Vec<f32> {
    if f16 {
        let h: Vec<u16> = bytemuck::pod_collect_to_vec(bytes);
        h.iter()
            .map(|&b| half::f16::from_bits(b).to_f32())
            .collect()
    } else {
        bytemuck::pod_collect_to_vec(bytes)
    }
}

fn max_err(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every call of the stream: the fused launch (exactly one dispatch) equal to the unfused
/// launches within `tol` and to the f64 reference (f16-rounded keys and values with an f16
/// cache) within `tol`; the two caches equal within `tol` at the end.
async fn one_case(ctx: &Context, c: &Case, seed: u64) -> CaseResult {
    let what = format!(
        "{} heads × {}, K {}, capacity {}, window {}, t {}, {} calls, rope {}, {} cache, {:?}, {:?}",
        c.heads,
        c.head_dim,
        c.k,
        c.capacity,
        c.window,
        c.t,
        c.calls,
        c.rope,
        if c.f32_cache { "f32" } else { "device" },
        c.norm,
        c.format
    );
    let hd = c.heads * c.head_dim;
    let (n, k, t) = (3 * hd, c.k, c.t);
    let (hdu, nu, ku, tu) = (hd as usize, n as usize, k as usize, t as usize);
    let mut rng = Rng::new(seed);
    let w = rng.vec(nu * ku, 1.5 / (k as f32).sqrt());
    let host = gpu(HostLinear::quantize(c.format, &w, n, k))?;
    let w = host.dequantize();
    let wt = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    let nw: Vec<f32> = (0..k).map(|_| 1.0 + 0.3 * rng.uniform()).collect();
    let nb = rng.vec(ku, 0.2);
    let eps = 1e-5;
    let nwb = gpu(ctx.upload("nw", &nw))?;
    let nbb = gpu(ctx.upload("nb", &nb))?;
    let input = match c.norm {
        NormIn::Plain => LinearInput::Plain,
        NormIn::Rms => LinearInput::RmsNorm {
            weight: nwb.view(),
            eps,
        },
        NormIn::Layer => LinearInput::LayerNorm {
            weight: nwb.view(),
            bias: nbb.view(),
            eps,
        },
    };
    let how = match c.norm {
        NormIn::Plain => reference::Input::Plain,
        NormIn::Rms => reference::Input::RmsNorm { weight: &nw, eps },
        NormIn::Layer => reference::Input::LayerNorm {
            weight: &nw,
            bias: &nb,
            eps,
        },
    };
    let max_period = 10000.0;
    let mut cfg = AttnConfig::new(c.heads, c.head_dim, c.capacity, c.window);
    if c.f32_cache {
        cfg = cfg.with_f32_cache();
    }
    if c.rope {
        cfg = cfg.with_rope(&gpu(Rope::new(ctx, c.head_dim, max_period))?);
    }
    let f16 = cfg.kv16(ctx);
    let bytes = cfg.cache_bytes(ctx);
    let storage = |l: &str, b: u64| gpu(ctx.create_buffer(l, b, BufferUsage::Storage));
    let (cache_a, cache_b) = (storage("cache a", bytes)?, storage("cache b", bytes)?);
    let (out_a, out_b) = (
        storage("out a", (t * hd * 4) as u64)?,
        storage("out b", (t * hd * 4) as u64)?,
    );
    let qkv = storage("qkv", (t * n * 4) as u64)?;
    let split = storage("split", cfg.scratch_bytes(t))?;
    let round = |v: &[f32]| {
        if f16 {
            attention::reference::round_f16(v)
        } else {
            v.to_vec()
        }
    };
    let (mut k_hist, mut v_hist) = (Vec::new(), Vec::new());
    let layout = RopeLayout {
        heads: c.heads,
        row_stride: n,
        q_offset: 0,
        k_offset: Some(hd),
    };
    let (atol, rtol) = if f16 { (4e-3, 4e-3) } else { (3e-4, 1e-3) };
    let (mut worst_unfused, mut worst_ref) = (0f32, 0f32);
    for call in 0..c.calls {
        let pos0 = call * t;
        // Rows with a mean far from 0 (LayerNorm's shifted statistics).
        let x: Vec<f32> = rng.vec(tu * ku, 2.0).iter().map(|v| v + 0.7).collect();
        let xb: GpuBuffer = gpu(ctx.upload("x", &x))?;
        let mut rec = Recorder::new(ctx, "test");
        let a = cfg
            .fused_qkv(ctx, cache_a.view(), t, pos0)
            .ok_or(format!("{what}: no fused form"))?;
        gpu(linear::qkv_attention(
            &mut rec,
            &wt,
            xb.view(),
            out_a.view(),
            t,
            input,
            &a,
        ))?;
        if rec.dispatch_count() != 1 {
            return Err(format!(
                "{what}: the fused call took {} dispatches, want 1",
                rec.dispatch_count()
            ));
        }
        let kv = cfg
            .fused_append(ctx, cache_b.view(), pos0)
            .ok_or(format!("{what}: no fused KV write"))?;
        let opts = LinearOpts {
            bias: None,
            input,
            out: LinearOutput::StoreKv(kv),
        };
        gpu(linear::linear_with(
            &mut rec,
            &wt,
            xb.view(),
            qkv.view(),
            t,
            &opts,
        ))?;
        let bufs = AttnBuffers {
            qkv: qkv.view(),
            cache: cache_b.view(),
            out: out_b.view(),
            scratch: Some(split.view()),
        };
        gpu(cfg.attention_with(&mut rec, &bufs, t, pos0))?;
        gpu(rec.submit())?;
        let got = gpu(ctx.read_f32(&out_a).await)?;
        let unfused = gpu(ctx.read_f32(&out_b).await)?;
        // The f64 reference: norm → in-projection → RoPE on q and k → attention over history.
        let xin = reference::input(&x, tu, ku, how);
        let mut rows = reference::linear(&xin, &w, None, tu, nu, ku);
        if c.rope {
            rope::reference::rope(
                &mut rows,
                &layout,
                c.head_dim as usize,
                max_period,
                tu,
                pos0 as usize,
            );
        }
        let mut q = Vec::with_capacity(tu * hdu);
        for r in 0..tu {
            let row = &rows[r * nu..(r + 1) * nu];
            q.extend_from_slice(&row[..hdu]);
            k_hist.push(round(&row[hdu..2 * hdu]));
            v_hist.push(round(&row[2 * hdu..]));
        }
        let want = attention::reference::attention(&cfg, &q, &k_hist, &v_hist, tu, pos0 as usize);
        let at = format!("{what}: call {call} (positions {pos0}..{})", pos0 + t);
        assert_close(
            &format!("{at}: fused vs unfused"),
            &got,
            &unfused,
            atol,
            rtol,
        )?;
        assert_close(
            &format!("{at}: fused vs reference"),
            &got,
            &want,
            atol,
            rtol,
        )?;
        worst_unfused = worst_unfused.max(max_err(&got, &unfused));
        worst_ref = worst_ref.max(max_err(&got, &want));
    }
    let ca = cache_f32(&gpu(ctx.read(&cache_a, 0, bytes).await)?, f16);
    let cb = cache_f32(&gpu(ctx.read(&cache_b, 0, bytes).await)?, f16);
    assert_close(&format!("{what}: cache"), &ca, &cb, atol, rtol)?;
    log(&format!(
        "     {what}: max |fused − unfused| {worst_unfused:.2e}, max |fused − reference| {worst_ref:.2e}, cache {:.2e}",
        max_err(&ca, &cb)
    ));
    Ok(())
}

async fn qkv_attention_stream(ctx: &Context, size: Size) -> CaseResult {
    let base = Case {
        heads: 2,
        head_dim: 16,
        k: 64,
        capacity: 7,
        window: 6,
        t: 2,
        calls: 8,
        rope: true,
        f32_cache: true,
        norm: NormIn::Layer,
        format: WeightFormat::F32,
    };
    let mut cases = vec![
        // Mimi's configuration, small: LayerNorm, RoPE, f32 cache, t = 2, the exact window
        // (capacity = window + t − 1), the ring wrapped twice.
        Case { ..base },
        Case {
            format: WeightFormat::Bf16,
            ..base
        },
        // One row per call, capacity = window, RMSNorm, bf16, the device's cache precision.
        Case {
            heads: 3,
            head_dim: 8,
            k: 48,
            capacity: 5,
            window: 5,
            t: 1,
            calls: 12,
            f32_cache: false,
            norm: NormIn::Rms,
            format: WeightFormat::Bf16,
            ..base
        },
        // No RoPE, plain input, capacity = window with two rows (the first query loses its
        // oldest key), the device's cache.
        Case {
            heads: 3,
            head_dim: 8,
            k: 32,
            capacity: 4,
            window: 4,
            rope: false,
            f32_cache: false,
            norm: NormIn::Plain,
            calls: 6,
            ..base
        },
        // The quantized formats (through the linear kernel's own loads).
        Case {
            format: WeightFormat::Q8_0,
            calls: 5,
            ..base
        },
        Case {
            format: WeightFormat::MLX_Q4,
            k: 128,
            calls: 5,
            norm: NormIn::Rms,
            ..base
        },
        Case {
            format: WeightFormat::Int8Row,
            t: 1,
            calls: 5,
            ..base
        },
    ];
    if size == Size::Full {
        // Mimi itself: 8 heads × 64, d 512, window 250 in a ring of 251, two rows per call, past
        // the ring's end.
        cases.push(Case {
            heads: 8,
            head_dim: 64,
            k: 512,
            capacity: 251,
            window: 250,
            t: 2,
            calls: 130,
            ..base
        });
        cases.push(Case {
            heads: 8,
            head_dim: 64,
            k: 512,
            capacity: 251,
            window: 250,
            t: 2,
            calls: 4,
            format: WeightFormat::Bf16,
            ..base
        });
        // The largest head dim and most keys the kernel takes, one row.
        cases.push(Case {
            heads: 2,
            head_dim: 128,
            k: 256,
            capacity: QA_MAX_KEYS,
            window: QA_MAX_KEYS,
            t: 1,
            calls: 520,
            f32_cache: false,
            norm: NormIn::Rms,
            ..base
        });
    }
    for (i, c) in cases.iter().enumerate() {
        one_case(ctx, c, 300 + i as u64).await?;
    }
    Ok(())
}

/// Layers the kernel cannot take have no fused form; bad calls are refused with a message.
async fn qkv_attention_rejects(ctx: &Context, _size: Size) -> CaseResult {
    let dummy = gpu(ctx.upload("c", &[0u32; 4]))?;
    for (what, cfg, t) in [
        (
            "head_dim 12 (padded cache rows)",
            AttnConfig::new(2, 12, 8, 8),
            1,
        ),
        ("head_dim 256", AttnConfig::new(1, 256, 8, 8), 1),
        ("three rows per call", AttnConfig::new(2, 8, 8, 8), 3),
        (
            "a window past the kernel's keys",
            AttnConfig::new(2, 8, QA_MAX_KEYS + 1, QA_MAX_KEYS + 1),
            1,
        ),
    ] {
        if cfg.fused_qkv(ctx, dummy.view(), t, 0).is_some() {
            return Err(format!("{what}: must have no fused qkv attention"));
        }
    }
    let (heads, dh, k) = (2u32, 8u32, 16u32);
    let (hd, n) = (heads * dh, 3 * heads * dh);
    let cfg = AttnConfig::new(heads, dh, 4, 4).with_f32_cache();
    let host = gpu(HostLinear::from_f32(&vec![0.5; (n * k) as usize], n, k))?;
    let wt = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    let short = gpu(LinearWeights::upload(
        ctx,
        &gpu(HostLinear::from_f32(&vec![0.5; (hd * k) as usize], hd, k))?,
        "w",
    ))?;
    let x = gpu(ctx.upload("x", &vec![1f32; 2 * k as usize]))?;
    let out = gpu(ctx.upload("out", &vec![0f32; 2 * hd as usize]))?;
    let cache = gpu(ctx.create_buffer("cache", cfg.cache_bytes(ctx), BufferUsage::Storage))?;
    let small = gpu(ctx.upload("small", &[0u32; 4]))?;
    let ok = cfg
        .fused_qkv(ctx, cache.view(), 2, 0)
        .ok_or("no fused form")?;
    let attempts = [
        (
            "an in-projection of the wrong height",
            &short,
            out.view(),
            ok,
            2,
            LinearInput::Plain,
            "rows",
        ),
        (
            "a cache too small",
            &wt,
            out.view(),
            linear::QkvAttn {
                cache: small.view(),
                ..ok
            },
            2,
            LinearInput::Plain,
            "bytes",
        ),
        (
            "out aliasing the cache",
            &wt,
            cache.view(),
            ok,
            2,
            LinearInput::Plain,
            "different buffer",
        ),
        (
            "out aliasing x",
            &wt,
            x.view(),
            ok,
            2,
            LinearInput::Plain,
            "different buffer",
        ),
        (
            "three rows",
            &wt,
            out.view(),
            ok,
            3,
            LinearInput::Plain,
            "rows per call",
        ),
        (
            "a GELU input",
            &wt,
            out.view(),
            ok,
            2,
            LinearInput::GeluErf,
            "LayerNorm input",
        ),
        (
            "more rows than the ring",
            &wt,
            out.view(),
            linear::QkvAttn { capacity: 1, ..ok },
            2,
            LinearInput::Plain,
            "capacity",
        ),
    ];
    for (what, w, o, a, m, input, needle) in attempts {
        let mut rec = Recorder::new(ctx, "test");
        match linear::qkv_attention(&mut rec, w, x.view(), o, m, input, &a) {
            Ok(()) => return Err(format!("{what}: accepted")),
            Err(e) if !e.to_string().contains(needle) => {
                return Err(format!("{what}: message '{e}' does not mention '{needle}'"))
            }
            Err(_) => {}
        }
        if rec.dispatch_count() != 0 {
            return Err(format!("{what}: refused but recorded a dispatch"));
        }
    }
    Ok(())
}
