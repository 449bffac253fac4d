//! The Moshi LM's buffers (`lm::Lm::load`): embedding tables, the temporal transformer, the
//! out norm and text head, the depformer (inputs, tables, low-rank projections, transformer,
//! heads) and the step's activations, logits and token ring.

use super::transformer::TransformerShape;
use super::{buffer_bytes, floats, Facts, GpuEstimate, LinearSource};
use crate::weights::{table_bytes, WeightFormat};

/// The LM's shape as its loader builds it (`lm::LmConfig::shape`).
#[derive(Debug, Clone, PartialEq)]
pub struct LmShape {
    pub dim: usize,
    pub depformer_dim: usize,
    pub n_q: usize,
    pub dep_q: usize,
    pub card: usize,
    pub text_card: usize,
    pub text_card_out: usize,
    pub depformer_in_count: usize,
    pub low_rank: Option<usize>,
    pub max_delay: usize,
    /// The out norm is a LayerNorm (weight and bias) rather than an RMSNorm (alpha).
    pub layer_norm: bool,
    /// Extra heads (Kyutai STT's voice activity): count and width (`lm::ExtraHeads`).
    pub extra_heads: usize,
    pub extra_heads_dim: usize,
    pub temporal: TransformerShape,
    pub depformer: TransformerShape,
    /// Every depformer step has its own `depformer_in` (dep_q > 1): the loader stacks them
    /// into one linear when a step's row is a bindable view ([`stacks_depformer_inputs`]).
    pub own_input_per_step: bool,
    /// Hibiki's conditioning rows (one per lane, f32 `[dim]`) are gathered with the tables.
    pub conditioned: bool,
    /// Classifier-free guidance (`cfg ≠ 1`): a second lane with its own KV caches and step
    /// buffers (`lm::model::lanes`).
    pub guided: bool,
}

/// A depformer step's input row must start at this many bytes' multiple to be bound as a view
/// of the stacked inputs: WebGPU's largest `minStorageBufferOffsetAlignment`, so that whether
/// the inputs are stacked (and the launches and memory that follow) is the same on every
/// adapter. The loader and the estimate both ask [`stacks_depformer_inputs`].
pub const STACKED_ROW_ALIGN: u64 = 256;

/// Whether the loader stacks the depformer's per-step input linears (`depformer_dim` floats a
/// row).
pub fn stacks_depformer_inputs(own_input_per_step: bool, depformer_dim: usize) -> bool {
    own_input_per_step && (depformer_dim as u64 * 4).is_multiple_of(STACKED_ROW_ALIGN)
}

impl LmShape {
    /// Add the LM's parts to `e`.
    pub fn add_to(&self, e: &mut GpuEstimate, src: LinearSource, facts: Facts) {
        let (d, dd) = (self.dim, self.depformer_dim);
        let f16 = facts.f16 && !facts.f32_cache;
        // Temporal tables (n_q audio + text) of width d, depformer tables (text, then dep_q − 1
        // audio) of width `rank`, each kept in its own format and packed into one buffer per set
        // (`nn::Embeddings::load`).
        let rank = self.low_rank.unwrap_or(dd);
        let dep_tables = 1 + self.dep_q.saturating_sub(1);
        let set = |tables: Vec<(String, usize)>, width: usize| -> u64 {
            let bytes: u64 = tables
                .iter()
                .map(|(name, rows)| {
                    let f = src.table_format(name, width as u32, facts.tables);
                    table_bytes(f, *rows as u32, width as u32)
                })
                .sum();
            bytes.max(4)
        };
        let mut temporal: Vec<(String, usize)> = (0..self.n_q)
            .map(|k| (format!("emb.{k}.weight"), self.card + 1))
            .collect();
        temporal.push(("text_emb.weight".into(), self.text_card + 1));
        e.lm_tables += set(temporal, d);
        let norm = if self.layer_norm { 2 } else { 1 };
        e.lm_weights += norm * floats(d as u64);
        let text = "text_linear.weight";
        e.lm_weights += src.bytes(text, self.text_card_out, d);
        let t = self.temporal.bytes(src, f16);
        e.lm_weights += t.weights;
        e.lm_kv_cache += t.kv_cache;
        e.lm_activations += t.activations;
        if self.extra_heads > 0 {
            // One stacked linear (f32 from a checkpoint, the benchmark's format from random
            // weights), its logits and probabilities.
            let rows = self.extra_heads * self.extra_heads_dim;
            e.lm_weights += match src {
                LinearSource::Checkpoint { .. } => {
                    let f = WeightFormat::F32;
                    f.gpu_bytes(rows as u32, f.padded_k(d as u32))
                }
                LinearSource::Random(_) => src.bytes("extra_heads", rows, d),
            };
            e.lm_activations += 2 * floats(rows as u64);
        }
        if self.dep_q > 0 {
            let mut dep = vec![("depformer_text_emb.weight".to_string(), self.text_card + 1)];
            dep.extend(
                (0..self.dep_q - 1).map(|k| (format!("depformer_emb.{k}.weight"), self.card + 1)),
            );
            e.lm_tables += set(dep, rank);
            let b = self.depformer.bytes(src, f16);
            e.lm_weights += b.weights;
            e.lm_kv_cache += b.kv_cache;
            e.lm_activations += b.activations;
            for j in 0..self.depformer_in_count {
                e.lm_weights += src.bytes(&format!("depformer_in.{j}.weight"), dd, d);
            }
            let stacked = stacks_depformer_inputs(self.own_input_per_step, dd);
            if stacked {
                // The stacked copy (the per-step originals above are allocated first, then
                // dropped) and every step's input.
                e.lm_weights += self.dep_q as u64 * src.bytes("depformer_in.0.weight", dd, d);
                e.lm_activations += floats((self.dep_q * dd) as u64);
            }
            if self.guided {
                e.lm_kv_cache += b.kv_cache;
                if stacked {
                    e.lm_activations += floats((self.dep_q * dd) as u64);
                }
            }
            if let Some(r) = self.low_rank {
                e.lm_weights += src.bytes("depformer_text_emb.low_rank.weight", dd, r);
                for k in 0..dep_tables - 1 {
                    e.lm_weights += src.bytes(&format!("depformer_emb.{k}.low_rank.weight"), dd, r);
                }
            }
            for k in 0..self.dep_q {
                e.lm_weights += src.bytes(&format!("linears.{k}.weight"), self.card, dd);
            }
            // Depformer input and low-rank embedding.
            e.lm_activations += floats(dd as u64) + floats(rank as u64);
        }
        // Step buffers: the token ring (plus its initial and discard rows), x, the normed z,
        // logits, forced tokens.
        let ring = 2 * self.max_delay as u64 + 2;
        let width = self.n_q as u64 + 1;
        e.lm_activations += buffer_bytes((ring + 2) * width * 4);
        let lane = floats(d as u64)
            + floats(src.padded_k(text, d).max(d as u64))
            + floats(self.text_card_out as u64)
            + floats(self.dep_q as u64 * (self.card as u64).next_multiple_of(64));
        e.lm_activations += lane;
        e.lm_activations += buffer_bytes((self.dep_q as u64 + 1) * 4);
        if self.conditioned {
            e.lm_tables += 2 * d as u64 * 4;
        }
        if self.guided {
            // The negative lane: temporal KV caches, x, z and logits, and the two scales of the
            // logits' combination (`lanes::COEF_AT` + 4 bytes).
            e.lm_kv_cache += t.kv_cache;
            e.lm_activations += lane + buffer_bytes(260);
        }
    }
}
