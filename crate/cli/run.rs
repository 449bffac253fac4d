//! `parle run`: a conversation with Moshi from files. The input WAV is the microphone (one
//! 1920-sample frame per step), followed by `max(delays) + 1` silent frames so that every frame
//! Moshi answered comes out; writes Moshi's speech, the transcript and optionally the tokens.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use parle::gpu::Context;
use parle::session::{
    quant_format, Kind, SamplingSettings, Session, SessionOptions, StepOutput, WeightOptions,
};
use safetensors::tensor::{serialize_to_file, Dtype, TensorView};

use crate::audio;

#[derive(Args)]
pub struct RunArgs {
    /// Model directory (a downloaded Kyutai repo, or a Mimi-only directory for the loopback).
    #[arg(long)]
    model: PathBuf,
    /// The user's speech: a WAV file of any rate, depth and channel count.
    #[arg(long)]
    input: PathBuf,
    /// Moshi's speech, 24 kHz mono WAV.
    #[arg(long)]
    output: PathBuf,
    /// Write the transcript of Moshi's words here.
    #[arg(long)]
    text: Option<PathBuf>,
    /// Write integer tensors `text` [T] and `audio` [dep_q, T] (column t = Moshi's frame t).
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Greedy decoding (argmax) instead of sampling.
    #[arg(long)]
    greedy: bool,
    /// Sampling seed (default 0).
    #[arg(long)]
    seed: Option<u32>,
    /// Text temperature and top-k (default: the model's config.json `lm_gen_config`, else
    /// PyTorch LMGen's).
    #[arg(long)]
    text_temperature: Option<f32>,
    #[arg(long)]
    text_top_k: Option<u32>,
    /// Audio temperature and top-k (default: as for the text).
    #[arg(long)]
    audio_temperature: Option<f32>,
    #[arg(long)]
    audio_top_k: Option<u32>,
    /// Convert the LM's weights at load: q4 (MLX 4-bit, group 32), q8 (MLX 8-bit, group 64),
    /// q8_0 (ggml), bf16 or f32.
    #[arg(long)]
    quant: Option<String>,
}

fn options(a: &RunArgs) -> Result<SessionOptions> {
    let quant = match &a.quant {
        Some(q) => Some(
            quant_format(q)
                .with_context(|| format!("--quant {q}: expected one of q4, q8, q8_0, bf16, f32"))?,
        ),
        None => None,
    };
    // Only what the flags give; the rest is the model's (`ModelConfig::sampling`).
    let sampling = SamplingSettings {
        greedy: a.greedy.then_some(true),
        seed: a.seed,
        text_temperature: a.text_temperature,
        text_top_k: a.text_top_k,
        audio_temperature: a.audio_temperature,
        audio_top_k: a.audio_top_k,
    };
    Ok(SessionOptions {
        sampling,
        weights: WeightOptions { quant },
        ..SessionOptions::default()
    })
}

/// What a run produced.
pub(crate) struct Transcript {
    pub(crate) pcm: Vec<f32>,
    pub(crate) text: String,
    pub(crate) text_tokens: Vec<u32>,
    pub(crate) audio_tokens: Vec<Vec<u32>>,
}

