use parle::gpu::{Context, Recorder};
use parle::kernels::rope::{self, reference, Rope, RopeLayout};

use crate::cases;
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

cases!(
    rope_freqs_match_formula,
    rope_fused_qkv,
    rope_q_only_padded_rows,
    rope_far_positions,
    rope_rejects_bad_layouts
);

async fn run(
    ctx: &Context,
    x: &[f32],
    layout: &RopeLayout,
    head_dim: u32,
    max_period: f32,
    rows: u32,
    pos0: u32,
) -> Result<Vec<f32>, String> {
    let rope = gpu(Rope::new(ctx, head_dim, max_period))?;
    let xb = gpu(ctx.upload("x", x))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(rope.apply(&mut rec, xb.view(), layout, rows, pos0))?;
    gpu(rec.submit())?;
    gpu(ctx.read_f32(&xb).await)
}

/// The RoPE table under test: head dimension and max period.
#[derive(Clone, Copy)]
struct Table {
    head_dim: u32,
    max_period: f32,
}

async fn check(
    ctx: &Context,
    what: &str,
    layout: RopeLayout,
    table: Table,
    rows: u32,
    pos0: u32,
    atol: f32,
) -> CaseResult {
    let Table {
        head_dim,
        max_period,
    } = table;
    let n = rows as usize * layout.row_stride as usize;
    let x = Rng::new(pos0 as u64 + rows as u64).vec(n, 2.0);
    let got = run(ctx, &x, &layout, head_dim, max_period, rows, pos0).await?;
    let mut want = x.clone();
    reference::rope(
        &mut want,
        &layout,
        head_dim as usize,
        max_period,
        rows as usize,
        pos0 as usize,
    );
    // The whole buffer: v and padding must come back untouched.
    assert_close(
        &format!(
            "{what} (H={} Dh={head_dim} pos {pos0}..{})",
            layout.heads,
            pos0 + rows
        ),
        &got,
        &want,
        atol,
        1e-5,
    )
}

/// The f32 table follows `max_period^(-2i/Dh)` up to the rounding of PyTorch's f32 formula
/// (`f32(i)·f32(c)` carries c's rounding, ~|ln f|·2⁻²⁴ relative).
async fn rope_freqs_match_formula(_ctx: &Context, _size: Size) -> CaseResult {
    for (dh, mp) in [(128u32, 1e4f32), (64, 1e4), (64, 1e5), (16, 1e4)] {
        let f = rope::freqs(dh, mp);
        let want: Vec<f32> = (0..dh / 2)
            .map(|i| (mp as f64).powf(-2.0 * i as f64 / dh as f64) as f32)
            .collect();
        assert_close(
            &format!("freqs Dh={dh} max_period={mp}"),
            &f,
            &want,
            0.0,
            1.5e-6,
        )?;
    }
    Ok(())
}

async fn rope_fused_qkv(ctx: &Context, size: Size) -> CaseResult {
    match size {
        Size::Small => {
            check(
                ctx,
                "qkv",
                RopeLayout::fused_qkv(2, 16),
                Table {
                    head_dim: 16,
                    max_period: 1e4,
                },
                3,
                0,
                2e-6,
            )
            .await?;
            check(
                ctx,
                "qkv",
                RopeLayout::fused_qkv(3, 64),
                Table {
                    head_dim: 64,
                    max_period: 1e4,
                },
                2,
                2999,
                2e-6,
            )
            .await
        }
        Size::Full => {
            // Mimi (8 heads of 64, T = 2 per frame) and Moshi (32 heads of 128), positions from 0
            // (identity) to past the 3000-step context, max_period 1e4 and 1e5.
            check(
                ctx,
                "Mimi qkv",
                RopeLayout::fused_qkv(8, 64),
                Table {
                    head_dim: 64,
                    max_period: 1e4,
                },
                2,
                0,
                2e-6,
            )
            .await?;
            check(
                ctx,
                "Mimi qkv",
                RopeLayout::fused_qkv(8, 64),
                Table {
                    head_dim: 64,
                    max_period: 1e4,
                },
                40,
                230,
                2e-6,
            )
            .await?;
            check(
                ctx,
                "Moshi qkv",
                RopeLayout::fused_qkv(32, 128),
                Table {
                    head_dim: 128,
                    max_period: 1e4,
                },
                1,
                0,
                2e-6,
            )
            .await?;
            check(
                ctx,
                "Moshi qkv",
                RopeLayout::fused_qkv(32, 128),
                Table {
                    head_dim: 128,
                    max_period: 1e4,
                },
                3,
                2998,
                2e-6,
            )
            .await?;
            check(
                ctx,
                "Moshi qkv 1e5",
                RopeLayout::fused_qkv(32, 128),
                Table {
                    head_dim: 128,
                    max_period: 1e5,
                },
                2,
                1500,
                2e-6,
            )
            .await
        }
    }
}

