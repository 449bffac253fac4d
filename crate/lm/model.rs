//! The Moshi LM on the GPU: summed stream embeddings → temporal transformer → out norm → text
//! head, then the depformer's `dep_q` steps, each conditioned on the temporal output and chained
//! through the token sampled just before it (spec §2.3–§2.5). Tokens are sampled on the GPU into
//! a token ring that the next kernels read: nothing visits the CPU inside a step.
//!
//! Token ring (`tokens`, u32): rows of `width = 1 + n_q` tokens `[text, audio_0 … audio_{n_q−1}]`
//! (audio `0..dep_q` = Moshi's own codebooks, then the user's). Frame `f` lives in row
//! `f mod RING` with `RING = 2·max(delays) + 2` (a row is overwritten only after its last
//! reader); row `RING` holds the initial tokens, row `RING + 1` takes outputs whose frame index
//! is negative (discarded). Step `s` (spec §3.1) reads stream `c` from frame `s − 1 − d_c` and
//! writes the text token of frame `s` and Moshi's codebook `k` of frame `s − d_{1+k}`; the user's
//! codes of frame `s` are copied in by the caller ([`Lm::user_codes_view`]); the session reads a
//! completed frame through [`Lm::audio_token_view`] and [`Lm::frame_view`].

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder, View};
use crate::kernels::linear::{LinearInput, LinearOutput};
use crate::kernels::sampling::{self, EmbedRow, LogitRows, SampleConfig, TokenSlots};
use crate::nn::{
    EmbeddingTable, Embeddings, Linear, Norm, NormKind, TableExtras, Transformer,
    TransformerConfig, Weights,
};
use crate::weights::{UsageTracker, WeightFormat};

use super::condition;
use super::config::LmConfig;
use super::extra::{ExtraHeads, ExtraHeadsConfig};

mod depformer;
mod lanes;
use depformer::Depformer;
use lanes::Guidance;

/// How tokens are drawn (spec §3.3; PyTorch `LMGen` defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Text temperature; `<= 0` is greedy.
    pub text_temperature: f32,
    pub text_top_k: u32,
    /// Audio temperature; `<= 0` is greedy.
    pub audio_temperature: f32,
    pub audio_top_k: u32,
    pub seed: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            text_temperature: 0.7,
            text_top_k: 25,
            audio_temperature: 0.8,
            audio_top_k: 250,
            seed: 0,
        }
    }
}

impl Sampling {
    pub fn greedy() -> Self {
        Self {
            text_temperature: 0.0,
            audio_temperature: 0.0,
            ..Self::default()
        }
    }
}

/// How the LM keeps its tables and caches on the GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LmOptions {
    /// Embedding tables: `None` keeps each table in the format its checkpoint stores it in (MLX
    /// q4/q8, Q8_0, bf16, f32; gathered with exact f32 dequantization; random weights: bf16, or the
    /// linears' format when that is Q8_0 or MLX affine, as published); `Some(F32)` dequantizes
    /// them exactly at load, `Some(Bf16)` rounds them to bf16, a quantized format quantizes a
    /// bf16/f32 table at load.
    pub tables: Option<WeightFormat>,
    /// Keep the KV caches in f32 even where the device has shader-f16 (f16 halves their memory;
    /// the tiny golden models then agree with the reference to ~2e-4 instead of ~5e-7).
    pub f32_cache: bool,
}

/// Where a step's output tokens come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenChoice {
    /// Drawn on the GPU from the logits.
    Sample(Sampling),
    /// Copied from [`Lm::forced_tokens`] (`[text, audio_0 … audio_{dep_q−1}]`, written by the
    /// caller before the submit): teacher forcing for golden tests.
    Forced,
}

/// Kernel launches of the last [`Lm::record_step`], by part of the step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepDispatches {
    /// The temporal input's embedding sum.
    pub embed: u32,
    /// The temporal transformer's layers.
    pub temporal: u32,
    /// The text head (and the out norm when it is not fused).
    pub text_head: u32,
    /// Every depformer step but its sampling: input projection, previous-token embedding,
    /// layers, head.
    pub depformer: u32,
    /// Token sampling, text and audio (0 when tokens are forced: those are copies).
    pub sampling: u32,
}

