//! `parle bench lm`: whole Moshi frames (Mimi encode + LM step + Mimi decode, as a live session
//! runs them through `Session`) at the 7B's shapes with random weights made on the GPU. Prints
//! frame times, dispatches, submits, readbacks, weight bytes read vs stored, GPU memory, and the
//! frame's bandwidth bound from a buffer copy timed in the same run.

use std::time::Instant;

use anyhow::{Context as _, Result};
use parle::gpu::{BufferUsage, Context, Recorder};
use parle::kernels::attention::kv_elem_bytes;
use parle::lm::{LmConfig, LmOptions, Sampling};
use parle::mimi::{Mimi, MimiConfig};
use parle::nn::Weights;
use parle::session::{ModelParts, Session, SessionOptions, MAX_IN_FLIGHT};
use parle::weights::quant_format;
use parle::weights::RandomWeights;

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
    pub quant: String,
    pub frames: usize,
    pub context: usize,
}

pub fn run(ctx: &Context, b: LmBench) -> Result<()> {
    let format = quant_format(&b.quant)
        .with_context(|| format!("--quant {}: expected q4, q8, q8_0, bf16 or f32", b.quant))?;
    println!("{}", super::adapter_line(ctx));
    let rate = copy_rate(ctx)?;
    println!("buffer copy: {:.1} GB/s (read + write)", rate / 1e9);

    // Mimi's own weight bytes, measured by loading it alone first.
    let before = ctx.allocated_bytes();
    let mimi_src = RandomWeights { seed: 1 };
    let mimi_bytes = {
        let _m = Mimi::load(ctx, MimiConfig::default(), &mimi_src, Some(8))?;
        ctx.allocated_bytes() - before
    };

    let cfg = LmConfig {
        context: b.context,
        ..LmConfig::default()
    };
    let config_json = format!("{{\"context\": {}}}", b.context);
    let before = ctx.allocated_bytes();
    let t0 = Instant::now();
    let opts = SessionOptions {
        sampling: Sampling::default(),
        lm: LmOptions::default(),
        ..SessionOptions::default()
    };
    let parts = ModelParts {
        config: Some(&config_json),
        mimi: &mimi_src,
        lm: Some(Weights::Random { format, seed: 7 }),
        tokenizer: None,
    };
    let mut session = Session::load(ctx, parts, &opts)?;
    ctx.wait_idle()?;
    let load_s = t0.elapsed().as_secs_f64();
    let mem = ctx.allocated_bytes() - before;
    let lm = session.lm().context("the session has an LM")?;
    let lm_read = lm.weight_bytes_per_step();
    let lm_stored = lm.weight_bytes();
    println!(
        "model: Moshi 7B shapes, random weights, linear weights {} (embeddings bf16), context {}; load {:.2} s",
        format.name(),
        b.context,
        load_s
    );
    println!(
        "GPU memory: {:.2} GiB (LM weights {:.2} GiB, Mimi {:.2} GiB, rest: KV caches, activations)",
        gib(mem as f64),
        gib(lm_stored as f64),
        gib(mimi_bytes as f64)
    );

    let frame = session.frame_size();
    let pcm: Vec<f32> = (0..frame)
        .map(|i| 0.3 * ((i as f32) * 0.01 + (i * i) as f32 * 1e-6).sin())
        .collect();
    // As a live session runs: frame i + 1 is submitted before frame i is read back. Natively a
    // readback waits for everything submitted so far, so per-frame intervals are those of the
    // results pulled while the next frame was already queued; the mean is the throughput from
    // the last warm-up result to the last result.
    let warmup = 2;
    let total = warmup + b.frames;
    let mut times = Vec::with_capacity(b.frames);
    let mut dispatches = 0;
    let mut pulled = 0;
    let mut last = Instant::now();
    let mut start = Instant::now();
    for _ in 0..total {
        session.push(ctx, &pcm)?;
        dispatches = session.last_frame().dispatches;
        if session.in_flight() == MAX_IN_FLIGHT {
            pollster::block_on(session.pull(ctx))?;
            pulled += 1;
            if pulled > warmup {
                times.push(last.elapsed().as_secs_f64());
            }
            if pulled == warmup {
                start = Instant::now();
            }
            last = Instant::now();
        }
    }
    while session.in_flight() > 0 {
        pollster::block_on(session.pull(ctx))?;
    }
    let mean = start.elapsed().as_secs_f64() / b.frames.max(1) as f64;
    ctx.check()?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if sorted.is_empty() {
            mean
        } else {
            sorted[((sorted.len() - 1) as f64 * p).round() as usize]
        }
    };
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
    println!(
        "frame (Mimi encode + LM + Mimi decode), {} timed: mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms; real-time factor {:.3}",
        b.frames,
        mean * 1e3,
        pct(0.5) * 1e3,
        pct(0.99) * 1e3,
        mean / 0.08
    );
    println!(
        "per frame: {dispatches} dispatches, 1 submit, 1 readback, 0 CPU waits inside the frame"
    );
    println!(
        "bandwidth bound: {:.2} ms per frame at the copy rate's read bandwidth ({:.1} GB/s); measured / bound = {:.2}",
        bound * 1e3,
        rate / 2e9,
        mean / bound
    );
    Ok(())
}