/// q only, odd offset and padded rows; k None leaves the rest alone.
async fn rope_q_only_padded_rows(ctx: &Context, size: Size) -> CaseResult {
    let (heads, rows) = match size {
        Size::Small => (3, 5),
        Size::Full => (9, 37),
    };
    let layout = RopeLayout {
        heads,
        row_stride: heads * 32 + 13,
        q_offset: 7,
        k_offset: None,
    };
    check(
        ctx,
        "q only",
        layout,
        Table {
            head_dim: 32,
            max_period: 1e5,
        },
        rows,
        17,
        2e-6,
    )
    .await?;
    // k before q in the row.
    let layout = RopeLayout {
        heads,
        row_stride: 2 * heads * 32 + 2,
        q_offset: heads * 32 + 2,
        k_offset: Some(0),
    };
    check(
        ctx,
        "k before q",
        layout,
        Table {
            head_dim: 32,
            max_period: 1e4,
        },
        rows,
        1234,
        2e-6,
    )
    .await
}

/// Long sessions: absolute positions keep growing past the context (range reduction of large θ).
async fn rope_far_positions(ctx: &Context, _size: Size) -> CaseResult {
    check(
        ctx,
        "far",
        RopeLayout::fused_qkv(2, 64),
        Table {
            head_dim: 64,
            max_period: 1e4,
        },
        2,
        12_000,
        4e-6,
    )
    .await?;
    check(
        ctx,
        "very far",
        RopeLayout::fused_qkv(2, 64),
        Table {
            head_dim: 64,
            max_period: 1e4,
        },
        2,
        100_000,
        2e-5,
    )
    .await
}

async fn rope_rejects_bad_layouts(ctx: &Context, _size: Size) -> CaseResult {
    if Rope::new(ctx, 15, 1e4).is_ok() || Rope::new(ctx, 16, 0.0).is_ok() {
        return Err("odd head_dim or zero max_period accepted".into());
    }
    let rope = gpu(Rope::new(ctx, 16, 1e4))?;
    let xb = gpu(ctx.upload("x", &[0f32; 96]))?;
    let mut rec = Recorder::new(ctx, "test");
    let overlap = RopeLayout {
        heads: 2,
        row_stride: 96,
        q_offset: 0,
        k_offset: Some(16),
    };
    let r1 = rope.apply(&mut rec, xb.view(), &overlap, 1, 0);
    let r2 = rope.apply(&mut rec, xb.view(), &RopeLayout::fused_qkv(2, 16), 2, 0);
    let r3 = rope.apply(&mut rec, xb.view(), &RopeLayout::fused_qkv(3, 16), 1, 0);
    let ok = rope.apply(&mut rec, xb.view(), &RopeLayout::fused_qkv(2, 16), 1, 0);
    gpu(rec.submit())?;
    if r1.is_ok() || r2.is_ok() || r3.is_ok() {
        return Err(format!("bad launches accepted: {r1:?} {r2:?} {r3:?}"));
    }
    ok.map_err(|e| format!("good launch rejected: {e}"))
}
