//! Benchmarks through the session's frame loop, for `parle bench` and the page: the random-weight
//! model presets ([`Preset`]) and the frame-timing loop ([`run_frames`]), written once.

use super::{CodecMode, CodecSession, ModelParts, Session, SessionOptions};
use crate::gpu::Context;
use crate::nn::Weights;
use crate::weights::{RandomWeights, WeightFormat};

/// A model with random weights made on the GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preset {
    /// Mimi at its real size (encoder + decoder, 8 codebooks).
    Mimi,
    /// A Moshi-shaped ~1B LM (dim 2048, 16 layers, context 500) + real-size Mimi: for GPUs (and
    /// software adapters) that cannot hold the 7B's ~6 GB.
    LmSmall,
    /// Moshi 7B shapes + real-size Mimi.
    Lm7b { context: usize },
    /// Kyutai STT 1B (`kyutai/stt-1b-en_fr`) shapes: dim 2048, 16 layers, 16 heads, context
    /// 750, 32 audio codebooks in, none out, text vocab 8000, 4 × 6 extra heads + real-size Mimi.
    Stt1b,
    /// Kyutai STT 2.6B (`kyutai/stt-2.6b-en`) shapes: dim 2048, 48 layers, 32 heads, context
    /// 375, 32 audio codebooks in, none out, text vocab 4000 + real-size Mimi.
    Stt2b6,
    /// Kyutai Hibiki 1B (`kyutai/hibiki-1b-*-bf16`, French → English) shapes: dim 2048, 16
    /// layers, 16 heads, context 500, 8 + 8 codebooks (delays 2), depformer 1024 × 6 layers with
    /// 8 weight sets, text vocab 48 000, the `description` LUT conditioner + real-size Mimi.
    Hibiki1b,
    /// Kyutai Hibiki 2B (`kyutai/hibiki-2b-*-bf16`) shapes, `config.json` of
    /// `kyutai/hibiki-2b-mlx-bf16`: dim 2560, 24 layers, 20 heads, context 500, 16 + 16
    /// codebooks (delays 2), depformer 1024 × 4 layers, FFN 3072, 16 steps on 9 weight sets,
    /// low-rank (128) embeddings, text vocab 48 000, the LUT conditioner + real-size Mimi.
    Hibiki2b,
    /// The tiny LM test fixture's shapes: checks that a benchmark runs in seconds, even on a
    /// software adapter; it measures nothing.
    Tiny,
    /// Shapes from a `config.json` text (its LM keys, and its `"mimi"` key for the codec).
    Custom { config: Option<String>, lm: bool },
}

impl Preset {
    /// The preset a name (`mimi`, `lm-small`, `lm-7b`, `stt-1b`, `stt-2.6b`, `hibiki-1b`,
    /// `hibiki-2b`, `tiny`, `custom`)
    /// stands for; `custom`
    /// takes `config` and `lm`, `lm-7b` a context of 500.
    pub fn parse(name: &str, config: Option<String>, lm: bool) -> Result<Self, String> {
        Ok(match name {
            "mimi" => Self::Mimi,
            "lm-small" => Self::LmSmall,
            "lm-7b" => Self::Lm7b { context: 500 },
            "stt-1b" => Self::Stt1b,
            "stt-2.6b" => Self::Stt2b6,
            "hibiki-1b" => Self::Hibiki1b,
            "hibiki-2b" => Self::Hibiki2b,
            "tiny" => Self::Tiny,
            "custom" => Self::Custom { config, lm },
            p => {
                return Err(format!(
                    "unknown benchmark preset '{p}': mimi, lm-small, lm-7b, stt-1b, stt-2.6b, hibiki-1b, hibiki-2b, tiny or custom"
                ))
            }
        })
    }

