//! Golden checks of the LM against Kyutai's reference outputs, shared by the native tests
//! (tests/lm.rs, lavapipe) and the browser tests (tests/web_lm.rs, Chromium's WebGPU). Fixture
//! files are compiled in (`include_bytes!`) so both targets read the same bytes.
#![allow(dead_code)]

use parle::gpu::{Context, Recorder};
use parle::lm::{Lm, LmConfig, LmOptions, TokenChoice};
use parle::nn::Weights;
use parle::session::{ModelParts, Session, SessionOptions};
use parle::text::Tokenizer;
use parle::weights::{Checkpoint, MemorySafetensors, TensorSource, WeightFormat};

pub struct Tensors(pub MemorySafetensors);

/// An LM checkpoint (any published format) under the canonical names the LM asks for.
pub fn lm_checkpoint(bytes: &[u8]) -> Checkpoint {
    Checkpoint::from_bytes("model.safetensors", bytes.to_vec(), None).expect("fixture parses")
}

impl Tensors {
    pub fn new(name: &str, bytes: &[u8]) -> Self {
        Self(MemorySafetensors::new(name, bytes.to_vec()).expect("fixture parses"))
    }
    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.0.header.tensors[name].shape.clone()
    }
    pub fn f32(&self, name: &str) -> Vec<f32> {
        self.0.f32(name, &self.shape(name)).expect("f32 tensor")
    }
    pub fn i64(&self, name: &str) -> Vec<i64> {
        let shape = self.shape(name);
        self.0
            .bytes(name, &shape)
            .expect("i64 tensor")
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    }
    /// The JSON a fixture script stored under the metadata key `fixture`.
    pub fn meta(&self) -> serde_json::Value {
        let m = &self.0.header.metadata;
        serde_json::from_str(&m["fixture"]).expect("fixture metadata")
    }
}

/// The samples of a 16-bit mono WAV fixture as the references read them: int16 / 32768.
pub fn wav_pcm16(wav: &[u8]) -> Vec<f32> {
    let data = wav
        .windows(4)
        .position(|w| w == b"data")
        .expect("data chunk")
        + 8;
    wav[data..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
        .collect()
}

/// A fixture model directory's files, compiled in.
pub struct FixtureModel<'a> {
    pub config: &'a str,
    pub model: &'a [u8],
    pub mimi: &'a [u8],
    pub tokenizer: &'a [u8],
}

/// A session of a fixture model, loaded as `Session::load_dir` would load its directory.
pub fn fixture_session(ctx: &Context, m: &FixtureModel, opts: &SessionOptions) -> Session {
    let model = Checkpoint::new(
        Box::new(MemorySafetensors::new("model.safetensors", m.model.to_vec()).unwrap()),
        None,
    )
    .unwrap();
    let mimi = Tensors::new("mimi.safetensors", m.mimi);
    let parts = ModelParts {
        config: Some(m.config),
        mimi: &mimi.0,
        lm: Some(Weights::checkpoint(&model)),
        tokenizer: Some(Tokenizer::from_bytes("tokenizer.model", m.tokenizer).unwrap()),
    };
    Session::load(ctx, parts, opts).unwrap()
}

/// The native GPU adapter (lavapipe in CI), named in the test's output.
#[cfg(not(target_arch = "wasm32"))]
pub fn native_context() -> Context {
    let ctx =
        pollster::block_on(Context::new(&parle::gpu::Options::from_env())).expect("no GPU adapter");
    println!(
        "adapter: {} (f16 {}, subgroups {})",
        ctx.caps().adapter_name,
        ctx.caps().f16,
        ctx.caps().subgroups
    );
    ctx
}

/// Largest absolute difference and where it is.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| ((x - y).abs(), i))
        .fold((0.0, 0), |m, v| if v.0 > m.0 { v } else { m })
}

/// Run one teacher-forced step: write the step's output tokens, record, submit, read logits.
pub async fn forced_step(
    ctx: &Context,
    lm: &mut Lm,
    forced: &[u32],
) -> Result<(Vec<f32>, Vec<f32>), String> {
    ctx.write(&lm.forced_tokens, 0, bytemuck::cast_slice(forced));
    let mut rec = Recorder::new(ctx, "forced step");
    lm.record_step(&mut rec, TokenChoice::Forced)
        .map_err(|e| e.to_string())?;
    rec.submit().map_err(|e| e.to_string())?;
    let text = ctx
        .read_f32(&lm.text_logits)
        .await
        .map_err(|e| e.to_string())?;
    let audio = ctx
        .read_f32(&lm.audio_logits)
        .await
        .map_err(|e| e.to_string())?;
    Ok((text, audio))
}

