//! Streaming causal Conv1d / ConvTranspose1d (spec §1.3) against a CPU reference that processes
//! the whole concatenated signal at once: every call's output of a stream of calls must match
//! its slice of the one-shot result, which proves the state handling (ping-pong, stream start,
//! P > T, replicate padding, partial carry).
use parle::gpu::{Context, GpuBuffer, Recorder};
use parle::kernels::conv::{
    self, reference, Conv1d, Conv1dState, ConvAlgo, ConvOpts, ConvTr1d, ConvTr1dState, ConvWeights,
    PadMode,
};

use crate::cases;
use crate::common::{assert_close, gpu, log, CaseResult, Rng, Size};

cases!(
    conv1d_first_k7,
    conv1d_resblock,
    conv1d_downsample_s4,
    conv1d_downsample_s5,
    conv1d_downsample_s6,
    conv1d_downsample_s8,
    conv1d_final_k3,
    conv1d_decoder_k7,
    conv1d_resample_replicate,
    conv1d_rows_input,
    conv1d_rows_output,
    conv1d_dilated,
    conv1d_groups,
    conv1d_pointwise,
    conv1d_reset,
    conv1d_bad_args,
    convtr_up_s8,
    convtr_up_s6,
    convtr_up_s5,
    convtr_depthwise,
    convtr_long_partial,
    convtr_rows_output,
    convtr_groups,
    convtr_reset,
    convtr_bad_args,
);

const ALGOS: [ConvAlgo; 2] = [ConvAlgo::Direct, ConvAlgo::Reduce];
const ALGOS1: [ConvAlgo; 3] = [ConvAlgo::Direct, ConvAlgo::Reduce, ConvAlgo::Tiled];
/// Long-T shapes on lavapipe: Auto's choice only (every kernel runs on the small shapes).
const FULL_LONG: [ConvAlgo; 1] = [ConvAlgo::Auto];

/// Absolute tolerance for a sum of `r` products of O(1/√r)-scaled terms, in f32.
fn atol(r: u32) -> f32 {
    1.5e-7 * (r as f32).sqrt() + 1e-6
}

fn slice_cols(x: &[f32], rows: usize, total: usize, off: usize, len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * len);
    for r in 0..rows {
        out.extend_from_slice(&x[r * total + off..r * total + off + len]);
    }
    out
}

/// `[rows, cols]` → `[cols, rows]`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| x[(i % rows) * cols + i / rows])
        .collect()
}

struct Conv1dRun<'a> {
    label: &'a str,
    conv: Conv1d,
    /// Input samples per call (each a multiple of the stride).
    chunks: &'a [u32],
    bias: bool,
    opts: ConvOpts,
    seed: u64,
}

/// Run a stream of calls (submitting after every second call, so that both several calls per
/// submit and state carried across submits are covered) and compare every call's output.
async fn run_conv1d(ctx: &Context, r: Conv1dRun<'_>) -> CaseResult {
    let c = r.conv;
    let total: u32 = r.chunks.iter().sum();
    let (c_in, c_out) = (c.c_in as usize, c.c_out as usize);
    let red = c.c_in / c.groups * c.kernel;
    let mut rng = Rng::new(r.seed);
    let w = rng.vec(c.weight_len(), 1.0 / (red as f32).sqrt());
    let b = r.bias.then(|| rng.vec(c_out, 0.5));
    let x = rng.vec(c_in * total as usize, 1.0);
    let t_out_total = (total / c.stride) as usize;
    let y0 = if r.opts.accumulate {
        rng.vec(c_out * t_out_total, 1.0)
    } else {
        vec![0.0; c_out * t_out_total]
    };
    let mut want = reference::conv1d(&c, &x, total as usize, &w, b.as_deref(), r.opts.elu_input);
    for (a, b) in want.iter_mut().zip(&y0) {
        *a += b;
    }
    let wb = gpu(ctx.upload("w", &w))?;
    let bb = match &b {
        Some(b) => Some(gpu(ctx.upload("bias", b))?),
        None => None,
    };
    let mut state = gpu(Conv1dState::new(ctx, r.label, c))?;
    let mut bufs: Vec<(GpuBuffer, GpuBuffer, usize, usize)> = Vec::new();
    let mut rec = Recorder::new(ctx, "conv1d test");
    let (mut off, mut off_out) = (0usize, 0usize);
    for (i, &tc) in r.chunks.iter().enumerate() {
        let tc_out = (tc / c.stride) as usize;
        let mut xc = slice_cols(&x, c_in, total as usize, off, tc as usize);
        if r.opts.input_rows {
            // Time-major [tc, c_in]: the conv must read the same signal.
            let t = tc as usize;
            xc = (0..t * c_in)
                .map(|i| xc[(i % c_in) * t + i / c_in])
                .collect();
        }
        let xb = gpu(ctx.upload("x", &xc))?;
        let mut y0c = slice_cols(&y0, c_out, t_out_total, off_out, tc_out);
        if r.opts.output_rows {
            // Time-major [tc_out, c_out]: what an accumulating conv adds to, too.
            y0c = transpose(&y0c, c_out, tc_out);
        }
        let yb = gpu(ctx.upload("y", &y0c))?;
        gpu(conv::conv1d(
            &mut rec,
            &mut state,
            &ConvWeights {
                weight: wb.view(),
                bias: bb.as_ref().map(|b| b.view()),
            },
            xb.view(),
            yb.view(),
            tc,
            r.opts,
        ))?;
        if i % 2 == 1 {
            gpu(rec.submit())?;
            rec = Recorder::new(ctx, "conv1d test");
        }
        bufs.push((xb, yb, off_out, tc_out));
        off += tc as usize;
        off_out += tc_out;
    }
    gpu(rec.submit())?;
    for (i, (_, yb, o, n)) in bufs.iter().enumerate() {
        let mut got = gpu(ctx.read_f32(yb).await)?;
        if r.opts.output_rows {
            got = transpose(&got, *n, c_out);
        }
        let want_i = slice_cols(&want, c_out, t_out_total, *o, *n);
        assert_close(
            &format!(
                "{} {:?} call {i} (T = {})",
                r.label, r.opts.algo, r.chunks[i]
            ),
            &got,
            &want_i,
            atol(red),
            1e-5,
        )?;
    }
    Ok(())
}

