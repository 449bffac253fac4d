//! The MLP split by hidden units (`linear::mlp_split`: one launch, one workgroup per block of
//! `MS_BLOCK` hidden units, partial outputs `[H / S, m, N]`) and the sum of its partials
//! (`elementwise::residual_sum`), against the unfused launches (the first linear with the norm,
//! the second with the activation on load) and the f64 reference, for every weight format, both
//! activations, plain / RMSNorm / LayerNorm inputs and 1 or 2 rows; and the fused in-projection
//! that sums them (`linear::qkv_attention_res`) against `residual_sum` + `qkv_attention`; and
//! whole transformers in the 3-launch form against the 4-launch form on the same weights.

use parle::gpu::{BufferUsage, Context, Recorder};
use parle::kernels::attention::AttnConfig;
use parle::kernels::elementwise;
use parle::kernels::linear::{
    self, reference, LinearInput, LinearOpts, LinearOutput, LinearWeights, MlpAct, ResidualIn,
    MS_BLOCK,
};
use parle::kernels::rope::Rope;
use parle::nn::{Gating, NormKind, Positional, Transformer, TransformerConfig, Weights};
use parle::weights::{HostLinear, WeightFormat};

use crate::cases;
use crate::common::{assert_close, gpu, log, CaseResult, Rng, Size};

cases!(
    mlp_split_formats,
    mlp_split_rejects,
    qkv_attention_res_stream,
    transformer_split_stream
);

#[derive(Clone, Copy, Debug, PartialEq)]
enum NormIn {
    Plain,
    Rms,
    Layer,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    d: u32,
    hidden: u32,
    t: u32,
    act: MlpAct,
    norm: NormIn,
    format: WeightFormat,
}

