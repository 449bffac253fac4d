//! Mimi's buffers (`mimi::Mimi::load`): the SEANet encoder and decoder convs (f32 weights, two
//! streaming-state buffers each, per-stage outputs), the codec transformers, the down/upsampling
//! convs, the split RVQ (the codebooks used, its scratch) and the frame's input/readbacks.

use super::transformer::TransformerShape;
use super::{buffer_bytes, floats, GpuEstimate, LinearSource, WeightFormat};

/// Mimi's shape as its loader builds it (`mimi::MimiConfig::shape`).
#[derive(Debug, Clone, PartialEq)]
pub struct MimiShape {
    /// Samples per frame.
    pub frame: u64,
    /// Encoder steps per frame (the downsampling stride).
    pub steps: u64,
    pub n_filters: u64,
    pub ratios: Vec<u64>,
    pub dimension: u64,
    pub kernel: u64,
    pub residual_kernel: u64,
    pub last_kernel: u64,
    pub compress: u64,
    /// Each codec transformer (encoder and decoder have the same shape).
    pub transformer: TransformerShape,
    pub q_dim: u64,
    pub bins: u64,
    /// Codebooks loaded.
    pub n_q: u64,
}

/// A conv's weight, bias and state buffers (state: `state_elems` floats, two buffers).
#[derive(Default)]
struct Acc {
    weights: u64,
    state: u64,
    activations: u64,
}

impl Acc {
    fn conv(&mut self, weight: u64, bias: u64, state_elems: u64) {
        self.weights += floats(weight);
        if bias > 0 {
            self.weights += floats(bias);
        }
        self.state += 2 * buffer_bytes(state_elems * 4);
    }

    /// `Conv1d(c_in, c_out, k)` with stride `s`, with or without a bias.
    fn conv1d(&mut self, c_in: u64, c_out: u64, k: u64, s: u64, bias: bool) {
        let b = if bias { c_out } else { 0 };
        self.conv(c_out * c_in * k, b, c_in * k.saturating_sub(s));
    }

    /// SEANet residual block at `c` channels and `t` samples per call.
    fn res_block(&mut self, m: &MimiShape, c: u64, t: u64) {
        let hidden = c / m.compress.max(1);
        self.conv1d(c, hidden, m.residual_kernel, 1, true);
        self.conv1d(hidden, c, 1, 1, true);
        self.activations += buffer_bytes(hidden * t * 4);
    }
}

impl MimiShape {
    /// Add Mimi's parts (and the frame's PCM/code input and readback buffers) to `e`.
    pub fn add_to(&self, e: &mut GpuEstimate) {
        let mut a = Acc::default();
        let (nf, d, frame) = (self.n_filters, self.dimension, self.frame);
        // Encoder.
        a.conv1d(1, nf, self.kernel, 1, true);
        a.activations += floats(nf * frame);
        let (mut c, mut t) = (nf, frame);
        for &r in self.ratios.iter().rev() {
            a.res_block(self, c, t);
            a.conv1d(c, 2 * c, 2 * r, r, true);
            a.activations += floats(2 * c * (t / r.max(1)));
            c *= 2;
            t /= r.max(1);
        }
        a.conv1d(c, d, self.last_kernel, 1, true);
        a.activations += floats(d * t);
        // Codec transformers (f32 caches), each running in place on the rows the conv before it
        // writes (counted there), plus one rows-sized buffer.
        let tr = self
            .transformer
            .bytes(LinearSource::Random(WeightFormat::F32), false);
        let rows = buffer_bytes(self.steps * self.transformer.d_model as u64 * 4);
        e.mimi_weights += 2 * tr.weights;
        e.mimi_kv_cache += 2 * tr.kv_cache;
        a.activations += 2 * (tr.activations + rows);
        // Downsample (replicate-padded, no bias) and its latent.
        a.conv1d(d, d, 2 * self.steps, self.steps, false);
        a.activations += floats(d);
        // Split RVQ, both halves in the same launches: the joined projections (1×1, no bias),
        // the stacked inputs `[first; rest]` and sums, the codebooks in one buffer, scratch for
        // two streams, codes.
        let qd = self.q_dim;
        a.conv1d(d, 2 * qd, 1, 1, false);
        a.conv1d(2 * qd, d, 1, 1, false);
        a.activations += 2 * floats(2 * qd) + floats(d);
        a.weights += floats(self.bins * qd * self.n_q);
        a.activations +=
            buffer_bytes(2 * 2 * qd * 4) + buffer_bytes(2 * 2 * self.bins.div_ceil(16) * 8);
        a.activations += floats(self.n_q);
        // Upsample: a depthwise conv-transpose (no bias), partial `[d, steps]`.
        a.conv(d * 2 * self.steps, 0, d * self.steps);
        a.activations += floats(d * self.steps);
        // Decoder.
        let n = self.ratios.len() as u32;
        let (mut c, mut t) = (nf << n, self.steps);
        a.conv1d(d, c, self.kernel, 1, true);
        a.activations += floats(c * t);
        for &r in &self.ratios {
            // ConvTr1d(c, c/2, 2r, r): weight [c, c/2, 2r], partial [c/2, r].
            a.conv(c * (c / 2) * 2 * r, c / 2, (c / 2) * r);
            c /= 2;
            t *= r;
            a.res_block(self, c, t);
            a.activations += floats(c * t);
        }
        a.conv1d(c, 1, self.last_kernel, 1, true);
        a.activations += floats(t);
        e.mimi_weights += a.weights;
        e.mimi_state += a.state;
        e.mimi_activations += a.activations;
        // PCM and codes in, each with two readback slots.
        e.io += 3 * (floats(frame) + floats(self.n_q));
    }
}
