use parle::gpu::{Context, Recorder};
use parle::kernels::elementwise::{self, reference};

use crate::cases;
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

cases!(
    elu,
    gelu_erf,
    silu_gate,
    residual_add_scaled,
    residual_add_plain,
    transpose,
    copy
);

fn n_for(size: Size) -> usize {
    match size {
        Size::Small => 1000,
        Size::Full => 70_001, // not a multiple of the workgroup size
    }
}

async fn elu(ctx: &Context, size: Size) -> CaseResult {
    let n = n_for(size);
    let x = Rng::new(1).vec(n, 4.0);
    let xb = gpu(ctx.upload("x", &x))?;
    let yb = gpu(ctx.upload("y", &vec![0f32; n]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(elementwise::elu(&mut rec, xb.view(), yb.view(), n as u32))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&yb).await)?;
    assert_close("elu", &got, &reference::elu(&x), 1e-6, 1e-5)
}

async fn gelu_erf(ctx: &Context, size: Size) -> CaseResult {
    let n = n_for(size);
    let mut x = Rng::new(2).vec(n, 6.0);
    x[0] = 0.0;
    x[1] = -10.0;
    x[2] = 10.0;
    let xb = gpu(ctx.upload("x", &x))?;
    let yb = gpu(ctx.upload("y", &vec![0f32; n]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(elementwise::gelu_erf(
        &mut rec,
        xb.view(),
        yb.view(),
        n as u32,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&yb).await)?;
    assert_close("gelu_erf", &got, &reference::gelu_erf(&x), 1e-6, 1e-5)
}

async fn silu_gate(ctx: &Context, size: Size) -> CaseResult {
    let (rows, hidden) = match size {
        Size::Small => (2, 40),
        Size::Full => (2, 11264),
    };
    let u = Rng::new(3).vec(rows * 2 * hidden, 5.0);
    let ub = gpu(ctx.upload("u", &u))?;
    let yb = gpu(ctx.upload("y", &vec![0f32; rows * hidden]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(elementwise::silu_gate(
        &mut rec,
        ub.view(),
        yb.view(),
        rows as u32,
        hidden as u32,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&yb).await)?;
    assert_close(
        "silu_gate",
        &got,
        &reference::silu_gate(&u, rows, hidden),
        1e-6,
        1e-5,
    )
}

async fn residual_add_scaled(ctx: &Context, _size: Size) -> CaseResult {
    // [C, T] layout (Mimi's conv layout): channel stride T.
    let (c, t) = (64usize, 6usize);
    let mut rng = Rng::new(4);
    let (r, s, y0) = (rng.vec(c * t, 1.0), rng.vec(c, 1.0), rng.vec(c * t, 1.0));
    let (rb, sb, yb) = (
        gpu(ctx.upload("r", &r))?,
        gpu(ctx.upload("s", &s))?,
        gpu(ctx.upload("y", &y0))?,
    );
    let mut rec = Recorder::new(ctx, "test");
    gpu(elementwise::residual_add(
        &mut rec,
        rb.view(),
        Some(sb.view()),
        yb.view(),
        (c * t) as u32,
        c as u32,
        t as u32,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&yb).await)?;
    let mut want = y0;
    reference::residual_add(&mut want, &r, Some(&s), c, t);
    assert_close("residual_add [C,T]", &got, &want, 1e-6, 1e-6)
}

async fn residual_add_plain(ctx: &Context, size: Size) -> CaseResult {
    let n = n_for(size);
    let mut rng = Rng::new(5);
    let (r, y0) = (rng.vec(n, 1.0), rng.vec(n, 1.0));
    let (rb, yb) = (gpu(ctx.upload("r", &r))?, gpu(ctx.upload("y", &y0))?);
    let mut rec = Recorder::new(ctx, "test");
    // Two launches in one recorder: y += r twice.
    gpu(elementwise::residual_add(
        &mut rec,
        rb.view(),
        None,
        yb.view(),
        n as u32,
        1,
        1,
    ))?;
    gpu(elementwise::residual_add(
        &mut rec,
        rb.view(),
        None,
        yb.view(),
        n as u32,
        1,
        1,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&yb).await)?;
    let mut want = y0;
    reference::residual_add(&mut want, &r, None, 1, 1);
    reference::residual_add(&mut want, &r, None, 1, 1);
    assert_close("residual_add x2", &got, &want, 1e-6, 1e-6)
}

async fn transpose(ctx: &Context, size: Size) -> CaseResult {
    let (rows, cols) = match size {
        Size::Small => (5, 7),
        Size::Full => (512, 3),
    };
    let x = Rng::new(6).vec(rows * cols, 1.0);
    let xb = gpu(ctx.upload("x", &x))?;
    let yb = gpu(ctx.upload("y", &vec![0f32; rows * cols]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(elementwise::transpose(
        &mut rec,
        xb.view(),
        yb.view(),
        rows as u32,
        cols as u32,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&yb).await)?;
    assert_close(
        "transpose",
        &got,
        &reference::transpose(&x, rows, cols),
        0.0,
        0.0,
    )
}

/// The vec4 copy (the bench's bandwidth yardstick): exact, and it rejects n not a multiple of 4.
async fn copy(ctx: &Context, size: Size) -> CaseResult {
    let n = n_for(size) / 4 * 4;
    let x = Rng::new(7).vec(n + 4, 3.0);
    let xb = gpu(ctx.upload("x", &x))?;
    let yb = gpu(ctx.upload("y", &vec![f32::NAN; n + 4]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(elementwise::copy(&mut rec, xb.view(), yb.view(), n as u32))?;
    let bad = elementwise::copy(&mut rec, xb.view(), yb.view(), n as u32 + 2).is_err()
        && elementwise::copy(&mut rec, xb.view(), xb.view(), 4).is_err();
    gpu(rec.submit())?;
    if !bad {
        return Err("copy accepted a bad launch".into());
    }
    let got = gpu(ctx.read_f32(&yb).await)?;
    assert_close("copy", &got[..n], &x[..n], 0.0, 0.0)?;
    if got[n..].iter().any(|v| !v.is_nan()) {
        return Err(format!("copy wrote past n: {:?}", &got[n..]));
    }
    Ok(())
}
