//! The `parle` binary as a user runs it: Mimi CLI forms, bad inputs, bad checkpoints.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The CLI's WAV module, compiled in: the tests below check its reader and resampler, and
/// `run_writes_speech_transcript_and_reference_tokens` reads the CLI's output with it.
#[path = "../crate/cli/audio.rs"]
#[allow(dead_code)]
mod audio;
use audio::{read_wav_mono, resample, WAV_RATES};

/// A WAV held in memory, decoded to mono f32 at its own rate: `(samples, rate)`.
fn wav_from_bytes(name: &str, bytes: &[u8]) -> Result<(Vec<f32>, u32), audio::AudioError> {
    audio::decode_wav_mono(name, std::io::Cursor::new(bytes))
}

fn parle() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_parle"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mimi")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("parle-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "command failed: {text}");
    text
}

fn run_err(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "command should have failed");
    assert!(!text.contains("panicked"), "must not panic: {text}");
    text
}

#[test]
fn roundtrip_resamples_and_keeps_length() {
    // speech.wav is 22050 Hz 16-bit: 2.22 s -> 28 frames of 1920 samples at 24 kHz.
    let out = tmp("rt.wav");
    run_ok(
        parle()
            .args(["mimi", "roundtrip", "--model"])
            .arg(fixtures().join("tiny_a"))
            .arg(fixtures().join("speech.wav"))
            .arg("-o")
            .arg(&out),
    );
    let r = hound::WavReader::open(&out).unwrap();
    assert_eq!(r.spec().sample_rate, 24000);
    assert_eq!(r.spec().channels, 1);
    let n = r.len() as usize;
    let secs = 48_877.0 / 22_050.0; // speech.wav length
    let want = ((secs * 24_000.0) / 1920.0_f64).ceil() as usize * 1920;
    assert!(n == want || n == 28 * 1920, "got {n} samples, want {want}");
}

#[test]
fn encode_then_decode_matches_roundtrip() {
    let codes = tmp("codes.safetensors");
    let dec = tmp("dec.wav");
    let model = fixtures().join("tiny_c");
    run_ok(
        parle()
            .args(["mimi", "encode", "--model"])
            .arg(&model)
            .arg(fixtures().join("speech.wav"))
            .arg("-o")
            .arg(&codes)
            .args(["--codebooks", "8"]),
    );
    let f = parle::weights::SafetensorsHeader::read_file(&codes).unwrap();
    let e = &f.tensors["codes"];
    assert_eq!(e.shape[..2], [1, 8]);
    run_ok(
        parle()
            .args(["mimi", "decode", "--model"])
            .arg(&model)
            .arg(&codes)
            .arg("-o")
            .arg(&dec),
    );
    let r = hound::WavReader::open(&dec).unwrap();
    assert_eq!(r.len() as usize, e.shape[2] * 1920);
}

#[test]
fn not_a_wav_is_a_clear_error() {
    let bad = tmp("bad.wav");
    std::fs::write(&bad, b"definitely not RIFF audio").unwrap();
    let err = run_err(
        parle()
            .args(["mimi", "encode", "--model"])
            .arg(fixtures().join("tiny_a"))
            .arg(&bad)
            .arg("-o")
            .arg(tmp("x.safetensors")),
    );
    assert!(err.contains("not a WAV"), "{err}");
}