/// The same conv as a stream of `chunks` and as one call with the whole signal.
async fn conv1d_both(
    ctx: &Context,
    label: &str,
    conv: Conv1d,
    chunks: &[u32],
    opts: ConvOpts,
    algos: &[ConvAlgo],
) -> CaseResult {
    let total = [chunks.iter().sum::<u32>()];
    for (i, &algo) in algos.iter().enumerate() {
        for (j, ch) in [chunks, &total[..]].into_iter().enumerate() {
            run_conv1d(
                ctx,
                Conv1dRun {
                    label,
                    conv,
                    chunks: ch,
                    bias: (i + j) % 2 == 0,
                    opts: ConvOpts { algo, ..opts },
                    seed: 17 * i as u64 + j as u64 + label.len() as u64,
                },
            )
            .await?;
        }
    }
    Ok(())
}

async fn conv1d_first_k7(ctx: &Context, size: Size) -> CaseResult {
    // encoder.model.0: 1 → 64, K = 7 on 1920-sample frames.
    let (c, chunks, algos): (_, &[u32], &[ConvAlgo]) = match size {
        Size::Small => (Conv1d::new(1, 8, 7), &[24, 24, 8, 40, 3], &ALGOS1),
        Size::Full => (
            Conv1d::new(1, 64, 7),
            &[1920, 1920, 1920, 1920, 1920],
            &[ConvAlgo::Auto],
        ),
    };
    conv1d_both(ctx, "first k7", c, chunks, ConvOpts::default(), algos).await
}

async fn conv1d_resblock(ctx: &Context, size: Size) -> CaseResult {
    // ResBlock: ELU → K = 3 conv C → C/2, ELU → K = 1 conv C/2 → C added to the input.
    let (ch, chunks, algos): (u32, &[u32], &[ConvAlgo]) = match size {
        Size::Small => (8, &[10, 10, 3, 20], &ALGOS1),
        Size::Full => (64, &[480, 480, 240, 480, 7], &FULL_LONG),
    };
    let k3 = Conv1d::new(ch, ch / 2, 3);
    let k1 = Conv1d::new(ch / 2, ch, 1);
    let elu = ConvOpts {
        elu_input: true,
        ..Default::default()
    };
    let acc = ConvOpts {
        elu_input: true,
        accumulate: true,
        ..Default::default()
    };
    conv1d_both(ctx, "resblock k3", k3, chunks, elu, algos).await?;
    conv1d_both(ctx, "resblock k1 accumulate", k1, chunks, acc, algos).await
}

async fn conv1d_downsample_s4(ctx: &Context, size: Size) -> CaseResult {
    let (c, chunks, algos): (_, &[u32], &[ConvAlgo]) = match size {
        Size::Small => (Conv1d::new(8, 16, 8).stride(4), &[16, 8, 32, 4], &ALGOS1),
        Size::Full => (
            Conv1d::new(64, 128, 8).stride(4),
            &[480, 480, 64, 480, 4],
            &FULL_LONG,
        ),
    };
    let elu = ConvOpts {
        elu_input: true,
        ..Default::default()
    };
    conv1d_both(ctx, "down k8 s4", c, chunks, elu, algos).await
}

