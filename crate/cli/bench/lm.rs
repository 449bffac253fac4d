//! `parle bench lm`: whole frames (Mimi encode + LM step + Mimi decode for Moshi, Mimi encode +
//! LM step for STT, as a live session runs them through `Session`) at a preset's shapes (Moshi
//! 7B by default, [`Preset`]) with random weights made on the GPU. Prints
//! frame times, dispatches, submits, readbacks, weight bytes read vs stored, GPU memory, and the
//! frame's bandwidth bound from a buffer copy timed in the same run.

use std::time::Instant;

use anyhow::{Context as _, Result};
use parle::gpu::{BufferUsage, Context, Recorder};
use parle::kernels::attention::kv_elem_bytes;
use parle::session::bench::{mimi_bytes, run_frames, Preset, Workload};
use parle::session::profile::profile_frames;
use parle::session::{quant_format, MAX_IN_FLIGHT};

/// Bytes per second of a device-local buffer copy (read + written bytes over time).
fn copy_rate(ctx: &Context) -> Result<f64> {
    let bytes = (256u64 << 20).min(ctx.caps().max_buffer_size / 2);
    let a = ctx.create_buffer("copy src", bytes, BufferUsage::Storage)?;
    let b = ctx.create_buffer("copy dst", bytes, BufferUsage::Storage)?;
    let reps = 5;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut rec = Recorder::new(ctx, "copy");
        for _ in 0..reps {
            rec.copy(a.view(), b.view());
        }
        let t = Instant::now();
        rec.submit()?;
        ctx.wait_idle()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * bytes as f64 * reps as f64 / best)
}

fn gib(b: f64) -> f64 {
    b / (1u64 << 30) as f64
}

pub struct LmBench {
    pub preset: String,
    pub quant: String,
    pub frames: usize,
    /// `--context`, for `lm-7b` only.
    pub context: Option<usize>,
    /// `--profile`: frames to profile after the timed ones.
    pub profile: Option<usize>,
}

/// The preset `--preset` and `--context` name (`custom` needs a config: not offered here).
fn preset(b: &LmBench) -> Result<Preset> {
    match (b.preset.as_str(), b.context) {
        ("lm-7b", c) => Ok(Preset::Lm7b {
            context: c.unwrap_or(3000),
        }),
        (_, Some(_)) => anyhow::bail!(
            "--context applies to --preset lm-7b only; the {} preset has its model's context",
            b.preset
        ),
        ("custom" | "mimi", _) => anyhow::bail!(
            "--preset {}: `parle bench lm` takes lm-7b, lm-small, stt-1b, stt-2.6b, hibiki-1b, hibiki-2b or tiny (Mimi alone: `parle bench mimi`)",
            b.preset
        ),
        (name, None) => Preset::parse(name, None, true).map_err(|m| anyhow::anyhow!("--preset: {m}")),
    }
}

pub fn run(ctx: &Context, b: LmBench) -> Result<()> {
    let preset = preset(&b)?;
    let format = quant_format(&b.quant)
        .with_context(|| format!("--quant {}: expected q4, q8, q8_0, bf16 or f32", b.quant))?;
    println!("{}", super::adapter_line(ctx));
    let rate = copy_rate(ctx)?;
    println!("buffer copy: {:.1} GB/s (read + write)", rate / 1e9);

    // Mimi's own weight bytes, measured by loading it alone first.
    let mimi_bytes = mimi_bytes(ctx)?;

    let before = ctx.allocated_bytes();
    let t0 = Instant::now();
    let mut session = preset.load(ctx, format)?;
    ctx.wait_idle()?;
    let load_s = t0.elapsed().as_secs_f64();
    let mem = ctx.allocated_bytes() - before;
    let est = preset.estimate(format, ctx.caps().f16)?;
    let lm = session.lm().context("the session has an LM")?;
    let lm_read = lm.weight_bytes_per_step();
    let lm_stored = lm.weight_bytes();
    let (table_bytes, table_format) = lm.table_bytes();
    let table_format = table_format.map_or("?".into(), |f| f.name());
    println!(
        "model: {}; embedding tables {table_format}, {:.1} MiB; context {}; load {:.2} s",
        preset.description(&format.name()),
        table_bytes as f64 / (1u64 << 20) as f64,
        lm.config().context,
        load_s
    );
    println!(
        "GPU memory: {:.2} GiB (LM weights {:.2} GiB, Mimi {:.2} GiB, rest: KV caches, activations)",
        gib(mem as f64),
        gib(lm_stored as f64),
        gib(mimi_bytes as f64)
    );
    println!("{}", super::estimate_vs_measured(&est, mem));

    // As a live session runs: frame i + 1 is submitted before frame i is read back. Natively a
    // readback waits for everything submitted so far, so per-frame intervals are those of the
    // results pulled while the next frame was already queued; the mean is the throughput from
    // the last warm-up result to the last result.
    let warmup = 2;
    let total = warmup + b.frames;
    let clock = Instant::now();
    let now = || clock.elapsed().as_secs_f64() * 1e3;
    let times = pollster::block_on(run_frames(
        ctx,
        Workload::Session(&mut session),
        warmup,
        b.frames,
        MAX_IN_FLIGHT,
        &now,
    ))?;
    ctx.check()?;
    let mean = times.mean_ms / 1e3;
    let pct = |p: f64| times.percentile(p) / 1e3;
    let dispatches = times.dispatches;
    let cfg = session.lm().context("the session has an LM")?.config();
    // KV read per frame at the mean position of the timed frames.
    let mean_pos = (warmup + total) as f64 / 2.0;
    let keys = mean_pos.min(cfg.context as f64);
    let kv_read = keys * 2.0 * cfg.dim as f64 * cfg.num_layers as f64 * kv_elem_bytes(ctx) as f64;
    let frame_bytes = lm_read as f64 + mimi_bytes as f64 + kv_read;
    let bound = frame_bytes / (rate / 2.0);
    println!(
        "weights read per frame: LM {:.3} GiB of {:.3} GiB stored, Mimi ≤ {:.3} GiB, KV ≈ {:.3} GiB",
        gib(lm_read as f64),
        gib(lm_stored as f64),
        gib(mimi_bytes as f64),
        gib(kv_read)
    );
    let what = if cfg.dep_q == 0 {
        "Mimi encode + LM"
    } else {
        "Mimi encode + LM + Mimi decode"
    };
    println!(
        "frame ({what}), {} timed: mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms; real-time factor {:.3}",
        b.frames,
        mean * 1e3,
        pct(0.5) * 1e3,
        pct(0.99) * 1e3,
        mean / 0.08
    );
    println!(
        "per frame: {dispatches} dispatches, 1 submit, 1 readback, 0 CPU waits inside the frame"
    );
    let f = session.last_frame();
    let l = f.lm;
    println!(
        "dispatches by group: Mimi encode {}, embeddings {}, temporal {}, text head {}, depformer {} ({} steps), sampling {}, Mimi decode {}",
        f.mimi_encode,
        l.embed,
        l.temporal,
        l.text_head,
        l.depformer,
        cfg.dep_q,
        l.sampling,
        f.mimi_decode
    );
    println!(
        "bandwidth bound: {:.2} ms per frame at the copy rate's read bandwidth ({:.1} GB/s); measured / bound = {:.2}",
        bound * 1e3,
        rate / 2e9,
        mean / bound
    );
    if let Some(n) = b.profile {
        let report = pollster::block_on(profile_frames(ctx, Workload::Session(&mut session), n))?;
        println!("profile:\n{}", report.table().trim_end());
    }
    Ok(())
}
