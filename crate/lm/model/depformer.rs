//! The depformer of [`Lm`]: `dep_q` steps per LM step, each conditioned on the temporal
//! output and chained through the token sampled just before it; with guidance both lanes run
//! each step and their logits are combined before the choice.

use crate::gpu::{Context, GpuBuffer, Recorder, View};
use crate::kernels::linear::{LinearInput, LinearOutput};
use crate::kernels::sampling::{EmbedRow, LogitRows};
use crate::nn::{EmbeddingTable, Embeddings, Linear, Transformer, TransformerConfig, Weights};
use crate::weights::estimate::stacks_depformer_inputs;
use crate::weights::WeightFormat;

use super::groups;
use super::lanes::Guidance;
use super::{fbuf, Lm, LmConfig, LmOptions, StepDispatches, TokenChoice, ZInput};

pub(super) struct Depformer {
    /// `depformer_in`, indexed by weight set (or one shared); empty when `stacked` holds them.
    pub(super) ins: Vec<Linear>,
    /// Every step's own `depformer_in` stacked into one linear (`[dep_q · dim, d]`), run once
    /// per step into `xs` before the text token is sampled, when each step has its own weight
    /// and a row of `xs` is a bindable view.
    pub(super) stacked: Option<(Linear, GpuBuffer)>,
    /// Previous-token tables: 0 = text, k = audio codebook k − 1.
    pub(super) emb: Embeddings,
    /// Low-rank projections per table (`{table}.low_rank.weight`).
    low_rank: Vec<Option<Linear>>,
    pub(super) transformer: Transformer,
    pub(super) heads: Vec<Linear>,
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
    pub(super) fn embed_target(&self, k: usize) -> Option<EmbedRow<'_>> {
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

impl Lm {
    pub(super) fn load_depformer(
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
        // The same rule on every adapter (and in the memory estimate); the adapter's own
        // alignment divides it, as WebGPU caps that limit at 256.
        let row_bytes = dd as u64 * 4;
        let stacked = if stacks_depformer_inputs(cfg.own_input_per_step(), dd)
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

    /// Depformer step `k` of one lane on the current caches and step inputs, up to its head's
    /// logits: `x = depformer_in(z) + embedding(prev)` (with stacked inputs the projection is
    /// in `x` already; when `embedded`, a fused sampler stored the embedding and the
    /// projection accumulates), the layers, the head into `logits`.
    #[allow(clippy::too_many_arguments)]
    fn depformer_lane(
        &self,
        dep: &mut Depformer,
        rec: &mut Recorder,
        k: usize,
        z: ZInput,
        (prev, embedded): (u32, bool),
        logits: View,
    ) -> crate::Result<()> {
        let x = step_input(&dep.stacked, &dep.x, k);
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
            dep.ins[j].forward_with(rec, z.buffer.view(), x, 1, z.read, out)?;
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
        dep.transformer
            .forward_view_head(rec, x, &dep.heads[k], logits)?;
        Ok(())
    }

    /// The depformer's `dep_q` steps of step `self.step`, each chained on the token chosen
    /// just before (`prev`: its ring slot, and whether its sampler already gathered its
    /// embedding into step 0's input). With guidance both lanes run each step (the negative
    /// one on its own caches and step inputs, swapped in), their logits are combined, and the
    /// sampler gathers no embedding (each lane's step gathers its own).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_depformer(
        &self,
        dep: &mut Depformer,
        rec: &mut Recorder,
        choice: &TokenChoice,
        z: ZInput,
        null_z: Option<(GpuBuffer, LinearInput)>,
        mut guide: Option<&mut Guidance>,
        prev: (u32, bool),
        counts: &mut StepDispatches,
    ) -> crate::Result<()> {
        let mut mark = rec.dispatch_count();
        let mut since = |rec: &Recorder| {
            let n = rec.dispatch_count();
            let d = n - mark;
            mark = n;
            d
        };
        let s = self.step;
        dep.transformer.reset();
        if let Some(g) = guide.as_deref_mut() {
            g.reset_depformer();
        }
        let card = self.cfg.card as u32;
        let (mut prev, mut embedded) = prev;
        for k in 0..self.cfg.dep_q {
            rec.set_group(groups::DEPFORMER);
            let row = k as u64 * self.logit_stride() as u64;
            let own_logits = self.audio_logits.slice(row * 4, card as u64 * 4);
            let out = self.audio_out_slot(s, k);
            if let (Some(g), Some((buffer, read))) = (guide.as_deref_mut(), null_z.as_ref()) {
                let null = g.audio_logits.clone();
                let lane = g.depformer.as_mut().expect("a depformer lane");
                dep.transformer.swap_lane(lane);
                if let (Some((_, xs)), Some(gxs)) = (dep.stacked.as_mut(), g.xs.as_mut()) {
                    std::mem::swap(xs, gxs);
                }
                let nz = ZInput {
                    buffer,
                    read: *read,
                };
                let null_row = null.slice(row * 4, card as u64 * 4);
                let r = self.depformer_lane(dep, rec, k, nz, (prev, false), null_row);
                dep.transformer.swap_lane(lane);
                if let (Some((_, xs)), Some(gxs)) = (dep.stacked.as_mut(), g.xs.as_mut()) {
                    std::mem::swap(xs, gxs);
                }
                r?;
                self.depformer_lane(dep, rec, k, z, (prev, false), own_logits)?;
                g.combine(rec, own_logits, null.slice(row * 4, card as u64 * 4), card)?;
                counts.depformer += since(rec);
                let logits = LogitRows::one(null.view(), row as u32, card);
                rec.set_group(groups::SAMPLING);
                self.choose(rec, choice, &logits, 1 + k as u32, out, None)?;
                counts.sampling += since(rec);
                prev = out;
                continue;
            }
            self.depformer_lane(dep, rec, k, z, (prev, embedded), own_logits)?;
            counts.depformer += since(rec);
            let logits = LogitRows::one(self.audio_logits.view(), row as u32, card);
            let next = if k + 1 < self.cfg.dep_q {
                dep.embed_target(k + 1)
            } else {
                None
            };
            rec.set_group(groups::SAMPLING);
            embedded = self.choose(rec, choice, &logits, 1 + k as u32, out, next)?;
            counts.sampling += since(rec);
            prev = out;
        }
        Ok(())
    }
}