/// What a golden comparison found.
#[derive(Debug, Default)]
pub struct Report {
    pub compared: usize,
    pub max_err: f32,
    pub lines: Vec<String>,
}

/// Kyutai's own tiny LM (`tests/fixtures/kyutai-test-lm`, copied from kyutai-labs/moshi): LayerNorm, sinusoidal
/// positions in both transformers, context 4 (the ring wraps), delays [0, 1, 2, 4], low-rank
/// depformer embeddings, weight schedule [0, 1, 1]. `LMModel.forward` teacher-forced on the
/// codes; its logits are undelayed: codebook k's logits at step s are at position s − d_k.
pub async fn kyutai_test_lm(ctx: &Context, f32_cache: bool, tol: f32) -> Result<Report, String> {
    let cfg_text = include_str!("../fixtures/kyutai-test-lm/config.json");
    // Under canonical names: the stacked depformer attention is served per weight set.
    let model = Checkpoint::from_bytes(
        "test_lm_model.safetensors",
        include_bytes!("../fixtures/kyutai-test-lm/test_lm_model.safetensors").to_vec(),
        None,
    )
    .map_err(|e| e.to_string())?;
    let codes_t = Tensors::new(
        "test_lm_codes.safetensors",
        include_bytes!("../fixtures/kyutai-test-lm/test_lm_codes.safetensors"),
    );
    let out = Tensors::new(
        "test_lm_out.safetensors",
        include_bytes!("../fixtures/kyutai-test-lm/test_lm_out.safetensors"),
    );
    let cfg = LmConfig::from_json(cfg_text).map_err(|e| e.to_string())?;
    let opts = LmOptions {
        tables: Some(WeightFormat::F32),
        f32_cache,
    };
    let mut lm = Lm::load(ctx, cfg.clone(), &Weights::checkpoint(&model), &opts)
        .map_err(|e| e.to_string())?;
    let codes = codes_t.i64("codes");
    let [b_n, k_n, t_n] = codes_t.shape("codes")[..] else {
        return Err("codes must be [B, K, T]".into());
    };
    let logits = out.f32("logits");
    let text_logits = out.f32("text_logits");
    let (card, text_card) = (cfg.card, cfg.text_card);
    let mut report = Report::default();
    for b in 0..b_n {
        lm.reset(ctx);
        let code = |k: usize, t: isize| -> u32 {
            if t < 0 {
                0
            } else {
                codes[(b * k_n + k) * t_n + t as usize] as u32
            }
        };
        for s in 0..t_n {
            let mut forced = vec![code(0, s as isize)];
            for k in 0..cfg.dep_q {
                forced.push(code(1 + k, s as isize - cfg.delays[1 + k] as isize));
            }
            let (text, audio) = forced_step(ctx, &mut lm, &forced).await?;
            let want_t = &text_logits[(b * t_n + s) * text_card..(b * t_n + s + 1) * text_card];
            let (e, i) = max_abs_diff(&text[..text_card], want_t);
            report.compared += text_card;
            if e > report.max_err {
                report.max_err = e;
            }
            if e > tol {
                report
                    .lines
                    .push(format!("b {b} step {s} text logit {i}: err {e:.3e}"));
            }
            for k in 0..cfg.dep_q {
                let pos = s as isize - cfg.delays[1 + k] as isize;
                if pos < 0 {
                    continue;
                }
                let at = ((b * cfg.dep_q + k) * t_n + pos as usize) * card;
                let got = &audio[k * lm.logit_stride()..k * lm.logit_stride() + card];
                let (e, i) = max_abs_diff(got, &logits[at..at + card]);
                report.compared += card;
                if e > report.max_err {
                    report.max_err = e;
                }
                if e > tol {
                    report.lines.push(format!(
                        "b {b} step {s} codebook {k} logit {i}: err {e:.3e}"
                    ));
                }
            }
        }
    }
    Ok(report)
}

