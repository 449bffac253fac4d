use parle::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use parle::kernels::rvq::{
    self, reference, Codebooks, CodesLayout, CodesView, EncodeScratch, Frames, IoLayout,
};

use crate::cases;
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

mod streams;
use streams::{bad_streams, split_streams};

cases!(
    mimi_split_rvq_t1,
    split_streams,
    bad_streams,
    channel_major_t3_strided_codes,
    exact_ties_lowest_index,
    levels_32_small,
    decode_out_of_range_codes,
    bad_arguments
);

/// Codebooks `[levels, bins, dim]` with level scales shrinking like a trained RVQ's, and `t`
/// frames `[t, dim]` built from planted codes plus noise.
fn model(rng: &mut Rng, levels: usize, bins: usize, dim: usize, t: usize) -> (Vec<f32>, Vec<f32>) {
    let mut cb = Vec::with_capacity(levels * bins * dim);
    for l in 0..levels {
        cb.extend(rng.vec(bins * dim, 0.8f32.powi(l as i32)));
    }
    let mut x = rng.vec(t * dim, 0.05);
    for ti in 0..t {
        for l in 0..levels {
            let c = rng.below(bins as u32) as usize;
            for d in 0..dim {
                x[ti * dim + d] += cb[(l * bins + c) * dim + d];
            }
        }
    }
    (cb, x)
}

/// Compare codes; on a mismatch report both candidates' f64 distances at that step.
/// What was encoded: `t` frames of `dim` in `x`, codebooks `cb` of `bins` rows per level.
struct Encoded<'a> {
    x: &'a [f32],
    t: usize,
    dim: usize,
    cb: &'a [f32],
    bins: usize,
}

fn check_codes(what: &str, got: &[u32], want: &[u32], enc: &Encoded) -> CaseResult {
    let Encoded {
        x,
        t,
        dim,
        cb,
        bins,
    } = *enc;
    let levels = want.len() / t;
    for ti in 0..t {
        let mut r: Vec<f64> = x[ti * dim..(ti + 1) * dim]
            .iter()
            .map(|&v| v as f64)
            .collect();
        for l in 0..levels {
            let (g, w) = (got[l * t + ti], want[l * t + ti]);
            let book = &cb[l * bins * dim..(l + 1) * bins * dim];
            if g != w {
                let dist = |c: u32| -> f64 {
                    if c as usize >= bins {
                        return f64::NAN;
                    }
                    r.iter()
                        .zip(&book[c as usize * dim..(c as usize + 1) * dim])
                        .map(|(&a, &b)| (a - b as f64).powi(2))
                        .sum()
                };
                return Err(format!(
                    "{what}: code (level {l}, frame {ti}) is {g} (distance {:.9e}), want {w} (distance {:.9e})",
                    dist(g),
                    dist(w)
                ));
            }
            for (rv, &e) in r
                .iter_mut()
                .zip(&book[w as usize * dim..(w as usize + 1) * dim])
            {
                *rv -= e as f64;
            }
        }
    }
    Ok(())
}

fn zeros(ctx: &Context, label: &str, bytes: u64) -> Result<GpuBuffer, String> {
    gpu(ctx.create_buffer(label, bytes, BufferUsage::Storage))
}

