//! The GPU-memory estimate (`parle::weights::estimate`, computed from headers and config without
//! a GPU) against what loading the model allocates (`Context::allocated_bytes`): every fixture
//! model (the three tiny Mimis, the delay-1/2 Moshis, the tiny LM in every checkpoint format,
//! Kyutai's test LM) and the random-weight benchmark presets small enough for lavapipe must be
//! within 5 % (the STT presets' structure through the tiny STT fixture's config). Every ratio is
//! printed. The ~1B, 7B and STT 1B / 2.6B presets' estimates are printed, not loaded
//! (1.7 and 5.5 GB: more than this test should take on a CPU adapter); with
//! `PARLE_MEMORY_LM_SMALL=1` the ~1B preset (q4) is loaded and compared too.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};

use parle::gpu::{Context, Options};

use parle::lm::{Lm, LmConfig, LmOptions};
use parle::nn::Weights;
use parle::session::bench::Preset;
use parle::session::estimate::{canonical_lm, estimate, estimate_dir};
use parle::session::{Session, SessionOptions};
use parle::weights::estimate::{GpuEstimate, LinearSource};
use parle::weights::{open_container, quant_format, TensorSource, WeightFormat};

/// Allowed |estimate / measured − 1|.
const TOLERANCE: f64 = 0.05;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn ctx() -> Context {
    pollster::block_on(Context::new(&Options::from_env())).expect("no GPU adapter")
}

/// Compare, print, and return a failure line when outside the tolerance.
fn compare(what: &str, est: u64, measured: u64, detail: &GpuEstimate) -> Option<String> {
    let ratio = est as f64 / measured as f64;
    let ok = (ratio - 1.0).abs() <= TOLERANCE;
    println!(
        "{what}: estimate {est} B, allocated {measured} B, ratio {ratio:.4} {}",
        if ok { "ok" } else { "OUT OF TOLERANCE" }
    );
    if !ok {
        println!("{detail}");
    }
    (!ok).then(|| format!("{what}: estimate {est} vs allocated {measured} (×{ratio:.4})"))
}

/// The estimate of the fixture directory `dir` against what `Session::load_dir` allocates.
fn session_case(ctx: &Context, dir: &str, opts: &SessionOptions, what: &str) -> Option<String> {
    let path = fixtures().join(dir);
    let est = estimate_dir(&path, opts, ctx.caps().f16).unwrap();
    let before = ctx.allocated_bytes();
    let session = Session::load_dir(ctx, &path, opts).unwrap();
    let measured = ctx.allocated_bytes() - before;
    drop(session);
    compare(what, est.total(), measured, &est)
}