    pub(super) fn config(&self) -> Option<String> {
        match self {
            Self::Mimi => None,
            Self::LmSmall => {
                Some(r#"{"dim": 2048, "num_heads": 16, "num_layers": 16, "context": 500}"#.into())
            }
            Self::Lm7b { context } => Some(format!("{{\"context\": {context}}}")),
            Self::Stt1b => Some(stt_config(16, 16, 750, 8000, Some((4, 6)))),
            Self::Stt2b6 => Some(stt_config(48, 32, 375, 4000, None)),
            Self::Hibiki1b => Some(hibiki_config(HIBIKI_1B)),
            Self::Hibiki2b => Some(hibiki_config(HIBIKI_2B)),
            Self::Tiny => Some(include_str!("../../tests/fixtures/lm/delay1/config.json").into()),
            Self::Custom { config, .. } => config.clone(),
        }
    }

    pub(super) fn has_lm(&self) -> bool {
        match self {
            Self::Mimi => false,
            Self::Custom { lm, .. } => *lm,
            _ => true,
        }
    }

    /// What is measured, for the report (`quant`: the LM's weight format's name).
    pub fn description(&self, quant: &str) -> String {
        match self {
            Self::Mimi => {
                "Mimi at its real size (encoder + decoder, 8 codebooks), random weights".into()
            }
            Self::LmSmall => format!("Moshi-shaped ~1B LM (dim 2048, 16 layers, context 500) + real-size Mimi, random {quant} weights"),
            Self::Lm7b { context } => format!(
                "Moshi 7B shapes (context {context}) + real-size Mimi, random {quant} weights"
            ),
            Self::Stt1b => format!("Kyutai STT 1B shapes (dim 2048, 16 layers, context 750, 32 codebooks in, text vocab 8000, 4 × 6 extra heads) + real-size Mimi encoder, random {quant} weights"),
            Self::Stt2b6 => format!("Kyutai STT 2.6B shapes (dim 2048, 48 layers, 32 heads, context 375, 32 codebooks in, text vocab 4000) + real-size Mimi encoder, random {quant} weights"),
            Self::Hibiki1b => format!("Kyutai Hibiki 1B shapes (dim 2048, 16 layers, context 500, 8 + 8 codebooks, depformer 6 layers × 8 steps, text vocab 48000) + real-size Mimi, random {quant} weights"),
            Self::Hibiki2b => format!("Kyutai Hibiki 2B shapes (dim 2560, 24 layers, 20 heads, context 500, 16 + 16 codebooks, depformer 4 layers × 16 steps, text vocab 48000) + real-size Mimi, random {quant} weights"),
            Self::Tiny => format!("the tiny test model's shapes (LM dim 64 + Mimi dim 32, random {quant} weights): a check that the benchmark runs, not a measurement"),
            Self::Custom { lm, .. } => format!(
                "{} from the given config, random {quant} weights",
                if *lm { "LM + Mimi" } else { "Mimi" }
            ),
        }
    }

    /// Build the session: the LM's linear weights in `format`, Mimi with 8 codebooks.
    pub fn load(&self, ctx: &Context, format: WeightFormat) -> crate::Result<Session> {
        let mimi = RandomWeights { seed: 1 };
        let config = self.config();
        let parts = ModelParts {
            config: config.as_deref(),
            mimi: &mimi,
            lm: self.has_lm().then_some(Weights::Random { format, seed: 7 }),
            tokenizer: None,
        };
        let opts = SessionOptions {
            codebooks: Some(8),
            ..SessionOptions::default()
        };
        Session::load(ctx, parts, &opts)
    }
}

/// An STT LM's config (Kyutai's published keys): dim 2048, `layers` × `heads`, RoPE max period
/// 100 000, 32 audio codebooks in and none out (all delays 0), `extra` = (heads, dim) extra heads.
fn stt_config(
    layers: usize,
    heads: usize,
    context: usize,
    text_card: usize,
    extra: Option<(usize, usize)>,
) -> String {
    let delays = vec!["0"; 33].join(", ");
    let extra = extra.map_or(String::new(), |(n, d)| {
        format!(r#", "extra_heads_num_heads": {n}, "extra_heads_dim": {d}"#)
    });
    format!(
        r#"{{"model_type": "stt", "dim": 2048, "num_layers": {layers}, "num_heads": {heads},
        "context": {context}, "max_period": 100000, "hidden_scale": 4.125, "card": 2048,
        "text_card": {text_card}, "existing_text_padding_id": 3, "n_q": 32, "dep_q": 0,
        "delays": [{delays}]{extra}}}"#
    )
}

/// A Hibiki model's shapes (the keys of its `config.json` that differ between the two).
struct HibikiShape {
    dim: usize,
    layers: usize,
    heads: usize,
    /// Codebooks per stream (the model's and the user's).
    codebooks: usize,
    /// `depformer_*` keys beyond `depformer_dim` 1024 and 16 heads (JSON members).
    depformer: &'static str,
}

