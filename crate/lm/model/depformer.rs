//! The depformer of [`Lm`]: `dep_q` steps per LM step, each conditioned on the temporal
//! output and chained through the token sampled just before it; with guidance both lanes run
//! each step and their logits are combined before the choice.

use crate::gpu::{Context, GpuBuffer, Recorder, View};
use crate::kernels::linear::{LinearInput, LinearOutput};
use crate::kernels::sampling::LogitRows;
use crate::nn::{EmbeddingTable, Embeddings, Linear, Transformer, TransformerConfig, Weights};
use crate::weights::WeightFormat;

use super::lanes::Guidance;
use super::{fbuf, Lm, LmConfig, LmOptions, StepDispatches, TokenChoice, ZInput};

pub(super) struct Depformer {
    /// `depformer_in`, indexed by weight set (or one shared).
    pub(super) ins: Vec<Linear>,
    /// Previous-token tables: 0 = text, k = audio codebook k − 1.
    pub(super) emb: Embeddings,
    /// Low-rank projections per table (`{table}.low_rank.weight`).
    low_rank: Vec<Option<Linear>>,
    pub(super) transformer: Transformer,
    pub(super) heads: Vec<Linear>,
    /// `[dim]` step input.
    x: GpuBuffer,
    /// `[rank]` gathered low-rank embedding.
    e: GpuBuffer,
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
        let ins = (0..cfg.depformer_in_count())
            .map(|j| w.linear(ctx, &format!("depformer_in.{j}.weight"), dd, d))
            .collect::<crate::Result<Vec<_>>>()?;
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
            emb: dep_emb,
            low_rank,
            transformer: dep_transformer,
            heads,
        })
    }

    /// Depformer step `k` of one lane on the current caches: input projection of `z`, the
    /// previous token's embedding, the layers, the head into `logits`.
    #[allow(clippy::too_many_arguments)]
    fn depformer_lane(
        &self,
        dep: &mut Depformer,
        rec: &mut Recorder,
        k: usize,
        z: ZInput,
        prev: u32,
        logits: View,
    ) -> crate::Result<()> {
        let j = if self.cfg.depformer_multi_linear {
            self.cfg.depformer_set(k)
        } else {
            0
        };
        dep.ins[j].forward_with(
            rec,
            z.buffer.view(),
            dep.x.view(),
            1,
            z.read,
            LinearOutput::Store,
        )?;
        match &dep.low_rank[k] {
            Some(lr) => {
                dep.emb
                    .sum(rec, self.tokens.view(), &[(k, prev)], dep.e.view(), false)?;
                lr.forward_with(
                    rec,
                    dep.e.view(),
                    dep.x.view(),
                    1,
                    LinearInput::Plain,
                    LinearOutput::Accumulate,
                )?;
            }
            None => dep
                .emb
                .sum(rec, self.tokens.view(), &[(k, prev)], dep.x.view(), true)?,
        }
        dep.transformer.forward(rec, &dep.x)?;
        dep.heads[k].forward(rec, dep.x.view(), logits, 1)?;
        Ok(())
    }

    /// The depformer's `dep_q` steps of step `self.step`, each chained on the token chosen
    /// just before (with guidance: both lanes, their logits combined before the choice).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_depformer(
        &self,
        dep: &mut Depformer,
        rec: &mut Recorder,
        choice: &TokenChoice,
        z: ZInput,
        null_z: Option<(GpuBuffer, LinearInput)>,
        mut guide: Option<&mut Guidance>,
        text_slot: u32,
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
        let mut prev = text_slot;
        for k in 0..self.cfg.dep_q {
            let row = k as u64 * self.logit_stride() as u64;
            let own_logits = self.audio_logits.slice(row * 4, card as u64 * 4);
            let mut logits = LogitRows::one(self.audio_logits.view(), row as u32, card);
            if let (Some(g), Some((buffer, read))) = (guide.as_deref_mut(), null_z.as_ref()) {
                let null = g.audio_logits.clone();
                let lane = g.depformer.as_mut().expect("a depformer lane");
                dep.transformer.swap_lane(lane);
                let nz = ZInput {
                    buffer,
                    read: *read,
                };
                let r = self.depformer_lane(
                    dep,
                    rec,
                    k,
                    nz,
                    prev,
                    null.slice(row * 4, card as u64 * 4),
                );
                dep.transformer.swap_lane(lane);
                r?;
                self.depformer_lane(dep, rec, k, z, prev, own_logits)?;
                g.combine(
                    rec,
                    self.audio_logits.slice(row * 4, card as u64 * 4),
                    null.slice(row * 4, card as u64 * 4),
                    card,
                )?;
                logits = LogitRows::one(null.view(), row as u32, card);
                counts.depformer += since(rec);
                let out = self.audio_out_slot(s, k);
                self.choose(rec, choice, &logits, 1 + k as u32, out)?;
                counts.sampling += since(rec);
                prev = out;
                continue;
            }
            self.depformer_lane(dep, rec, k, z, prev, own_logits)?;
            counts.depformer += since(rec);
            let out = self.audio_out_slot(s, k);
            self.choose(rec, choice, &logits, 1 + k as u32, out)?;
            counts.sampling += since(rec);
            prev = out;
        }
        Ok(())
    }
}