impl StepDispatches {
    pub fn total(&self) -> u32 {
        self.embed + self.temporal + self.text_head + self.depformer + self.sampling
    }
}

/// The Moshi LM with its weights, caches and per-step buffers.
pub struct Lm {
    cfg: LmConfig,
    emb: Embeddings,
    transformer: Transformer,
    out_norm: Norm,
    text_linear: Linear,
    /// `None` for `dep_q` 0 (Kyutai STT: text out only).
    dep: Option<Depformer>,
    /// Extra heads (STT's voice activity), if the model has them.
    extra: Option<ExtraHeads>,
    x: GpuBuffer,
    z: GpuBuffer,
    /// Text logits of the last step `[text_card_out]`.
    pub text_logits: GpuBuffer,
    /// Audio logits of the last step: `dep_q` rows of `card`, row stride
    /// [`Lm::logit_stride`] (rows start on 256-byte boundaries so each head writes a view).
    pub audio_logits: GpuBuffer,
    /// The token ring (see the module docs).
    pub tokens: GpuBuffer,
    /// `[1 + dep_q]` tokens for [`TokenChoice::Forced`].
    pub forced_tokens: GpuBuffer,
    /// The condition rows' table in `emb` (Hibiki: row 0 the conditioned lane, row 1 the
    /// negative lane), gathered through the lane's constant in the token buffer.
    cond_table: Option<usize>,
    /// Classifier-free guidance's second lane (`None`: one lane, cfg 1).
    guide: Option<Guidance>,
    ring: usize,
    step: usize,
    last_dispatches: StepDispatches,
}

fn fbuf(ctx: &Context, label: &str, floats: usize) -> crate::Result<GpuBuffer> {
    Ok(ctx.create_buffer(label, (floats.max(1) * 4) as u64, BufferUsage::Storage)?)
}

/// The temporal output the text head, extra heads and depformer inputs read, and how (the out
/// norm fused into the read, or already applied).
#[derive(Clone, Copy)]
struct ZInput<'a> {
    buffer: &'a GpuBuffer,
    read: LinearInput<'a>,
}

impl Lm {
    /// Build the LM from checkpoint or random weights.
    ///
    /// A checkpoint must hold exactly the tensors this config needs: a missing one, or one the
    /// model never asked for (a name-map or config mistake), is an error naming them.
    pub fn load(
        ctx: &Context,
        cfg: LmConfig,
        w: &Weights,
        opts: &LmOptions,
    ) -> crate::Result<Self> {
        match w {
            Weights::Checkpoint { source, options } => {
                let tracker = UsageTracker::new(*source);
                let tracked = Weights::Checkpoint {
                    source: &tracker,
                    options: *options,
                };
                let lm = Self::build(ctx, cfg, &tracked, opts)?;
                tracker.finish()?;
                Ok(lm)
            }
            Weights::Random { .. } => Self::build(ctx, cfg, w, opts),
        }
    }