async fn conv1d_downsample_s5(ctx: &Context, size: Size) -> CaseResult {
    let (c, chunks, algos): (_, &[u32], &[ConvAlgo]) = match size {
        Size::Small => (Conv1d::new(4, 8, 10).stride(5), &[10, 5, 20], &ALGOS1),
        Size::Full => (
            Conv1d::new(128, 256, 10).stride(5),
            &[100, 100, 5, 100, 60],
            &FULL_LONG,
        ),
    };
    conv1d_both(ctx, "down k10 s5", c, chunks, ConvOpts::default(), algos).await
}

async fn conv1d_downsample_s6(ctx: &Context, size: Size) -> CaseResult {
    let (c, chunks, algos): (_, &[u32], &[ConvAlgo]) = match size {
        Size::Small => (Conv1d::new(4, 8, 12).stride(6), &[12, 6, 18], &ALGOS1),
        Size::Full => (
            Conv1d::new(256, 512, 12).stride(6),
            &[96, 96, 96],
            &[ConvAlgo::Auto],
        ),
    };
    conv1d_both(ctx, "down k12 s6", c, chunks, ConvOpts::default(), algos).await
}

async fn conv1d_downsample_s8(ctx: &Context, size: Size) -> CaseResult {
    // encoder.model.12: 512 → 1024, K = 16, S = 8, 16 samples (2 outputs) per 80 ms frame.
    let (c, chunks, algos): (_, &[u32], &[ConvAlgo]) = match size {
        Size::Small => (
            Conv1d::new(16, 4, 16).stride(8),
            &[16, 16, 8, 16, 16],
            &ALGOS1,
        ),
        Size::Full => (
            Conv1d::new(512, 1024, 16).stride(8),
            &[16, 16, 16, 16, 16],
            &[ConvAlgo::Auto],
        ),
    };
    let elu = ConvOpts {
        elu_input: true,
        ..Default::default()
    };
    conv1d_both(ctx, "down k16 s8", c, chunks, elu, algos).await
}

async fn conv1d_final_k3(ctx: &Context, size: Size) -> CaseResult {
    // encoder.model.14: 1024 → 512, K = 3, 2 samples per frame.
    let (c, algos): (_, &[ConvAlgo]) = match size {
        Size::Small => (Conv1d::new(16, 8, 3), &ALGOS1),
        Size::Full => (Conv1d::new(1024, 512, 3), &[ConvAlgo::Auto]),
    };
    let elu = ConvOpts {
        elu_input: true,
        ..Default::default()
    };
    conv1d_both(ctx, "final k3", c, &[2, 2, 2, 2, 2], elu, algos).await
}

async fn conv1d_decoder_k7(ctx: &Context, size: Size) -> CaseResult {
    // decoder.model.0: 512 → 1024, K = 7 at 25 Hz, 2 samples per frame (P = 6 > T).
    let (c, algos): (_, &[ConvAlgo]) = match size {
        Size::Small => (Conv1d::new(8, 16, 7), &ALGOS1),
        Size::Full => (Conv1d::new(512, 1024, 7), &[ConvAlgo::Auto]),
    };
    conv1d_both(
        ctx,
        "decoder k7",
        c,
        &[2, 2, 2, 2, 2],
        ConvOpts::default(),
        algos,
    )
    .await
}

async fn conv1d_resample_replicate(ctx: &Context, size: Size) -> CaseResult {
    // The 25 → 12.5 Hz downsample: 512 → 512, K = 4, S = 2, replicate padding, 2 per call.
    let ch = match size {
        Size::Small => 16,
        Size::Full => 512,
    };
    let c = Conv1d::new(ch, ch, 4)
        .stride(2)
        .pad_mode(PadMode::Replicate);
    conv1d_both(
        ctx,
        "resample k4 s2 replicate",
        c,
        &[2, 2, 2, 2, 2],
        ConvOpts::default(),
        &ALGOS1,
    )
    .await?;
    // Replicate with P = 6 > T = 2 (K = 4, dilation 2, S = 1).
    let c = Conv1d::new(8, 8, 4)
        .dilation(2)
        .pad_mode(PadMode::Replicate);
    conv1d_both(
        ctx,
        "replicate P6",
        c,
        &[2, 2, 1, 2, 5],
        ConvOpts::default(),
        &ALGOS1,
    )
    .await
}

