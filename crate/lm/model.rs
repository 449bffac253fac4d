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
    EmbeddingTable, Embeddings, Linear, Norm, NormKind, Transformer, TransformerConfig, Weights,
};
use crate::weights::{UsageTracker, WeightFormat};

use super::config::LmConfig;
use super::extra::{ExtraHeads, ExtraHeadsConfig};
use super::groups;

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

struct Depformer {
    /// `depformer_in`, indexed by weight set (or one shared); empty when `stacked` holds them.
    ins: Vec<Linear>,
    /// Every step's own `depformer_in` stacked into one linear (`[dep_q · dim, d]`), run once
    /// per step into `xs` before the text token is sampled, when each step has its own weight
    /// and a row of `xs` is a bindable view.
    stacked: Option<(Linear, GpuBuffer)>,
    /// Previous-token tables: 0 = text, k = audio codebook k − 1.
    emb: Embeddings,
    /// Low-rank projections per table (`{table}.low_rank.weight`).
    low_rank: Vec<Option<Linear>>,
    transformer: Transformer,
    heads: Vec<Linear>,
    /// `[dim]` step input (unless `stacked`).
    x: GpuBuffer,
    /// `[rank]` gathered low-rank embedding.
    e: GpuBuffer,
}

impl Depformer {
    /// Step `k`'s input and residual stream `[dim]`.
    fn input(&self, k: usize) -> View<'_> {
        step_input(&self.stacked, &self.x, k)
    }

    /// Where step `k`'s previous-token embedding goes when its sampler gathers it: stored into
    /// the step's input (the projection accumulates onto it later), or added to the stacked
    /// projection already there. `None` for low-rank tables or tables the fused gather cannot
    /// read.
    fn embed_target(&self, k: usize) -> Option<EmbedRow<'_>> {
        if self.low_rank[k].is_some() {
            return None;
        }
        self.emb
            .row_target(k, self.input(k), 0, self.stacked.is_some())
    }
}