fn max_err(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// One launch; `Σ_j part[j]` equal to the unfused MLP and to the f64 reference within the
/// stated tolerance, and `residual_sum` (`y = r + ls ⊙ Σ_j part[j]`) equal to the reference.
async fn one_case(ctx: &Context, c: &Case, seed: u64) -> CaseResult {
    let what = format!(
        "d {}, hidden {}, t {}, {:?}, {:?}, {:?}",
        c.d, c.hidden, c.t, c.act, c.norm, c.format
    );
    let (d, h, t) = (c.d as usize, c.hidden as usize, c.t as usize);
    let rows1 = if c.act == MlpAct::Gelu { h } else { 2 * h };
    let mut rng = Rng::new(seed);
    let host1 = gpu(HostLinear::quantize(
        c.format,
        &rng.vec(rows1 * d, 1.5 / (d as f32).sqrt()),
        rows1 as u32,
        c.d,
    ))?;
    let host2 = gpu(HostLinear::quantize(
        c.format,
        &rng.vec(d * h, 1.5 / (h as f32).sqrt()),
        c.d,
        c.hidden,
    ))?;
    let (w1, w2) = (host1.dequantize(), host2.dequantize());
    let wt1 = gpu(LinearWeights::upload(ctx, &host1, "w1"))?;
    let wt2 = gpu(LinearWeights::upload(ctx, &host2, "w2"))?;
    let nw: Vec<f32> = (0..d).map(|_| 1.0 + 0.3 * rng.uniform()).collect();
    let nb = rng.vec(d, 0.2);
    let ls = rng.vec(d, 0.5);
    let eps = 1e-5;
    let nwb = gpu(ctx.upload("nw", &nw))?;
    let nbb = gpu(ctx.upload("nb", &nb))?;
    let lsb = gpu(ctx.upload("ls", &ls))?;
    let (input, how) = match c.norm {
        NormIn::Plain => (LinearInput::Plain, reference::Input::Plain),
        NormIn::Rms => (
            LinearInput::RmsNorm {
                weight: nwb.view(),
                eps,
            },
            reference::Input::RmsNorm { weight: &nw, eps },
        ),
        NormIn::Layer => (
            LinearInput::LayerNorm {
                weight: nwb.view(),
                bias: nbb.view(),
                eps,
            },
            reference::Input::LayerNorm {
                weight: &nw,
                bias: &nb,
                eps,
            },
        ),
    };
    // Rows with a mean far from 0 (LayerNorm's shifted statistics).
    let x: Vec<f32> = rng.vec(t * d, 2.0).iter().map(|v| v + 0.7).collect();
    let r = rng.vec(t * d, 1.0);
    let xb = gpu(ctx.upload("x", &x))?;
    let yb = gpu(ctx.upload("y", &r))?;
    let blocks = c.hidden / MS_BLOCK;
    let storage = |l: &str, floats: usize| {
        gpu(ctx.create_buffer(l, (floats * 4) as u64, BufferUsage::Storage))
    };
    let part = storage("part", blocks as usize * t * d)?;
    let u = storage("u", t * rows1)?;
    let out = storage("unfused", t * d)?;

    let mut rec = Recorder::new(ctx, "test");
    gpu(linear::mlp_split(
        &mut rec,
        &wt1,
        &wt2,
        xb.view(),
        part.view(),
        c.t,
        input,
        c.act,
    ))?;
    if rec.dispatch_count() != 1 {
        return Err(format!(
            "{what}: the split MLP took {} dispatches, want 1",
            rec.dispatch_count()
        ));
    }
    gpu(elementwise::residual_sum(
        &mut rec,
        part.view(),
        blocks,
        Some(lsb.view()),
        yb.view(),
        c.t * c.d,
        c.d,
    ))?;
    let opts1 = LinearOpts {
        bias: None,
        input,
        out: LinearOutput::Store,
    };
    gpu(linear::linear_with(
        &mut rec,
        &wt1,
        xb.view(),
        u.view(),
        c.t,
        &opts1,
    ))?;
    let opts2 = LinearOpts {
        bias: None,
        input: match c.act {
            MlpAct::Gelu => LinearInput::GeluErf,
            MlpAct::SiluGate => LinearInput::SiluGate,
        },
        out: LinearOutput::Store,
    };
    gpu(linear::linear_with(
        &mut rec,
        &wt2,
        u.view(),
        out.view(),
        c.t,
        &opts2,
    ))?;
    gpu(rec.submit())?;
    let parts = gpu(ctx.read_f32(&part).await)?;
    let mut got = vec![0f32; t * d];
    for j in 0..blocks as usize {
        for (g, p) in got.iter_mut().zip(&parts[j * t * d..(j + 1) * t * d]) {
            *g += p;
        }
    }
    let unfused = gpu(ctx.read_f32(&out).await)?;
    let summed = gpu(ctx.read_f32(&yb).await)?;
    // The f64 reference: norm → first linear → activation → second linear.
    let xin = reference::input(&x, t, d, how);
    let pre = reference::linear(&xin, &w1, None, t, rows1, d);
    let a = match c.act {
        MlpAct::Gelu => reference::input(&pre, t, h, reference::Input::GeluErf),
        MlpAct::SiluGate => reference::input(&pre, t, h, reference::Input::SiluGate),
    };
    let want = reference::linear(&a, &w2, None, t, d, h);
    let mut want_sum = r.clone();
    reference::output(&mut want_sum, &want, d, true, Some(&ls));
    let (atol, rtol) = (3e-4, 1e-3);
    assert_close(
        &format!("{what}: Σ parts vs unfused"),
        &got,
        &unfused,
        atol,
        rtol,
    )?;
    assert_close(
        &format!("{what}: Σ parts vs reference"),
        &got,
        &want,
        atol,
        rtol,
    )?;
    assert_close(
        &format!("{what}: residual_sum vs reference"),
        &summed,
        &want_sum,
        atol,
        rtol,
    )?;
    log(&format!(
        "     {what}: max |Σ parts − unfused| {:.2e}, − reference {:.2e}",
        max_err(&got, &unfused),
        max_err(&got, &want)
    ));
    Ok(())
}

async fn mlp_split_formats(ctx: &Context, size: Size) -> CaseResult {
    let base = Case {
        d: 64,
        hidden: 192,
        t: 2,
        act: MlpAct::Gelu,
        norm: NormIn::Layer,
        format: WeightFormat::F32,
    };
    let formats = [
        WeightFormat::F32,
        WeightFormat::Bf16,
        WeightFormat::Q8_0,
        WeightFormat::MLX_Q4,
        WeightFormat::Affine { bits: 4, group: 64 },
        WeightFormat::Affine { bits: 8, group: 32 },
        WeightFormat::Int8Row,
    ];
    let mut cases = Vec::new();
    for (i, &format) in formats.iter().enumerate() {
        // Mimi's MLP (LayerNorm, GELU, 2 rows) and the depformer's (RMSNorm, SiLU-gated, 1 row)
        // in every format; affine group 64 needs K a multiple of 64.
        let d = if matches!(format, WeightFormat::Affine { .. }) {
            128
        } else {
            64
        };
        cases.push(Case { d, format, ..base });
        cases.push(Case {
            d,
            format,
            t: 1,
            act: MlpAct::SiluGate,
            norm: NormIn::Rms,
            hidden: 128,
        });
        if i < 2 || size == Size::Full {
            cases.push(Case {
                d,
                format,
                t: 2,
                act: MlpAct::SiluGate,
                norm: NormIn::Plain,
                hidden: 64,
            });
            cases.push(Case {
                d,
                format,
                t: 1,
                norm: NormIn::Rms,
                ..base
            });
        }
    }
    for (i, c) in cases.iter().enumerate() {
        one_case(ctx, c, 7000 + i as u64).await?;
    }
    Ok(())
}

/// Bad shapes are refused with a message naming the cause.
async fn mlp_split_rejects(ctx: &Context, _size: Size) -> CaseResult {
    let host = |rows: u32, k: u32| {
        gpu(HostLinear::quantize(
            WeightFormat::F32,
            &vec![0.1; (rows * k) as usize],
            rows,
            k,
        ))
    };
    let up = |h: &HostLinear| gpu(LinearWeights::upload(ctx, h, "w"));
    let w1 = up(&host(128, 64)?)?;
    let w2 = up(&host(64, 128)?)?;
    let w2_odd = up(&host(64, 96)?)?;
    let w2_bf = up(&gpu(HostLinear::quantize(
        WeightFormat::Bf16,
        &[0.1; 64 * 128],
        64,
        128,
    ))?)?;
    let x = gpu(ctx.create_buffer("x", 64 * 4 * 3, BufferUsage::Storage))?;
    let part = gpu(ctx.create_buffer("part", 2 * 64 * 4 * 3, BufferUsage::Storage))?;
    let tries: [(&str, &LinearWeights, u32, MlpAct, &str); 4] = [
        ("3 rows", &w2, 3, MlpAct::Gelu, "1 to 2 rows"),
        ("hidden 96", &w2_odd, 1, MlpAct::Gelu, "multiple of 64"),
        ("gate rows", &w2, 1, MlpAct::SiluGate, "2 × hidden rows"),
        ("mixed formats", &w2_bf, 1, MlpAct::Gelu, "one format"),
    ];
    for (what, second, m, act, want) in tries {
        let mut rec = Recorder::new(ctx, "test");
        match linear::mlp_split(
            &mut rec,
            &w1,
            second,
            x.view(),
            part.view(),
            m,
            LinearInput::Plain,
            act,
        ) {
            Ok(()) => return Err(format!("{what}: accepted")),
            Err(e) if e.to_string().contains(want) => {}
            Err(e) => return Err(format!("{what}: message {e:?} does not say {want:?}")),
        }
    }
    Ok(())
}

/// `qkv_attention_res` (the layer input `r + ls ⊙ Σ_j part[j]` formed inside the launch, stored
/// by workgroup 0) over a stream of calls equals `residual_sum` into a copy of `r` followed by
/// `qkv_attention` on it: the attention output, the KV caches and the stored layer input, within
/// 1e-5 + 1e-5·|x| (only the order of float sums differs).
async fn qkv_attention_res_stream(ctx: &Context, _size: Size) -> CaseResult {
    // (format, LayerNorm, rows, RoPE)
    let cases = [
        (WeightFormat::F32, true, 2u32, true),
        (WeightFormat::Q8_0, false, 1, false),
        (WeightFormat::Bf16, true, 1, true),
    ];
    for (ci, &(format, layer_norm, t, rope)) in cases.iter().enumerate() {
        let what = format!("{format:?}, layer norm {layer_norm}, t {t}, rope {rope}");
        let (heads, dh, k, count) = (2u32, 16u32, 64u32, 3u32);
        let hd = heads * dh;
        let (ku, tu) = (k as usize, t as usize);
        let mut rng = Rng::new(9100 + ci as u64);
        let host = gpu(HostLinear::quantize(
            format,
            &rng.vec((3 * hd * k) as usize, 1.5 / (k as f32).sqrt()),
            3 * hd,
            k,
        ))?;
        let wt = gpu(LinearWeights::upload(ctx, &host, "w"))?;
        let nw: Vec<f32> = (0..ku).map(|_| 1.0 + 0.3 * rng.uniform()).collect();
        let nb = if layer_norm {
            rng.vec(ku, 0.2)
        } else {
            vec![0.0; ku]
        };
        let ls = rng.vec(ku, 0.5);
        let packed: Vec<f32> = nw.iter().chain(&nb).chain(&ls).copied().collect();
        let packedb = gpu(ctx.upload("packed", &packed))?;
        let (nwb, nbb, lsb) = (
            gpu(ctx.upload("nw", &nw))?,
            gpu(ctx.upload("nb", &nb))?,
            gpu(ctx.upload("ls", &ls))?,
        );
        let eps = 1e-5;
        let input = if layer_norm {
            LinearInput::LayerNorm {
                weight: nwb.view(),
                bias: nbb.view(),
                eps,
            }
        } else {
            LinearInput::RmsNorm {
                weight: nwb.view(),
                eps,
            }
        };
        let mut cfg = AttnConfig::new(heads, dh, 5, 4).with_f32_cache();
        if rope {
            cfg = cfg.with_rope(&gpu(Rope::new(ctx, dh, 10000.0))?);
        }
        let bytes = cfg.cache_bytes(ctx);
        let storage = |l: &str, b: u64| gpu(ctx.create_buffer(l, b, BufferUsage::Storage));
        let (cache_a, cache_b) = (storage("cache a", bytes)?, storage("cache b", bytes)?);
        let (out_a, out_b) = (
            storage("out a", (t * hd * 4) as u64)?,
            storage("out b", (t * hd * 4) as u64)?,
        );
        // The stream: x_{l−1} at float 0, x_l written at float 256 (1 KiB).
        let write = 256u32;
        for call in 0..4u32 {
            let pos0 = call * t;
            let r: Vec<f32> = rng.vec(tu * ku, 2.0).iter().map(|v| v + 0.7).collect();
            let parts = rng.vec(count as usize * tu * ku, 1.0);
            let mut stream = vec![0f32; write as usize + tu * ku];
            stream[..tu * ku].copy_from_slice(&r);
            let streamb = gpu(ctx.upload("stream", &stream))?;
            let partsb = gpu(ctx.upload("parts", &parts))?;
            let yb = gpu(ctx.upload("y", &r))?;
            let mut rec = Recorder::new(ctx, "test");
            let a = cfg
                .fused_qkv(ctx, cache_a.view(), t, pos0)
                .ok_or(format!("{what}: no fused form"))?;
            let res = ResidualIn {
                stream: streamb.view(),
                read: 0,
                write,
                parts: partsb.view(),
                count,
                packed: packedb.view(),
                layer_norm,
                eps,
            };
            gpu(linear::qkv_attention_res(
                &mut rec,
                &wt,
                &res,
                out_a.view(),
                t,
                &a,
            ))?;
            if rec.dispatch_count() != 1 {
                return Err(format!(
                    "{what}: {} dispatches, want 1",
                    rec.dispatch_count()
                ));
            }
            gpu(elementwise::residual_sum(
                &mut rec,
                partsb.view(),
                count,
                Some(lsb.view()),
                yb.view(),
                t * k,
                k,
            ))?;
            let b = cfg
                .fused_qkv(ctx, cache_b.view(), t, pos0)
                .ok_or(format!("{what}: no fused form"))?;
            gpu(linear::qkv_attention(
                &mut rec,
                &wt,
                yb.view(),
                out_b.view(),
                t,
                input,
                &b,
            ))?;
            gpu(rec.submit())?;
            let at = format!("{what}: call {call}");
            let s = gpu(ctx.read_f32(&streamb).await)?;
            let y = gpu(ctx.read_f32(&yb).await)?;
            assert_close(
                &format!("{at}: stored layer input"),
                &s[write as usize..],
                &y,
                1e-5,
                1e-5,
            )?;
            if s[..tu * ku] != r[..] {
                return Err(format!("{at}: the read half of the stream was changed"));
            }
            let (oa, ob) = (
                gpu(ctx.read_f32(&out_a).await)?,
                gpu(ctx.read_f32(&out_b).await)?,
            );
            assert_close(&format!("{at}: attention output"), &oa, &ob, 1e-5, 1e-5)?;
        }
        let ca = gpu(ctx.read_f32(&cache_a).await)?;
        let cb = gpu(ctx.read_f32(&cache_b).await)?;
        assert_close(&format!("{what}: caches"), &ca, &cb, 1e-5, 1e-5)?;
        log(&format!(
            "     {what}: fused residual input equal to residual_sum + qkv_attention"
        ));
    }
    Ok(())
}

/// A depformer-like transformer: RMSNorm, SiLU-gated with hidden 6 × 64, no positions, 2 weight
/// sets by an 8-step schedule, 1 row per call.
pub fn depformer_like() -> TransformerConfig {
    TransformerConfig {
        d_model: 128,
        num_heads: 16,
        num_layers: 3,
        dim_feedforward: 576,
        norm: NormKind::RmsNorm { eps: 1e-8 },
        gating: Gating::Silu,
        positional: Positional::None,
        max_period: 10000.0,
        layer_scale: false,
        context: 8,
        rows: 1,
        schedule: vec![0, 1, 1, 1, 1, 1, 1, 1],
        f32_cache: false,
        qkv_attention: false,
        mlp_split: true,
    }
}

/// `cfg` loaded twice on the same pseudo-random weights (`format`, `seed`): with the split layer
/// form (as `cfg` says) and without it.
pub fn split_and_unsplit(
    ctx: &Context,
    cfg: &TransformerConfig,
    format: WeightFormat,
    seed: u32,
) -> Result<(Transformer, Transformer), String> {
    let w = Weights::Random { format, seed };
    let scope = w.pp("t");
    let split = gpu(Transformer::load(ctx, &scope, cfg))?;
    let plain = gpu(Transformer::load(
        ctx,
        &scope,
        &TransformerConfig {
            mlp_split: false,
            ..cfg.clone()
        },
    ))?;
    Ok((split, plain))
}

/// A Mimi-like transformer (LayerNorm, GELU, layer scale, RoPE, 2 rows) and a depformer-like one
/// (RMSNorm, SiLU-gated, 2 weight sets by schedule, 1 row), pseudo-random bf16 weights: the
/// 3-launch layers (`mlp_split: true`, 3·L + 1 launches per call) equal the 4-launch layers
/// over a stream of calls within 1e-4 + 1e-4·|x|.
async fn transformer_split_stream(ctx: &Context, _size: Size) -> CaseResult {
    let mimi = TransformerConfig {
        d_model: 64,
        num_heads: 4,
        num_layers: 3,
        dim_feedforward: 128,
        norm: NormKind::LayerNorm { eps: 1e-5 },
        gating: Gating::None,
        positional: Positional::Rope,
        max_period: 10000.0,
        layer_scale: true,
        context: 5,
        rows: 2,
        schedule: Vec::new(),
        f32_cache: true,
        qkv_attention: true,
        mlp_split: true,
    };
    for (name, cfg, calls) in [
        ("mimi-like", mimi, 6u32),
        ("depformer-like", depformer_like(), 8),
    ] {
        let (mut split, mut plain) = split_and_unsplit(ctx, &cfg, WeightFormat::Bf16, 17)?;
        let (t, d, l) = (cfg.rows, cfg.d_model as u32, cfg.num_layers as u32);
        let mut rng = Rng::new(4242);
        for call in 0..calls {
            let x = rng.vec((t * d) as usize, 1.0);
            let (xa, xb) = (gpu(ctx.upload("xa", &x))?, gpu(ctx.upload("xb", &x))?);
            let mut rec = Recorder::new(ctx, "test");
            gpu(split.forward(&mut rec, &xa))?;
            let n_split = rec.dispatch_count();
            gpu(plain.forward(&mut rec, &xb))?;
            let n_plain = rec.dispatch_count() - n_split;
            gpu(rec.submit())?;
            if n_split != 3 * l + 1 || n_plain != 4 * l {
                return Err(format!(
                    "{name}: {n_split} launches split and {n_plain} unsplit, want {} and {}",
                    3 * l + 1,
                    4 * l
                ));
            }
            let (a, b) = (gpu(ctx.read_f32(&xa).await)?, gpu(ctx.read_f32(&xb).await)?);
            if a == x {
                return Err(format!(
                    "{name}: call {call}: the split form left x unchanged"
                ));
            }
            assert_close(&format!("{name}: call {call}"), &a, &b, 1e-4, 1e-4)?;
        }
        log(&format!(
            "     {name}: 3-launch layers equal to 4-launch layers over {calls} calls"
        ));
    }
    Ok(())
}