/// A time-major `[T, C_in]` input (a codec transformer's rows, `ConvOpts::input_rows`) gives the
/// channel-major reference's result: the 25 → 12.5 Hz downsample (replicate padding, state
/// carried over calls) and the decoder's first conv (K = 7, C_in ≠ C_out, ELU input), odd
/// channel counts at the small size.
async fn conv1d_rows_input(ctx: &Context, size: Size) -> CaseResult {
    let (down, first) = match size {
        Size::Small => (Conv1d::new(13, 13, 4).stride(2), Conv1d::new(13, 7, 7)),
        Size::Full => (
            Conv1d::new(512, 512, 4).stride(2),
            Conv1d::new(512, 1024, 7),
        ),
    };
    let rows = ConvOpts {
        input_rows: true,
        ..Default::default()
    };
    conv1d_both(
        ctx,
        "rows input downsample",
        down.pad_mode(PadMode::Replicate),
        &[2, 2, 4, 2],
        rows,
        &ALGOS1,
    )
    .await?;
    conv1d_both(
        ctx,
        "rows input k7 elu",
        first,
        &[2, 3, 2],
        ConvOpts {
            elu_input: true,
            ..rows
        },
        &ALGOS1,
    )
    .await
}

/// A time-major `[T_out, C_out]` output (the rows a codec transformer runs on,
/// `ConvOpts::output_rows`) holds the channel-major reference's result: SEANet's last encoder
/// conv (K = 3, ELU input) with every kernel, and accumulating into rows (rows in and out, as a
/// conv between two transformers would), odd channel counts at the small size.
async fn conv1d_rows_output(ctx: &Context, size: Size) -> CaseResult {
    let last = match size {
        Size::Small => Conv1d::new(24, 13, 3),
        Size::Full => Conv1d::new(1024, 512, 3),
    };
    let rows = ConvOpts {
        output_rows: true,
        ..Default::default()
    };
    conv1d_both(
        ctx,
        "rows output k3 elu",
        last,
        &[2, 3, 2],
        ConvOpts {
            elu_input: true,
            ..rows
        },
        &ALGOS1,
    )
    .await?;
    conv1d_both(
        ctx,
        "rows in and out, accumulate",
        Conv1d::new(13, 7, 2).stride(2),
        &[4, 2, 2],
        ConvOpts {
            input_rows: true,
            accumulate: true,
            ..rows
        },
        &ALGOS1,
    )
    .await
}

async fn conv1d_dilated(ctx: &Context, size: Size) -> CaseResult {
    let c = match size {
        Size::Small => Conv1d::new(4, 8, 3).dilation(3),
        Size::Full => Conv1d::new(32, 16, 3).dilation(3),
    };
    conv1d_both(
        ctx,
        "k3 d3 (P = 6)",
        c,
        &[2, 2, 1, 9, 2],
        ConvOpts::default(),
        &ALGOS1,
    )
    .await?;
    let c = Conv1d::new(6, 12, 5).dilation(2).stride(2);
    conv1d_both(
        ctx,
        "k5 d2 s2",
        c,
        &[2, 4, 2, 70],
        ConvOpts::default(),
        &ALGOS1,
    )
    .await
}

async fn conv1d_groups(ctx: &Context, size: Size) -> CaseResult {
    let n = match size {
        Size::Small => 1,
        Size::Full => 4,
    };
    // C_out/G = 4 (4 channels per invocation in the direct kernel).
    let c = Conv1d::new(8 * n, 16 * n, 5).groups(4 * n);
    conv1d_both(
        ctx,
        "groups cout/g=4",
        c,
        &[3, 3, 70, 1],
        ConvOpts::default(),
        &ALGOS1,
    )
    .await?;
    // C_out/G = 6, C_in/G = 3.
    let c = Conv1d::new(6, 12, 3).groups(2).stride(2);
    conv1d_both(
        ctx,
        "groups cout/g=6",
        c,
        &[2, 4, 66],
        ConvOpts::default(),
        &ALGOS1,
    )
    .await?;
    // C_out/G = 32: the tiled kernel within one group.
    let c = Conv1d::new(16, 64, 3).groups(2);
    conv1d_both(
        ctx,
        "groups cout/g=32",
        c,
        &[3, 1, 70],
        ConvOpts::default(),
        &ALGOS1,
    )
    .await?;
    // Depthwise.
    let c = Conv1d::new(10 * n, 10 * n, 3).groups(10 * n);
    conv1d_both(
        ctx,
        "depthwise",
        c,
        &[1, 2, 67],
        ConvOpts::default(),
        &ALGOS1,
    )
    .await
}