/// Step `k`'s row of the stacked inputs, or the one input buffer `x` (borrows only those, so
/// that the depformer's transformer can run on it).
fn step_input<'a>(
    stacked: &'a Option<(Linear, GpuBuffer)>,
    x: &'a GpuBuffer,
    k: usize,
) -> View<'a> {
    match stacked {
        Some((_, xs)) => xs.slice(k as u64 * x.size(), x.size()),
        None => x.view(),
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
        let emb = Embeddings::load(ctx, w, &tables, d as u32, table_format)?;
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
        let width = cfg.n_q + 1;
        let mut init = vec![0u32; (ring + 2) * width];
        let initial_row = &mut init[ring * width..(ring + 1) * width];
        initial_row[0] = cfg.text_card as u32;
        for t in initial_row[1..].iter_mut() {
            *t = cfg.card as u32;
        }
        let tokens = ctx.upload("lm tokens", &init)?;
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

    fn load_depformer(
        ctx: &Context,
        cfg: &LmConfig,
        w: &Weights,
        opts: &LmOptions,
        table_format: Option<WeightFormat>,
    ) -> crate::Result<Depformer> {
        let (d, dd) = (cfg.dim, cfg.depformer_dim);
        let mut ins = (0..cfg.depformer_in_count())
            .map(|j| w.linear(ctx, &format!("depformer_in.{j}.weight"), dd, d))
            .collect::<crate::Result<Vec<_>>>()?;
        let own_weight_per_step = cfg.depformer_multi_linear
            && ins.len() == cfg.dep_q
            && (0..cfg.dep_q).all(|k| cfg.depformer_set(k) == k);
        let row_bytes = dd as u64 * 4;
        let stacked = if own_weight_per_step
            && cfg.dep_q > 1
            && row_bytes.is_multiple_of(ctx.caps().min_storage_offset_alignment as u64)
        {
            let refs: Vec<&Linear> = ins.iter().collect();
            match Linear::stack(ctx, "depformer_in stacked", &refs)? {
                Some(l) => {
                    ins.clear();
                    Some((l, fbuf(ctx, "depformer step inputs", cfg.dep_q * dd)?))
                }
                None => None,
            }
        } else {
            None
        };
        let rank = cfg.depformer_low_rank_embeddings.unwrap_or(dd);
        let mut dep_tables = vec![EmbeddingTable {
            name: "depformer_text_emb.weight".into(),
            rows: cfg.text_card as u32 + 1,
        }];
        dep_tables.extend((0..cfg.dep_q.saturating_sub(1)).map(|k| EmbeddingTable {
            name: format!("depformer_emb.{k}.weight"),
            rows: cfg.card as u32 + 1,
        }));
        let dep_emb = Embeddings::load(ctx, w, &dep_tables, rank as u32, table_format)?;
        let low_rank = dep_tables
            .iter()
            .map(|t| match cfg.depformer_low_rank_embeddings {
                Some(r) => {
                    let name = t.name.replace(".weight", ".low_rank.weight");
                    w.linear(ctx, &name, dd, r).map(Some)
                }
                None => Ok(None),
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let dep_transformer = Transformer::load(
            ctx,
            &w.pp("depformer"),
            &TransformerConfig {
                f32_cache: opts.f32_cache,
                ..cfg.depformer()
            },
        )?;
        let heads = (0..cfg.dep_q)
            .map(|k| w.linear(ctx, &format!("linears.{k}.weight"), cfg.card, dd))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Depformer {
            x: fbuf(ctx, "depformer x", dd)?,
            e: fbuf(ctx, "depformer low-rank e", rank)?,
            ins,
            stacked,
            emb: dep_emb,
            low_rank,
            transformer: dep_transformer,
            heads,
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
        let width = self.width();
        let mut init = vec![0u32; (self.ring + 2) * width];
        init[self.ring * width] = self.cfg.text_card as u32;
        for t in init[self.ring * width + 1..(self.ring + 1) * width].iter_mut() {
            *t = self.cfg.card as u32;
        }
        ctx.write(&self.tokens, 0, bytemuck::cast_slice(&init));
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
    /// [`Lm::audio_logits`].
    pub fn record_step(&mut self, rec: &mut Recorder, choice: TokenChoice) -> crate::Result<()> {
        // The depformer is taken out for the step so that its caches can be written while the
        // rest of the model is read.
        let mut dep = self.dep.take();
        let r = self.record_temporal(rec, &choice, dep.as_mut());
        self.dep = dep;
        r?;
        self.step += 1;
        Ok(())
    }

    fn record_temporal(
        &mut self,
        rec: &mut Recorder,
        choice: &TokenChoice,
        mut dep: Option<&mut Depformer>,
    ) -> crate::Result<()> {
        let s = self.step;
        let cfg = &self.cfg;
        // Temporal input: Σ audio tables (0..n_q) + text table (n_q).
        let mut streams: Vec<(usize, u32)> = (0..cfg.n_q)
            .map(|k| (k, self.audio_in_slot(s, k)))
            .collect();
        streams.push((
            cfg.n_q,
            self.slot(s as isize - 1 - cfg.delays[0] as isize, 0),
        ));
        let mut counts = StepDispatches::default();
        let mut mark = rec.dispatch_count();
        let mut since = |rec: &Recorder| {
            let n = rec.dispatch_count();
            let d = n - mark;
            mark = n;
            d
        };
        rec.set_group(groups::EMBED);
        self.emb
            .sum(rec, self.tokens.view(), &streams, self.x.view(), false)?;
        counts.embed = since(rec);
        rec.set_group(groups::TEMPORAL);
        self.transformer.forward(rec, &self.x)?;
        counts.temporal = since(rec);
        rec.set_group(groups::TEXT_HEAD);
        // The out norm is fused into every linear that reads it (text head, depformer inputs)
        // when their shapes allow; otherwise `z` holds it.
        let fused = self.text_linear.fusable()
            && self.extra.as_ref().is_none_or(|e| e.fusable())
            && dep.as_ref().is_none_or(|dep| {
                dep.ins.iter().all(|l| l.fusable())
                    && dep.stacked.as_ref().is_none_or(|(l, _)| l.fusable())
            });
        let (z, z_input) = if fused {
            (self.x.clone(), self.out_norm.as_linear_input())
        } else {
            self.out_norm
                .forward(rec, self.x.view(), self.z.view(), 1)?;
            (self.z.clone(), LinearInput::Plain)
        };
        self.text_linear.forward_with(
            rec,
            z.view(),
            self.text_logits.view(),
            1,
            z_input,
            LinearOutput::Store,
        )?;
        counts.text_head = since(rec);
        // Every step's depformer input projection at once (stacked weights), before the text
        // sampler adds the text token's embedding to step 0's input.
        if let Some((l, xs)) = dep.as_ref().and_then(|d| d.stacked.as_ref()) {
            rec.set_group(groups::DEPFORMER);
            l.forward_with(rec, z.view(), xs.view(), 1, z_input, LinearOutput::Store)?;
        }
        counts.depformer += since(rec);
        let text_slot = self.slot(s as isize, 0);
        let text_logits = LogitRows::one(self.text_logits.view(), 0, self.cfg.text_card_out as u32);
        rec.set_group(groups::SAMPLING);
        let next = dep.as_ref().and_then(|d| d.embed_target(0));
        let embedded = self.choose(rec, choice, &text_logits, 0, text_slot, next)?;
        counts.sampling += since(rec);
        rec.set_group(groups::TEXT_HEAD);
        if let Some(extra) = &self.extra {
            extra.record(rec, z.view(), z_input)?;
        }
        counts.text_head += since(rec);
        if let Some(dep) = dep.as_mut() {
            let z = ZInput {
                buffer: &z,
                read: z_input,
            };
            self.run_depformer(dep, rec, choice, z, (text_slot, embedded), &mut counts)?;
        }
        self.last_dispatches = counts;
        Ok(())
    }

    /// The depformer's `dep_q` steps of step `self.step`, each chained on the token chosen
    /// just before (`prev`: its ring slot, and whether its sampler already gathered its
    /// embedding into step 0's input).
    fn run_depformer(
        &self,
        dep: &mut Depformer,
        rec: &mut Recorder,
        choice: &TokenChoice,
        z: ZInput,
        prev: (u32, bool),
        counts: &mut StepDispatches,
    ) -> crate::Result<()> {
        let ZInput {
            buffer: z,
            read: z_input,
        } = z;
        let mut mark = rec.dispatch_count();
        let mut since = |rec: &Recorder| {
            let n = rec.dispatch_count();
            let d = n - mark;
            mark = n;
            d
        };
        let s = self.step;
        dep.transformer.reset();
        let card = self.cfg.card as u32;
        let (mut prev, mut embedded) = prev;
        for k in 0..self.cfg.dep_q {
            rec.set_group(groups::DEPFORMER);
            let x = step_input(&dep.stacked, &dep.x, k);
            // x = depformer_in(z) + embedding(prev): with stacked inputs the projection is in x
            // already; a fused sampler stored the embedding, so the projection accumulates.
            if dep.stacked.is_none() {
                let j = if self.cfg.depformer_multi_linear {
                    self.cfg.depformer_set(k)
                } else {
                    0
                };
                let out = if embedded {
                    LinearOutput::Accumulate
                } else {
                    LinearOutput::Store
                };
                dep.ins[j].forward_with(rec, z.view(), x, 1, z_input, out)?;
            }
            match (&dep.low_rank[k], embedded) {
                (_, true) => {}
                (Some(lr), false) => {
                    dep.emb
                        .sum(rec, self.tokens.view(), &[(k, prev)], dep.e.view(), false)?;
                    lr.forward_with(
                        rec,
                        dep.e.view(),
                        x,
                        1,
                        LinearInput::Plain,
                        LinearOutput::Accumulate,
                    )?;
                }
                (None, false) => dep
                    .emb
                    .sum(rec, self.tokens.view(), &[(k, prev)], x, true)?,
            }
            dep.transformer.forward_view(rec, x)?;
            let row = k as u64 * self.logit_stride() as u64;
            dep.heads[k].forward(rec, x, self.audio_logits.slice(row * 4, card as u64 * 4), 1)?;
            counts.depformer += since(rec);
            let out = self.audio_out_slot(s, k);
            let logits = LogitRows::one(self.audio_logits.view(), row as u32, card);
            rec.set_group(groups::SAMPLING);
            let next = if k + 1 < self.cfg.dep_q {
                dep.embed_target(k + 1)
            } else {
                None
            };
            embedded = self.choose(rec, choice, &logits, 1 + k as u32, out, next)?;
            counts.sampling += since(rec);
            prev = out;
        }
        Ok(())
    }
}
