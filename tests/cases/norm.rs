use parle::gpu::{Context, Recorder};
use parle::kernels::norm::{self, reference, LayerNorm, LAYER_EPS_MIMI, RMS_EPS_MOSHI};

use crate::cases;
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

cases!(
    rms_norm_rows,
    rms_norm_zero_and_scaled_rows,
    layer_norm_rows,
    layer_norm_offset_rows,
    norm_many_rows,
    norm_rejects_short_buffers
);

fn dims(size: Size) -> &'static [usize] {
    match size {
        Size::Small => &[100, 512, 4500],
        // Mimi 512, depformer 1024, Moshi 4096, sizes that are not multiples of 256, and rows
        // longer than the 4096 the kernel keeps in registers.
        Size::Full => &[1, 100, 300, 512, 1024, 4096, 4097, 11264],
    }
}

/// Rows with different scales so a row mix-up shows.
fn rows_data(rng: &mut Rng, rows: usize, d: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(rows * d);
    for r in 0..rows {
        let scale = [1.0, 30.0, 0.01][r % 3];
        x.extend(rng.vec(d, scale));
    }
    x
}

async fn run_rms(
    ctx: &Context,
    x: &[f32],
    w: &[f32],
    d: usize,
    eps: f32,
) -> Result<Vec<f32>, String> {
    let rows = x.len() / d;
    let (xb, wb) = (gpu(ctx.upload("x", x))?, gpu(ctx.upload("w", w))?);
    let yb = gpu(ctx.upload("y", &vec![f32::NAN; x.len()]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(norm::rms_norm(
        &mut rec,
        xb.view(),
        wb.view(),
        yb.view(),
        rows as u32,
        d as u32,
        eps,
    ))?;
    gpu(rec.submit())?;
    gpu(ctx.read_f32(&yb).await)
}

async fn run_layer(
    ctx: &Context,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    d: usize,
    eps: f32,
) -> Result<Vec<f32>, String> {
    let rows = x.len() / d;
    let (xb, wb, bb) = (
        gpu(ctx.upload("x", x))?,
        gpu(ctx.upload("w", w))?,
        gpu(ctx.upload("b", b))?,
    );
    let yb = gpu(ctx.upload("y", &vec![f32::NAN; x.len()]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(LayerNorm {
        weight: wb.view(),
        bias: bb.view(),
        eps,
    }
    .apply(&mut rec, xb.view(), yb.view(), rows as u32, d as u32))?;
    gpu(rec.submit())?;
    gpu(ctx.read_f32(&yb).await)
}

async fn rms_norm_rows(ctx: &Context, size: Size) -> CaseResult {
    let mut rng = Rng::new(11);
    for &d in dims(size) {
        let x = rows_data(&mut rng, 3, d);
        let w = rng.vec(d, 2.0);
        let got = run_rms(ctx, &x, &w, d, RMS_EPS_MOSHI).await?;
        let want = reference::rms_norm(&x, &w, d, RMS_EPS_MOSHI);
        assert_close(&format!("rms_norm d={d}"), &got, &want, 1e-6, 1e-5)?;
    }
    Ok(())
}

/// An all-zero row (the result is 0, not NaN: eps keeps the root positive), a tiny row where
/// eps matters, and a huge row.
async fn rms_norm_zero_and_scaled_rows(ctx: &Context, _size: Size) -> CaseResult {
    let d = 300;
    let mut rng = Rng::new(12);
    let mut x = vec![0.0f32; d];
    x.extend(rng.vec(d, 1e-4));
    x.extend(rng.vec(d, 1e4));
    let w = rng.vec(d, 1.0);
    for eps in [RMS_EPS_MOSHI, 1e-5] {
        let got = run_rms(ctx, &x, &w, d, eps).await?;
        let want = reference::rms_norm(&x, &w, d, eps);
        assert_close(&format!("rms_norm eps={eps}"), &got, &want, 1e-6, 1e-5)?;
    }
    Ok(())
}

async fn layer_norm_rows(ctx: &Context, size: Size) -> CaseResult {
    let mut rng = Rng::new(13);
    for &d in dims(size) {
        if d == 1 {
            continue; // variance 0: covered by the constant row below
        }
        let x = rows_data(&mut rng, 3, d);
        let (w, b) = (rng.vec(d, 2.0), rng.vec(d, 1.0));
        let got = run_layer(ctx, &x, &w, &b, d, LAYER_EPS_MIMI).await?;
        let want = reference::layer_norm(&x, &w, &b, d, LAYER_EPS_MIMI);
        assert_close(&format!("layer_norm d={d}"), &got, &want, 2e-6, 1e-5)?;
    }
    Ok(())
}

/// Rows whose mean is large against their spread (a one-pass E[x²] − mean² loses this), and a
/// constant row (variance 0: the output is the bias).
async fn layer_norm_offset_rows(ctx: &Context, _size: Size) -> CaseResult {
    let d = 512;
    let mut rng = Rng::new(14);
    let mut x: Vec<f32> = rng.vec(d, 0.5).iter().map(|v| v + 8.0).collect();
    x.extend(rng.vec(d, 0.5).iter().map(|v| v - 3.0));
    x.extend(std::iter::repeat_n(2.5f32, d));
    let (w, b) = (rng.vec(d, 1.0), rng.vec(d, 1.0));
    let got = run_layer(ctx, &x, &w, &b, d, LAYER_EPS_MIMI).await?;
    let want = reference::layer_norm(&x, &w, &b, d, LAYER_EPS_MIMI);
    assert_close("layer_norm offset rows", &got, &want, 1e-5, 1e-5)
}

/// More rows than one grid dimension holds on the full run (2-D grid), few on the small one.
async fn norm_many_rows(ctx: &Context, size: Size) -> CaseResult {
    let (rows, d) = match size {
        Size::Small => (40, 7),
        Size::Full => (70_000, 3),
    };
    let mut rng = Rng::new(15);
    let x = rng.vec(rows * d, 3.0);
    let (w, b) = (rng.vec(d, 1.0), rng.vec(d, 1.0));
    let got = run_rms(ctx, &x, &w, d, RMS_EPS_MOSHI).await?;
    assert_close(
        "rms_norm many rows",
        &got,
        &reference::rms_norm(&x, &w, d, RMS_EPS_MOSHI),
        1e-6,
        1e-5,
    )?;
    let got = run_layer(ctx, &x, &w, &b, d, LAYER_EPS_MIMI).await?;
    assert_close(
        "layer_norm many rows",
        &got,
        &reference::layer_norm(&x, &w, &b, d, LAYER_EPS_MIMI),
        1e-5,
        1e-5,
    )
}

async fn norm_rejects_short_buffers(ctx: &Context, _size: Size) -> CaseResult {
    let xb = gpu(ctx.upload("x", &[0f32; 64]))?;
    let wb = gpu(ctx.upload("w", &[0f32; 32]))?;
    let yb = gpu(ctx.upload("y", &[0f32; 64]))?;
    let mut rec = Recorder::new(ctx, "test");
    let r1 = norm::rms_norm(&mut rec, xb.view(), wb.view(), yb.view(), 2, 64, 1e-8);
    let r2 = norm::rms_norm(&mut rec, xb.view(), wb.view(), yb.view(), 2, 0, 1e-8);
    let r3 = LayerNorm {
        weight: wb.view(),
        bias: wb.view(),
        eps: 1e-5,
    }
    .apply(&mut rec, xb.view(), yb.view(), 1, 64);
    let ok = norm::rms_norm(&mut rec, xb.view(), wb.view(), yb.view(), 2, 32, 1e-8);
    gpu(rec.submit())?;
    if r1.is_ok() || r2.is_ok() || r3.is_ok() {
        return Err(format!("bad launches accepted: {r1:?} {r2:?} {r3:?}"));
    }
    ok.map_err(|e| format!("good launch rejected: {e}"))
}
