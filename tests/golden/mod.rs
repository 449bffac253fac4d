//! Golden checks of the LM against Kyutai's reference outputs, shared by the native tests
//! (tests/lm.rs, lavapipe) and the browser tests (tests/web_lm.rs, Chromium's WebGPU). Fixture
//! files are compiled in (`include_bytes!`) so both targets read the same bytes.
#![allow(dead_code)]

use parle::gpu::{Context, Recorder};
use parle::kernels::embed::TableFormat;
use parle::lm::{Lm, LmConfig, LmOptions, TokenChoice};
use parle::nn::Weights;
use parle::weights::{Checkpoint, MemorySafetensors, TensorSource};

pub struct Tensors(pub MemorySafetensors);

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

/// Kyutai's own tiny LM (`../shared/fixtures/kyutai-test-lm`): LayerNorm, sinusoidal
/// positions in both transformers, context 4 (the ring wraps), delays [0, 1, 2, 4], low-rank
/// depformer embeddings, weight schedule [0, 1, 1]. `LMModel.forward` teacher-forced on the
/// codes; its logits are undelayed: codebook k's logits at step s are at position s − d_k.
pub async fn kyutai_test_lm(ctx: &Context, f32_cache: bool, tol: f32) -> Result<Report, String> {
    let cfg_text = include_str!("../../../shared/fixtures/kyutai-test-lm/config.json");
    // Under canonical names: the stacked depformer attention is served per weight set.
    let model = Checkpoint::from_bytes(
        "test_lm_model.safetensors",
        include_bytes!("../../../shared/fixtures/kyutai-test-lm/test_lm_model.safetensors")
            .to_vec(),
        None,
    )
    .map_err(|e| e.to_string())?;
    let codes_t = Tensors::new(
        "test_lm_codes.safetensors",
        include_bytes!("../../../shared/fixtures/kyutai-test-lm/test_lm_codes.safetensors"),
    );
    let out = Tensors::new(
        "test_lm_out.safetensors",
        include_bytes!("../../../shared/fixtures/kyutai-test-lm/test_lm_out.safetensors"),
    );
    let cfg = LmConfig::from_json(cfg_text).map_err(|e| e.to_string())?;
    let opts = LmOptions {
        tables: TableFormat::F32,
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
/// checkpoint, reference): PyTorch bf16, MLX q4, MLX q8, candle Q8_0 GGUF.
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
pub async fn formats_greedy(ctx: &Context, which: usize) -> Result<Report, String> {
    use parle::lm::Sampling;
    use parle::weights::UsageTracker;

    let (name, config, model, reference) = FORMATS[which];
    let cfg = LmConfig::from_json(config).map_err(|e| e.to_string())?;
    let ck = Checkpoint::from_bytes(name, model.to_vec(), None).map_err(|e| e.to_string())?;
    let used = UsageTracker::new(&ck);
    let opts = LmOptions {
        tables: TableFormat::F32,
        f32_cache: true,
    };
    let mut lm = Lm::load(ctx, cfg.clone(), &Weights::checkpoint(&used), &opts)
        .map_err(|e| format!("{name}: {e}"))?;
    used.finish().map_err(|e| e.to_string())?;
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
