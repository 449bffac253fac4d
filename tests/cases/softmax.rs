use parle::gpu::{Context, Recorder};
use parle::kernels::softmax::{self, reference};

use crate::cases;
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

cases!(
    softmax_rows,
    softmax_inplace_scaled,
    softmax_ties_and_masked,
    softmax_many_rows,
    softmax_rejects_bad_shapes
);

async fn run(
    ctx: &Context,
    x: &[f32],
    n: usize,
    scale: f32,
    inplace: bool,
) -> Result<Vec<f32>, String> {
    let rows = (x.len() / n) as u32;
    let mut rec = Recorder::new(ctx, "test");
    let xb = gpu(ctx.upload("x", x))?;
    let out = if inplace {
        gpu(softmax::softmax_inplace(
            &mut rec,
            xb.view(),
            rows,
            n as u32,
            scale,
        ))?;
        xb
    } else {
        let yb = gpu(ctx.upload("y", &vec![f32::NAN; x.len()]))?;
        gpu(softmax::softmax(
            &mut rec,
            xb.view(),
            yb.view(),
            rows,
            n as u32,
            scale,
        ))?;
        yb
    };
    gpu(rec.submit())?;
    gpu(ctx.read_f32(&out).await)
}

fn sizes(size: Size) -> &'static [usize] {
    match size {
        Size::Small => &[1, 257, 2048],
        // The text head (32000), audio heads (2048), odd sizes around the workgroup size.
        Size::Full => &[1, 5, 255, 257, 2048, 32000, 100_003],
    }
}

async fn softmax_rows(ctx: &Context, size: Size) -> CaseResult {
    let mut rng = Rng::new(31);
    for &n in sizes(size) {
        // Three rows with different spreads; the max sits at a different place in each.
        let mut x = rng.vec(n, 10.0);
        x.extend(rng.vec(n, 1.0));
        x.extend(rng.vec(n, 30.0));
        x[n + n / 2] = 5.0;
        let got = run(ctx, &x, n, 1.0, false).await?;
        assert_close(
            &format!("softmax n={n}"),
            &got,
            &reference::softmax(&x, n, 1.0),
            1e-10,
            1e-5,
        )?;
    }
    Ok(())
}

async fn softmax_inplace_scaled(ctx: &Context, size: Size) -> CaseResult {
    let n = match size {
        Size::Small => 2048,
        Size::Full => 32000,
    };
    let x = Rng::new(32).vec(2 * n, 12.0);
    for scale in [1.0, 1.0 / 0.8, 1.0 / 0.7] {
        let got = run(ctx, &x, n, scale, true).await?;
        assert_close(
            &format!("softmax in place n={n} scale={scale}"),
            &got,
            &reference::softmax(&x, n, scale),
            1e-10,
            1e-5,
        )?;
    }
    Ok(())
}

/// Equal logits (uniform output), a row of -inf except one entry (one-hot), huge logits that
/// would overflow exp without the max subtraction.
async fn softmax_ties_and_masked(ctx: &Context, _size: Size) -> CaseResult {
    let n = 1000;
    let mut x = vec![0.25f32; n];
    let mut masked = vec![f32::NEG_INFINITY; n];
    masked[777] = -4.0;
    x.extend(masked);
    x.extend(Rng::new(33).vec(n, 1.0).iter().map(|v| v + 1000.0));
    let got = run(ctx, &x, n, 1.0, false).await?;
    assert_close(
        "softmax ties / masked / huge",
        &got,
        &reference::softmax(&x, n, 1.0),
        1e-10,
        1e-5,
    )
}

async fn softmax_many_rows(ctx: &Context, size: Size) -> CaseResult {
    let (rows, n) = match size {
        Size::Small => (33, 3),
        Size::Full => (70_000, 3),
    };
    let x = Rng::new(34).vec(rows * n, 5.0);
    let got = run(ctx, &x, n, 1.0, false).await?;
    assert_close(
        "softmax many rows",
        &got,
        &reference::softmax(&x, n, 1.0),
        1e-10,
        1e-5,
    )
}

async fn softmax_rejects_bad_shapes(ctx: &Context, _size: Size) -> CaseResult {
    let xb = gpu(ctx.upload("x", &[0f32; 64]))?;
    let yb = gpu(ctx.upload("y", &[0f32; 32]))?;
    let mut rec = Recorder::new(ctx, "test");
    let r1 = softmax::softmax(&mut rec, xb.view(), yb.view(), 2, 32, 1.0);
    let r2 = softmax::softmax_inplace(&mut rec, xb.view(), 1, 0, 1.0);
    let r3 = softmax::softmax_inplace(&mut rec, yb.view(), 1, 64, 1.0);
    gpu(rec.submit())?;
    if r1.is_ok() || r2.is_ok() || r3.is_ok() {
        return Err(format!("bad launches accepted: {r1:?} {r2:?} {r3:?}"));
    }
    Ok(())
}
