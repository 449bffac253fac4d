//! `parle mimi encode | decode | roundtrip`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use parle::gpu::Context;
use parle::session::{CodecInput, CodecMode, CodecSession};
use parle::weights::SafetensorsFile;
use safetensors::tensor::{serialize_to_file, Dtype, TensorView};

use crate::audio;

#[derive(Subcommand)]
pub enum MimiCmd {
    /// Encode a WAV file (any rate, depth, channels) into codes.
    Encode {
        /// Model directory: Mimi weights (`model.safetensors` or
        /// `tokenizer-e351c8d8-checkpoint125.safetensors`) and an optional `config.json`.
        #[arg(long)]
        model: PathBuf,
        input: PathBuf,
        /// Output safetensors file with tensor `codes` (i64, `[1, N, T]`).
        #[arg(short, long)]
        output: PathBuf,
        /// Number of codebooks (8 for Moshi; at most the model's).
        #[arg(long)]
        codebooks: Option<usize>,
    },
    /// Decode codes into a 24 kHz mono WAV.
    Decode {
        #[arg(long)]
        model: PathBuf,
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Encode then decode a WAV file.
    Roundtrip {
        #[arg(long)]
        model: PathBuf,
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long)]
        codebooks: Option<usize>,
    },
}

pub fn run(ctx: &Context, cmd: MimiCmd) -> Result<()> {
    match cmd {
        MimiCmd::Encode {
            model,
            input,
            output,
            codebooks,
        } => {
            let mut mimi = load(ctx, &model, codebooks)?;
            let (codes, _) = encode(ctx, &mut mimi, &input, CodecMode::Encode)?;
            write_codes(&output, &codes, mimi.num_codebooks())?;
            println!(
                "{}: {} frames × {} codebooks → {}",
                input.display(),
                codes.len(),
                mimi.num_codebooks(),
                output.display()
            );
        }
        MimiCmd::Decode {
            model,
            input,
            output,
        } => {
            let (codes, n_q) = read_codes(&input)?;
            let mut mimi = load(ctx, &model, Some(n_q))?;
            let pcm = decode(ctx, &mut mimi, &codes)?;
            audio::write_wav_mono(&output, &pcm, mimi.sample_rate() as u32)?;
            println!(
                "{}: {} frames → {} samples at 24 kHz → {}",
                input.display(),
                codes.len(),
                pcm.len(),
                output.display()
            );
        }
        MimiCmd::Roundtrip {
            model,
            input,
            output,
            codebooks,
        } => {
            let mut mimi = load(ctx, &model, codebooks)?;
            let (codes, pcm) = encode(ctx, &mut mimi, &input, CodecMode::Roundtrip)?;
            audio::write_wav_mono(&output, &pcm, mimi.sample_rate() as u32)?;
            println!(
                "{}: {} frames × {} codebooks → {} samples → {}",
                input.display(),
                codes.len(),
                mimi.num_codebooks(),
                pcm.len(),
                output.display()
            );
        }
    }
    Ok(())
}

fn load(ctx: &Context, dir: &Path, codebooks: Option<usize>) -> Result<CodecSession> {
    if !dir.is_dir() {
        bail!("model directory {} does not exist", dir.display());
    }
    CodecSession::load_dir(ctx, dir, codebooks)
        .with_context(|| format!("loading Mimi from {}", dir.display()))
}

fn bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template(&format!("{what} {{bar:40}} {{pos}}/{{len}} frames"))
            .expect("valid template"),
    );
    pb
}

/// Encode a whole file (in [`CodecMode::Roundtrip`] decode it again); the last partial frame is
/// zero-padded. Returns the codes and the decoded samples.
fn encode(
    ctx: &Context,
    mimi: &mut CodecSession,
    input: &Path,
    mode: CodecMode,
) -> Result<(Vec<Vec<u32>>, Vec<f32>)> {
    let mut pcm = audio::read_wav_mono(input, mimi.sample_rate() as u32)?;
    let frame = mimi.frame_size();
    if pcm.is_empty() {
        bail!("{}: the file has no samples", input.display());
    }
    pcm.resize(pcm.len().div_ceil(frame) * frame, 0.0);
    let pb = bar(pcm.len() / frame, "encode");
    let (mut codes, mut out) = (Vec::new(), Vec::new());
    let inputs = pcm.chunks(frame).map(|c| CodecInput::Pcm(c, mode));
    pollster::block_on(mimi.run(ctx, inputs, |f| {
        codes.extend(f.codes);
        out.extend(f.pcm.unwrap_or_default());
        pb.inc(1);
    }))?;
    pb.finish_and_clear();
    Ok((codes, out))
}

fn decode(ctx: &Context, mimi: &mut CodecSession, codes: &[Vec<u32>]) -> Result<Vec<f32>> {
    let pb = bar(codes.len(), "decode");
    let mut pcm = Vec::new();
    let inputs = codes.iter().map(|c| CodecInput::Codes(c));
    pollster::block_on(mimi.run(ctx, inputs, |f| {
        pcm.extend(f.pcm.unwrap_or_default());
        pb.inc(1);
    }))?;
    pb.finish_and_clear();
    Ok(pcm)
}

/// Write `codes` as i64 `[1, N, T]`.
fn write_codes(path: &Path, frames: &[Vec<u32>], n_q: usize) -> Result<()> {
    let t = frames.len();
    let data: Vec<u8> = (0..n_q)
        .flat_map(|l| frames.iter().flat_map(move |f| (f[l] as i64).to_le_bytes()))
        .collect();
    let view = TensorView::new(Dtype::I64, vec![1, n_q, t], &data)?;
    serialize_to_file([("codes", view)], None, path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Read tensor `codes` (`[1, N, T]` or `[N, T]`, any integer dtype) as T frames of N codes.
fn read_codes(path: &Path) -> Result<(Vec<Vec<u32>>, usize)> {
    let f = SafetensorsFile::open(path)?;
    let e = f
        .header
        .tensors
        .get("codes")
        .with_context(|| format!("{}: no tensor named 'codes'", path.display()))?
        .clone();
    let (n_q, t) = match e.shape.as_slice() {
        [1, n, t] | [n, t] => (*n, *t),
        s => bail!(
            "{}: 'codes' has shape {s:?}, expected [1, N, T]",
            path.display()
        ),
    };
    let bytes = f.bytes("codes", &e.shape)?;
    use parle::weights::DType;
    let vals: Vec<i64> = match e.dtype {
        DType::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8")))
            .collect(),
        DType::I32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4")) as i64)
            .collect(),
        DType::U32 => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")) as i64)
            .collect(),
        d => bail!(
            "{}: 'codes' has dtype {}, expected an integer type",
            path.display(),
            d.name()
        ),
    };
    if let Some(bad) = vals.iter().find(|&&v| v < 0) {
        bail!("{}: negative code {bad}", path.display());
    }
    let frames = (0..t)
        .map(|f| (0..n_q).map(|l| vals[l * t + f] as u32).collect())
        .collect();
    Ok((frames, n_q))
}