impl Transcript {
    fn take(&mut self, out: StepOutput) {
        if let Some(p) = out.pcm {
            self.pcm.extend(p);
        }
        self.text.push_str(&out.text);
        if let Some(t) = out.text_token {
            self.text_tokens.push(t);
        }
        if let Some(a) = out.audio_tokens {
            self.audio_tokens.push(a);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The commands that run a model on a WAV file (`run`, `transcribe`, `translate`): check that
/// `input` is a file and `model` a directory, then load the session; also the load's seconds.
pub fn load_session(
    ctx: &Context,
    model: &Path,
    input: &Path,
    opts: &SessionOptions,
) -> Result<(Session, f64)> {
    if !input.is_file() {
        bail!("input {} does not exist", input.display());
    }
    if !model.is_dir() {
        bail!("model directory {} does not exist", model.display());
    }
    let t_load = Instant::now();
    let session = Session::load_dir(ctx, model, opts)
        .with_context(|| format!("loading the model in {}", model.display()))?;
    Ok((session, t_load.elapsed().as_secs_f64()))
}

pub fn run(ctx: &Context, a: RunArgs) -> Result<()> {
    let opts = options(&a)?;
    let (mut session, load_s) = load_session(ctx, &a.model, &a.input, &opts)?;
    let frame = session.frame_size();
    let mut pcm = audio::read_wav_mono(&a.input, 24000)?;
    if pcm.is_empty() {
        bail!("{}: the file has no samples", a.input.display());
    }
    pcm.resize(pcm.len().div_ceil(frame) * frame, 0.0);
    let extra = match session.kind() {
        Kind::Moshi => session.latency_frames() + 1,
        Kind::Mimi => 0,
        Kind::Stt => bail!(
            "{} holds a speech-to-text model (no depformer, no audio out): use `parle transcribe`",
            a.model.display()
        ),
        Kind::Hibiki => bail!(
            "{} holds a Hibiki translation model (model_type \"hibiki\"): use `parle translate`",
            a.model.display()
        ),
    };
    pcm.resize(pcm.len() + extra * frame, 0.0);
    let frames: Vec<&[f32]> = pcm.chunks(frame).collect();
    let pb = ProgressBar::new(frames.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} frames {msg}").expect("valid template"),
    );
    let mut out = Transcript {
        pcm: Vec::new(),
        text: String::new(),
        text_tokens: Vec::new(),
        audio_tokens: Vec::new(),
    };
    // Two frames in flight: frame i+1 is submitted before frame i is read back.
    let mut times = Vec::with_capacity(frames.len());
    let t0 = Instant::now();
    let mut last = Instant::now();
    let mut dispatches = 0;
    for f in &frames {
        session.push(ctx, f)?;
        dispatches = dispatches.max(session.last_frame().dispatches);
        if session.in_flight() == parle::session::MAX_IN_FLIGHT {
            let o = pollster::block_on(session.pull(ctx))?;
            if !o.text.is_empty() {
                pb.set_message(o.text.trim().to_string());
            }
            out.take(o);
            times.push(last.elapsed().as_secs_f64());
            last = Instant::now();
            pb.inc(1);
        }
    }
    while session.in_flight() > 0 {
        out.take(pollster::block_on(session.pull(ctx))?);
        times.push(last.elapsed().as_secs_f64());
        last = Instant::now();
        pb.inc(1);
    }
    pb.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();
    audio::write_wav_mono(&a.output, &out.pcm, 24000)?;
    if let Some(p) = &a.text {
        std::fs::write(p, &out.text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.tokens {
        write_tokens(p, &out)?;
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let audio_s = frames.len() as f64 * frame as f64 / 24000.0;
    println!(
        "{} frames ({:.2} s of audio) on {} ({}); load {:.2} s",
        frames.len(),
        audio_s,
        ctx.caps().adapter_name,
        match session.kind() {
            Kind::Moshi => "Moshi",
            Kind::Mimi => "Mimi loopback",
            Kind::Stt => "STT",
            Kind::Hibiki => "Hibiki",
        },
        load_s
    );
    println!(
        "frame time mean {:.2} ms, p50 {:.2} ms, p99 {:.2} ms; real-time factor {:.3} (< 1 is faster than real time); {} dispatches, 1 submit, 1 readback per frame",
        mean * 1e3,
        percentile(&sorted, 0.5) * 1e3,
        percentile(&sorted, 0.99) * 1e3,
        wall / audio_s,
        dispatches
    );
    println!(
        "wrote {} ({} samples){}",
        a.output.display(),
        out.pcm.len(),
        if out.text.is_empty() {
            String::new()
        } else {
            format!("; transcript: {}", out.text.trim())
        }
    );
    Ok(())
}

/// `text` [T] and `audio` [N, T] as i64.
pub(crate) fn write_tokens(path: &Path, out: &Transcript) -> Result<()> {
    let t = out.audio_tokens.len();
    let n = out.audio_tokens.first().map_or(0, |a| a.len());
    let audio: Vec<u8> = (0..n)
        .flat_map(|k| {
            out.audio_tokens
                .iter()
                .flat_map(move |f| (f[k] as i64).to_le_bytes())
        })
        .collect();
    let text: Vec<u8> = out
        .text_tokens
        .iter()
        .flat_map(|&x| (x as i64).to_le_bytes())
        .collect();
    let audio_view = TensorView::new(Dtype::I64, vec![n, t], &audio)?;
    let mut tensors = vec![("audio", audio_view)];
    let text_view;
    if !out.text_tokens.is_empty() {
        text_view = TensorView::new(Dtype::I64, vec![out.text_tokens.len()], &text)?;
        tensors.push(("text", text_view));
    }
    serialize_to_file(tensors, None, path).with_context(|| format!("writing {}", path.display()))
}