async fn conv1d_pointwise(ctx: &Context, size: Size) -> CaseResult {
    // P = 0: the quantizer projections (K = 1) and K = S.
    let (a, b) = match size {
        Size::Small => (16, 8),
        Size::Full => (512, 256),
    };
    let opts = ConvOpts::default();
    conv1d_both(
        ctx,
        "input_proj k1",
        Conv1d::new(a, b, 1),
        &[1, 1, 1, 3],
        opts,
        &ALGOS1,
    )
    .await?;
    conv1d_both(
        ctx,
        "output_proj k1",
        Conv1d::new(b, a, 1),
        &[1, 1, 1, 3],
        opts,
        &ALGOS1,
    )
    .await?;
    let c = Conv1d::new(4, 8, 2).stride(2);
    conv1d_both(ctx, "k2 s2 (P = 0)", c, &[2, 4, 130], opts, &ALGOS1).await
}

/// A stream, a reset, and the same stream again: both must match the fresh-stream reference.
async fn conv1d_reset(ctx: &Context, _size: Size) -> CaseResult {
    for mode in [PadMode::Zeros, PadMode::Replicate] {
        let c = Conv1d::new(4, 6, 5).stride(1).pad_mode(mode);
        let t = 3u32;
        let mut rng = Rng::new(99);
        let w = rng.vec(c.weight_len(), 0.4);
        let x = rng.vec(4 * 3 * t as usize, 1.0);
        let want = reference::conv1d(&c, &x, 3 * t as usize, &w, None, false);
        let wb = gpu(ctx.upload("w", &w))?;
        let mut state = gpu(Conv1dState::new(ctx, "reset", c))?;
        for round in 0..2 {
            // Round 1: the state buffers hold round 0's state, which must not matter after a reset.
            state.reset();
            let mut rec = Recorder::new(ctx, "reset");
            let mut ys = Vec::new();
            for i in 0..3 {
                let xb = gpu(ctx.upload(
                    "x",
                    &slice_cols(&x, 4, 3 * t as usize, i * t as usize, t as usize),
                ))?;
                let yb = gpu(ctx.upload("y", &vec![0f32; 6 * t as usize]))?;
                gpu(conv::conv1d(
                    &mut rec,
                    &mut state,
                    &ConvWeights {
                        weight: wb.view(),
                        bias: None,
                    },
                    xb.view(),
                    yb.view(),
                    t,
                    ConvOpts::default(),
                ))?;
                ys.push((xb, yb));
            }
            gpu(rec.submit())?;
            for (i, (_, yb)) in ys.iter().enumerate() {
                let got = gpu(ctx.read_f32(yb).await)?;
                let want_i = slice_cols(&want, 6, 3 * t as usize, i * t as usize, t as usize);
                assert_close(
                    &format!("reset {mode:?} round {round} call {i}"),
                    &got,
                    &want_i,
                    1e-6,
                    1e-5,
                )?;
            }
        }
    }
    Ok(())
}

async fn conv1d_bad_args(ctx: &Context, _size: Size) -> CaseResult {
    let c = Conv1d::new(4, 4, 4).stride(2);
    let mut state = gpu(Conv1dState::new(ctx, "bad", c))?;
    let x = gpu(ctx.upload("x", &[0f32; 16]))?;
    let w = gpu(ctx.upload("w", &[0f32; 64]))?;
    let y = gpu(ctx.upload("y", &[0f32; 8]))?;
    let mut rec = Recorder::new(ctx, "bad");
    let o = ConvOpts::default();
    let expect_err = |what: &str, r: parle::gpu::GpuResult<()>| match r {
        Ok(()) => Err(format!("{what}: expected an error")),
        Err(e) => {
            log(&format!("     expected error ({what}): {e}"));
            Ok(())
        }
    };
    let r = conv::conv1d(
        &mut rec,
        &mut state,
        &ConvWeights {
            weight: w.view(),
            bias: None,
        },
        x.view(),
        y.view(),
        3,
        o,
    );
    expect_err("T not a multiple of S", r)?;
    let r = conv::conv1d(
        &mut rec,
        &mut state,
        &ConvWeights {
            weight: w.view(),
            bias: None,
        },
        x.view(),
        y.view(),
        8,
        o,
    );
    expect_err("y too small", r)?;
    let r = conv::conv1d(
        &mut rec,
        &mut state,
        &ConvWeights {
            weight: w.view(),
            bias: None,
        },
        y.view(),
        y.view(),
        2,
        o,
    );
    expect_err("x aliases y", r)?;
    let r = conv::conv1d(
        &mut rec,
        &mut state,
        &ConvWeights {
            weight: w.slice(0, 16),
            bias: None,
        },
        x.view(),
        y.view(),
        2,
        o,
    );
    expect_err("w too small", r)?;
    expect_err(
        "K_eff < S",
        Conv1dState::new(ctx, "bad", Conv1d::new(4, 4, 2).stride(3)).map(|_| ()),
    )?;
    expect_err(
        "groups",
        Conv1dState::new(ctx, "bad", Conv1d::new(6, 4, 2).groups(4)).map(|_| ()),
    )?;
    if !state.is_fresh() {
        return Err("a rejected call advanced the state".into());
    }
    drop(rec);
    Ok(())
}

