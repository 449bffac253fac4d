//! `parle translate`: Kyutai Hibiki speech translation from a WAV file, as PyPI moshi's
//! `run_inference` runs a `model_type` "hibiki" model (`session::hibiki`: the audio's whole
//! frames, one end-of-input frame, silence until the text's EOS), with the model's own
//! `lm_gen_config` sampling and classifier-free guidance `--cfg` (default its
//! `lm_gen_config.cfg_coef`, else 1). Streams the text on stdout as it comes, then a summary;
//! writes the translated speech and optionally the text and the tokens (as `parle run`'s).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use parle::gpu::Context;
use parle::session::{Kind, SessionOptions};

use crate::audio;
use crate::run::{load_session, write_tokens, Transcript};

#[derive(Args)]
pub struct TranslateArgs {
    /// Hibiki model directory (a downloaded kyutai/hibiki-* repo: config.json with
    /// "model_type": "hibiki").
    #[arg(long)]
    model: PathBuf,
    /// The speech to translate: a WAV file of any rate, depth and channel count.
    #[arg(long)]
    input: PathBuf,
    /// The translated speech, 24 kHz mono WAV.
    #[arg(long)]
    output: PathBuf,
    /// Write the translated text here.
    #[arg(long)]
    text: Option<PathBuf>,
    /// Write integer tensors `text` [T] and `audio` [dep_q, T] (column t = output frame t).
    #[arg(long)]
    tokens: Option<PathBuf>,
    /// Classifier-free guidance coefficient (1: none; Kyutai suggests 3 for Hibiki; default the
    /// model's lm_gen_config.cfg_coef, else 1).
    #[arg(long)]
    cfg: Option<f32>,
}

pub fn run(ctx: &Context, a: TranslateArgs) -> Result<()> {
    let opts = SessionOptions {
        cfg: a.cfg,
        ..SessionOptions::default()
    };
    let (mut session, load_s) = load_session(ctx, &a.model, &a.input, &opts)?;
    if session.kind() != Kind::Hibiki {
        bail!(
            "{} holds no Hibiki model (config.json \"model_type\" is not \"hibiki\"): use `parle run` or `parle transcribe`",
            a.model.display()
        );
    }
    let pcm = audio::read_wav_mono(&a.input, 24000)?;
    if pcm.len() < session.frame_size() {
        bail!(
            "{}: shorter than one 80 ms frame (Kyutai's procedure drops a partial frame)",
            a.input.display()
        );
    }
    let t0 = Instant::now();
    let mut stdout = std::io::stdout();
    let out = pollster::block_on(session.translate(ctx, &pcm, |step| {
        if !step.text.is_empty() {
            let _ = write!(stdout, "{}", step.text);
            let _ = stdout.flush();
        }
    }))?;
    let wall = t0.elapsed().as_secs_f64();
    println!();
    audio::write_wav_mono(&a.output, out.pcm(), 24000)?;
    if let Some(p) = &a.text {
        std::fs::write(p, &out.text).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &a.tokens {
        let t = Transcript {
            pcm: Vec::new(),
            text: String::new(),
            text_tokens: out.text_tokens.clone(),
            audio_tokens: out.audio_tokens.clone(),
        };
        write_tokens(p, &t)?;
    }
    let audio_s = out.steps as f64 * session.frame_size() as f64 / 24000.0;
    println!(
        "{} steps ({} input frames, 1 end of input, then silence; {:.2} s) on {}; cfg {}; {}; load {:.2} s; real-time factor {:.3} (< 1 is faster than real time); {} dispatches, 1 submit, 1 readback per step",
        out.steps,
        pcm.len() / session.frame_size(),
        audio_s,
        ctx.caps().adapter_name,
        session.cfg(),
        if out.ended {
            "the text ended with EOS".to_string()
        } else {
            format!("no EOS within {} frames of silence", parle::session::hibiki::tail_limit(pcm.len() / session.frame_size()))
        },
        load_s,
        wall / audio_s.max(1e-9),
        session.last_frame().dispatches,
    );
    println!(
        "wrote {} ({} samples, {} frames)",
        a.output.display(),
        out.pcm().len(),
        out.text_tokens.len()
    );
    Ok(())
}
