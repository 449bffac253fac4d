//! The buffers of one streaming transformer (`nn::Transformer`): per layer and weight set the
//! attention and MLP linears, two norms, optional layer scales and a KV cache; one call's
//! activations and attention scratch; RoPE frequencies or a sinusoid table.

use super::SPLIT_TARGET_GROUPS;
use super::{attention_split_bytes, buffer_bytes, floats, kv_cache_bytes, LinearSource};

/// A transformer's shape as its loader builds it (`nn::TransformerConfig::shape`).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerShape {
    /// Its tensors' canonical name prefix (e.g. `transformer`, `depformer`).
    pub prefix: String,
    pub d_model: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    /// Hidden width of the MLP (gated: the gated hidden size).
    pub hidden: usize,
    /// SiLU-gated MLP (`gating.linear_in` `[2·hidden, d]`) rather than `linear1`/`linear2`.
    pub gated: bool,
    /// LayerNorm (weight and bias) rather than RMSNorm (alpha).
    pub layer_norm: bool,
    pub layer_scale: bool,
    /// KV ring slots.
    pub kv_capacity: u32,
    /// Rows per call.
    pub rows: u32,
    pub weight_sets: usize,
    /// RoPE (a frequency table of `head_dim / 2` floats).
    pub rope: bool,
    /// Sinusoidal positions: the precomputed table's rows.
    pub sin_rows: Option<usize>,
    /// KV cache in f32 on every device.
    pub f32_cache: bool,
    /// The split layer form's partial outputs per call (`hidden / 64`; 0: not split, see
    /// `nn::transformer::split_fits`): its buffers are the residual pair (two 256-aligned halves
    /// of `rows · d_model` f32), the MLP partials `[parts, rows, d_model]` and a packed
    /// `[3, d_model]` norm per layer, plus one `[3, d_model]` with the last layer's scale.
    pub mlp_split_parts: u64,
}

/// What one transformer allocates, by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransformerBytes {
    pub weights: u64,
    pub kv_cache: u64,
    pub activations: u64,
}

impl TransformerShape {
    fn head_dim(&self) -> usize {
        self.d_model / self.num_heads.max(1)
    }

    /// The bytes of this transformer with linears from `src` on an adapter with (`f16`) or
    /// without shader-f16.
    pub fn bytes(&self, src: LinearSource, f16: bool) -> TransformerBytes {
        let (d, h, p) = (self.d_model, self.hidden, &self.prefix);
        let mut b = TransformerBytes::default();
        let mut second_k = h as u64;
        for l in 0..self.num_layers {
            let layer = format!("{p}.layers.{l}");
            for j in 0..self.weight_sets {
                let (qkv, out) = if self.weight_sets == 1 {
                    (
                        format!("{layer}.self_attn.in_proj_weight"),
                        format!("{layer}.self_attn.out_proj.weight"),
                    )
                } else {
                    (
                        format!("{layer}.self_attn.in_projs.{j}.weight"),
                        format!("{layer}.self_attn.out_projs.{j}.weight"),
                    )
                };
                b.weights += src.bytes(&qkv, 3 * d, d) + src.bytes(&out, d, d);
                let (first, first_rows, second) = if self.gated {
                    let g = if self.weight_sets == 1 {
                        format!("{layer}.gating")
                    } else {
                        format!("{layer}.gating.{j}")
                    };
                    (
                        format!("{g}.linear_in.weight"),
                        2 * h,
                        format!("{g}.linear_out.weight"),
                    )
                } else {
                    (
                        format!("{layer}.linear1.weight"),
                        h,
                        format!("{layer}.linear2.weight"),
                    )
                };
                b.weights += src.bytes(&first, first_rows, d) + src.bytes(&second, d, h);
                if l == 0 && j == 0 {
                    second_k = src.padded_k(&second, h);
                }
            }
            let norms = if self.layer_norm { 4 } else { 2 };
            let scales = if self.layer_scale { 2 } else { 0 };
            b.weights += (norms + scales) * floats(d as u64);
            let elem = if f16 && !self.f32_cache { 2 } else { 4 };
            b.kv_cache += buffer_bytes(kv_cache_bytes(
                self.kv_capacity,
                self.num_heads as u32,
                self.head_dim() as u32,
                elem,
            ));
        }
        let t = self.rows as u64;
        let d = d as u64;
        let u = if self.gated { 2 * h as u64 } else { h as u64 };
        b.activations += floats(t * d) * 2 + floats(t * 3 * d) + floats(t * u);
        b.activations += floats(
            t * if self.num_layers > 0 {
                second_k
            } else {
                h as u64
            },
        );
        b.activations += buffer_bytes(attention_split_bytes(
            self.num_heads as u32,
            self.head_dim() as u32,
            SPLIT_TARGET_GROUPS,
            self.rows,
        ));
        if self.mlp_split_parts > 0 {
            let half = (t * d * 4).next_multiple_of(256);
            b.activations +=
                buffer_bytes(2 * half) + buffer_bytes(self.mlp_split_parts * t * d * 4);
            // A packed norm per layer, and the last layer's scale for a head on the partials.
            b.activations += (self.num_layers as u64 + 1) * buffer_bytes(3 * d * 4);
        }
        if self.rope {
            b.weights += floats(self.head_dim() as u64 / 2);
        }
        if let Some(rows) = self.sin_rows {
            let stride = (d * 4).next_multiple_of(256);
            b.weights += buffer_bytes(stride * rows.max(1) as u64);
            b.activations += floats(t * d);
        }
        b
    }
}