struct ConvTrRun<'a> {
    label: &'a str,
    conv: ConvTr1d,
    chunks: &'a [u32],
    bias: bool,
    opts: ConvOpts,
    seed: u64,
}

async fn run_convtr(ctx: &Context, r: ConvTrRun<'_>) -> CaseResult {
    let c = r.conv;
    let total: u32 = r.chunks.iter().sum();
    let (c_in, c_out, s) = (c.c_in as usize, c.c_out as usize, c.stride as usize);
    // Each output sums about C_in/G · K/S products.
    let red = (c.c_in / c.groups) * c.kernel.div_ceil(c.stride);
    let mut rng = Rng::new(r.seed);
    let w = rng.vec(c.weight_len(), 1.0 / (red as f32).sqrt());
    let b = r.bias.then(|| rng.vec(c_out, 0.5));
    let x = rng.vec(c_in * total as usize, 1.0);
    let want = reference::conv_tr1d(&c, &x, total as usize, &w, b.as_deref(), r.opts.elu_input);
    let out_total = total as usize * s;
    let wb = gpu(ctx.upload("w", &w))?;
    let bb = match &b {
        Some(b) => Some(gpu(ctx.upload("bias", b))?),
        None => None,
    };
    let mut state = gpu(ConvTr1dState::new(ctx, r.label, c))?;
    let mut bufs: Vec<(GpuBuffer, GpuBuffer, usize, usize)> = Vec::new();
    let mut rec = Recorder::new(ctx, "convtr test");
    let mut off = 0usize;
    for (i, &tc) in r.chunks.iter().enumerate() {
        let xb = gpu(ctx.upload("x", &slice_cols(&x, c_in, total as usize, off, tc as usize)))?;
        let yb = gpu(ctx.upload("y", &vec![f32::NAN; c_out * tc as usize * s]))?;
        gpu(conv::conv_tr1d(
            &mut rec,
            &mut state,
            &ConvWeights {
                weight: wb.view(),
                bias: bb.as_ref().map(|b| b.view()),
            },
            xb.view(),
            yb.view(),
            tc,
            r.opts,
        ))?;
        if i % 2 == 1 {
            gpu(rec.submit())?;
            rec = Recorder::new(ctx, "convtr test");
        }
        bufs.push((xb, yb, off * s, tc as usize * s));
        off += tc as usize;
    }
    gpu(rec.submit())?;
    for (i, (_, yb, o, n)) in bufs.iter().enumerate() {
        let mut got = gpu(ctx.read_f32(yb).await)?;
        if r.opts.output_rows {
            got = transpose(&got, *n, c_out);
        }
        let want_i = slice_cols(&want, c_out, out_total, *o, *n);
        assert_close(
            &format!(
                "{} {:?} call {i} (T = {})",
                r.label, r.opts.algo, r.chunks[i]
            ),
            &got,
            &want_i,
            atol(red),
            1e-5,
        )?;
    }
    Ok(())
}

async fn convtr_both(
    ctx: &Context,
    label: &str,
    conv: ConvTr1d,
    chunks: &[u32],
    opts: ConvOpts,
    algos: &[ConvAlgo],
) -> CaseResult {
    let total = [chunks.iter().sum::<u32>()];
    for (i, &algo) in algos.iter().enumerate() {
        for (j, ch) in [chunks, &total[..]].into_iter().enumerate() {
            run_convtr(
                ctx,
                ConvTrRun {
                    label,
                    conv,
                    chunks: ch,
                    bias: (i + j) % 2 == 0,
                    opts: ConvOpts { algo, ..opts },
                    seed: 31 * i as u64 + j as u64 + label.len() as u64,
                },
            )
            .await?;
        }
    }
    Ok(())
}

/// A time-major `[T·S, C_out]` output (`ConvOpts::output_rows`): Mimi's upsampling, a depthwise
/// conv-transpose (K = 2S) called with one input at a time, and a dense one with partials carried.
async fn convtr_rows_output(ctx: &Context, size: Size) -> CaseResult {
    let (up, dense) = match size {
        Size::Small => (
            ConvTr1d::new(12, 12, 4, 2).groups(12),
            ConvTr1d::new(10, 6, 6, 2),
        ),
        Size::Full => (
            ConvTr1d::new(512, 512, 4, 2).groups(512),
            ConvTr1d::new(64, 40, 6, 2),
        ),
    };
    let rows = ConvOpts {
        output_rows: true,
        ..Default::default()
    };
    convtr_both(ctx, "rows output upsample", up, &[1, 1, 1, 1], rows, &ALGOS).await?;
    convtr_both(
        ctx,
        "rows output elu",
        dense,
        &[2, 1, 3],
        ConvOpts {
            elu_input: true,
            ..rows
        },
        &ALGOS,
    )
    .await
}

