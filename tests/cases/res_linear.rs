//! The linear on a split transformer's residual stream (`linear::linear_res`: `y = W · x_L`,
//! `x_L = x_{L−1} + ls2 ⊙ Σ_j part[j]` summed inside the launch, 64-row tiles) against
//! `residual_sum` + `linear` and the f64 reference, for every weight format, 1 or 2 rows, 1 or 3
//! partials and row counts that do and do not fill the last tile; its refusals; and a
//! depformer-like transformer whose head reads the last layer's partials against the 4-launch
//! layers followed by the head.

use parle::gpu::{BufferUsage, Context, Recorder};
use parle::kernels::elementwise;
use parle::kernels::linear::{self, reference, LinearWeights, ResidualIn, RL_ROWS};
use parle::nn::Linear;
use parle::weights::{HostLinear, WeightFormat};

use crate::cases;
use crate::cases::mlp_split::{depformer_like, split_and_unsplit};
use crate::common::{assert_close, gpu, log, CaseResult, Rng, Size};

cases!(
    linear_res_formats,
    linear_res_rejects,
    transformer_head_stream
);

/// Every format × rows 1, 2 × (N, parts) ∈ {(100, 3), (192, 1)}: `linear_res` in one launch
/// equals `residual_sum` + `linear` within 1e-5 + 1e-5·|y| and the f64 reference on the
/// dequantized weights within 1e-4 of the row's Σ|w·x|; it stores x_L at the write offset and
/// leaves the read half as it was.
async fn linear_res_formats(ctx: &Context, _size: Size) -> CaseResult {
    let formats = [
        WeightFormat::F32,
        WeightFormat::Bf16,
        WeightFormat::Q8_0,
        WeightFormat::MLX_Q4,
        WeightFormat::MLX_Q8,
        WeightFormat::Int8Row,
    ];
    let mut worst = 0f32;
    let mut case = 0u64;
    for format in formats {
        for t in 1..=2u32 {
            for (n, count) in [(100u32, 3u32), (192, 1)] {
                case += 1;
                let what = format!("{format:?}, t {t}, N {n}, {count} parts");
                let k = 128u32;
                let (ku, tu, nu) = (k as usize, t as usize, n as usize);
                let mut rng = Rng::new(9300 + case);
                let host = gpu(HostLinear::quantize(
                    format,
                    &rng.vec(nu * ku, 1.5 / (k as f32).sqrt()),
                    n,
                    k,
                ))?;
                let wd = host.dequantize();
                let wt = gpu(LinearWeights::upload(ctx, &host, "w"))?;
                let ls = rng.vec(ku, 0.5);
                let packed: Vec<f32> = vec![0.0; 2 * ku].into_iter().chain(ls.clone()).collect();
                let r: Vec<f32> = rng.vec(tu * ku, 2.0).iter().map(|v| v + 0.7).collect();
                let parts = rng.vec(count as usize * tu * ku, 1.0);
                // The stream: x_{L−1} at float 0, x_L written at float 256 (1 KiB).
                let write = 256u32;
                let mut stream = vec![0f32; write as usize + tu * ku];
                stream[..tu * ku].copy_from_slice(&r);
                let streamb = gpu(ctx.upload("stream", &stream))?;
                let partsb = gpu(ctx.upload("parts", &parts))?;
                let packedb = gpu(ctx.upload("packed", &packed))?;
                let lsb = gpu(ctx.upload("ls", &ls))?;
                let xb = gpu(ctx.upload("x", &r))?;
                let storage = |l: &str, floats: usize| {
                    gpu(ctx.create_buffer(l, (floats * 4) as u64, BufferUsage::Storage))
                };
                let (ya, yb) = (storage("y a", tu * nu)?, storage("y b", tu * nu)?);
                let res = ResidualIn {
                    stream: streamb.view(),
                    read: 0,
                    write,
                    parts: partsb.view(),
                    count,
                    packed: packedb.view(),
                    layer_norm: false,
                    eps: 0.0,
                };
                let mut rec = Recorder::new(ctx, "test");
                gpu(linear::linear_res(&mut rec, &wt, &res, ya.view(), t))?;
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
                    xb.view(),
                    t * k,
                    k,
                ))?;
                gpu(linear::linear(&mut rec, &wt, xb.view(), yb.view(), t, None))?;
                gpu(rec.submit())?;
                let s = gpu(ctx.read_f32(&streamb).await)?;
                let x = gpu(ctx.read_f32(&xb).await)?;
                assert_close(
                    &format!("{what}: stored x_L"),
                    &s[write as usize..],
                    &x,
                    1e-5,
                    1e-5,
                )?;
                if s[..tu * ku] != r[..] {
                    return Err(format!("{what}: the read half of the stream was changed"));
                }
                let (a, b) = (gpu(ctx.read_f32(&ya).await)?, gpu(ctx.read_f32(&yb).await)?);
                assert_close(
                    &format!("{what}: against residual_sum + linear"),
                    &a,
                    &b,
                    1e-5,
                    1e-5,
                )?;
                // The f64 reference on x_L formed in f64.
                let xl: Vec<f32> = (0..tu * ku)
                    .map(|e| {
                        let sum: f64 = (0..count as usize)
                            .map(|j| parts[j * tu * ku + e] as f64)
                            .sum();
                        (r[e] as f64 + ls[e % ku] as f64 * sum) as f32
                    })
                    .collect();
                let want = reference::linear(&xl, &wd, None, tu, nu, ku);
                let scale = reference::abs_linear(&xl, &wd, tu, nu, ku);
                for (i, ((&g, &w), &sc)) in a.iter().zip(&want).zip(&scale).enumerate() {
                    let e = (g - w).abs() / sc.max(1e-6);
                    worst = worst.max(e);
                    if e.is_nan() || e > 1e-4 {
                        return Err(format!(
                            "{what}: y[{i}] = {g}, reference {w} (error {e:.2e} of Σ|w·x| {sc})"
                        ));
                    }
                }
            }
        }
    }
    log(&format!(
        "     {case} cases (tiles of {RL_ROWS} rows): equal to residual_sum + linear; worst error against f64 {worst:.2e} of Σ|w·x|"
    ));
    Ok(())
}