/// Copy tiny_a into a temp model dir, damaged by `damage`, and return the CLI's error text.
fn damaged_model(name: &str, damage: impl Fn(&mut Vec<u8>, &mut String)) -> String {
    let dir = tmp(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = std::fs::read(fixtures().join("tiny_a/model.safetensors")).unwrap();
    let mut config = std::fs::read_to_string(fixtures().join("tiny_a/config.json")).unwrap();
    damage(&mut bytes, &mut config);
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    run_err(
        parle()
            .args(["mimi", "roundtrip", "--model"])
            .arg(&dir)
            .arg(fixtures().join("speech.wav"))
            .arg("-o")
            .arg(tmp("y.wav")),
    )
}

#[test]
fn truncated_checkpoint_names_a_tensor() {
    let err = damaged_model("trunc", |b, _| b.truncate(b.len() - 1000));
    assert!(
        err.contains("truncated") && err.contains("tensor '"),
        "{err}"
    );
}

#[test]
fn misnamed_tensor_names_it_and_its_shape() {
    let err = damaged_model("misnamed", |b, _| {
        let from = b"\"encoder.model.0.conv.conv.weight\"";
        let to = b"\"encoder.model.0.conv.conv.weighx\"";
        let i = b.windows(from.len()).position(|w| w == from).unwrap();
        b[i..i + to.len()].copy_from_slice(to);
    });
    assert!(
        err.contains("'encoder.model.0.conv.conv.weight' is missing") && err.contains("[3, 1, 7]"),
        "{err}"
    );
}

#[test]
fn wrong_shape_names_tensor_and_shapes() {
    // A config that disagrees with the weights: 4 filters instead of 3.
    let err = damaged_model("shape", |_, c| {
        *c = c.replace("\"n_filters\": 3", "\"n_filters\": 4")
    });
    assert!(
        err.contains("has shape [3, 1, 7], expected [4, 1, 7]"),
        "{err}"
    );
}

#[test]
fn not_safetensors_is_a_clear_error() {
    let err = damaged_model("garbage", |b, _| *b = b"garbage garbage garbage".to_vec());
    assert!(err.contains("not a safetensors file"), "{err}");
}

/// `parle info --model DIR` reports each published format of the fixture LM; a directory with no
/// checkpoint is an error listing what it looked for.
#[test]
fn info_reports_model_formats() {
    let lm = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm/formats");
    for (dir, want) in [
        (
            "pytorch_bf16",
            "safetensors with PyTorch names; quantization: bf16",
        ),
        (
            "mlx_q4",
            "safetensors with MLX names; quantization: MLX affine 4-bit, group 32",
        ),
        (
            "mlx_q8",
            "safetensors with MLX names; quantization: MLX affine 8-bit, group 64",
        ),
        (
            "candle_q8_gguf",
            "GGUF with candle names; quantization: Q8_0",
        ),
        (
            "pytorch_q8",
            "safetensors with PyTorch names; quantization: PyTorch int8 (bitsandbytes row-wise)",
        ),
    ] {
        let text = run_ok(parle().args(["info", "--model"]).arg(lm.join(dir)));
        assert!(text.contains(want), "{dir}: {text}");
        assert!(text.contains("tensors: "), "{text}");
        assert!(text.contains("GPU memory estimate: "), "{text}");
        assert!(text.contains("KV cache"), "{text}");
        // The typed config: kind, what the model hears and says, sampling defaults, and why
        // each file was chosen.
        for want in [
            "kind: moshi (hears 8 audio codebooks, says 8 audio codebooks and text)",
            "sampling defaults: text temperature 0.7, top-k 25; audio temperature 0.8, top-k 250",
            "LM file model.",
            ": the first published LM checkpoint name present",
        ] {
            assert!(text.contains(want), "{dir}: {want}: {text}");
        }
    }
    let empty = tmp("no-model");
    std::fs::create_dir_all(&empty).unwrap();
    let e = run_err(parle().args(["info", "--model"]).arg(&empty));
    assert!(
        e.contains("no model weights found (looked for LM checkpoint: model.safetensors"),
        "{e}"
    );
}

/// Integer tensor `name` of a safetensors file as i64.
fn read_i64(path: &Path, name: &str) -> (Vec<i64>, Vec<usize>) {
    use parle::weights::SafetensorsFile;
    let f = SafetensorsFile::open(path).unwrap();
    let shape = f.header.tensors[name].shape.clone();
    let v = f
        .bytes(name, &shape)
        .unwrap()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (v, shape)
}

/// `parle run --greedy` on the tiny delay-1 Moshi and its espeak-ng WAV writes speech, a
/// transcript and the tokens PyPI `moshi` generated (every one of them).
#[test]
fn run_writes_speech_transcript_and_reference_tokens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm/delay1");
    let (wav, txt, tok) = (
        tmp("moshi.wav"),
        tmp("moshi.txt"),
        tmp("tokens.safetensors"),
    );
    let out = run_ok(
        parle()
            .args(["run", "--model"])
            .arg(&dir)
            .arg("--input")
            .arg(dir.join("user.wav"))
            .arg("--output")
            .arg(&wav)
            .arg("--text")
            .arg(&txt)
            .arg("--tokens")
            .arg(&tok)
            .arg("--greedy"),
    );
    println!("{out}");
    assert!(
        out.contains("real-time factor") && out.contains("dispatches"),
        "{out}"
    );
    let (text, ts) = read_i64(&tok, "text");
    let (audio, shape) = read_i64(&tok, "audio");
    let reference = dir.join("reference.safetensors");
    let (want_text, _) = read_i64(&reference, "text");
    let (want_audio, want_shape) = read_i64(&reference, "audio");
    assert_eq!(shape, want_shape, "audio [dep_q, T]");
    assert_eq!(ts, vec![shape[1]], "text [T]");
    assert_eq!(audio, want_audio);
    assert_eq!(text[..], want_text[..shape[1]]);
    let pcm = audio::read_wav_mono(&wav, 24000).unwrap();
    assert_eq!(pcm.len(), shape[1] * 1920);
    assert!(
        pcm.iter().any(|x| x.abs() > 1e-3),
        "Moshi's speech is silent"
    );
    assert!(!std::fs::read_to_string(&txt).unwrap().is_empty());
}