async fn convtr_up_s8(ctx: &Context, size: Size) -> CaseResult {
    // decoder.model.2: 1024 → 512, K = 16, S = 8, 2 inputs per frame, ELU before.
    let (c, algos): (_, &[ConvAlgo]) = match size {
        Size::Small => (ConvTr1d::new(40, 8, 16, 8), &ALGOS),
        Size::Full => (ConvTr1d::new(1024, 512, 16, 8), &[ConvAlgo::Auto]),
    };
    let elu = ConvOpts {
        elu_input: true,
        ..Default::default()
    };
    convtr_both(ctx, "up k16 s8", c, &[2, 2, 2, 2, 2], elu, algos).await
}

async fn convtr_up_s6(ctx: &Context, size: Size) -> CaseResult {
    // decoder.model.5: 512 → 256, K = 12, S = 6, 16 inputs per frame.
    let (c, chunks, algos): (_, &[u32], &[ConvAlgo]) = match size {
        Size::Small => (ConvTr1d::new(8, 4, 12, 6), &[16, 16, 3], &ALGOS),
        Size::Full => (ConvTr1d::new(512, 256, 12, 6), &[16, 16, 16], &ALGOS),
    };
    convtr_both(ctx, "up k12 s6", c, chunks, ConvOpts::default(), algos).await
}

async fn convtr_up_s5(ctx: &Context, size: Size) -> CaseResult {
    // decoder.model.8: 256 → 128, K = 10, S = 5 (96 inputs per frame; shorter calls here).
    let (c, chunks): (_, &[u32]) = match size {
        Size::Small => (ConvTr1d::new(4, 8, 10, 5), &[7, 1, 20]),
        Size::Full => (ConvTr1d::new(256, 128, 10, 5), &[24, 24, 1, 24]),
    };
    convtr_both(
        ctx,
        "up k10 s5",
        c,
        chunks,
        ConvOpts::default(),
        &[ConvAlgo::Direct],
    )
    .await?;
    let c = ConvTr1d::new(8, 6, 8, 4);
    convtr_both(ctx, "up k8 s4", c, &[5, 1, 40], ConvOpts::default(), &ALGOS).await
}

async fn convtr_depthwise(ctx: &Context, size: Size) -> CaseResult {
    // The 12.5 → 25 Hz upsample: depthwise (groups = C = 512), K = 4, S = 2, 1 input per call.
    let ch = match size {
        Size::Small => 16,
        Size::Full => 512,
    };
    let c = ConvTr1d::new(ch, ch, 4, 2).groups(ch);
    convtr_both(
        ctx,
        "upsample depthwise",
        c,
        &[1, 1, 1, 1, 1],
        ConvOpts::default(),
        &ALGOS,
    )
    .await
}

async fn convtr_long_partial(ctx: &Context, _size: Size) -> CaseResult {
    // K − S = 6 > T·S = 2: part of the old partial is carried into the new one.
    let c = ConvTr1d::new(6, 4, 8, 2);
    convtr_both(
        ctx,
        "k8 s2 (K−S > T·S)",
        c,
        &[1, 1, 2, 1, 9],
        ConvOpts::default(),
        &ALGOS,
    )
    .await?;
    // K = S: no partial at all; S = 1 (K − S = K − 1).
    let c = ConvTr1d::new(5, 3, 4, 4);
    convtr_both(
        ctx,
        "k4 s4 (K = S)",
        c,
        &[1, 2, 1],
        ConvOpts::default(),
        &ALGOS,
    )
    .await?;
    let c = ConvTr1d::new(5, 3, 3, 1);
    convtr_both(ctx, "k3 s1", c, &[1, 2, 5], ConvOpts::default(), &ALGOS).await?;
    // K > 32: one output channel per workgroup, two column passes.
    let c = ConvTr1d::new(4, 3, 40, 20);
    convtr_both(ctx, "k40 s20", c, &[1, 2, 1], ConvOpts::default(), &ALGOS).await
}

async fn convtr_groups(ctx: &Context, _size: Size) -> CaseResult {
    let c = ConvTr1d::new(8, 6, 6, 3).groups(2);
    convtr_both(ctx, "groups 2", c, &[2, 1, 3], ConvOpts::default(), &ALGOS).await?;
    let elu = ConvOpts {
        elu_input: true,
        ..Default::default()
    };
    let c = ConvTr1d::new(12, 4, 4, 2).groups(4);
    convtr_both(ctx, "groups 4 elu", c, &[1, 3, 2], elu, &ALGOS).await
}