/// The tiny LM of `tests/fixtures/lm/formats` in each published format (folder, config,
/// checkpoint, reference): PyTorch bf16, MLX q4, MLX q8, candle Q8_0 GGUF, PyTorch int8
/// (bitsandbytes row-wise; its own model seed, see the fixture's README).
pub const FORMATS: &[(&str, &str, &[u8], &[u8])] = &[
    (
        "pytorch_bf16",
        include_str!("../fixtures/lm/formats/pytorch_bf16/config.json"),
        include_bytes!("../fixtures/lm/formats/pytorch_bf16/model.safetensors"),
        include_bytes!("../fixtures/lm/formats/pytorch_bf16/reference.safetensors"),
    ),
    (
        "mlx_q4",
        include_str!("../fixtures/lm/formats/mlx_q4/config.json"),
        include_bytes!("../fixtures/lm/formats/mlx_q4/model.q4.safetensors"),
        include_bytes!("../fixtures/lm/formats/mlx_q4/reference.safetensors"),
    ),
    (
        "mlx_q8",
        include_str!("../fixtures/lm/formats/mlx_q8/config.json"),
        include_bytes!("../fixtures/lm/formats/mlx_q8/model.q8.safetensors"),
        include_bytes!("../fixtures/lm/formats/mlx_q8/reference.safetensors"),
    ),
    (
        "candle_q8_gguf",
        include_str!("../fixtures/lm/formats/candle_q8_gguf/config.json"),
        include_bytes!("../fixtures/lm/formats/candle_q8_gguf/model.q8.gguf"),
        include_bytes!("../fixtures/lm/formats/candle_q8_gguf/reference.safetensors"),
    ),
    (
        "pytorch_q8",
        include_str!("../fixtures/lm/formats/pytorch_q8/config.json"),
        include_bytes!("../fixtures/lm/formats/pytorch_q8/model.q8.safetensors"),
        include_bytes!("../fixtures/lm/formats/pytorch_q8/reference.safetensors"),
    ),
];

fn argmax(v: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::NEG_INFINITY, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > best.1 {
            best = (i, x, best.1);
        } else if x > best.2 {
            best.2 = x;
        }
    }
    (best.0, best.1 - best.2)
}

/// Greedy generation of one fixture format: the checkpoint goes to the GPU in its own layout
/// (canonical names, every stored tensor used), the user's codes of the reference are fed, and
/// every step's text token and 8 depformer tokens must be PyPI moshi's (`LMGen`, greedy, on the
/// weights that file encodes). `compared` counts the tokens checked, `max_err` is the smallest
/// top-1 − top-2 logit gap seen on the GPU.
///
/// The embedding tables stay in the file's format (MLX q4/q8, Q8_0, bf16; gathered with exact f32
/// dequantization), which this checks too; `tables` overrides that (`Some(Bf16)`: rounded at load).
pub async fn formats_greedy(ctx: &Context, which: usize) -> Result<Report, String> {
    formats_greedy_tables(ctx, which, None).await
}

/// The table format each fixture's file stores its embeddings in.
pub const FORMAT_TABLES: &[WeightFormat] = &[
    WeightFormat::Bf16,
    WeightFormat::MLX_Q4,
    WeightFormat::MLX_Q8,
    WeightFormat::Q8_0,
    WeightFormat::Bf16,
];