#[test]
fn estimate_matches_allocated_bytes() {
    let ctx = ctx();
    let f16 = ctx.caps().f16;
    println!("adapter: {} (shader-f16: {f16})", ctx.caps().adapter_name);
    let mut failures = Vec::new();

    // Whole sessions from model directories (the Mimis run the codec loopback).
    for dir in [
        "mimi/tiny_a",
        "mimi/tiny_b",
        "mimi/tiny_c",
        "lm/delay1",
        "lm/delay2",
        "lm/depsplit",
        "stt/tiny",
        "stt/tiny_mlx_q4",
    ] {
        for f32_cache in [false, true] {
            let mut opts = SessionOptions::default();
            opts.lm.f32_cache = f32_cache;
            let what = format!("{dir} (session, f32 KV cache: {f32_cache})");
            failures.extend(session_case(&ctx, dir, &opts, &what));
            if dir.starts_with("mimi") {
                break; // Mimi's caches are f32 either way
            }
        }
    }

    // The tiny Hibiki: conditioning rows, and a second lane under classifier-free guidance.
    for cfg in [1.0f32, 3.0] {
        let opts = SessionOptions {
            cfg: Some(cfg),
            ..SessionOptions::default()
        };
        let what = format!("hibiki/tiny --cfg {cfg} (session)");
        failures.extend(session_case(&ctx, "hibiki/tiny", &opts, &what));
    }

    // The delay-1 Moshi with its linears converted at load.
    for q in ["q4", "q8", "q8_0", "bf16"] {
        let mut opts = SessionOptions::default();
        opts.weights.quant = quant_format(q);
        let what = format!("lm/delay1 --quant {q} (session)");
        failures.extend(session_case(&ctx, "lm/delay1", &opts, &what));
    }

    // LM-only checkpoints: every published format of the tiny LM, and Kyutai's test LM.
    let formats = fixtures().join("lm/formats");
    let mut lms: Vec<(String, PathBuf, PathBuf)> = [
        ("pytorch_bf16", "model.safetensors"),
        ("pytorch_q8", "model.q8.safetensors"),
        ("mlx_q4", "model.q4.safetensors"),
        ("mlx_q8", "model.q8.safetensors"),
        ("candle_q8_gguf", "model.q8.gguf"),
    ]
    .iter()
    .map(|(d, f)| {
        (
            format!("lm/formats/{d}"),
            formats.join(d).join("config.json"),
            formats.join(d).join(f),
        )
    })
    .collect();
    let k = fixtures().join("kyutai-test-lm");
    lms.push((
        "kyutai-test-lm".into(),
        k.join("config.json"),
        k.join("test_lm_model.safetensors"),
    ));
    for (what, config, file) in &lms {
        let text = std::fs::read_to_string(config).unwrap();
        let ck = canonical_lm(Some(&text), open_container(file).unwrap()).unwrap();
        for (f32_cache, tables) in [(false, None), (true, None), (true, Some(WeightFormat::F32))] {
            let mut opts = SessionOptions::default();
            opts.lm.f32_cache = f32_cache;
            opts.lm.tables = tables;
            let src = LinearSource::Checkpoint {
                src: &ck as &dyn TensorSource,
                quant: None,
            };
            let est = estimate(Some(&text), Some(src), &opts, f16).unwrap();
            let cfg = LmConfig::from_json(&text).unwrap();
            let lm_opts = LmOptions { f32_cache, tables };
            let before = ctx.allocated_bytes();
            let lm = Lm::load(&ctx, cfg, &Weights::checkpoint(&ck), &lm_opts).unwrap();
            let measured = ctx.allocated_bytes() - before;
            drop(lm);
            let what = format!("{what} (LM alone, f32 KV cache: {f32_cache}, tables {tables:?})");
            failures.extend(compare(&what, est.lm(), measured, &est));
        }
    }

    // Random-weight benchmark presets small enough for a CPU adapter, and the STT presets'
    // structure (no depformer, 32 codebooks in, extra heads) at the tiny STT fixture's size.
    let stt_tiny = Preset::Custom {
        config: Some(include_str!("fixtures/stt/tiny/config.json").into()),
        lm: true,
    };
    for (preset, format) in [
        (Preset::Tiny, WeightFormat::MLX_Q4),
        (Preset::Tiny, WeightFormat::Bf16),
        (Preset::Mimi, WeightFormat::F32),
        (stt_tiny.clone(), WeightFormat::MLX_Q4),
        (stt_tiny, WeightFormat::Bf16),
    ] {
        let est = preset.estimate(format, f16).unwrap();
        let before = ctx.allocated_bytes();
        let session = preset.load(&ctx, format).unwrap();
        ctx.wait_idle().unwrap();
        let measured = ctx.allocated_bytes() - before;
        drop(session);
        let name = match &preset {
            Preset::Custom { .. } => "custom (the tiny STT fixture's config)".to_string(),
            p => format!("{p:?}"),
        };
        let what = format!("preset {name} ({})", format.name());
        failures.extend(compare(&what, est.total(), measured, &est));
    }

    if std::env::var_os("PARLE_MEMORY_LM_SMALL").is_some() {
        let (preset, format) = (Preset::LmSmall, WeightFormat::MLX_Q4);
        let est = preset.estimate(format, f16).unwrap();
        let before = ctx.allocated_bytes();
        let session = preset.load(&ctx, format).unwrap();
        ctx.wait_idle().unwrap();
        let measured = ctx.allocated_bytes() - before;
        drop(session);
        let what = format!("preset {preset:?} ({})", format.name());
        failures.extend(compare(&what, est.total(), measured, &est));
    }

    // The big presets: printed (loading them takes GBs and minutes on a CPU adapter).
    for (preset, format) in [
        (Preset::LmSmall, WeightFormat::MLX_Q4),
        (Preset::Lm7b { context: 500 }, WeightFormat::MLX_Q4),
        (Preset::Lm7b { context: 3000 }, WeightFormat::Bf16),
        (Preset::Stt1b, WeightFormat::MLX_Q4),
        (Preset::Stt2b6, WeightFormat::MLX_Q4),
    ] {
        for f16 in [true, false] {
            let est = preset.estimate(format, f16).unwrap();
            println!(
                "preset {preset:?} ({}, shader-f16 {f16}): estimate {} B (not loaded here)\n{est}",
                format.name(),
                est.total()
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Inputs a load would refuse are refused by the estimate too, with the load's message.
#[test]
fn estimate_refuses_what_a_load_refuses() {
    let opts = SessionOptions {
        codebooks: Some(99),
        ..SessionOptions::default()
    };
    let e = estimate_dir(&fixtures().join("mimi/tiny_a"), &opts, false).unwrap_err();
    assert!(e.to_string().contains("99 codebooks requested"), "{e}");
    let lm = Some(LinearSource::Random(WeightFormat::MLX_Q4));
    let e = estimate(
        Some("{\"dim\": \"big\"}"),
        lm,
        &SessionOptions::default(),
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("dim"), "{e}");
    let e = estimate_dir(
        &fixtures().join("no-such-model"),
        &SessionOptions::default(),
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no-such-model"), "{e}");
}