/// A missing input or model directory names the path.
#[test]
fn run_names_missing_paths() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lm/delay1");
    let err = run_err(
        parle()
            .args(["run", "--model"])
            .arg(&dir)
            .args(["--input", "/nonexistent/user.wav", "--output"])
            .arg(tmp("x.wav")),
    );
    assert!(err.contains("/nonexistent/user.wav"), "{err}");
    let err = run_err(
        parle()
            .args(["run", "--model", "/nonexistent/model", "--input"])
            .arg(dir.join("user.wav"))
            .arg("--output")
            .arg(tmp("x.wav")),
    );
    assert!(err.contains("/nonexistent/model"), "{err}");
}

/// A malformed config.json is an error naming it, not a silent fallback to the defaults.
#[test]
fn malformed_config_is_named() {
    let dir = tmp("bad-config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join("tiny_b/model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(dir.join("config.json"), "{\"mimi\": {\"seanet\": [1, 2]").unwrap();
    for args in [vec!["mimi", "roundtrip"], vec!["run"]] {
        let mut c = parle();
        c.args(&args);
        if args[0] == "run" {
            c.arg("--input")
                .arg(fixtures().join("speech.wav"))
                .arg("--output");
        } else {
            c.arg(fixtures().join("speech.wav")).arg("-o");
        }
        c.arg(tmp("y.wav")).arg("--model").arg(&dir);
        let err = run_err(&mut c);
        assert!(err.contains("config.json"), "{args:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI's WAV reader and resampler (crate/cli/audio.rs)

#[test]
fn resample_keeps_a_sine() {
    let from = 22050;
    let x: Vec<f32> = (0..22050)
        .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / from as f32).sin())
        .collect();
    let y = resample(&x, from, 24000).unwrap();
    assert_eq!(y.len(), 24000);
    // Compare with the analytic sine away from the edges.
    let mut err = 0f32;
    for (i, &v) in y.iter().enumerate().skip(2000).take(20000) {
        let t = i as f32 / 24000.0;
        err = err.max((v - (2.0 * std::f32::consts::PI * 440.0 * t).sin()).abs());
    }
    assert!(err < 1e-2, "max error {err}");
}

#[test]
fn resample_extreme_rates() {
    // The ends of WAV_RATES and rates sharing no factor with 24 kHz.
    let x = vec![0.5f32; 3000];
    for from in [*WAV_RATES.start(), *WAV_RATES.end(), 44_101, 767_999] {
        let y = resample(&x, from, 24000).unwrap();
        assert_eq!(y.len(), (3000u64 * 24000).div_ceil(from as u64) as usize);
    }
}

#[test]
fn wav_from_bytes_reads_and_rejects() {
    // 16-bit stereo at 48 kHz: 2 frames.
    let mut b = b"RIFF".to_vec();
    b.extend(44u32.to_le_bytes());
    b.extend(b"WAVEfmt ");
    b.extend(16u32.to_le_bytes());
    for v in [1u16, 2] {
        b.extend(v.to_le_bytes());
    }
    b.extend(48000u32.to_le_bytes());
    b.extend((48000u32 * 4).to_le_bytes());
    for v in [4u16, 16] {
        b.extend(v.to_le_bytes());
    }
    b.extend(b"data");
    b.extend(8u32.to_le_bytes());
    for v in [16384i16, 0, -32768, -32768] {
        b.extend(v.to_le_bytes());
    }
    let (mono, rate) = wav_from_bytes("t.wav", &b).unwrap();
    assert_eq!((mono, rate), (vec![0.25, -1.0], 48000));
    // A sample rate out of range is named (byte rate kept consistent: hound checks it).
    b[24..28].copy_from_slice(&500u32.to_le_bytes());
    b[28..32].copy_from_slice(&2000u32.to_le_bytes());
    let e = wav_from_bytes("t.wav", &b).unwrap_err().to_string();
    assert!(e.starts_with("t.wav: ") && e.contains("500 Hz"), "{e}");
    b[28..32].copy_from_slice(&(48000u32 * 4).to_le_bytes());
    // Truncated data.
    b[24..28].copy_from_slice(&48000u32.to_le_bytes());
    let e = wav_from_bytes("t.wav", &b[..b.len() - 3])
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn rejects_non_wav() {
    let p = std::env::temp_dir().join("parle-not-a-wav.wav");
    std::fs::write(&p, b"this is not audio").unwrap();
    let e = read_wav_mono(&p, 24000).unwrap_err();
    assert!(e.to_string().contains("not a WAV"), "{e}");
}

/// `parle bench lm --preset`: the tiny preset runs a whole frame loop and prints frame time,
/// dispatches and GPU memory; an unknown preset and `--context` on a preset with its own context
/// are refused with the presets or the rule named.
#[test]
fn bench_lm_presets() {
    let out = run_ok(parle().args([
        "bench",
        "lm",
        "--random-real-size",
        "--preset",
        "tiny",
        "--frames",
        "2",
    ]));
    for want in [
        "frame (Mimi encode + LM + Mimi decode), 2 timed: mean",
        "dispatches",
        "GPU memory",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let e = run_err(parle().args(["bench", "lm", "--random-real-size", "--preset", "stt-9b"]));
    assert!(
        e.contains("unknown benchmark preset 'stt-9b'") && e.contains("stt-2.6b"),
        "{e}"
    );
    let e = run_err(parle().args([
        "bench",
        "lm",
        "--random-real-size",
        "--preset",
        "stt-1b",
        "--context",
        "10",
    ]));
    assert!(
        e.contains("--context applies to --preset lm-7b only"),
        "{e}"
    );
}

/// `parle bench lm --profile`: after the timed frames, a table per group of the frame (and per
/// kernel) whose launches add up to the frame's dispatches; timed where the adapter has timestamp
/// queries (lavapipe has), otherwise it says so and prints launches and bytes only.
#[test]
fn bench_lm_profile() {
    let out = run_ok(parle().args([
        "bench",
        "lm",
        "--random-real-size",
        "--preset",
        "tiny",
        "--frames",
        "1",
        "--profile",
    ]));
    let dispatches: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("per frame: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no dispatch count in:\n{out}"));
    let table = out
        .split("profile:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no profile in:\n{out}"));
    let groups = [
        "mimi encode",
        "embedding",
        "temporal",
        "text head",
        "sampling",
        "depformer",
        "mimi decode",
    ];
    let mut launches = 0;
    for g in groups {
        let line = table
            .lines()
            .find(|l| l.starts_with(g) && l[g.len()..].starts_with("  "))
            .unwrap_or_else(|| panic!("no row for {g:?} in:\n{table}"));
        launches += line[g.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no launch count in {line:?}"));
    }
    assert_eq!(launches, dispatches, "the groups' launches:\n{table}");
    assert!(
        table.contains("GPU times from timestamp queries")
            || table.contains(
                "has no timestamp queries (timestamp-query): launches and bytes read only"
            ),
        "the table says whether it is timed:\n{table}"
    );
}