/// [`formats_greedy`] with the tables kept as `tables` says (`None`: as stored).
pub async fn formats_greedy_tables(
    ctx: &Context,
    which: usize,
    tables: Option<WeightFormat>,
) -> Result<Report, String> {
    use parle::lm::Sampling;
    use parle::weights::UsageTracker;

    let (name, config, model, reference) = FORMATS[which];
    let cfg = LmConfig::from_json(config).map_err(|e| e.to_string())?;
    let ck = Checkpoint::from_bytes(name, model.to_vec(), None).map_err(|e| e.to_string())?;
    let used = UsageTracker::new(&ck);
    let opts = LmOptions {
        tables,
        f32_cache: true,
    };
    let mut lm = Lm::load(ctx, cfg.clone(), &Weights::checkpoint(&used), &opts)
        .map_err(|e| format!("{name}: {e}"))?;
    used.finish().map_err(|e| e.to_string())?;
    let want_tables = tables.unwrap_or(FORMAT_TABLES[which]);
    if lm.table_bytes().1 != Some(want_tables) {
        return Err(format!(
            "{name}: embedding tables kept as {:?}, want {}",
            lm.table_bytes().1,
            want_tables.name()
        ));
    }
    let r = Tensors::new("reference.safetensors", reference);
    let codes = r.i64("input_codes");
    let text = r.i64("text_tokens");
    let audio = r.i64("audio_tokens");
    let steps = text.len();
    let users = cfg.n_q - cfg.dep_q;
    let dq = cfg.dep_q;
    let mut report = Report {
        max_err: f32::INFINITY,
        ..Report::default()
    };
    lm.reset(ctx);
    for s in 0..steps {
        // LMGen feeds the user's codes of step s as frame s − 1 (step 0 sees the initial
        // tokens only); the LM reads frame s − 1 − delay at step s.
        if s >= 1 {
            let c: Vec<u32> = codes[s * users..(s + 1) * users]
                .iter()
                .map(|&c| c as u32)
                .collect();
            ctx.write(
                &lm.tokens,
                lm.user_codes_slot(s - 1) as u64 * 4,
                bytemuck::cast_slice(&c),
            );
        }
        let mut rec = Recorder::new(ctx, "greedy step");
        lm.record_step(&mut rec, TokenChoice::Sample(Sampling::greedy()))
            .map_err(|e| e.to_string())?;
        rec.submit().map_err(|e| e.to_string())?;
        let tl = ctx
            .read_f32(&lm.text_logits)
            .await
            .map_err(|e| e.to_string())?;
        let al = ctx
            .read_f32(&lm.audio_logits)
            .await
            .map_err(|e| e.to_string())?;
        let ring = ctx.read_u32(&lm.tokens).await.map_err(|e| e.to_string())?;
        let (t, gap) = argmax(&tl[..cfg.text_card_out]);
        report.max_err = report.max_err.min(gap);
        let mut got = vec![t as i64];
        let mut chosen = vec![ring[lm.frame_row(s) as usize] as i64];
        for k in 0..dq {
            let row = &al[k * lm.logit_stride()..k * lm.logit_stride() + cfg.card];
            let (a, gap) = argmax(row);
            report.max_err = report.max_err.min(gap);
            got.push(a as i64);
            let d = cfg.delays[1 + k];
            chosen.push(if s >= d {
                ring[lm.frame_row(s - d) as usize + 1 + k] as i64
            } else {
                a as i64 // written to the discard row
            });
        }
        let mut want = vec![text[s]];
        want.extend_from_slice(&audio[s * dq..(s + 1) * dq]);
        report.compared += want.len();
        if got != want || chosen != want {
            report.lines.push(format!(
                "{name} step {s}: GPU argmax {got:?}, sampled {chosen:?}, PyPI moshi {want:?}"
            ));
            break; // later steps depend on these tokens
        }
    }
    Ok(report)
}

/// [`kyutai_test_lm`] with f32 KV caches (as the reference) within 5e-6 and with the device's
/// default cache (f16 where the adapter has shader-f16, as the real model runs) within 1e-3:
/// logs one line per run and panics naming every logit over its tolerance.
pub async fn check_kyutai_test_lm(ctx: &Context, log: impl Fn(&str)) {
    for (f32_cache, tol) in [(true, 5e-6f32), (false, 1e-3)] {
        let r = kyutai_test_lm(ctx, f32_cache, tol).await.unwrap();
        log(&format!(
            "kyutai-test-lm ({} KV cache): {} logits compared, max |err| {:.3e} (tolerance {tol:.0e}), {} over tolerance",
            if f32_cache || !ctx.caps().f16 { "f32" } else { "f16" },
            r.compared,
            r.max_err,
            r.lines.len()
        ));
        assert!(r.lines.is_empty(), "{}", r.lines.join("\n"));
        assert!(r.compared > 0);
    }
}

/// The files of a tiny Moshi fixture (tests/fixtures/lm/<name>, made by make_fixtures.py from
/// PyPI `moshi`), compiled in.
pub struct MoshiFixture {
    pub name: &'static str,
    pub config: &'static str,
    pub model: &'static [u8],
    pub mimi: &'static [u8],
    pub tokenizer: &'static [u8],
    pub reference: &'static [u8],
}

#[macro_export]
macro_rules! moshi_fixture {
    ($name:literal) => {
        golden::MoshiFixture {
            name: $name,
            config: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/lm/",
                $name,
                "/config.json"
            )),
            model: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/lm/",
                $name,
                "/model.safetensors"
            )),
            mimi: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/lm/",
                $name,
                "/mimi.safetensors"
            )),
            tokenizer: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/lm/",
                $name,
                "/tokenizer.model"
            )),
            reference: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/lm/",
                $name,
                "/reference.safetensors"
            )),
        }
    };
}

/// Greedy choices whose reference margin (top-1 − top-2 logit) is below this may flip under
/// legitimate float differences; such a mismatch is counted, printed, and ends the comparison
/// of that run (what follows depends on it). The fixtures reject seeds with margins below
/// ~8e-3, so none is expected.
pub const NEAR_TIE: f32 = 1e-3;