/// `kyutai/hibiki-1b-*`: MLX `config1b_202412` and `hibiki-1b-rs-bf16/config.toml` (2048 × 16,
/// 16 heads, FFN 8192 → 5632 gated, 8 + 8 codebooks, depformer 6 layers with a weight set per
/// step); the context as the Hibiki README's 40 s (the 2B's `config.json` says 500).
const HIBIKI_1B: HibikiShape = HibikiShape {
    dim: 2048,
    layers: 16,
    heads: 16,
    codebooks: 8,
    depformer: r#""depformer_num_layers": 6"#,
};

/// `kyutai/hibiki-2b-mlx-bf16/config.json`.
const HIBIKI_2B: HibikiShape = HibikiShape {
    dim: 2560,
    layers: 24,
    heads: 20,
    codebooks: 16,
    depformer: r#""depformer_num_layers": 4, "depformer_dim_feedforward": 3072,
        "depformer_context": 16, "depformer_low_rank_embeddings": 128,
        "depformer_weights_per_step_schedule": [0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8, 8, 8, 8, 8]"#,
};

/// A Hibiki LM's config (Kyutai's published keys): text vocab 48 000, RoPE max period 100 000,
/// context 500, delays 0 for the text and each stream's first codebook, 2 for the rest, and the
/// `description` LUT conditioner summed into the input.
fn hibiki_config(h: HibikiShape) -> String {
    let stream = std::iter::once("0")
        .chain(std::iter::repeat_n("2", h.codebooks - 1))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{{"model_type": "hibiki", "dim": {dim}, "num_layers": {layers}, "num_heads": {heads},
        "hidden_scale": 4.125, "context": 500, "max_period": 100000, "card": 2048,
        "text_card": 48000, "existing_text_padding_id": 3, "n_q": {n_q}, "dep_q": {dep_q},
        "delays": [0, {stream}, {stream}], "depformer_dim": 1024, "depformer_num_heads": 16,
        "depformer_weights_per_step": true, {depformer},
        "conditioners": {{"description": {{"type": "lut", "lut": {{"n_bins": 31, "dim": 16,
        "tokenizer": "noop", "possible_values": ["very_bad", "bad", "neutral", "good", "very_good"]}}}}}},
        "fuser": {{"sum": ["description"], "prepend": [], "cross": []}}}}"#,
        dim = h.dim,
        layers = h.layers,
        heads = h.heads,
        n_q = 2 * h.codebooks,
        dep_q = h.codebooks,
        depformer = h.depformer,
    )
}

/// GPU bytes of real-size Mimi's weights and state with 8 codebooks (loaded alone and dropped).
pub fn mimi_bytes(ctx: &Context) -> crate::Result<u64> {
    let before = ctx.allocated_bytes();
    let codec = CodecSession::random(ctx, 8)?;
    let bytes = ctx.allocated_bytes() - before;
    drop(codec);
    Ok(bytes)
}

/// A chirp, so that activations are not trivial.
pub fn chirp(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.3 * ((i as f32) * 0.01 + (i * i) as f32 * 1e-6).sin())
        .collect()
}

