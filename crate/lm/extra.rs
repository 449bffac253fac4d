//! The LM's extra heads (Kyutai STT's semantic voice activity): `heads` linears `dim → head_dim`
//! on the temporal output after the out norm (`extra_heads.{i}.weight`, no bias), each followed
//! by a softmax, as PyPI moshi's `LMGen.step_with_extra_heads`. The heads are stacked into one
//! `[heads·head_dim, dim]` linear at load, so a step costs one linear and one softmax dispatch;
//! the probabilities stay on the GPU in [`ExtraHeads::probs`] for the frame's readback.

use crate::gpu::{Context, GpuBuffer, Recorder, View};
use crate::kernels::linear::{LinearInput, LinearOutput};
use crate::kernels::softmax;
use crate::nn::{Linear, WeightOptions, Weights};

/// How many extra heads and their width (`extra_heads_num_heads`, `extra_heads_dim`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtraHeadsConfig {
    pub heads: usize,
    pub dim: usize,
}

/// The stacked extra heads and their per-step buffers.
pub struct ExtraHeads {
    linear: Linear,
    logits: GpuBuffer,
    probs: GpuBuffer,
    cfg: ExtraHeadsConfig,
}

impl ExtraHeads {
    /// Load `extra_heads.{i}.weight` `[head_dim, d_model]` for every head (`None` for 0 heads).
    pub fn load(
        ctx: &Context,
        w: &Weights,
        cfg: ExtraHeadsConfig,
        d_model: usize,
    ) -> crate::Result<Option<Self>> {
        if cfg.heads == 0 {
            return Ok(None);
        }
        let rows = cfg.heads * cfg.dim;
        let linear = match w {
            Weights::Random { .. } => w.linear(ctx, "extra_heads", rows, d_model)?,
            Weights::Checkpoint { .. } => {
                let mut all = Vec::with_capacity(rows * d_model);
                for i in 0..cfg.heads {
                    let name = format!("extra_heads.{i}.weight");
                    let v = w.host_f32(&name, &[cfg.dim, d_model])?.unwrap_or_default();
                    all.extend_from_slice(&v);
                }
                Linear::from_f32(
                    ctx,
                    "extra heads",
                    &all,
                    rows as u32,
                    d_model as u32,
                    &WeightOptions::default(),
                )?
            }
        };
        let buf =
            |label| ctx.create_buffer(label, rows as u64 * 4, crate::gpu::BufferUsage::Storage);
        Ok(Some(Self {
            linear,
            logits: buf("extra head logits")?,
            probs: buf("extra head probabilities")?,
            cfg,
        }))
    }

    pub fn config(&self) -> ExtraHeadsConfig {
        self.cfg
    }

    /// Whether the out norm can be fused into the heads' linear.
    pub fn fusable(&self) -> bool {
        self.linear.fusable()
    }

    /// Record the heads on the temporal output `z` (read as `input` says) and their softmax.
    pub fn record(&self, rec: &mut Recorder, z: View, input: LinearInput) -> crate::Result<()> {
        self.linear
            .forward_with(rec, z, self.logits.view(), 1, input, LinearOutput::Store)?;
        softmax::softmax(
            rec,
            self.logits.view(),
            self.probs.view(),
            self.cfg.heads as u32,
            self.cfg.dim as u32,
            1.0,
        )?;
        Ok(())
    }

    /// The last step's probabilities, `[heads, head_dim]` f32.
    pub fn probs(&self) -> &GpuBuffer {
        &self.probs
    }

    pub fn bytes(&self) -> u64 {
        self.linear.bytes()
    }
}