/// What the end-to-end greedy run found.
#[derive(Debug, Default)]
pub struct GreedyReport {
    pub frames: usize,
    pub token_mismatches: Vec<String>,
    pub near_tie_excuses: Vec<String>,
    pub user_code_mismatches: usize,
    pub pcm_max_err: f32,
    pub text: String,
}

/// Feed the fixture's input through a greedy `Session` (Mimi encode → LM → Mimi decode, two
/// frames in flight) and compare every token, the user codes and the output audio.
pub async fn moshi_greedy(
    ctx: &Context,
    fx: &MoshiFixture,
    f32_cache: bool,
) -> Result<GreedyReport, String> {
    use parle::lm::Sampling;
    use parle::session::{ModelParts, Session, SessionOptions, StepOutput};
    use parle::text::Tokenizer;
    let model = lm_checkpoint(fx.model);
    let mimi = Tensors::new("mimi.safetensors", fx.mimi);
    let r = Tensors::new("reference.safetensors", fx.reference);
    let tokenizer =
        Tokenizer::from_bytes("tokenizer.model", fx.tokenizer).map_err(|e| e.to_string())?;
    let opts = SessionOptions {
        sampling: Sampling::greedy().into(),
        lm: LmOptions {
            tables: None,
            f32_cache,
        },
        ..SessionOptions::default()
    };
    let parts = ModelParts {
        config: Some(fx.config),
        mimi: &mimi.0,
        lm: Some(Weights::checkpoint(&model)),
        tokenizer: Some(tokenizer),
    };
    let mut session = Session::load(ctx, parts, &opts).map_err(|e| e.to_string())?;
    let input = r.f32("input_pcm");
    let text = r.i64("text");
    let audio = r.i64("audio");
    let user = r.i64("user_codes");
    let text_margin = r.f32("text_margin");
    let audio_margin = r.f32("audio_margin");
    let want_pcm = r.f32("output_pcm");
    let (s_n, t_n) = (text.len(), audio.len() / 8);
    let frame = session.frame_size();
    let mut outs: Vec<StepOutput> = Vec::new();
    for chunk in input.chunks(frame) {
        session.push(ctx, chunk).map_err(|e| e.to_string())?;
        if session.in_flight() == 2 {
            outs.push(session.pull(ctx).await.map_err(|e| e.to_string())?);
        }
    }
    while session.in_flight() > 0 {
        outs.push(session.pull(ctx).await.map_err(|e| e.to_string())?);
    }
    let mut rep = GreedyReport::default();
    let mut pcm = Vec::new();
    'frames: for o in outs.iter().filter(|o| o.frame.is_some()) {
        let f = o.frame.unwrap_or_default();
        if f >= t_n {
            return Err(format!("frame {f} past the reference's {t_n} frames"));
        }
        rep.frames += 1;
        rep.text.push_str(&o.text);
        let got_text = o.text_token.unwrap_or(u32::MAX);
        let checks =
            std::iter::once(("text".to_string(), got_text, text[f] as u32, text_margin[f])).chain(
                (0..8).map(|k| {
                    (
                        format!("audio {k}"),
                        o.audio_tokens.as_ref().map_or(u32::MAX, |a| a[k]),
                        audio[k * t_n + f] as u32,
                        audio_margin[k * t_n + f],
                    )
                }),
            );
        for (what, got, want, margin) in checks {
            if got != want {
                let line = format!(
                    "frame {f} {what}: got {got}, reference {want} (reference margin {margin:.2e})"
                );
                if margin < NEAR_TIE {
                    rep.near_tie_excuses.push(line);
                    break 'frames;
                }
                rep.token_mismatches.push(line);
            }
        }
        if let Some(u) = &o.user_tokens {
            rep.user_code_mismatches +=
                (0..8).filter(|&k| u[k] as i64 != user[k * s_n + f]).count();
        }
        pcm.extend_from_slice(o.pcm.as_deref().unwrap_or_default());
    }
    rep.pcm_max_err = max_abs_diff(&pcm, &want_pcm[..pcm.len()]).0;
    if pcm.is_empty() {
        return Err("no audio came out".into());
    }
    Ok(rep)
}

