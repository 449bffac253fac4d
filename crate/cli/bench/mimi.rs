//! `parle bench mimi`: streaming encode and decode per 80 ms frame, as a live session runs them:
//! write the input, record the frame, one submit, read the result back.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use parle::gpu::Context;
use parle::mimi::{Mimi, MimiConfig};
use parle::weights::RandomWeights;

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (
        mean,
        v[v.len() / 2],
        v[(v.len() * 95 / 100).min(v.len() - 1)],
    )
}

pub fn run(
    ctx: &Context,
    model: Option<&Path>,
    random: bool,
    frames: usize,
    codebooks: usize,
) -> Result<()> {
    let before = ctx.allocated_bytes();
    let t0 = Instant::now();
    let mut mimi = match (model, random) {
        (Some(dir), _) => Mimi::load_dir(ctx, dir, Some(codebooks))?,
        (None, true) => Mimi::load(
            ctx,
            MimiConfig::default(),
            &RandomWeights { seed: 1 },
            Some(codebooks),
        )?,
        (None, false) => bail!("give --model DIR or --random-real-size"),
    };
    ctx.wait_idle()?;
    let load_s = t0.elapsed().as_secs_f64();
    let mem = ctx.allocated_bytes() - before;
    let frame = mimi.frame_size();
    let frame_s = frame as f64 / mimi.cfg.sample_rate;
    println!("{}", super::adapter_line(ctx));
    println!(
        "model: {}  codebooks: {}  GPU buffers: {:.1} MiB  load: {:.2} s",
        model
            .map(|m| m.display().to_string())
            .unwrap_or_else(|| "random weights, published Mimi size".into()),
        mimi.num_codebooks(),
        mem as f64 / (1 << 20) as f64,
        load_s
    );
    // A chirp so activations are not trivial.
    let pcm: Vec<f32> = (0..frame)
        .map(|i| 0.3 * ((i as f32) * 0.01 + (i * i) as f32 * 1e-6).sin())
        .collect();
    let warmup = 3;
    let (mut enc, mut dec) = (Vec::new(), Vec::new());
    let (mut enc_dispatches, mut dec_dispatches) = (0, 0);
    for i in 0..warmup + frames {
        let t = Instant::now();
        let codes = pollster::block_on(mimi.encode_frame(ctx, &pcm))?;
        let te = t.elapsed().as_secs_f64();
        let t = Instant::now();
        pollster::block_on(mimi.decode_frame(ctx, &codes))?;
        let td = t.elapsed().as_secs_f64();
        (enc_dispatches, dec_dispatches) = mimi.last_dispatches;
        if i >= warmup {
            enc.push(te);
            dec.push(td);
        }
    }
    ctx.check()?;
    let (em, e50, e95) = stats(enc);
    let (dm, d50, d95) = stats(dec);
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>8} {:>11} {:>8}",
        "", "mean ms", "p50 ms", "p95 ms", "RTF", "dispatches", "submits"
    );
    println!(
        "{:<8} {:>10.2} {:>10.2} {:>10.2} {:>8.3} {:>11} {:>8}",
        "encode",
        em * 1e3,
        e50 * 1e3,
        e95 * 1e3,
        em / frame_s,
        enc_dispatches,
        1
    );
    println!(
        "{:<8} {:>10.2} {:>10.2} {:>10.2} {:>8.3} {:>11} {:>8}",
        "decode",
        dm * 1e3,
        d50 * 1e3,
        d95 * 1e3,
        dm / frame_s,
        dec_dispatches,
        1
    );
    println!(
        "both     {:>10.2} ms per {:.0} ms frame: real-time factor {:.3} ({} frames timed, readback included)",
        (em + dm) * 1e3,
        frame_s * 1e3,
        (em + dm) / frame_s,
        frames
    );
    Ok(())
}