/// Bad calls are refused with a message naming the cause.
async fn linear_res_rejects(ctx: &Context, _size: Size) -> CaseResult {
    let host = gpu(HostLinear::quantize(
        WeightFormat::F32,
        &[0.1; 8 * 64],
        8,
        64,
    ))?;
    let w = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    let wide = gpu(HostLinear::quantize(
        WeightFormat::F32,
        &vec![0.1; 8 * 1024],
        8,
        1024,
    ))?;
    let w_wide = gpu(LinearWeights::upload(ctx, &wide, "w wide"))?;
    let buf = |l: &str, floats: u64| gpu(ctx.create_buffer(l, floats * 4, BufferUsage::Storage));
    let stream = buf("stream", 4096)?;
    let parts = buf("parts", 3 * 2048)?;
    let packed = buf("packed", 3 * 1024)?;
    let y = buf("y", 64)?;
    let res = |read: u32, write: u32, count: u32| ResidualIn {
        stream: stream.view(),
        read,
        write,
        parts: parts.view(),
        count,
        packed: packed.view(),
        layer_norm: false,
        eps: 0.0,
    };
    let tries: [(&str, &LinearWeights, ResidualIn, u32, &str); 6] = [
        ("3 rows", &w, res(0, 256, 1), 3, "1 to 2 rows"),
        ("no partials", &w, res(0, 256, 0), 1, "≥ 1 partial output"),
        (
            "2 × 1024 floats",
            &w_wide,
            res(0, 2048, 1),
            2,
            "m · K ≤ 1024",
        ),
        ("overlapping halves", &w, res(0, 32, 1), 1, "apart or more"),
        ("odd offset", &w, res(2, 256, 1), 1, "multiples of 4"),
        ("y too small", &w, res(0, 256, 1), 2, "y needs"),
    ];
    for (what, wt, r, m, want) in tries {
        let mut rec = Recorder::new(ctx, "test");
        let yv = if what == "y too small" {
            y.slice(0, 32)
        } else {
            y.view()
        };
        match linear::linear_res(&mut rec, wt, &r, yv, m) {
            Ok(()) => return Err(format!("{what}: accepted")),
            Err(e) if e.to_string().contains(want) => {}
            Err(e) => return Err(format!("{what}: message {e:?} does not say {want:?}")),
        }
    }
    // y aliasing the stream.
    let mut rec = Recorder::new(ctx, "test");
    match linear::linear_res(&mut rec, &w, &res(0, 256, 1), stream.slice(8192, 64 * 4), 1) {
        Ok(()) => return Err("y in the stream's buffer: accepted".into()),
        Err(e) if e.to_string().contains("different buffer") => {}
        Err(e) => return Err(format!("y in the stream's buffer: message {e:?}")),
    }
    log("     7 bad calls refused with their causes");
    Ok(())
}

/// The depformer-like transformer of the split-MLP tests with a head of 130 rows, pseudo-random
/// weights in bf16 and q4: the 3-launch layers with the head reading the last layer's partials
/// (`forward_view_head`, 3·L + 1 launches with the head) equal the 4-launch layers followed by
/// the head (4·L + 1) over a stream of calls within 1e-4 + 1e-4·|y|.
async fn transformer_head_stream(ctx: &Context, _size: Size) -> CaseResult {
    let cfg = depformer_like();
    for format in [WeightFormat::Bf16, WeightFormat::MLX_Q4] {
        let (mut split, mut plain) = split_and_unsplit(ctx, &cfg, format, 23)?;
        let (d, l) = (cfg.d_model as u32, cfg.num_layers as u32);
        let n = 130u32;
        let head = gpu(Linear::random(ctx, "head", format, n, d, 5))?;
        let storage = |lb: &str| gpu(ctx.create_buffer(lb, (n * 4) as u64, BufferUsage::Storage));
        let (ya, yb) = (storage("y a")?, storage("y b")?);
        let mut rng = Rng::new(777);
        let calls = cfg.schedule.len() as u32;
        for call in 0..calls {
            let x = rng.vec(d as usize, 1.0);
            let (xa, xb) = (gpu(ctx.upload("xa", &x))?, gpu(ctx.upload("xb", &x))?);
            let mut rec = Recorder::new(ctx, "test");
            gpu(split.forward_view_head(&mut rec, xa.view(), &head, ya.view()))?;
            let n_split = rec.dispatch_count();
            gpu(plain.forward_view_head(&mut rec, xb.view(), &head, yb.view()))?;
            let n_plain = rec.dispatch_count() - n_split;
            gpu(rec.submit())?;
            if n_split != 3 * l + 1 || n_plain != 4 * l + 1 {
                return Err(format!(
                    "{format:?}: {n_split} launches split and {n_plain} unsplit with the head, want {} and {}",
                    3 * l + 1,
                    4 * l + 1
                ));
            }
            let (a, b) = (gpu(ctx.read_f32(&ya).await)?, gpu(ctx.read_f32(&yb).await)?);
            assert_close(
                &format!("{format:?}: call {call}: head output"),
                &a,
                &b,
                1e-4,
                1e-4,
            )?;
        }
        log(&format!(
            "     {format:?}: head on the partials equal to 4-launch layers + head over {calls} calls"
        ));
    }
    Ok(())
}