async fn convtr_reset(ctx: &Context, _size: Size) -> CaseResult {
    let c = ConvTr1d::new(3, 2, 4, 2);
    let t = 2u32;
    let mut rng = Rng::new(7);
    let w = rng.vec(c.weight_len(), 0.5);
    let x = rng.vec(3 * 3 * t as usize, 1.0);
    let want = reference::conv_tr1d(&c, &x, 3 * t as usize, &w, None, false);
    let wb = gpu(ctx.upload("w", &w))?;
    let mut state = gpu(ConvTr1dState::new(ctx, "reset", c))?;
    for round in 0..2 {
        state.reset();
        let mut rec = Recorder::new(ctx, "reset");
        let mut ys = Vec::new();
        for i in 0..3 {
            let xb = gpu(ctx.upload(
                "x",
                &slice_cols(&x, 3, 3 * t as usize, i * t as usize, t as usize),
            ))?;
            let yb = gpu(ctx.upload("y", &vec![0f32; 2 * 2 * t as usize]))?;
            gpu(conv::conv_tr1d(
                &mut rec,
                &mut state,
                &ConvWeights {
                    weight: wb.view(),
                    bias: None,
                },
                xb.view(),
                yb.view(),
                t,
                ConvOpts::default(),
            ))?;
            ys.push((xb, yb));
        }
        gpu(rec.submit())?;
        for (i, (_, yb)) in ys.iter().enumerate() {
            let got = gpu(ctx.read_f32(yb).await)?;
            let n = 2 * t as usize;
            let want_i = slice_cols(&want, 2, 3 * n, i * n, n);
            assert_close(
                &format!("convtr reset round {round} call {i}"),
                &got,
                &want_i,
                1e-6,
                1e-5,
            )?;
        }
    }
    Ok(())
}

async fn convtr_bad_args(ctx: &Context, _size: Size) -> CaseResult {
    let bad = |what: &str, ok: bool| {
        if ok {
            Err(format!("{what}: expected an error"))
        } else {
            Ok(())
        }
    };
    bad(
        "K < S",
        ConvTr1dState::new(ctx, "bad", ConvTr1d::new(4, 4, 2, 3)).is_ok(),
    )?;
    let c = ConvTr1d::new(4, 4, 4, 2);
    let mut state = gpu(ConvTr1dState::new(ctx, "bad", c))?;
    let x = gpu(ctx.upload("x", &[0f32; 8]))?;
    let w = gpu(ctx.upload("w", &[0f32; 64]))?;
    let y = gpu(ctx.upload("y", &[0f32; 16]))?;
    let mut rec = Recorder::new(ctx, "bad");
    let o = ConvOpts::default();
    bad(
        "y too small",
        conv::conv_tr1d(
            &mut rec,
            &mut state,
            &ConvWeights {
                weight: w.view(),
                bias: None,
            },
            x.view(),
            y.view(),
            3,
            o,
        )
        .is_ok(),
    )?;
    bad(
        "accumulate",
        conv::conv_tr1d(
            &mut rec,
            &mut state,
            &ConvWeights {
                weight: w.view(),
                bias: None,
            },
            x.view(),
            y.view(),
            2,
            ConvOpts {
                accumulate: true,
                ..o
            },
        )
        .is_ok(),
    )?;
    bad(
        "time-major input",
        conv::conv_tr1d(
            &mut rec,
            &mut state,
            &ConvWeights {
                weight: w.view(),
                bias: None,
            },
            x.view(),
            y.view(),
            2,
            ConvOpts {
                input_rows: true,
                ..o
            },
        )
        .is_ok(),
    )?;
    let big = ConvTr1d::new(4, 4, 80, 40);
    let mut s2 = gpu(ConvTr1dState::new(ctx, "bad", big))?;
    let wbig = gpu(ctx.upload("w", &vec![0f32; big.weight_len()]))?;
    let ybig = gpu(ctx.upload("y", &vec![0f32; 4 * 40]))?;
    bad(
        "Reduce with K > 64",
        conv::conv_tr1d(
            &mut rec,
            &mut s2,
            &ConvWeights {
                weight: wbig.view(),
                bias: None,
            },
            x.slice(0, 16),
            ybig.view(),
            1,
            ConvOpts {
                algo: ConvAlgo::Reduce,
                ..o
            },
        )
        .is_ok(),
    )?;
    if !state.is_fresh() || !s2.is_fresh() {
        return Err("a rejected call advanced the state".into());
    }
    Ok(())
}