    fn build(ctx: &Context, cfg: LmConfig, w: &Weights, opts: &LmOptions) -> crate::Result<Self> {
        let table_format = opts.tables;
        cfg.validate()?;
        let d = cfg.dim;
        let norm = NormKind::from_name(&cfg.norm).unwrap_or(NormKind::RmsNorm { eps: 1e-8 });
        // Temporal input tables: audio 0..n_q then text.
        let mut tables: Vec<EmbeddingTable> = (0..cfg.n_q)
            .map(|k| EmbeddingTable {
                name: format!("emb.{k}.weight"),
                rows: cfg.card as u32 + 1,
            })
            .collect();
        tables.push(EmbeddingTable {
            name: "text_emb.weight".into(),
            rows: cfg.text_card as u32 + 1,
        });
        let text_table = tables.len() - 1;
        let mut extras = TableExtras::default();
        if cfg.eos_reads_pad {
            extras.aliases.push((text_table, 2, 3));
        }
        let conditions =
            condition::lane_conditions(&cfg, w, &[condition::CONDITIONED, condition::NEGATIVE])?;
        let cond_table = conditions.map(|c| {
            extras.host.push(c);
            tables.len()
        });
        let emb = Embeddings::load_with(ctx, w, &tables, d as u32, table_format, &extras)?;
        let transformer = Transformer::load(
            ctx,
            &w.pp("transformer"),
            &TransformerConfig {
                f32_cache: opts.f32_cache,
                ..cfg.temporal()
            },
        )?;
        let out_norm = w.norm(ctx, "out_norm", norm, d)?;
        let text_linear = w.linear(ctx, "text_linear.weight", cfg.text_card_out, d)?;
        let extra = ExtraHeadsConfig {
            heads: cfg.extra_heads_num_heads,
            dim: cfg.extra_heads_dim,
        };
        let extra = ExtraHeads::load(ctx, w, extra, d)?;
        let dep = if cfg.dep_q == 0 {
            None
        } else {
            Some(Self::load_depformer(ctx, &cfg, w, opts, table_format)?)
        };

        let ring = 2 * cfg.max_delay() + 2;
        let tokens = ctx.upload("lm tokens", &initial_tokens(&cfg, ring))?;
        Ok(Self {
            x: fbuf(ctx, "lm x", d)?,
            z: fbuf(ctx, "lm z", text_linear.padded_in().max(d as u32) as usize)?,
            text_logits: fbuf(ctx, "text logits", cfg.text_card_out)?,
            audio_logits: fbuf(
                ctx,
                "audio logits",
                cfg.dep_q * cfg.card.next_multiple_of(64),
            )?,
            forced_tokens: ctx.upload("forced tokens", &vec![0u32; cfg.dep_q + 1])?,
            tokens,
            cond_table,
            guide: None,
            ring,
            step: 0,
            last_dispatches: StepDispatches::default(),
            emb,
            transformer,
            out_norm,
            text_linear,
            dep,
            extra,
            cfg,
        })
    }

    pub fn config(&self) -> &LmConfig {
        &self.cfg
    }

    /// Kernel launches of the last recorded step, by part.
    pub fn last_dispatches(&self) -> StepDispatches {
        self.last_dispatches
    }

    /// Steps taken since the stream started (the next step's index).
    pub fn step_index(&self) -> usize {
        self.step
    }

    /// Start a new conversation: positions from 0, every stream back to its initial token.
    pub fn reset(&mut self, ctx: &Context) {
        self.step = 0;
        self.transformer.reset();
        if let Some(dep) = &mut self.dep {
            dep.transformer.reset();
        }
        if let Some(g) = &mut self.guide {
            g.reset();
        }
        let init = initial_tokens(&self.cfg, self.ring);
        ctx.write(&self.tokens, 0, bytemuck::cast_slice(&init));
    }

    /// The classifier-free guidance coefficient (1: none, one lane).
    pub fn cfg_coef(&self) -> f32 {
        self.guide.as_ref().map_or(1.0, |g| g.coef)
    }

    /// Set the classifier-free guidance coefficient. Going from 1 to another value allocates
    /// the negative lane (KV caches and activations), going back to 1 frees it; both only at
    /// the start of a stream (step 0, e.g. after [`Lm::reset`]). A model without conditioners
    /// has no negative condition: any value but 1 is an error. `Err(message)`: a setting the
    /// caller gave that cannot apply (the message names it); `Ok(Err(_))`: a GPU failure.
    pub fn set_cfg_coef(&mut self, ctx: &Context, coef: f32) -> Result<crate::Result<()>, String> {
        let bad = |m: String| m;
        if !(coef.is_finite() && coef > 0.0 && coef <= 100.0) {
            return Err(bad(format!(
                "cfg {coef}: the guidance coefficient must be in (0, 100]"
            )));
        }
        let two = coef != 1.0;
        if two == self.guide.is_some() {
            if let Some(g) = &mut self.guide {
                g.set_coef(ctx, coef);
            }
            return Ok(Ok(()));
        }
        if self.step > 0 {
            return Err(bad(format!(
                "cfg {coef}: guidance can be switched on or off only at the start of a stream (reset first)"
            )));
        }
        if !two {
            self.guide = None;
            return Ok(Ok(()));
        }
        if self.cond_table.is_none() {
            return Err(bad(format!(
                "cfg {coef}: classifier-free guidance needs a conditioned model (Hibiki's \"conditioners\"); this one has none"
            )));
        }
        Ok(self.add_guidance(ctx, coef))
    }

