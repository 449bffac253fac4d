//! `parle transcribe`: Kyutai STT from a WAV file, as Kyutai's `stt_from_file_pytorch.py` runs
//! it (`session::stt`: silence prefix, the audio, silence to flush; one LM step per 80 ms frame,
//! greedy). Streams the text on stdout as it comes, then a summary; optionally writes the text,
//! the word timestamps and the tokens.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use parle::gpu::Context;
use parle::session::stt::Transcript;
use parle::session::{Kind, SessionOptions};
use safetensors::tensor::{serialize_to_file, Dtype, TensorView};

use crate::audio;
use crate::run::load_session;

#[derive(Args)]
pub struct TranscribeArgs {
    /// STT model directory (a downloaded Kyutai STT repo: config.json with dep_q 0).
    #[arg(long)]
    model: PathBuf,
    /// The speech: a WAV file of any rate, depth and channel count.
    #[arg(long)]
    input: PathBuf,
    /// Write the transcript here.
    #[arg(long)]
    text: Option<PathBuf>,
    /// Write the words with their start and end times (seconds) here, as JSON.
    #[arg(long)]
    timestamps: Option<PathBuf>,
    /// Write integer `text` [T] (one token per step, prefix and flush included) and, for models
    /// with extra heads, f32 `extra_heads` [T, heads, dim].
    #[arg(long)]
    tokens: Option<PathBuf>,
}

pub fn run(ctx: &Context, a: TranscribeArgs) -> Result<()> {
    // An STT session runs greedy, as Kyutai's script.
    let opts = SessionOptions::default();
    let (mut session, load_s) = load_session(ctx, &a.model, &a.input, &opts)?;
    if session.kind() != Kind::Stt {
        bail!(
            "{} holds no speech-to-text model (its LM has a depformer, dep_q > 0): use `parle run`",
            a.model.display()
        );
    }
    let pcm = audio::read_wav_mono(&a.input, 24000)?;
    if pcm.is_empty() {
        bail!("{}: the file has no samples", a.input.display());
    }
    let plan = session.stt_plan();
    let t0 = Instant::now();
    let mut stdout = std::io::stdout();
    let out = pollster::block_on(session.transcribe(ctx, &pcm, |step| {
        if !step.text.is_empty() {
            let _ = write!(stdout, "{}", step.text);
            let _ = stdout.flush();
        }
    }))?;
    let wall = t0.elapsed().as_secs_f64();
    println!();
    if let Some(p) = &a.text {
        std::fs::write(p, &out.text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.timestamps {
        let words: Vec<_> = out
            .words
            .iter()
            .map(|w| serde_json::json!({"text": w.text, "start": w.start, "end": w.end}))
            .collect();
        let text = serde_json::to_string_pretty(&words)? + "\n";
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.tokens {
        let h = session.lm().map(|lm| lm.extra_heads()).unwrap_or_default();
        write_tokens(p, &out, h.heads, h.dim)?;
    }
    let steps = out.tokens.len();
    let audio_s = steps as f64 / plan.frame_rate;
    println!(
        "{steps} steps ({} silent prefix, {} flush; {:.2} s) on {}; load {:.2} s; real-time factor {:.3} (< 1 is faster than real time); {} dispatches, 1 submit, 1 readback per step; {} words",
        plan.prefix_frames,
        plan.flush_frames,
        audio_s,
        ctx.caps().adapter_name,
        load_s,
        wall / audio_s.max(1e-9),
        session.last_frame().dispatches,
        out.words.len()
    );
    Ok(())
}

/// `text` [T] as i64 and, with extra heads, `extra_heads` [T, heads, dim] as f32.
fn write_tokens(path: &Path, out: &Transcript, heads: usize, dim: usize) -> Result<()> {
    let t = out.tokens.len();
    let text: Vec<u8> = out
        .tokens
        .iter()
        .flat_map(|&x| (x as i64).to_le_bytes())
        .collect();
    let extra: Vec<u8> = out
        .extra_heads
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let mut tensors = vec![("text", TensorView::new(Dtype::I64, vec![t], &text)?)];
    if heads > 0 {
        tensors.push((
            "extra_heads",
            TensorView::new(Dtype::F32, vec![t, heads, dim], &extra)?,
        ));
    }
    serialize_to_file(tensors, None, path).with_context(|| format!("writing {}", path.display()))
}
