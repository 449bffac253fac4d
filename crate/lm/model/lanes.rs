//! Classifier-free guidance (PyPI moshi `LMGen` with `cfg_coef ≠ 1`): a second lane runs the
//! same weights on the same tokens with the negative condition, in the same recording, on its
//! own KV caches and activations. At every sampling site (the text head, each depformer
//! codebook) both lanes' logits are combined on the GPU as the reference does,
//! `null + (cond − null) · cfg`, and the one token sampled from that is what both lanes read
//! next (they share the token ring). The lanes are recorded one after the other (two matvecs
//! per weight, not one batched matvec of two rows). With `cfg` 1 the second lane does not exist.

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder, View};
use crate::kernels::elementwise;
use crate::nn::LaneState;

/// Byte offset of the coefficient in [`Guidance::scales`] (a storage-binding alignment away
/// from the −1 at offset 0).
const COEF_AT: u64 = 256;

/// The negative lane's state and the combination's constants.
pub(super) struct Guidance {
    pub(super) coef: f32,
    /// `[-1 at 0, coef at COEF_AT]`: the two scales of the combination.
    scales: GpuBuffer,
    pub(super) x: GpuBuffer,
    pub(super) z: GpuBuffer,
    pub(super) text_logits: GpuBuffer,
    pub(super) audio_logits: GpuBuffer,
    /// The lane's stacked depformer step inputs, when the depformer stacks them.
    pub(super) xs: Option<GpuBuffer>,
    pub(super) temporal: LaneState,
    pub(super) depformer: Option<LaneState>,
}

impl Guidance {
    /// Allocate the negative lane like the conditioned one (`sizes` in bytes: x, z, text
    /// logits, audio logits, stacked depformer step inputs or 0 when not stacked).
    pub(super) fn new(
        ctx: &Context,
        coef: f32,
        sizes: [u64; 5],
        temporal: LaneState,
        depformer: Option<LaneState>,
    ) -> crate::Result<Self> {
        let buf = |label: &str, bytes: u64| ctx.create_buffer(label, bytes, BufferUsage::Storage);
        let mut s = vec![0f32; (COEF_AT / 4 + 1) as usize];
        s[0] = -1.0;
        s[(COEF_AT / 4) as usize] = coef;
        Ok(Self {
            coef,
            scales: ctx.upload("cfg scales", &s)?,
            x: buf("cfg lane x", sizes[0])?,
            z: buf("cfg lane z", sizes[1])?,
            text_logits: buf("cfg lane text logits", sizes[2])?,
            audio_logits: buf("cfg lane audio logits", sizes[3])?,
            xs: match sizes[4] {
                0 => None,
                n => Some(buf("cfg lane depformer step inputs", n)?),
            },
            temporal,
            depformer,
        })
    }

    /// Change the coefficient (takes effect at the next recorded step).
    pub(super) fn set_coef(&mut self, ctx: &Context, coef: f32) {
        self.coef = coef;
        ctx.write(&self.scales, COEF_AT, bytemuck::bytes_of(&coef));
    }

    /// Start both lanes' streams again.
    pub(super) fn reset(&mut self) {
        self.temporal.reset();
        if let Some(d) = &mut self.depformer {
            d.reset();
        }
    }

    /// `null ← null + (cond − null) · coef` over `n` logits (`cond` is left holding
    /// `cond − null`); the result is in `null`. Two launches of the residual kernel.
    pub(super) fn combine(
        &self,
        rec: &mut Recorder,
        cond: View,
        null: View,
        n: u32,
    ) -> crate::Result<()> {
        let minus_one = self.scales.slice(0, 4);
        let coef = self.scales.slice(COEF_AT, 4);
        elementwise::residual_add(rec, null, Some(minus_one), cond, n, 1, 1)?;
        elementwise::residual_add(rec, cond, Some(coef), null, n, 1, 1)?;
        Ok(())
    }
}

impl Guidance {
    /// Start the negative lane's depformer stream (every step starts one).
    pub(super) fn reset_depformer(&mut self) {
        if let Some(d) = &mut self.depformer {
            d.reset();
        }
    }
}