    /// Allocate the negative lane.
    fn add_guidance(&mut self, ctx: &Context, coef: f32) -> crate::Result<()> {
        let temporal = self.transformer.new_lane(ctx)?;
        let depformer = match &self.dep {
            Some(d) => Some(d.transformer.new_lane(ctx)?),
            None => None,
        };
        let sizes = [
            self.x.size(),
            self.z.size(),
            self.text_logits.size(),
            self.audio_logits.size(),
            self.dep
                .as_ref()
                .and_then(|d| d.stacked.as_ref())
                .map_or(0, |(_, xs)| xs.size()),
        ];
        self.guide = Some(Guidance::new(ctx, coef, sizes, temporal, depformer)?);
        Ok(())
    }

    /// Elements between rows of [`Lm::audio_logits`].
    pub fn logit_stride(&self) -> usize {
        self.cfg.card.next_multiple_of(64)
    }

    /// Tokens per ring row (`1 + n_q`).
    pub fn width(&self) -> usize {
        self.cfg.n_q + 1
    }

    /// Element index in [`Lm::tokens`] of stream `c` of frame `f` (negative: the initial row).
    fn slot(&self, f: isize, c: usize) -> u32 {
        let row = if f < 0 {
            self.ring
        } else {
            f as usize % self.ring
        };
        (row * self.width() + c) as u32
    }

    /// Element index of Moshi's codebook `k` output at step `s` (discard row when negative).
    fn audio_out_slot(&self, s: usize, k: usize) -> u32 {
        let f = s as isize - self.cfg.delays[1 + k] as isize;
        if f < 0 {
            ((self.ring + 1) * self.width() + 1 + k) as u32
        } else {
            self.slot(f, 1 + k)
        }
    }

    /// Element index where the user's codes of frame `f` start (`n_q − dep_q` consecutive).
    pub fn user_codes_slot(&self, f: usize) -> u32 {
        self.slot(f as isize, 1 + self.cfg.dep_q)
    }

    /// Element index of the ring row of frame `f` (`width` consecutive tokens).
    pub fn frame_row(&self, f: usize) -> u32 {
        self.slot(f as isize, 0)
    }