/// Mimi's split RVQ at its real size: a 1-level "semantic" RVQ and a 7-level "acoustic" RVQ
/// (2048 bins × 256 each) encode the same latent frame into one `[8, T]` code buffer, then each
/// decodes its levels.
async fn mimi_split_rvq_t1(ctx: &Context, size: Size) -> CaseResult {
    let (bins, dim) = match size {
        Size::Small => (200usize, 32usize),
        Size::Full => (2048, 256),
    };
    let t = 1usize;
    let mut rng = Rng::new(31);
    let (cb_rest, x) = model(&mut rng, 7, bins, dim, t);
    let cb_first = rng.vec(bins * dim, 1.0);
    let (xb, rb, fb) = (
        gpu(ctx.upload("x", &x))?,
        gpu(ctx.upload("cb rest", &cb_rest))?,
        gpu(ctx.upload("cb first", &cb_first))?,
    );
    let codes = gpu(ctx.upload("codes", &vec![u32::MAX; 8 * t]))?;
    let residual = zeros(ctx, "residual", rvq::residual_bytes(t as u32, dim as u32))?;
    let parts = zeros(ctx, "parts", rvq::parts_bytes(t as u32, bins as u32))?;
    let q_first = zeros(ctx, "q first", (t * dim * 4) as u64)?;
    let q_rest = zeros(ctx, "q rest", (t * dim * 4) as u64)?;
    let first = Codebooks {
        view: fb.view(),
        levels: 1,
        bins: bins as u32,
        dim: dim as u32,
    };
    let rest = Codebooks {
        view: rb.view(),
        levels: 7,
        bins: bins as u32,
        dim: dim as u32,
    };
    let layout = CodesLayout::levels_major(t as u32);
    let io = IoLayout::time_major(dim as u32);
    let mut rec = Recorder::new(ctx, "test");
    gpu(rvq::encode(
        &mut rec,
        &first,
        1,
        Frames {
            view: xb.view(),
            layout: io,
            frames: t as u32,
        },
        CodesView {
            view: codes.view(),
            layout,
        },
        EncodeScratch {
            residual: residual.view(),
            parts: parts.view(),
        },
    ))?;
    gpu(rvq::encode(
        &mut rec,
        &rest,
        7,
        Frames {
            view: xb.view(),
            layout: io,
            frames: t as u32,
        },
        CodesView {
            view: codes.view(),
            layout: layout.skip_levels(1),
        },
        EncodeScratch {
            residual: residual.view(),
            parts: parts.view(),
        },
    ))?;
    gpu(rvq::decode(
        &mut rec,
        &first,
        1,
        CodesView {
            view: codes.view(),
            layout,
        },
        Frames {
            view: q_first.view(),
            layout: io,
            frames: t as u32,
        },
    ))?;
    gpu(rvq::decode(
        &mut rec,
        &rest,
        7,
        CodesView {
            view: codes.view(),
            layout: layout.skip_levels(1),
        },
        Frames {
            view: q_rest.view(),
            layout: io,
            frames: t as u32,
        },
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_u32(&codes).await)?;
    let want_first = reference::encode(&x, t, dim, &cb_first, bins, 1);
    let want_rest = reference::encode(&x, t, dim, &cb_rest, bins, 7);
    check_codes(
        "semantic",
        &got[..t],
        &want_first,
        &Encoded {
            x: &x,
            t,
            dim,
            cb: &cb_first,
            bins,
        },
    )?;
    check_codes(
        "acoustic",
        &got[t..],
        &want_rest,
        &Encoded {
            x: &x,
            t,
            dim,
            cb: &cb_rest,
            bins,
        },
    )?;

    let q = gpu(ctx.read_f32(&q_first).await)?;
    let want = reference::decode(&want_first, t, dim, &cb_first, bins, 1);
    assert_close("decode semantic", &q, &want, 0.0, 0.0)?;
    let q = gpu(ctx.read_f32(&q_rest).await)?;
    let want = reference::decode(&want_rest, t, dim, &cb_rest, bins, 7);
    assert_close("decode acoustic", &q, &want, 1e-6, 1e-5)?;
    // The acoustic encode ran last: its residual is x − quantized.
    let res = gpu(ctx.read_f32(&residual).await)?[..t * dim].to_vec();
    let want_res: Vec<f32> = x.iter().zip(&want).map(|(&a, &b)| a - b).collect();
    assert_close("final residual", &res, &want_res, 1e-5, 1e-5)
}

/// T = 3 frames read from Mimi's `[dim, T]` layout at an offset, codes written with a custom
/// layout (frames outermost, level stride 1, after a header), 8 levels at the real size.
async fn channel_major_t3_strided_codes(ctx: &Context, size: Size) -> CaseResult {
    let (levels, bins, dim) = match size {
        Size::Small => (4usize, 100usize, 16usize),
        Size::Full => (8, 2048, 256),
    };
    let t = 3usize;
    let mut rng = Rng::new(32);
    let (cb, x) = model(&mut rng, levels, bins, dim, t);
    let off = 10usize;
    let mut xc = vec![f32::NAN; off + dim * t];
    for ti in 0..t {
        for d in 0..dim {
            xc[off + d * t + ti] = x[ti * dim + d];
        }
    }
    let (xb, cbb) = (gpu(ctx.upload("x", &xc))?, gpu(ctx.upload("cb", &cb))?);
    let code_off = 3u32;
    let layout = CodesLayout {
        offset: code_off,
        level_stride: 1,
        t_stride: levels as u32 + 2,
    };
    let codes = gpu(ctx.upload(
        "codes",
        &vec![u32::MAX; code_off as usize + t * (levels + 2)],
    ))?;
    let residual = zeros(ctx, "residual", rvq::residual_bytes(t as u32, dim as u32))?;
    let parts = zeros(ctx, "parts", rvq::parts_bytes(t as u32, bins as u32))?;
    let book = Codebooks {
        view: cbb.view(),
        levels: levels as u32,
        bins: bins as u32,
        dim: dim as u32,
    };
    let io = IoLayout {
        offset: off as u32,
        ..IoLayout::channel_major(t as u32)
    };
    let qb = gpu(ctx.upload("q", &vec![f32::NAN; off + dim * t]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(rvq::encode(
        &mut rec,
        &book,
        levels as u32,
        Frames {
            view: xb.view(),
            layout: io,
            frames: t as u32,
        },
        CodesView {
            view: codes.view(),
            layout,
        },
        EncodeScratch {
            residual: residual.view(),
            parts: parts.view(),
        },
    ))?;
    gpu(rvq::decode(
        &mut rec,
        &book,
        levels as u32,
        CodesView {
            view: codes.view(),
            layout,
        },
        Frames {
            view: qb.view(),
            layout: io,
            frames: t as u32,
        },
    ))?;
    gpu(rec.submit())?;
    let raw = gpu(ctx.read_u32(&codes).await)?;
    let mut got = vec![0u32; levels * t];
    for l in 0..levels {
        for ti in 0..t {
            got[l * t + ti] = raw[code_off as usize + l + ti * (levels + 2)];
        }
    }
    for ti in 0..t {
        for pad in levels..levels + 2 {
            if raw[code_off as usize + pad + ti * (levels + 2)] != u32::MAX {
                return Err("a code was written outside its layout".into());
            }
        }
    }
    let want = reference::encode(&x, t, dim, &cb, bins, levels);
    check_codes(
        "T=3",
        &got,
        &want,
        &Encoded {
            x: &x,
            t,
            dim,
            cb: &cb,
            bins,
        },
    )?;
    let q = gpu(ctx.read_f32(&qb).await)?;
    let want_q = reference::decode(&want, t, dim, &cb, bins, levels);
    let mut got_q = vec![0f32; t * dim];
    for ti in 0..t {
        for d in 0..dim {
            got_q[ti * dim + d] = q[off + d * t + ti];
        }
    }
    assert_close("decode [dim, T]", &got_q, &want_q, 1e-6, 1e-5)?;
    if q[..off].iter().any(|v| !v.is_nan()) {
        return Err("decode wrote before its offset".into());
    }
    Ok(())
}

/// Duplicate codebook rows give exactly equal distances; the lowest index must win, across
/// workgroups (rows 37 / 700 / 1500 / 1999), within one (rows 4 / 5), and when every row ties.
async fn exact_ties_lowest_index(ctx: &Context, size: Size) -> CaseResult {
    let (bins, dim) = match size {
        Size::Small => (300usize, 32usize),
        Size::Full => (2048, 256),
    };
    let (levels, t) = (3usize, 2usize);
    let mut rng = Rng::new(33);
    let mut cb = vec![0f32; levels * bins * dim];
    let v = rng.vec(dim, 1.0);
    let dups0: Vec<usize> = [1500usize, 37, 700, 1999]
        .iter()
        .map(|&j| j % bins)
        .collect();
    for j in 0..bins {
        let row = &mut cb[j * dim..(j + 1) * dim];
        if dups0.contains(&j) {
            row.copy_from_slice(&v);
        } else {
            for (d, r) in row.iter_mut().enumerate() {
                *r = v[d] + 3.0 + rng.uniform();
            }
        }
    }
    // Level 1: rows 4, 5 and 260 are zero (so is the frame-0 residual); the others are far.
    let w = rng.vec(dim, 0.01);
    for j in 0..bins {
        let row = &mut cb[(bins + j) * dim..(bins + j + 1) * dim];
        if ![4, 5, 260 % bins].contains(&j) {
            for r in row.iter_mut() {
                *r = 2.0 + rng.uniform();
            }
        }
    }
    // Level 2: every row identical.
    for j in 0..bins {
        cb[(2 * bins + j) * dim..(2 * bins + j + 1) * dim].copy_from_slice(&w);
    }
    // Frame 0 is exactly the duplicated row (distance 0); frame 1 is near it.
    let mut x = v.clone();
    x.extend(v.iter().zip(rng.vec(dim, 0.01)).map(|(a, b)| a + b));
    let (xb, cbb) = (gpu(ctx.upload("x", &x))?, gpu(ctx.upload("cb", &cb))?);
    let codes = zeros(ctx, "codes", (levels * t * 4) as u64)?;
    let residual = zeros(ctx, "residual", rvq::residual_bytes(t as u32, dim as u32))?;
    let parts = zeros(ctx, "parts", rvq::parts_bytes(t as u32, bins as u32))?;
    let book = Codebooks {
        view: cbb.view(),
        levels: levels as u32,
        bins: bins as u32,
        dim: dim as u32,
    };
    let mut rec = Recorder::new(ctx, "test");
    gpu(rvq::encode(
        &mut rec,
        &book,
        levels as u32,
        Frames {
            view: xb.view(),
            layout: IoLayout::time_major(dim as u32),
            frames: t as u32,
        },
        CodesView {
            view: codes.view(),
            layout: CodesLayout::levels_major(t as u32),
        },
        EncodeScratch {
            residual: residual.view(),
            parts: parts.view(),
        },
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_u32(&codes).await)?;
    let want = reference::encode(&x, t, dim, &cb, bins, levels);
    let lowest0 = *dups0.iter().min().unwrap() as u32;
    let planted = vec![lowest0, lowest0, 4, 4, 0, 0];
    if want != planted {
        return Err(format!(
            "test setup: reference codes {want:?}, planted {planted:?}"
        ));
    }
    check_codes(
        "ties",
        &got,
        &want,
        &Encoded {
            x: &x,
            t,
            dim,
            cb: &cb,
            bins,
        },
    )
}

/// 32 levels (Mimi's full n_q), small codebooks, 5 frames (2 in the browser).
async fn levels_32_small(ctx: &Context, size: Size) -> CaseResult {
    let t = if size == Size::Full { 5 } else { 2 };
    let (levels, bins, dim) = (32usize, 100usize, 16usize);
    let mut rng = Rng::new(34);
    let (cb, x) = model(&mut rng, levels, bins, dim, t);
    let (xb, cbb) = (gpu(ctx.upload("x", &x))?, gpu(ctx.upload("cb", &cb))?);
    let codes = zeros(ctx, "codes", (levels * t * 4) as u64)?;
    let residual = zeros(ctx, "residual", rvq::residual_bytes(t as u32, dim as u32))?;
    let parts = zeros(ctx, "parts", rvq::parts_bytes(t as u32, bins as u32))?;
    let qb = zeros(ctx, "q", (t * dim * 4) as u64)?;
    let book = Codebooks {
        view: cbb.view(),
        levels: levels as u32,
        bins: bins as u32,
        dim: dim as u32,
    };
    let layout = CodesLayout::levels_major(t as u32);
    let io = IoLayout::time_major(dim as u32);
    let mut rec = Recorder::new(ctx, "test");
    gpu(rvq::encode(
        &mut rec,
        &book,
        levels as u32,
        Frames {
            view: xb.view(),
            layout: io,
            frames: t as u32,
        },
        CodesView {
            view: codes.view(),
            layout,
        },
        EncodeScratch {
            residual: residual.view(),
            parts: parts.view(),
        },
    ))?;
    gpu(rvq::decode(
        &mut rec,
        &book,
        levels as u32,
        CodesView {
            view: codes.view(),
            layout,
        },
        Frames {
            view: qb.view(),
            layout: io,
            frames: t as u32,
        },
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_u32(&codes).await)?;
    let want = reference::encode(&x, t, dim, &cb, bins, levels);
    check_codes(
        "32 levels",
        &got,
        &want,
        &Encoded {
            x: &x,
            t,
            dim,
            cb: &cb,
            bins,
        },
    )?;
    let q = gpu(ctx.read_f32(&qb).await)?;
    let want_q = reference::decode(&want, t, dim, &cb, bins, levels);
    assert_close("decode 32 levels", &q, &want_q, 1e-5, 1e-5)
}

/// Decode of codes that are out of range (−1, = bins) adds zero for those levels.
async fn decode_out_of_range_codes(ctx: &Context, _size: Size) -> CaseResult {
    let (levels, bins, dim, t) = (4usize, 10usize, 300usize, 2usize); // dim > 256: 2 groups
    let mut rng = Rng::new(35);
    let cb = rng.vec(levels * bins * dim, 1.0);
    let codes = vec![3u32, 9, u32::MAX, 0, 10, 5, 2, 2];
    let (cbb, kb) = (
        gpu(ctx.upload("cb", &cb))?,
        gpu(ctx.upload("codes", &codes))?,
    );
    let qb = zeros(ctx, "q", (t * dim * 4) as u64)?;
    let book = Codebooks {
        view: cbb.view(),
        levels: levels as u32,
        bins: bins as u32,
        dim: dim as u32,
    };
    let mut rec = Recorder::new(ctx, "test");
    gpu(rvq::decode(
        &mut rec,
        &book,
        levels as u32,
        CodesView {
            view: kb.view(),
            layout: CodesLayout::levels_major(t as u32),
        },
        Frames {
            view: qb.view(),
            layout: IoLayout::time_major(dim as u32),
            frames: t as u32,
        },
    ))?;
    gpu(rec.submit())?;
    let q = gpu(ctx.read_f32(&qb).await)?;
    let want = reference::decode(&codes, t, dim, &cb, bins, levels);
    assert_close("decode with -1 / bins codes", &q, &want, 1e-6, 1e-6)
}

async fn bad_arguments(ctx: &Context, _size: Size) -> CaseResult {
    let cbb = zeros(ctx, "cb", 2 * 8 * 16 * 4)?; // [2, 8, 16]
    let x = zeros(ctx, "x", 2 * 16 * 4)?;
    let codes = zeros(ctx, "codes", 4 * 4)?;
    let res = zeros(ctx, "res", rvq::residual_bytes(2, 16))?;
    let parts = zeros(ctx, "parts", rvq::parts_bytes(2, 16))?;
    let book = |levels: u32, bins: u32, dim: u32| Codebooks {
        view: cbb.view(),
        levels,
        bins,
        dim,
    };
    let enc = |b: Codebooks, levels: u32, t: u32| {
        let mut rec = Recorder::new(ctx, "test");
        rvq::encode(
            &mut rec,
            &b,
            levels,
            Frames {
                view: x.view(),
                layout: IoLayout::time_major(b.dim),
                frames: t,
            },
            CodesView {
                view: codes.view(),
                layout: CodesLayout::levels_major(t),
            },
            EncodeScratch {
                residual: res.view(),
                parts: parts.view(),
            },
        )
    };
    let checks = [
        ("dim not a multiple of 4", enc(book(2, 8, 14), 2, 2)),
        ("more levels than codebooks", enc(book(2, 8, 16), 3, 1)),
        ("codebooks past the view", enc(book(3, 8, 16), 1, 1)),
        ("x too small", enc(book(2, 8, 16), 1, 3)),
        ("zero frames", enc(book(2, 8, 16), 1, 0)),
        ("parts scratch too small", enc(book(1, 17, 12), 1, 2)),
    ];
    for (what, r) in checks {
        if r.is_ok() {
            return Err(format!("{what}: launch accepted"));
        }
    }
    enc(book(2, 8, 16), 2, 2).map_err(|e| format!("valid launch refused: {e}"))
}
