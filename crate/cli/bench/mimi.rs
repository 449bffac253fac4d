//! `parle bench mimi`: streaming encode and decode per 80 ms frame through a codec session, as a
//! live session runs them: write the input, record the frame, one submit, read the result back.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use parle::gpu::Context;
use parle::session::bench::{run_frames, FrameTimes, Workload};
use parle::session::estimate::estimate;
use parle::session::profile::profile_frames;
use parle::session::{CodecSession, SessionOptions};

/// Mean, p50 and p95 in ms.
fn stats(t: &FrameTimes) -> (f64, f64, f64) {
    let v = t.sorted();
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let at = |i: usize| {
        v.get(i.min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(mean)
    };
    (mean, at(v.len() / 2), at(v.len() * 95 / 100))
}

/// `parle bench mimi`'s arguments.
pub struct MimiBench<'a> {
    pub model: Option<&'a Path>,
    pub random: bool,
    pub frames: usize,
    pub codebooks: usize,
    /// `--profile`: frames to profile (each of encode and decode) after the timed ones.
    pub profile: Option<usize>,
}

pub fn run(ctx: &Context, b: MimiBench) -> Result<()> {
    let MimiBench {
        model,
        random,
        frames,
        codebooks,
        profile,
    } = b;
    let before = ctx.allocated_bytes();
    let t0 = Instant::now();
    let mut codec = match (model, random) {
        (Some(dir), _) => CodecSession::load_dir(ctx, dir, Some(codebooks))?,
        (None, true) => CodecSession::random(ctx, codebooks)?,
        (None, false) => bail!("give --model DIR or --random-real-size"),
    };
    ctx.wait_idle()?;
    let load_s = t0.elapsed().as_secs_f64();
    let mem = ctx.allocated_bytes() - before;
    let config = match model {
        Some(dir) => std::fs::read_to_string(dir.join("config.json")).ok(),
        None => None,
    };
    let opts = SessionOptions {
        codebooks: Some(codebooks),
        ..SessionOptions::default()
    };
    let est = estimate(config.as_deref(), None, &opts, ctx.caps().f16)?;
    let frame_ms = codec.frame_size() as f64 / codec.sample_rate() * 1e3;
    println!("{}", super::adapter_line(ctx));
    println!(
        "model: {}  codebooks: {}  GPU buffers: {:.1} MiB  load: {:.2} s",
        model
            .map(|m| m.display().to_string())
            .unwrap_or_else(|| "random weights, published Mimi size".into()),
        codec.num_codebooks(),
        mem as f64 / (1 << 20) as f64,
        load_s
    );
    println!("{}", super::estimate_vs_measured(&est, mem));
    let clock = Instant::now();
    let now = || clock.elapsed().as_secs_f64() * 1e3;
    let warmup = 3;
    let enc = pollster::block_on(run_frames(
        ctx,
        Workload::Encode(&mut codec),
        warmup,
        frames,
        1,
        &now,
    ))?;
    let dec = pollster::block_on(run_frames(
        ctx,
        Workload::Decode(&mut codec),
        warmup,
        frames,
        1,
        &now,
    ))?;
    ctx.check()?;
    let (em, e50, e95) = stats(&enc);
    let (dm, d50, d95) = stats(&dec);
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>8} {:>11} {:>8}",
        "", "mean ms", "p50 ms", "p95 ms", "RTF", "dispatches", "submits"
    );
    for (name, (m, p50, p95), d) in [
        ("encode", (em, e50, e95), enc.dispatches),
        ("decode", (dm, d50, d95), dec.dispatches),
    ] {
        println!(
            "{:<8} {:>10.2} {:>10.2} {:>10.2} {:>8.3} {:>11} {:>8}",
            name,
            m,
            p50,
            p95,
            m / frame_ms,
            d,
            1
        );
    }
    println!(
        "both     {:>10.2} ms per {:.0} ms frame: real-time factor {:.3} ({} frames timed, readback included)",
        em + dm,
        frame_ms,
        (em + dm) / frame_ms,
        frames
    );
    if let Some(n) = profile {
        let enc = pollster::block_on(profile_frames(ctx, Workload::Encode(&mut codec), n))?;
        println!("profile (encode):\n{}", enc.table().trim_end());
        let dec = pollster::block_on(profile_frames(ctx, Workload::Decode(&mut codec), n))?;
        println!("profile (decode):\n{}", dec.table().trim_end());
    }
    Ok(())
}
