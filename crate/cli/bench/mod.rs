//! `parle bench kernels`: time per dispatch and achieved bandwidth, per kernel and shape, and that
//! bandwidth as a fraction of a plain vec4 buffer copy timed in the same run.
//! One file per kernel family lists its cases at the real model's shapes.

mod attention;
mod conv;
mod elementwise;
mod embed;
mod linear;
mod lm;
mod mimi;
mod norm;
mod rope;
mod rvq;
mod sampling;
mod softmax;

use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use parle::gpu::{BufferUsage, Context, GpuBuffer, GpuResult, Recorder};

#[derive(Subcommand)]
pub enum What {
    /// Every kernel at the real model's shapes.
    Kernels {
        /// Dispatches per timed submit.
        #[arg(long, default_value_t = 50)]
        reps: u32,
        /// Only families whose name contains this.
        #[arg(long)]
        only: Option<String>,
    },
    /// Mimi encode and decode per 80 ms frame, real-time factor, dispatches, submits, memory.
    Mimi {
        /// A model directory to benchmark.
        #[arg(long, conflicts_with = "random_real_size")]
        model: Option<std::path::PathBuf>,
        /// The published Mimi's size (default config) with random weights.
        #[arg(long)]
        random_real_size: bool,
        /// Timed frames.
        #[arg(long, default_value_t = 50)]
        frames: usize,
        /// Codebooks (Moshi uses 8).
        #[arg(long, default_value_t = 8)]
        codebooks: usize,
        /// Then profile encode and decode frames: per group and kernel, launches, bytes read and,
        /// where the adapter has timestamp queries, GPU time, GB/s and fraction of a copy's.
        #[arg(long)]
        profile: bool,
    },
    /// Whole frames (Mimi + LM, as a session runs them) at a published model's shapes with
    /// random GPU weights (default: Moshi 7B).
    Lm {
        /// Required: real shapes with random weights made on the GPU.
        #[arg(long, required = true)]
        random_real_size: bool,
        /// Shapes: lm-7b (Moshi 7B), lm-small (Moshi-shaped ~1B), stt-1b, stt-2.6b (Kyutai STT),
        /// hibiki-1b, hibiki-2b (Kyutai Hibiki) or tiny (the test fixture's: a check that it runs).
        #[arg(long, default_value = "lm-7b")]
        preset: String,
        /// Linear weight format: q4, q8, q8_0, bf16 or f32.
        #[arg(long, default_value = "q4")]
        quant: String,
        /// Timed frames (after 2 warm-up frames).
        #[arg(long, default_value_t = 20)]
        frames: usize,
        /// Temporal context of `--preset lm-7b` (KV ring length; default 3000, Moshi's).
        #[arg(long)]
        context: Option<usize>,
        /// Then profile frames: per group (Mimi encode, embedding, temporal, text head,
        /// depformer, sampling, Mimi decode) and kernel, launches, bytes read and, where the
        /// adapter has timestamp queries, GPU time, GB/s and fraction of a copy's.
        #[arg(long)]
        profile: bool,
    },
}

impl What {
    /// `--profile` was given: the device is opened with timestamp queries.
    pub fn profile(&self) -> bool {
        match self {
            What::Kernels { .. } => false,
            What::Mimi { profile, .. } | What::Lm { profile, .. } => *profile,
        }
    }
}

/// Frames profiled after the timed ones (`--profile`).
const PROFILE_FRAMES: usize = 3;

pub fn run(ctx: &Context, what: What) -> Result<()> {
    match what {
        What::Kernels { reps, only } => kernels(ctx, reps, only.as_deref()),
        What::Mimi {
            model,
            random_real_size,
            frames,
            codebooks,
            profile,
        } => mimi::run(
            ctx,
            mimi::MimiBench {
                model: model.as_deref(),
                random: random_real_size,
                frames,
                codebooks,
                profile: profile.then_some(PROFILE_FRAMES),
            },
        ),
        What::Lm {
            random_real_size: _,
            preset,
            quant,
            frames,
            context,
            profile,
        } => lm::run(
            ctx,
            lm::LmBench {
                preset,
                quant,
                frames,
                context,
                profile: profile.then_some(PROFILE_FRAMES),
            },
        ),
    }
}

/// One benchmark row: a closure that records one dispatch (or a short fixed sequence), and the
/// bytes it reads and writes (for GB/s).
/// Records one benchmark step.
pub type RecordFn = Box<dyn Fn(&mut Recorder) -> GpuResult<()>>;

pub struct Case {
    pub name: String,
    pub bytes: u64,
    pub record: RecordFn,
}

