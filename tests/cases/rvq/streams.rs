//! Two RVQs in the same launches (`rvq::encode_streams` / `decode_streams`, Mimi's semantic and
//! acoustic halves over one codebook buffer): each stream's codes, final residual and decoded sum
//! must be what the one-stream launches give it alone (bit for bit) and what the f64 reference
//! gives, exact ties included, and bad stream sets are refused.
use parle::gpu::{Context, Recorder};
use parle::kernels::rvq::{
    self, reference, Codebooks, CodesLayout, CodesView, EncodeScratch, Frames, IoLayout, RvqStream,
};

use super::{check_codes, model, zeros, Encoded};
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

/// `n_q` levels in one buffer: level 0 the semantic codebook, levels 1.. the acoustic ones; the
/// acoustic level 0 has three identical rows (3, 10, bins − 7) and the second frame's acoustic
/// input is exactly that row, an exact tie the lowest row (3) must win.
pub async fn split_streams(ctx: &Context, size: Size) -> CaseResult {
    let (bins, dim, t) = match size {
        Size::Small => (200usize, 32usize, 2usize),
        Size::Full => (2048, 256, 1),
    };
    let (n_q, rest_levels) = (8usize, 7usize);
    let mut rng = Rng::new(47);
    let (mut cb_rest, mut x_rest) = model(&mut rng, rest_levels, bins, dim, t);
    let cb_first = rng.vec(bins * dim, 1.0);
    let x_first = rng.vec(t * dim, 1.0);
    let tie = cb_rest[10 * dim..11 * dim].to_vec();
    for row in [3, bins - 7] {
        cb_rest[row * dim..(row + 1) * dim].copy_from_slice(&tie);
    }
    let tf = t - 1; // the frame with the tie
    x_rest[tf * dim..(tf + 1) * dim].copy_from_slice(&tie);
    let cb_all = [cb_first.clone(), cb_rest.clone()].concat();
    let x_all = [x_first.clone(), x_rest.clone()].concat();

    let (cbb, xb) = (
        gpu(ctx.upload("cb", &cb_all))?,
        gpu(ctx.upload("x", &x_all))?,
    );
    let codes = gpu(ctx.upload("codes", &vec![u32::MAX; n_q * t]))?;
    let (tt, d32, b32) = (t as u32, dim as u32, bins as u32);
    let residual = zeros(ctx, "residual", rvq::residual_bytes(2 * tt, d32))?;
    let parts = zeros(ctx, "parts", rvq::parts_bytes(2 * tt, b32))?;
    let q = zeros(ctx, "q", (2 * t * dim * 4) as u64)?;
    let books = Codebooks {
        view: cbb.view(),
        levels: n_q as u32,
        bins: b32,
        dim: d32,
    };
    let io = IoLayout::time_major(d32);
    let layout = CodesLayout::levels_major(tt);
    let streams = [
        RvqStream::levels(1),
        RvqStream {
            book: 1,
            levels: rest_levels as u32,
            io_offset: tt * d32,
            code_offset: tt,
        },
    ];
    let mut rec = Recorder::new(ctx, "test");
    gpu(rvq::encode_streams(
        &mut rec,
        &books,
        &streams,
        Frames {
            view: xb.view(),
            layout: io,
            frames: tt,
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
    let launches = rec.dispatch_count();
    gpu(rvq::decode_streams(
        &mut rec,
        &books,
        &streams,
        CodesView {
            view: codes.view(),
            layout,
        },
        Frames {
            view: q.view(),
            layout: io,
            frames: tt,
        },
    ))?;
    let all_launches = rec.dispatch_count();
    gpu(rec.submit())?;
    if (launches, all_launches) != (rest_levels as u32 + 1, rest_levels as u32 + 2) {
        return Err(format!(
            "encode and decode of both streams recorded {launches} and {} launches, want {} and 1",
            all_launches - launches,
            rest_levels + 1
        ));
    }
    let got = gpu(ctx.read_u32(&codes).await)?;
    let got_res = gpu(ctx.read_f32(&residual).await)?;
    let got_q = gpu(ctx.read_f32(&q).await)?;

    // Against the f64 reference.
    let want_first = reference::encode(&x_first, t, dim, &cb_first, bins, 1);
    let want_rest = reference::encode(&x_rest, t, dim, &cb_rest, bins, rest_levels);
    let enc = |x, cb| Encoded {
        x,
        t,
        dim,
        cb,
        bins,
    };
    check_codes(
        "semantic stream",
        &got[..t],
        &want_first,
        &enc(&x_first, &cb_first),
    )?;
    check_codes(
        "acoustic stream",
        &got[t..],
        &want_rest,
        &enc(&x_rest, &cb_rest),
    )?;
    if want_rest[tf] != 3 {
        return Err(format!(
            "the reference resolved the planted tie to row {}, not 3",
            want_rest[tf]
        ));
    }
    let q_first = reference::decode(&want_first, t, dim, &cb_first, bins, 1);
    let q_rest = reference::decode(&want_rest, t, dim, &cb_rest, bins, rest_levels);
    assert_close(
        "decode semantic stream",
        &got_q[..t * dim],
        &q_first,
        0.0,
        0.0,
    )?;
    assert_close(
        "decode acoustic stream",
        &got_q[t * dim..],
        &q_rest,
        1e-6,
        1e-5,
    )?;
    for (s, (x, qs)) in [(&x_first, &q_first), (&x_rest, &q_rest)]
        .into_iter()
        .enumerate()
    {
        let want: Vec<f32> = x.iter().zip(qs).map(|(&a, &b)| a - b).collect();
        let got = &got_res[s * t * dim..(s + 1) * t * dim];
        assert_close(
            &format!("stream {s} final residual"),
            got,
            &want,
            1e-5,
            1e-5,
        )?;
    }

    // Bit for bit what each stream gives alone (its own codebooks as a view of the buffer).
    let level_bytes = (bins * dim * 4) as u64;
    for (s, st) in streams.iter().enumerate() {
        let alone_codes = gpu(ctx.upload("alone codes", &vec![u32::MAX; n_q * t]))?;
        let alone_q = zeros(ctx, "alone q", (t * dim * 4) as u64)?;
        let sub = Codebooks {
            view: cbb.slice(st.book as u64 * level_bytes, st.levels as u64 * level_bytes),
            levels: st.levels,
            ..books
        };
        let x_s = Frames {
            view: xb.view(),
            layout: IoLayout {
                offset: st.io_offset,
                ..io
            },
            frames: tt,
        };
        let mut rec = Recorder::new(ctx, "test");
        gpu(rvq::encode(
            &mut rec,
            &sub,
            st.levels,
            x_s,
            CodesView {
                view: alone_codes.view(),
                layout,
            },
            EncodeScratch {
                residual: residual.view(),
                parts: parts.view(),
            },
        ))?;
        gpu(rvq::decode(
            &mut rec,
            &sub,
            st.levels,
            CodesView {
                view: alone_codes.view(),
                layout,
            },
            Frames {
                view: alone_q.view(),
                layout: io,
                frames: tt,
            },
        ))?;
        gpu(rec.submit())?;
        let n = st.levels as usize * t;
        let (a_codes, a_res, a_q) = (
            gpu(ctx.read_u32(&alone_codes).await)?,
            gpu(ctx.read_f32(&residual).await)?,
            gpu(ctx.read_f32(&alone_q).await)?,
        );
        let span = s * t * dim..(s + 1) * t * dim;
        let c0 = st.code_offset as usize;
        if a_codes[..n] != got[c0..c0 + n]
            || a_res[..t * dim] != got_res[span.clone()]
            || a_q[..] != got_q[span]
        {
            return Err(format!(
                "stream {s}: the two-stream launches differ from its one-stream launches (codes {:?} vs {:?})",
                &got[c0..c0 + n],
                &a_codes[..n]
            ));
        }
    }
    Ok(())
}

/// Stream sets a launch cannot take are refused with a message, never run.
pub async fn bad_streams(ctx: &Context, _size: Size) -> CaseResult {
    let cbb = zeros(ctx, "cb", 4 * 8 * 16 * 4)?; // [4, 8, 16]
    let x = zeros(ctx, "x", 2 * 16 * 4)?;
    let codes = zeros(ctx, "codes", 4 * 4)?;
    let res = zeros(ctx, "res", rvq::residual_bytes(2, 16))?;
    let small = zeros(ctx, "res small", rvq::residual_bytes(1, 16))?;
    let parts = zeros(ctx, "parts", rvq::parts_bytes(2, 8))?;
    let books = Codebooks {
        view: cbb.view(),
        levels: 4,
        bins: 8,
        dim: 16,
    };
    let st = |book, levels, io_offset, code_offset| RvqStream {
        book,
        levels,
        io_offset,
        code_offset,
    };
    let io = IoLayout::time_major(16);
    let layout = CodesLayout::levels_major(1);
    let enc = |streams: &[RvqStream], residual: &parle::gpu::GpuBuffer| {
        let mut rec = Recorder::new(ctx, "test");
        rvq::encode_streams(
            &mut rec,
            &books,
            streams,
            Frames {
                view: x.view(),
                layout: io,
                frames: 1,
            },
            CodesView {
                view: codes.view(),
                layout,
            },
            EncodeScratch {
                residual: residual.view(),
                parts: parts.view(),
            },
        )
    };
    let dec = |streams: &[RvqStream]| {
        let mut rec = Recorder::new(ctx, "test");
        rvq::decode_streams(
            &mut rec,
            &books,
            streams,
            CodesView {
                view: codes.view(),
                layout,
            },
            Frames {
                view: x.view(),
                layout: io,
                frames: 1,
            },
        )
    };
    let good = [st(0, 1, 0, 0), st(1, 3, 16, 1)];
    let checks = [
        ("no streams", enc(&[], &res)),
        (
            "three streams",
            enc(&[st(0, 1, 0, 0), st(1, 1, 0, 1), st(2, 1, 0, 2)], &res),
        ),
        (
            "a stream without levels",
            enc(&[st(0, 0, 0, 0), st(1, 1, 16, 1)], &res),
        ),
        (
            "levels past the codebooks",
            enc(&[st(0, 1, 0, 0), st(2, 3, 16, 1)], &res),
        ),
        (
            "codes overlap",
            enc(&[st(0, 2, 0, 0), st(2, 2, 16, 1)], &res),
        ),
        (
            "codes past the view",
            enc(&[st(0, 1, 0, 0), st(1, 3, 16, 2)], &res),
        ),
        (
            "input past the view",
            enc(&[st(0, 1, 0, 0), st(1, 3, 17, 1)], &res),
        ),
        ("scratch for one stream", enc(&good, &small)),
        (
            "decode outputs overlap",
            dec(&[st(0, 1, 0, 0), st(1, 3, 8, 1)]),
        ),
    ];
    for (what, r) in checks {
        match r {
            Ok(()) => return Err(format!("{what}: launch accepted")),
            Err(e) if e.to_string().is_empty() => return Err(format!("{what}: empty message")),
            Err(_) => {}
        }
    }
    enc(&good, &res).map_err(|e| format!("valid encode refused: {e}"))?;
    dec(&good).map_err(|e| format!("valid decode refused: {e}"))
}
