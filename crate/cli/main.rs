//! The `parle` command line: `parle info`, `parle run`, `parle transcribe`, `parle translate`, `parle mimi …`,
//! `parle bench …`.
//!
//! Native only: on wasm32 (built when `cargo test --target wasm32-unknown-unknown` builds the
//! package's binaries) it is an empty stub.

#[cfg(not(target_arch = "wasm32"))]
mod audio;
#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod mimi;
#[cfg(not(target_arch = "wasm32"))]
mod run;
#[cfg(not(target_arch = "wasm32"))]
mod transcribe;
#[cfg(not(target_arch = "wasm32"))]
mod translate;

#[cfg(not(target_arch = "wasm32"))]
use clap::{Parser, Subcommand};
#[cfg(not(target_arch = "wasm32"))]
use parle::gpu::{Context, Options};

#[cfg(not(target_arch = "wasm32"))]
#[derive(Parser)]
#[command(name = "parle", version, about = "Kyutai's Mimi and Moshi on WebGPU")]
struct Cli {
    /// Never use shader-f16 (also PARLE_FORCE_F32=1).
    #[arg(long, global = true)]
    force_f32: bool,
    /// Never use subgroup operations (also PARLE_NO_SUBGROUPS=1).
    #[arg(long, global = true)]
    no_subgroups: bool,
    #[command(subcommand)]
    command: Command,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Subcommand)]
enum Command {
    /// Print the GPU adapter parle finds and its capabilities (and, with --model, what a model
    /// directory holds).
    Info {
        /// A model directory (or LM checkpoint file): report its format, quantization, tensor
        /// count and GPU bytes.
        #[arg(long)]
        model: Option<std::path::PathBuf>,
    },
    /// Benchmarks that print numbers.
    Bench {
        #[command(subcommand)]
        what: bench::What,
    },
    /// A conversation with Moshi from a WAV file: writes Moshi's speech, transcript, tokens.
    Run(run::RunArgs),
    /// Kyutai STT from a WAV file: streams the text, writes text, word timestamps, tokens.
    Transcribe(transcribe::TranscribeArgs),
    /// Kyutai Hibiki speech translation from a WAV file: writes the translated speech, text,
    /// tokens.
    Translate(translate::TranslateArgs),
    /// Mimi codec: encode, decode, roundtrip.
    Mimi {
        #[command(subcommand)]
        cmd: mimi::MimiCmd,
    },
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// What the typed config says about a model directory: its kind, what it hears and says, its
/// sampling defaults, and why each file was chosen.
#[cfg(not(target_arch = "wasm32"))]
fn model_summary(files: &parle::weights::ModelFiles) -> anyhow::Result<String> {
    use parle::session::ModelConfig;
    let mut cfg = match &files.config_json {
        Some(obj) => ModelConfig::from_object(obj)?,
        None => ModelConfig::default(),
    };
    cfg.codec_only = files.layout.codec_only();
    let s = cfg.sampling();
    let mut out = format!(
        "  kind: {} ({})\n  sampling defaults: text temperature {}, top-k {}; audio temperature {}, top-k {}; seed {}",
        cfg.kind().as_str(),
        cfg.io(),
        s.text_temperature,
        s.text_top_k,
        s.audio_temperature,
        s.audio_top_k,
        s.seed
    );
    if cfg.lm.conditioned() {
        let names: Vec<&str> = cfg.lm.conditioners.keys().map(String::as_str).collect();
        out += &format!(
            "\n  conditioning: lut conditioners {} summed into the input; classifier-free guidance cfg_coef {}",
            names.join(", "),
            cfg.cfg_coef()
        );
    }
    let l = &files.layout;
    for (role, pick) in [
        ("LM", &l.lm),
        ("Mimi", &l.mimi),
        ("tokenizer", &l.tokenizer),
    ] {
        if let Some(p) = pick {
            out.push_str(&format!("\n  {role} file {}: {}", p.name, p.why));
        }
    }
    Ok(out)
}

#[cfg(not(target_arch = "wasm32"))]
fn run(cli: Cli) -> anyhow::Result<()> {
    let report = match &cli.command {
        Command::Info { model: Some(dir) } => {
            let r = parle::weights::inspect::describe(dir)?;
            println!("{r}");
            println!("{}", model_summary(&r.files)?);
            Some(r)
        }
        _ => None,
    };
    let mut opts = Options::from_env();
    opts.force_f32 |= cli.force_f32;
    opts.no_subgroups |= cli.no_subgroups;
    let ctx = pollster::block_on(Context::new(&opts))?;
    match cli.command {
        Command::Info { model } => {
            if let (Some(dir), Some(r)) = (model, report) {
                let f16 = ctx.caps().f16;
                let opts = parle::session::SessionOptions::default();
                let e = parle::session::estimate::estimate_dir(&dir, &opts, f16)?;
                println!(
                    "{e}\n  (on this adapter: shader-f16 {}, so the LM's KV caches are {})",
                    if f16 { "on" } else { "off" },
                    if f16 { "f16" } else { "f32" }
                );
                if e.lm() > 0 && r.files.mimi.is_none() {
                    println!("  (no Mimi checkpoint here: Mimi is counted as the config describes it; a load needs its weights)");
                }
            }
            println!("{}", ctx.caps().report());
            Ok(())
        }
        Command::Bench { what } => bench::run(&ctx, what),
        Command::Mimi { cmd } => mimi::run(&ctx, cmd),
        Command::Run(args) => run::run(&ctx, args),
        Command::Transcribe(args) => transcribe::run(&ctx, args),
        Command::Translate(args) => translate::run(&ctx, args),
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}