    /// `n` tokens of [`Lm::tokens`] from element `index`.
    fn token_view(&self, index: u32, n: usize) -> View<'_> {
        self.tokens.slice(index as u64 * 4, n as u64 * 4)
    }

    /// Where the user's codes of frame `s` go (`n_q − dep_q` tokens): the caller copies them in
    /// before recording step `s`.
    pub fn user_codes_view(&self, s: usize) -> View<'_> {
        self.token_view(self.user_codes_slot(s), self.cfg.user_streams())
    }

    /// The text token of frame `f` (chosen by step `f + d_0`).
    pub fn text_token_view(&self, f: usize) -> View<'_> {
        self.token_view(self.frame_row(f), 1)
    }

    /// Moshi's `dep_q` codebooks of frame `f`, complete once step `f + max(delays)` is recorded.
    pub fn audio_token_view(&self, f: usize) -> View<'_> {
        self.token_view(self.frame_row(f) + 1, self.cfg.dep_q)
    }

    /// The whole ring row of frame `f`: `[text, Moshi's codebooks, the user's codebooks]`
    /// ([`Lm::width`] tokens).
    pub fn frame_view(&self, f: usize) -> View<'_> {
        self.token_view(self.frame_row(f), self.width())
    }

    /// Bytes of weights one step reads (temporal + text head + extra heads + every depformer
    /// step).
    pub fn weight_bytes_per_step(&self) -> u64 {
        let extra = self.extra.as_ref().map_or(0, |e| e.bytes());
        let dep = self.dep.as_ref().map_or(0, |dep| {
            let dep_in: u64 = match &dep.stacked {
                Some((l, _)) => l.bytes(),
                None => (0..self.cfg.dep_q)
                    .map(|k| {
                        let j = if self.cfg.depformer_multi_linear {
                            self.cfg.depformer_set(k)
                        } else {
                            0
                        };
                        dep.ins[j].bytes()
                    })
                    .sum(),
            };
            let heads: u64 = dep.heads.iter().map(|h| h.bytes()).sum();
            dep_in + heads + self.cfg.dep_q as u64 * dep.transformer.weight_bytes_per_call()
        });
        self.transformer.weight_bytes_per_call() + self.text_linear.bytes() + extra + dep
    }

    /// GPU bytes of the embedding tables (temporal and depformer) and the format of the text
    /// table (all tables of a published checkpoint share it).
    pub fn table_bytes(&self) -> (u64, Option<WeightFormat>) {
        (
            self.emb.bytes() + self.dep.as_ref().map_or(0, |d| d.emb.bytes()),
            self.emb.format(self.cfg.n_q),
        )
    }

    /// Bytes of weights stored on the GPU.
    pub fn weight_bytes(&self) -> u64 {
        let dep = self.dep.as_ref().map_or(0, |dep| {
            dep.ins.iter().map(|l| l.bytes()).sum::<u64>()
                + dep.stacked.as_ref().map_or(0, |(l, _)| l.bytes())
                + dep.emb.bytes()
                + dep.heads.iter().map(|h| h.bytes()).sum::<u64>()
                + dep.transformer.weight_bytes()
        });
        self.emb.bytes()
            + self.transformer.weight_bytes()
            + self.text_linear.bytes()
            + self.extra.as_ref().map_or(0, |e| e.bytes())
            + dep
    }

    /// The extra heads' shape (0 heads when the model has none).
    pub fn extra_heads(&self) -> ExtraHeadsConfig {
        self.extra
            .as_ref()
            .map_or(ExtraHeadsConfig::default(), |e| e.config())
    }

    /// The last step's extra-head probabilities `[heads, head_dim]` f32, if the model has heads.
    pub fn extra_probs_view(&self) -> Option<View<'_>> {
        self.extra.as_ref().map(|e| e.probs().view())
    }

    /// The buffer behind [`Lm::extra_probs_view`].
    pub fn extra_probs(&self) -> Option<&GpuBuffer> {
        self.extra.as_ref().map(|e| e.probs())
    }

    /// Ring slot of audio stream `k` read by step `s`. Moshi's own codebooks (`k < dep_q`) and,
    /// in Moshi, the user's: frame `s − 1 − d` (spec §3.1; the session copies the user's codes
    /// of frame `s` in at step `s`, so they are heard one step later). Without a depformer
    /// (`dep_q` 0, Kyutai STT) the streams follow PyPI moshi's `LMGen`, which Kyutai's STT script
    /// drives: step `s` reads the frame given at step `s − d`, the initial token while `s ≤ d`.
    fn audio_in_slot(&self, s: usize, k: usize) -> u32 {
        let d = self.cfg.delays[1 + k];
        let f = if self.cfg.dep_q > 0 {
            s as isize - 1 - d as isize
        } else if s <= d {
            -1
        } else {
            (s - d) as isize
        };
        self.slot(f, 1 + k)
    }

    /// Choose the token of sampling site `site` (0 text, 1 + k audio codebook k) from one row
    /// of logits into ring element `out`. When sampling, the same launch gathers the token's
    /// embedding row into `next` (the next depformer step's input) if given; returns whether it
    /// did (forced tokens are copies: the caller then gathers the row itself).
    fn choose(
        &self,
        rec: &mut Recorder,
        choice: &TokenChoice,
        logits: &LogitRows,
        site: u32,
        out: u32,
        next: Option<EmbedRow>,
    ) -> crate::Result<bool> {
        match choice {
            TokenChoice::Forced => {
                rec.copy(
                    self.forced_tokens.slice(site as u64 * 4, 4),
                    self.tokens.slice(out as u64 * 4, 4),
                );
                Ok(false)
            }
            TokenChoice::Sample(s) => {
                let (temperature, top_k) = if site == 0 {
                    (s.text_temperature, s.text_top_k)
                } else {
                    (s.audio_temperature, s.audio_top_k)
                };
                let cfg = if temperature <= 0.0 {
                    SampleConfig::greedy()
                } else {
                    SampleConfig::top_k(temperature, top_k, s.seed, self.step as u32, site)
                };
                let slots = TokenSlots {
                    view: self.tokens.view(),
                    index: out,
                };
                match next {
                    Some(row) => sampling::sample_embed(rec, logits, &cfg, slots, &row)?,
                    None => sampling::sample_rows(rec, logits, &cfg, slots)?,
                }
                Ok(next.is_some())
            }
        }
    }

    /// Record one step (spec §3.1): the user's codes of frame `s − 1 − d` must already be in
    /// the ring. Writes the text token of frame `s` and Moshi's codebook `k` of frame
    /// `s − d_{1+k}` into the ring, and the step's logits into [`Lm::text_logits`] /
    /// [`Lm::audio_logits`] (with guidance: the conditioned lane's `cond − null`).
    pub fn record_step(&mut self, rec: &mut Recorder, choice: TokenChoice) -> crate::Result<()> {
        // The depformer and the guidance lane are taken out for the step so that their caches
        // can be written while the rest of the model is read.
        let mut dep = self.dep.take();
        let mut guide = self.guide.take();
        let r = self.record_temporal(rec, &choice, dep.as_mut(), guide.as_mut());
        self.dep = dep;
        self.guide = guide;
        r?;
        self.step += 1;
        Ok(())
    }

    /// Element index of lane `lane`'s constant (its row of the condition table).
    fn lane_slot(&self, lane: u32) -> u32 {
        ((self.ring + 2) * self.width()) as u32 + lane
    }

    /// One lane's temporal pass into its buffers `[x, z, text_logits]`: input embedding sum
    /// (with the lane's condition row), the temporal transformer on the current caches, the out
    /// norm into `z` unless `fused`, the text head.
    fn temporal_lane(
        &mut self,
        rec: &mut Recorder,
        lane: u32,
        [x, z, text_logits]: [&GpuBuffer; 3],
        fused: bool,
        counts: &mut StepDispatches,
    ) -> crate::Result<()> {
        let s = self.step;
        let cfg = &self.cfg;
        // Temporal input: Σ audio tables (0..n_q) + text table (n_q) (+ the condition row).
        let mut streams: Vec<(usize, u32)> = (0..cfg.n_q)
            .map(|k| (k, self.audio_in_slot(s, k)))
            .collect();
        streams.push((
            cfg.n_q,
            self.slot(s as isize - 1 - cfg.delays[0] as isize, 0),
        ));
        if let Some(t) = self.cond_table {
            streams.push((t, self.lane_slot(lane)));
        }
        let mut mark = rec.dispatch_count();
        let mut since = |rec: &Recorder| {
            let n = rec.dispatch_count();
            let d = n - mark;
            mark = n;
            d
        };
        self.emb
            .sum(rec, self.tokens.view(), &streams, x.view(), false)?;
        counts.embed += since(rec);
        self.transformer.forward(rec, x)?;
        counts.temporal += since(rec);
        // The out norm is fused into every linear that reads it (text head, depformer inputs)
        // when their shapes allow; otherwise `z` holds it.
        let (zb, z_input) = if fused {
            (x, self.out_norm.as_linear_input())
        } else {
            self.out_norm.forward(rec, x.view(), z.view(), 1)?;
            (z, LinearInput::Plain)
        };
        self.text_linear.forward_with(
            rec,
            zb.view(),
            text_logits.view(),
            1,
            z_input,
            LinearOutput::Store,
        )?;
        counts.text_head += since(rec);
        Ok(())
    }

    /// How the linears after the temporal transformer read its output: the out norm fused in,
    /// or plain (`z` holds the norm's output).
    fn z_read(&self, fused: bool) -> LinearInput<'_> {
        if fused {
            self.out_norm.as_linear_input()
        } else {
            LinearInput::Plain
        }
    }

    fn record_temporal(
        &mut self,
        rec: &mut Recorder,
        choice: &TokenChoice,
        mut dep: Option<&mut Depformer>,
        mut guide: Option<&mut Guidance>,
    ) -> crate::Result<()> {
        let s = self.step;
        let mut counts = StepDispatches::default();
        let fused = self.text_linear.fusable()
            && self.extra.as_ref().is_none_or(|e| e.fusable())
            && dep.as_ref().is_none_or(|dep| {
                dep.ins.iter().all(|l| l.fusable())
                    && dep.stacked.as_ref().is_none_or(|(l, _)| l.fusable())
            });
        // The negative lane first, on its own caches and buffers.
        if let Some(g) = guide.as_deref_mut() {
            self.transformer.swap_lane(&mut g.temporal);
            let bufs = [&g.x, &g.z, &g.text_logits];
            let r = self.temporal_lane(rec, 1, bufs, fused, &mut counts);
            self.transformer.swap_lane(&mut g.temporal);
            r?;
        }
        let (x, zbuf, text_logits) = (self.x.clone(), self.z.clone(), self.text_logits.clone());
        self.temporal_lane(rec, 0, [&x, &zbuf, &text_logits], fused, &mut counts)?;
        let z = if fused { &x } else { &zbuf };
        let mut mark = rec.dispatch_count();
        let mut since = |rec: &Recorder| {
            let n = rec.dispatch_count();
            let d = n - mark;
            mark = n;
            d
        };
        // Every step's depformer input projection at once (stacked weights), before the text
        // sampler adds the text token's embedding to step 0's input; each lane its own.
        if let Some((l, xs)) = dep.as_ref().and_then(|d| d.stacked.as_ref()) {
            l.forward_with(
                rec,
                z.view(),
                xs.view(),
                1,
                self.z_read(fused),
                LinearOutput::Store,
            )?;
            if let Some(g) = guide.as_deref() {
                let (gz, gxs) = (if fused { &g.x } else { &g.z }, g.xs.as_ref());
                let gxs = gxs.expect("a guidance lane has step inputs when they are stacked");
                l.forward_with(
                    rec,
                    gz.view(),
                    gxs.view(),
                    1,
                    self.z_read(fused),
                    LinearOutput::Store,
                )?;
            }
        }
        counts.depformer += since(rec);
        let n_text = self.cfg.text_card_out as u32;
        let text_view = match guide.as_deref() {
            Some(g) => {
                g.combine(rec, text_logits.view(), g.text_logits.view(), n_text)?;
                g.text_logits.view()
            }
            None => text_logits.view(),
        };
        counts.text_head += since(rec);
        let text_slot = self.slot(s as isize, 0);
        let text_rows = LogitRows::one(text_view, 0, n_text);
        // With guidance the token's embedding goes into both lanes' inputs: gathered by the
        // depformer steps, not by the sampler.
        let next = match guide {
            None => dep.as_ref().and_then(|d| d.embed_target(0)),
            Some(_) => None,
        };
        let embedded = self.choose(rec, choice, &text_rows, 0, text_slot, next)?;
        counts.sampling += since(rec);
        if let Some(extra) = &self.extra {
            extra.record(rec, z.view(), self.z_read(fused))?;
        }
        counts.text_head += since(rec);
        if let Some(dep) = dep.as_mut() {
            let own = ZInput {
                buffer: z,
                read: self.z_read(fused),
            };
            let null = guide.as_deref().map(|g| {
                (
                    if fused { g.x.clone() } else { g.z.clone() },
                    self.z_read(fused),
                )
            });
            let prev = (text_slot, embedded);
            self.run_depformer(dep, rec, choice, own, null, guide, prev, &mut counts)?;
        }
        self.last_dispatches = counts;
        Ok(())
    }
}

/// The token buffer's initial contents: the ring (zeros), the initial row (text `text_card`,
/// audio `card`), the discard row, then the lanes' constants 0 and 1 (their condition rows).
fn initial_tokens(cfg: &LmConfig, ring: usize) -> Vec<u32> {
    let width = cfg.n_q + 1;
    let mut init = vec![0u32; (ring + 2) * width + 2];
    let initial_row = &mut init[ring * width..(ring + 1) * width];
    initial_row[0] = cfg.text_card as u32;
    for t in initial_row[1..].iter_mut() {
        *t = cfg.card as u32;
    }
    init[(ring + 2) * width + 1] = 1;
    init
}