impl Case {
    pub fn new(
        name: impl Into<String>,
        bytes: u64,
        record: impl Fn(&mut Recorder) -> GpuResult<()> + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            bytes,
            record: Box::new(record),
        }
    }
}

/// The GPU-memory estimate (computed before the load from config and headers) next to what the
/// load allocated.
pub fn estimate_vs_measured(est: &parle::weights::estimate::GpuEstimate, measured: u64) -> String {
    format!(
        "{est}\nGPU memory estimated {} bytes, allocated {measured} bytes: estimate / allocated = {:.4}",
        est.total(),
        est.total() as f64 / measured.max(1) as f64
    )
}

/// A zero-filled f32 storage buffer of `floats` elements.
pub fn buf(ctx: &Context, label: &str, floats: usize) -> Result<GpuBuffer> {
    Ok(ctx.create_buffer(label, floats as u64 * 4, BufferUsage::Storage)?)
}

fn time_case(ctx: &Context, case: &Case, reps: u32) -> Result<f64> {
    // Warm up: compiles the pipeline and fills the bind-group cache.
    let mut rec = Recorder::new(ctx, "bench warmup");
    (case.record)(&mut rec)?;
    rec.submit()?;
    ctx.wait_idle()?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut rec = Recorder::new(ctx, "bench");
        for _ in 0..reps {
            (case.record)(&mut rec)?;
        }
        let t0 = Instant::now();
        rec.submit()?;
        ctx.wait_idle()?;
        best = best.min(t0.elapsed().as_secs_f64() / reps as f64);
    }
    ctx.check()?;
    Ok(best)
}

type Family = (&'static str, fn(&Context) -> Result<Vec<Case>>);
const FAMILIES: &[Family] = &[
    ("elementwise", elementwise::cases),
    ("linear", linear::cases),
    ("norm", norm::cases),
    ("rope", rope::cases),
    ("attention", attention::cases),
    ("softmax", softmax::cases),
    ("conv", conv::cases),
    ("embed", embed::cases),
    ("rvq", rvq::cases),
    ("sampling", sampling::cases),
];

/// The yardstick: a plain vec4 copy of as much as one binding holds, up to 128 MiB (read + write
/// counted). Returns the case and its bytes per second.
fn copy_rate(ctx: &Context, reps: u32) -> Result<(Case, f64)> {
    let floats = (ctx.caps().max_storage_binding.min(128 << 20) / 4) as usize / 1024 * 1024;
    let (x, y) = (buf(ctx, "copy x", floats)?, buf(ctx, "copy y", floats)?);
    let case = Case::new(
        format!("copy {} MiB (vec4, the yardstick)", (floats * 4) >> 20),
        2 * floats as u64 * 4,
        move |r| parle::kernels::elementwise::copy(r, x.view(), y.view(), floats as u32),
    );
    let t = time_case(ctx, &case, reps.min(20))?;
    let rate = case_rate(&case, t);
    Ok((case, rate))
}

/// The adapter a benchmark ran on, as its first line.
pub fn adapter_line(ctx: &Context) -> String {
    let caps = ctx.caps();
    format!(
        "adapter: {} ({}, {})  f16: {}  subgroups: {}",
        caps.adapter_name,
        caps.backend,
        if caps.is_software {
            "software"
        } else {
            "hardware"
        },
        caps.f16,
        caps.subgroups
    )
}

fn case_rate(case: &Case, t: f64) -> f64 {
    case.bytes as f64 / t
}

fn kernels(ctx: &Context, reps: u32, only: Option<&str>) -> Result<()> {
    println!("{}  reps/submit: {reps}", adapter_line(ctx));
    // GB/s of every kernel as a fraction of this run's plain copy: how close it gets to what
    // the memory system delivers here, comparable across GPUs.
    let (copy, copy_bps) = copy_rate(ctx, reps)?;
    println!(
        "{:<12} {:<66} {:>12} {:>10} {:>8}",
        "family", "kernel / shape", "µs/dispatch", "GB/s", "of copy"
    );
    println!(
        "{:<12} {:<66} {:>12.2} {:>10.2} {:>8.2}",
        "copy",
        copy.name,
        copy.bytes as f64 / copy_bps * 1e6,
        copy_bps / 1e9,
        1.0
    );
    for (family, make) in FAMILIES {
        if only.is_some_and(|o| !family.contains(o)) {
            continue;
        }
        for case in make(ctx)? {
            let t = time_case(ctx, &case, reps)?;
            let rate = case_rate(&case, t);
            println!(
                "{:<12} {:<66} {:>12.2} {:>10.2} {:>8.2}",
                family,
                case.name,
                t * 1e6,
                rate / 1e9,
                rate / copy_bps
            );
        }
    }
    Ok(())
}