/// Teacher-force the LM on the fixture's tokens and compare every defined logit with
/// `LMModel.forward` (`forced_text_logits` [S, text_card], `forced_audio_logits` [8, S, card],
/// NaN where the reference has no value).
pub async fn moshi_forced_logits(
    ctx: &Context,
    fx: &MoshiFixture,
    tol: f32,
) -> Result<Report, String> {
    let model = lm_checkpoint(fx.model);
    let r = Tensors::new("reference.safetensors", fx.reference);
    let cfg = LmConfig::from_json(fx.config).map_err(|e| e.to_string())?;
    let opts = LmOptions {
        tables: None,
        f32_cache: true,
    };
    let mut lm = Lm::load(ctx, cfg.clone(), &Weights::checkpoint(&model), &opts)
        .map_err(|e| e.to_string())?;
    let text = r.i64("text");
    let audio_steps = r.i64("audio_steps");
    let user = r.i64("user_codes");
    let want_text = r.f32("forced_text_logits");
    let want_audio = r.f32("forced_audio_logits");
    let s_n = text.len();
    let (card, tc) = (cfg.card, cfg.text_card_out);
    let mut rep = Report::default();
    for s in 0..s_n {
        // The user's codes of frame s go into the ring before the step, as the session does.
        let u: Vec<u32> = (0..cfg.user_streams())
            .map(|k| user[k * s_n + s] as u32)
            .collect();
        ctx.write(
            &lm.tokens,
            lm.user_codes_slot(s) as u64 * 4,
            bytemuck::cast_slice(&u),
        );
        // `audio_steps[k, s]`: the token codebook k chose at step s, also where its frame is
        // past the last kept one (the chain and the next steps' inputs need it).
        let mut forced = vec![text[s] as u32];
        forced.extend((0..cfg.dep_q).map(|k| audio_steps[k * s_n + s].max(0) as u32));
        let (got_text, got_audio) = forced_step(ctx, &mut lm, &forced).await?;
        let mut check = |what: String, got: &[f32], want: &[f32]| {
            if want.iter().any(|v| v.is_nan()) {
                return;
            }
            let (e, i) = max_abs_diff(got, want);
            rep.compared += want.len();
            rep.max_err = rep.max_err.max(e);
            if e > tol {
                rep.lines
                    .push(format!("step {s} {what} logit {i}: err {e:.3e}"));
            }
        };
        check(
            "text".into(),
            &got_text[..tc],
            &want_text[s * tc..(s + 1) * tc],
        );
        for k in 0..cfg.dep_q {
            let at = (k * s_n + s) * card;
            let row = k * lm.logit_stride();
            check(
                format!("audio {k}"),
                &got_audio[row..row + card],
                &want_audio[at..at + card],
            );
        }
    }
    Ok(rep)
}

/// [`moshi_greedy`] with its verdict: logs one line (and each excuse) and panics on any token,
/// user-code or audio mismatch.
pub async fn check_moshi_greedy(
    ctx: &Context,
    fx: &MoshiFixture,
    f32_cache: bool,
    log: impl Fn(&str),
) {
    let r = moshi_greedy(ctx, fx, f32_cache).await.unwrap();
    log(&format!(
        "{} greedy ({} KV): {} frames × 9 tokens, {} mismatches, {} near-tie excuses (margin < {:.0e}), {} user-code mismatches, output audio max |err| {:.2e}; transcript {:?}",
        fx.name,
        if f32_cache || !ctx.caps().f16 { "f32" } else { "f16" },
        r.frames,
        r.token_mismatches.len(),
        r.near_tie_excuses.len(),
        NEAR_TIE,
        r.user_code_mismatches,
        r.pcm_max_err,
        r.text
    ));
    for l in &r.near_tie_excuses {
        log(&format!("  excused: {l}"));
    }
    assert!(
        r.token_mismatches.is_empty(),
        "{}",
        r.token_mismatches.join("\n")
    );
    assert!(r.frames >= 60, "only {} frames compared", r.frames);
    assert_eq!(r.user_code_mismatches, 0);
    assert!(r.pcm_max_err < 1e-4, "output audio error {}", r.pcm_max_err);
}

/// [`formats_greedy`] for every format: logs one line each and panics on any mismatch.
pub async fn check_formats_greedy(ctx: &Context, log: impl Fn(&str)) {
    let mut failures = Vec::new();
    for (i, f) in FORMATS.iter().enumerate() {
        let r = formats_greedy(ctx, i).await.unwrap();
        log(&format!(
            "{}: {} tokens compared, smallest logit gap {:.3}, {}",
            f.0,
            r.compared,
            r.max_err,
            if r.lines.is_empty() {
                "all equal"
            } else {
                "MISMATCH"
            }
        ));
        assert_eq!(r.compared, 12 * 9, "{}", r.lines.join("\n"));
        failures.extend(r.lines);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