/// What [`run_frames`] times.
pub enum Workload<'a> {
    /// Whole conversation frames.
    Session(&'a mut Session),
    /// Codec encode frames.
    Encode(&'a mut CodecSession),
    /// Codec decode frames (of the codes of one encoded frame).
    Decode(&'a mut CodecSession),
}

/// Frame timings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameTimes {
    /// The clock when the first frame's result came back.
    pub first_ms: f64,
    /// Per timed frame: from the previous result to this one.
    pub intervals_ms: Vec<f64>,
    /// Time from the last warm-up result to the last result, per timed frame.
    pub mean_ms: f64,
    /// Kernel launches of the last frame.
    pub dispatches: u32,
}

impl FrameTimes {
    /// The intervals sorted (shortest first).
    pub fn sorted(&self) -> Vec<f64> {
        let mut v = self.intervals_ms.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The `p` quantile (0..=1) of the intervals, nearest rank; the mean when none were timed.
    pub fn percentile(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return self.mean_ms;
        }
        v[((v.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
    }
}

/// Run `warmup + frames` frames of a chirp through `work`, keeping up to `depth` frames in flight
/// (1: each frame read back before the next is pushed; [`super::MAX_IN_FLIGHT`]: as a live
/// session runs, frame i + 1 submitted before frame i is read back). `now` is a clock in ms.
pub async fn run_frames(
    ctx: &Context,
    mut work: Workload<'_>,
    warmup: usize,
    frames: usize,
    depth: usize,
    now: &dyn Fn() -> f64,
) -> crate::Result<FrameTimes> {
    let depth = depth.clamp(1, super::MAX_IN_FLIGHT);
    let codes = match &mut work {
        Workload::Decode(c) => {
            let pcm = chirp(c.frame_size());
            c.push_pcm(ctx, &pcm, CodecMode::Encode)?;
            c.pull(ctx).await?.codes.unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let pcm = chirp(match &work {
        Workload::Session(s) => s.frame_size(),
        Workload::Encode(c) | Workload::Decode(c) => c.frame_size(),
    });
    let total = warmup + frames;
    let (mut pushed, mut pulled) = (0, 0);
    let mut times = FrameTimes::default();
    let mut start = now();
    let mut last = start;
    while pulled < total {
        // The timed frames start only once every warm-up frame is back, so that none of them ran
        // before the clock started (a driver that executes at submit would otherwise finish a
        // pipelined frame inside the warm-up).
        let limit = if pulled < warmup { warmup } else { total };
        while pushed < limit && in_flight(&work) < depth {
            match &mut work {
                Workload::Session(s) => s.push(ctx, &pcm)?,
                Workload::Encode(c) => c.push_pcm(ctx, &pcm, CodecMode::Encode)?,
                Workload::Decode(c) => c.push_codes(ctx, &codes)?,
            }
            pushed += 1;
        }
        match &mut work {
            Workload::Session(s) => drop(s.pull(ctx).await?),
            Workload::Encode(c) | Workload::Decode(c) => drop(c.pull(ctx).await?),
        }
        pulled += 1;
        let t = now();
        if pulled == 1 {
            times.first_ms = t;
        }
        if pulled > warmup {
            times.intervals_ms.push(t - last);
        }
        if pulled == warmup {
            start = t;
        }
        last = t;
    }
    times.mean_ms = (last - start) / frames.max(1) as f64;
    times.dispatches = match &work {
        Workload::Session(s) => s.last_frame().dispatches,
        Workload::Encode(c) | Workload::Decode(c) => c.last_frame().dispatches,
    };
    Ok(times)
}

fn in_flight(work: &Workload) -> usize {
    match work {
        Workload::Session(s) => s.in_flight(),
        Workload::Encode(c) | Workload::Decode(c) => c.in_flight(),
    }
}

#[cfg(test)]
mod tests {
    use super::Preset;
    use crate::session::{ModelConfig, ModelKind};

    /// The Hibiki presets parse as Kyutai's keys say: kind, shapes, codebooks, delays, the
    /// depformer's weight sets and the conditioner.
    #[test]
    fn hibiki_presets_have_the_published_shapes() {
        for (preset, dim, layers, heads, cb, dep_layers, sets) in [
            (Preset::Hibiki1b, 2048, 16, 16, 8, 6, 8),
            (Preset::Hibiki2b, 2560, 24, 20, 16, 4, 9),
        ] {
            let c = ModelConfig::parse(preset.config().as_deref()).unwrap();
            assert_eq!(c.kind(), ModelKind::Hibiki, "{preset:?}");
            let lm = &c.lm;
            assert_eq!(
                (lm.dim, lm.num_layers, lm.num_heads, lm.n_q, lm.dep_q),
                (dim, layers, heads, 2 * cb, cb),
                "{preset:?}"
            );
            assert_eq!(
                (
                    lm.text_card,
                    lm.context,
                    lm.max_period,
                    lm.depformer_num_layers
                ),
                (48000, 500, 100000.0, dep_layers),
                "{preset:?}"
            );
            assert_eq!(lm.delays.len(), 1 + 2 * cb, "{preset:?}");
            let twos = lm.delays.iter().filter(|&&d| d == 2).count();
            assert_eq!(
                (lm.delays[0], lm.delays[1], lm.delays[1 + cb], twos),
                (0, 0, 0, 2 * cb - 2)
            );
            let schedule = lm.depformer_weights_per_step_schedule.clone();
            let weight_sets = schedule.map_or(cb, |s| s.iter().max().unwrap() + 1);
            assert_eq!(weight_sets, sets, "{preset:?}");
            assert!(lm.conditioners.contains_key("description"), "{preset:?}");
        }
        assert_eq!(Preset::parse("hibiki-2b", None, true), Ok(Preset::Hibiki2b));
        assert!(Preset::parse("hibiki-9b", None, true)
            .unwrap_err()
            .contains("hibiki-1b, hibiki-2b"));
    }
}
