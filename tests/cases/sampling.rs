use parle::gpu::{BufferUsage, Context, Recorder};
use parle::kernels::embed::{self, EmbedTable, Stream};
use parle::kernels::sampling::{self, reference, LogitRows, SampleConfig, TokenSlots};
use parle::weights::WeightFormat;

use crate::cases;
use crate::common::{assert_close, gpu, CaseResult, Rng, Size};

cases!(
    greedy_planted_ties,
    top_k_1_is_greedy,
    top_k_members_and_reference,
    exact_k_with_ties_at_threshold,
    chi_square_small_vocab,
    reproducible_from_seed_and_counter,
    no_truncation,
    sample_then_embed_on_gpu,
    bad_arguments
);

/// Draw `rows` tokens from `logits` (one row, `row_stride = 0`, so row r uses counter
/// `cfg.counter + r`) or from `rows` consecutive rows of `n` when `row_stride = n`.
async fn draw(
    ctx: &Context,
    logits: &[f32],
    n: usize,
    row_stride: usize,
    rows: usize,
    cfg: &SampleConfig,
) -> Result<Vec<u32>, String> {
    let lb = gpu(ctx.upload("logits", logits))?;
    let tb = gpu(ctx.upload("tokens", &vec![0xdead_beefu32; rows + 1]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(sampling::sample_rows(
        &mut rec,
        &LogitRows {
            view: lb.view(),
            offset: 0,
            n: n as u32,
            row_stride: row_stride as u32,
            rows: rows as u32,
        },
        cfg,
        TokenSlots {
            view: tb.view(),
            index: 1,
        },
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_u32(&tb).await)?;
    if got[0] != 0xdead_beef {
        return Err("token 0 overwritten: out_index ignored".into());
    }
    Ok(got[1..].to_vec())
}

/// Every GPU draw must be in the top-k set and equal the reference draw, except where the
/// reference's best two scores are within float noise of each other. Returns the near-tie count.
fn check_draws(
    what: &str,
    logits: &[f32],
    cfg: &SampleConfig,
    got: &[u32],
) -> Result<usize, String> {
    let set = reference::top_k_set(logits, cfg.top_k as usize);
    let mut near_ties = 0;
    for (r, &g) in got.iter().enumerate() {
        if g as usize >= logits.len() || !set[g as usize] {
            return Err(format!(
                "{what}: draw {r} is {g}, outside the top-{} set",
                cfg.top_k
            ));
        }
        let want = reference::sample(logits, cfg, r as u32);
        if g != want {
            let s = reference::scores(logits, cfg, r as u32);
            let (sg, sw) = (s[g as usize].unwrap(), s[want as usize].unwrap());
            if sw - sg > 1e-4 * sw.abs().max(1.0) {
                return Err(format!(
                    "{what}: draw {r} is {g} (score {sg}), reference {want} (score {sw})"
                ));
            }
            near_ties += 1;
        }
    }
    Ok(near_ties)
}

fn logits_row(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    // Sum of uniforms: bell-shaped like real logits.
    (0..n)
        .map(|_| (rng.uniform() + rng.uniform() + rng.uniform()) * scale)
        .collect()
}

async fn greedy_planted_ties(ctx: &Context, size: Size) -> CaseResult {
    let n = match size {
        Size::Small => 2000usize,
        Size::Full => 32000,
    };
    let mut rng = Rng::new(41);
    let rows = 5;
    let mut l: Vec<f32> = (0..rows)
        .flat_map(|_| logits_row(&mut rng, n, 3.0))
        .collect();
    // Row 0: the maximum at n-1, 7 and n/2: 7 wins.
    for i in [n - 1, 7, n / 2] {
        l[i] = 20.0;
    }
    // Row 1: the maximum at the last and the first index.
    l[n + n - 1] = 30.0;
    l[n] = 30.0;
    // Row 2: NaN (above anything bitwise), +inf beats everything, -inf, -0.0 / +0.0.
    let r2 = 2 * n;
    l[r2 + 3] = f32::NAN;
    l[r2 + 4] = f32::NEG_INFINITY;
    l[r2 + n - 2] = f32::INFINITY;
    l[r2 + n - 5] = f32::NAN;
    // Row 3: all equal but -0.0 / +0.0 mixed: index 0.
    for (i, v) in l[3 * n..4 * n].iter_mut().enumerate() {
        *v = if i % 2 == 0 { -0.0 } else { 0.0 };
    }
    // Row 4: all negative, max near the end.
    for v in l[4 * n..5 * n].iter_mut() {
        *v = -v.abs() - 1.0;
    }
    l[4 * n + n - 3] = -0.5;
    let got = draw(ctx, &l, n, n, rows, &SampleConfig::greedy()).await?;
    let want: Vec<u32> = (0..rows)
        .map(|r| reference::argmax(&l[r * n..(r + 1) * n]))
        .collect();
    let planted = [7, 0, n as u32 - 2, 0, n as u32 - 3];
    if want != planted {
        return Err(format!(
            "test setup: reference {want:?}, planted {planted:?}"
        ));
    }
    if got != want {
        return Err(format!("greedy: got {got:?}, want {want:?}"));
    }
    // Several greedy draws per row all write the argmax.
    let lb = gpu(ctx.upload("logits", &l))?;
    let tb = gpu(ctx.upload("tokens", &vec![u32::MAX; 3 * rows]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(sampling::sample_many(
        &mut rec,
        &LogitRows {
            view: lb.view(),
            offset: 0,
            n: n as u32,
            row_stride: n as u32,
            rows: rows as u32,
        },
        3,
        &SampleConfig::greedy(),
        TokenSlots {
            view: tb.view(),
            index: 0,
        },
    ))?;
    gpu(rec.submit())?;
    let got3 = gpu(ctx.read_u32(&tb).await)?;
    let want3: Vec<u32> = want.iter().flat_map(|&w| [w; 3]).collect();
    if got3 != want3 {
        return Err(format!(
            "greedy, 3 draws per row: got {got3:?}, want {want3:?}"
        ));
    }
    Ok(())
}

async fn top_k_1_is_greedy(ctx: &Context, size: Size) -> CaseResult {
    let n = match size {
        Size::Small => 2048usize,
        Size::Full => 32000,
    };
    let mut rng = Rng::new(42);
    let rows = 4;
    let mut l: Vec<f32> = (0..rows)
        .flat_map(|_| logits_row(&mut rng, n, 2.0))
        .collect();
    // Ties for the maximum in rows 0 and 1 (even across a 256-wide stride), none in 2, -inf row 3.
    for i in [1000 % n, 300, 44] {
        l[i] = 9.0;
    }
    for i in [n - 1, n - 257] {
        l[n + i] = 9.0;
    }
    for v in l[3 * n..].iter_mut() {
        *v = f32::NEG_INFINITY;
    }
    let want: Vec<u32> = (0..rows)
        .map(|r| reference::argmax(&l[r * n..(r + 1) * n]))
        .collect();
    for (temp, seed) in [(0.01f32, 1u32), (0.8, 2), (1.0, 3), (100.0, 4)] {
        let cfg = SampleConfig::top_k(temp, 1, seed, 17, 0);
        let got = draw(ctx, &l, n, n, rows, &cfg).await?;
        if got != want {
            return Err(format!("top-k 1, τ {temp}: got {got:?}, greedy {want:?}"));
        }
    }
    Ok(())
}

/// The real shapes: top-250 of 2048 (audio) and top-25 of 32000 (text), many counters.
async fn top_k_members_and_reference(ctx: &Context, size: Size) -> CaseResult {
    let cases: &[(usize, u32, f32, usize)] = match size {
        Size::Small => &[(2048, 250, 0.8, 32), (1000, 25, 0.7, 32)],
        Size::Full => &[
            (2048, 250, 0.8, 400),
            (32000, 25, 0.7, 200),
            (32000, 500, 1.3, 50),
        ],
    };
    let mut rng = Rng::new(43);
    for &(n, k, temp, draws) in cases {
        let l = logits_row(&mut rng, n, 4.0);
        for seed in [0u32, 12345] {
            let cfg = SampleConfig::top_k(temp, k, seed, 1000, 3);
            let got = draw(ctx, &l, n, 0, draws, &cfg).await?;
            let what = format!("n {n}, top-k {k}, τ {temp}, seed {seed}");
            let near = check_draws(&what, &l, &cfg, &got)?;
            if near > draws / 50 {
                return Err(format!("{what}: {near} near-tie mismatches"));
            }
            let mut distinct = got.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() < 5 {
                return Err(format!("{what}: only {} distinct ids", distinct.len()));
            }
        }
    }
    Ok(())
}

/// Many logits equal to the k-th largest: exactly k ids are eligible, the tied ones with the
/// lowest indices (the tie group spans several 256-wide strides and index bytes).
async fn exact_k_with_ties_at_threshold(ctx: &Context, size: Size) -> CaseResult {
    let n = 2048usize;
    let mut rng = Rng::new(44);
    let mut l: Vec<f32> = (0..n).map(|_| -5.0 + rng.uniform()).collect();
    let winners = [5usize, 900, 1700, 2047]; // 4 clear winners
    let tied: Vec<usize> = (0..n)
        .filter(|i| i % 7 == 3 && !winners.contains(i))
        .collect(); // 3, 10, …, 2040
    for &i in &tied {
        l[i] = 1.0;
    }
    for i in winners {
        l[i] = 3.0 + i as f32 * 1e-4;
    }
    for (k, temp) in [
        (10u32, 50.0f32),
        (200, 50.0),
        (4 + tied.len() as u32 - 1, 50.0),
    ] {
        let cfg = SampleConfig::top_k(temp, k, 9, 0, 1);
        let draws = if size == Size::Full { 512 } else { 96 };
        let got = draw(ctx, &l, n, 0, draws, &cfg).await?;
        let what = format!("ties, top-k {k}");
        check_draws(&what, &l, &cfg, &got)?;
        // The tied members allowed are the (k - 4) lowest-index ones; some must be drawn.
        let allowed = &tied[..k as usize - 4];
        let max_tied = got
            .iter()
            .filter(|&&g| tied.contains(&(g as usize)))
            .max()
            .copied();
        match max_tied {
            None => return Err(format!("{what}: no tied id drawn in {draws} draws")),
            Some(m) if m as usize > *allowed.last().unwrap() => {
                return Err(format!(
                    "{what}: drew tied id {m} beyond the lowest {}",
                    allowed.len()
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// 2000 (8000 natively) draws from 8 logits with τ 0.8, top-5, 250 draws per workgroup, against
/// the exact restricted softmax (χ², 4 degrees of freedom). The bound is checked to reject the
/// likely bugs (no temperature, top-k off by one, no truncation) given the same counts.
async fn chi_square_small_vocab(ctx: &Context, size: Size) -> CaseResult {
    let l = [1.4f32, 0.3, 3.0, 1.0, 0.7, 0.8, 0.2, 2.2];
    let (temp, k) = (0.8f32, 5usize);
    let draws = match size {
        Size::Small => 2000usize,
        Size::Full => 8000,
    };
    let bound = 30.0; // P(χ²₄ > 30) ≈ 5e-6
    for (seed, stream) in [(7u32, 0u32), (8, 5)] {
        let cfg = SampleConfig::top_k(temp, k as u32, seed, 0, stream);
        // 250 draws per workgroup (counters r·250 + d), rows all reading the same logits.
        let per_row = 250;
        let lb = gpu(ctx.upload("logits", &l))?;
        let tb = gpu(ctx.upload("tokens", &vec![u32::MAX; draws]))?;
        let mut rec = Recorder::new(ctx, "test");
        gpu(sampling::sample_many(
            &mut rec,
            &LogitRows {
                view: lb.view(),
                offset: 0,
                n: 8,
                row_stride: 0,
                rows: (draws / per_row) as u32,
            },
            per_row as u32,
            &cfg,
            TokenSlots {
                view: tb.view(),
                index: 0,
            },
        ))?;
        gpu(rec.submit())?;
        let got = gpu(ctx.read_u32(&tb).await)?;
        // The same draws as one-per-workgroup sampling with those counters.
        check_draws("many draws per row", &l, &cfg, &got)?;
        let mut counts = [0usize; 8];
        for &g in &got {
            if g >= 8 {
                return Err(format!("drew id {g} from 8 logits"));
            }
            counts[g as usize] += 1;
        }
        let chi2 = |p: &[f64]| -> f64 {
            (0..8)
                .map(|i| {
                    let e = p[i] * draws as f64;
                    let o = counts[i] as f64;
                    if e == 0.0 {
                        if o > 0.0 {
                            f64::INFINITY
                        } else {
                            0.0
                        }
                    } else {
                        (o - e) * (o - e) / e
                    }
                })
                .sum()
        };
        let exact = reference::distribution(&l, temp, k);
        let c = chi2(&exact);
        if c > bound {
            return Err(format!(
                "seed {seed}: χ² {c:.1} > {bound} (counts {counts:?}, expected {:?})",
                exact.iter().map(|p| p * draws as f64).collect::<Vec<_>>()
            ));
        }
        for (bug, p) in [
            ("τ ignored", reference::distribution(&l, 1.0, k)),
            ("top-k + 1", reference::distribution(&l, temp, k + 1)),
            ("top-k - 1", reference::distribution(&l, temp, k - 1)),
            ("no truncation", reference::distribution(&l, temp, 0)),
        ] {
            let cb = chi2(&p);
            if cb <= bound {
                return Err(format!(
                    "seed {seed}: the χ² test has no power against '{bug}' (χ² {cb:.1})"
                ));
            }
        }
    }
    Ok(())
}

async fn reproducible_from_seed_and_counter(ctx: &Context, size: Size) -> CaseResult {
    let n = 2048usize;
    let mut rng = Rng::new(45);
    let l = logits_row(&mut rng, n, 1.0); // flat: many ids likely
    let rows = if size == Size::Full { 64 } else { 32 };
    let base = SampleConfig::top_k(1.0, 250, 77, 500, 2);
    let a = draw(ctx, &l, n, 0, rows, &base).await?;
    let b = draw(ctx, &l, n, 0, rows, &base).await?;
    if a != b {
        return Err("same seed and counters gave different draws".into());
    }
    // Row r of a launch is the draw with counter + r: a single draw at counter 503 = a[3].
    let lb = gpu(ctx.upload("logits", &l))?;
    let tb = gpu(ctx.upload("tokens", &[0u32; 8]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(sampling::sample(
        &mut rec,
        lb.view(),
        0,
        n as u32,
        &SampleConfig {
            counter: 503,
            ..base
        },
        tb.view(),
        6,
    ))?;
    gpu(rec.submit())?;
    let single = gpu(ctx.read_u32(&tb).await)?;
    if single[6] != a[3] || single[..6].iter().any(|&v| v != 0) || single[7] != 0 {
        return Err(format!(
            "single draw at counter 503 wrote {single:?}, want {} at index 6",
            a[3]
        ));
    }
    let same = |x: &[u32], y: &[u32]| x.iter().zip(y).filter(|(p, q)| p == q).count();
    let mut distinct = a.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() < rows / 4 {
        return Err(format!(
            "different counters: only {} distinct ids",
            distinct.len()
        ));
    }
    for (what, cfg) in [
        ("seed", SampleConfig { seed: 78, ..base }),
        ("stream", SampleConfig { stream: 3, ..base }),
        (
            "counter",
            SampleConfig {
                counter: 10_000,
                ..base
            },
        ),
    ] {
        let c = draw(ctx, &l, n, 0, rows, &cfg).await?;
        if same(&a, &c) > rows / 4 {
            return Err(format!(
                "another {what} repeats {} of {rows} draws",
                same(&a, &c)
            ));
        }
        check_draws(what, &l, &cfg, &c)?;
    }
    Ok(())
}

/// top_k 0 and top_k ≥ n sample from the whole vocabulary.
async fn no_truncation(ctx: &Context, size: Size) -> CaseResult {
    let n = 300usize;
    let mut rng = Rng::new(46);
    let l = logits_row(&mut rng, n, 1.0);
    for k in [0u32, n as u32, n as u32 + 7] {
        let cfg = SampleConfig::top_k(0.9, k, 5, 0, 0);
        let draws = if size == Size::Full { 256 } else { 96 };
        let got = draw(ctx, &l, n, 0, draws, &cfg).await?;
        check_draws(&format!("top-k {k}"), &l, &cfg, &got)?;
        // Something outside the top-250 must come up with a flat distribution.
        let top = reference::top_k_set(&l, 250);
        if got.iter().all(|&g| top[g as usize]) {
            return Err(format!("top-k {k}: every draw in the top 250"));
        }
    }
    Ok(())
}

/// The frame's pattern: sample the text token greedily and 2 audio tokens with top-k into a GPU
/// token buffer, then embed-sum them, all in one recorder: the ids never visit the CPU.
async fn sample_then_embed_on_gpu(ctx: &Context, _size: Size) -> CaseResult {
    let (text_vocab, audio_vocab, dim) = (40usize, 12usize, 32usize);
    let mut rng = Rng::new(47);
    let mut logits = logits_row(&mut rng, text_vocab + 2 * audio_vocab, 2.0);
    logits[17] = 50.0; // text argmax
    let lb = gpu(ctx.upload("logits", &logits))?;
    let sizes = [text_vocab + 1, audio_vocab + 1, audio_vocab + 1];
    let parts: Vec<Vec<f32>> = sizes.iter().map(|&r| rng.vec(r * dim, 1.0)).collect();
    // Each table at a 64-word boundary (the gather's piece alignment).
    let mut words: Vec<f32> = Vec::new();
    let mut bases = Vec::new();
    for p in &parts {
        bases.push(words.len() as u32);
        words.extend_from_slice(p);
        words.resize(words.len().next_multiple_of(64), 0.0);
    }
    let tab = gpu(ctx.upload("table", &words))?;
    let tokens = gpu(ctx.create_buffer("tokens", 4 * 4, BufferUsage::Storage))?;
    let out = gpu(ctx.create_buffer("out", (dim * 4) as u64, BufferUsage::Storage))?;
    let audio_cfg = |stream| SampleConfig::top_k(0.8, 5, 3, 11, stream);
    let mut rec = Recorder::new(ctx, "frame");
    gpu(sampling::sample(
        &mut rec,
        lb.view(),
        0,
        text_vocab as u32,
        &SampleConfig::greedy(),
        tokens.view(),
        0,
    ))?;
    for a in 0..2 {
        gpu(sampling::sample(
            &mut rec,
            lb.view(),
            (text_vocab + a * audio_vocab) as u32,
            audio_vocab as u32,
            &audio_cfg(1 + a as u32),
            tokens.view(),
            1 + a as u32,
        ))?;
    }
    let streams: Vec<Stream> = (0..3)
        .map(|i| Stream::new(i as u32, WeightFormat::F32, bases[i], sizes[i] as u32))
        .collect();
    gpu(embed::embed_sum(
        &mut rec,
        &EmbedTable {
            view: tab.view(),
            dim: dim as u32,
        },
        tokens.view(),
        &streams,
        out.view(),
        false,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&out).await)?;
    let ids = [
        17u32,
        reference::sample(
            &logits[text_vocab..text_vocab + audio_vocab],
            &audio_cfg(1),
            0,
        ),
        reference::sample(&logits[text_vocab + audio_vocab..], &audio_cfg(2), 0),
    ];
    let ids4 = [ids[0], ids[1], ids[2], 0];
    let want = embed::reference::embed_sum(
        &[&parts[0], &parts[1], &parts[2]],
        dim,
        &ids4,
        &streams,
        None,
    );
    let read_ids = gpu(ctx.read_u32(&tokens).await)?;
    if read_ids[..3] != ids {
        return Err(format!("sampled ids {:?}, want {ids:?}", &read_ids[..3]));
    }
    assert_close("embedding of sampled ids", &got, &want, 1e-6, 1e-6)
}

async fn bad_arguments(ctx: &Context, _size: Size) -> CaseResult {
    let lb = gpu(ctx.create_buffer("logits", 4 * 100, BufferUsage::Storage))?;
    let tb = gpu(ctx.create_buffer("tokens", 4 * 4, BufferUsage::Storage))?;
    let t = |off: u32, n: u32, stride: u32, rows: u32, temp: f32, out: u32| {
        let mut rec = Recorder::new(ctx, "test");
        sampling::sample_rows(
            &mut rec,
            &LogitRows {
                view: lb.view(),
                offset: off,
                n,
                row_stride: stride,
                rows,
            },
            &SampleConfig::top_k(temp, 5, 0, 0, 0),
            TokenSlots {
                view: tb.view(),
                index: out,
            },
        )
    };
    let checks = [
        ("n 0", t(0, 0, 0, 1, 1.0, 0)),
        ("rows 0", t(0, 10, 0, 0, 1.0, 0)),
        ("logits past the view", t(50, 51, 0, 1, 1.0, 0)),
        ("rows past the view", t(0, 30, 30, 4, 1.0, 0)),
        ("token past the view", t(0, 10, 0, 2, 1.0, 3)),
        ("temperature NaN", t(0, 10, 0, 1, f32::NAN, 0)),
        ("temperature inf", t(0, 10, 0, 1, f32::INFINITY, 0)),
    ];
    for (what, r) in checks {
        if r.is_ok() {
            return Err(format!("{what}: launch accepted"));
        }
    }
    let many = |rows: u32, draws: u32| {
        let mut rec = Recorder::new(ctx, "test");
        sampling::sample_many(
            &mut rec,
            &LogitRows {
                view: lb.view(),
                offset: 0,
                n: 10,
                row_stride: 0,
                rows,
            },
            draws,
            &SampleConfig::top_k(1.0, 5, 0, 0, 0),
            TokenSlots {
                view: tb.view(),
                index: 0,
            },
        )
    };
    for (what, r) in [
        ("0 draws per row", many(1, 0)),
        ("257 draws per row", many(1, 257)),
        ("draws past the tokens view", many(3, 2)),
    ] {
        if r.is_ok() {
            return Err(format!("{what}: launch accepted"));
        }
    }
    many(2, 2).map_err(|e| format!("valid launch refused: {e}"))?;
    t(0, 25, 25, 4, 1.0, 0).map_err(|e| format!("valid launch refused: {e}"))
}
