//! `Norm`: LayerNorm (weight and bias) or RMSNorm (alpha), accumulated in f32; either runs on
//! its own or fused into the following linear layer's input.

use crate::gpu::{Context, GpuBuffer, Recorder, View};
use crate::kernels::linear::LinearInput;
use crate::kernels::norm::{self, LayerNorm};
use crate::weights::TensorSource;

/// Which normalisation a transformer uses (reference `norm` config key).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// `nn.LayerNorm`: `{p}.weight`, `{p}.bias` `[d]`.
    LayerNorm { eps: f32 },
    /// Moshi's RMSNorm: `{p}.alpha` `[1, 1, d]`.
    RmsNorm { eps: f32 },
}

impl NormKind {
    /// The reference package's `norm` names (`create_norm_fn`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "layer_norm" => Self::LayerNorm { eps: 1e-5 },
            "layer_norm_f32" => Self::LayerNorm { eps: 1e-8 },
            "rms_norm" => Self::RmsNorm { eps: 1e-5 },
            "rms_norm_f32" => Self::RmsNorm { eps: 1e-8 },
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
enum Params {
    Rms {
        alpha: GpuBuffer,
        eps: f32,
    },
    Layer {
        weight: GpuBuffer,
        bias: GpuBuffer,
        eps: f32,
    },
}

/// A normalisation layer over rows of `d`.
#[derive(Debug, Clone)]
pub struct Norm {
    params: Params,
    d: u32,
}

impl Norm {
    /// Load the parameters under `prefix` (`{prefix}.alpha`, or `{prefix}.weight`/`.bias`).
    pub fn load(
        ctx: &Context,
        src: &dyn TensorSource,
        prefix: &str,
        kind: NormKind,
        d: usize,
    ) -> crate::Result<Self> {
        let params = match kind {
            NormKind::RmsNorm { eps } => {
                let name = format!("{prefix}.alpha");
                Params::Rms {
                    alpha: ctx.upload(&name, &src.f32(&name, &[1, 1, d])?)?,
                    eps,
                }
            }
            NormKind::LayerNorm { eps } => {
                let (w, b) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
                Params::Layer {
                    weight: ctx.upload(&w, &src.f32(&w, &[d])?)?,
                    bias: ctx.upload(&b, &src.f32(&b, &[d])?)?,
                    eps,
                }
            }
        };
        Ok(Self {
            params,
            d: d as u32,
        })
    }

    /// Weight 1 and bias 0, for benchmarks.
    pub fn ones(ctx: &Context, label: &str, kind: NormKind, d: usize) -> crate::Result<Self> {
        let params = match kind {
            NormKind::RmsNorm { eps } => Params::Rms {
                alpha: ctx.upload(label, &vec![1f32; d])?,
                eps,
            },
            NormKind::LayerNorm { eps } => Params::Layer {
                weight: ctx.upload(label, &vec![1f32; d])?,
                bias: ctx.upload(label, &vec![0f32; d])?,
                eps,
            },
        };
        Ok(Self {
            params,
            d: d as u32,
        })
    }

    /// The weight (RMSNorm's alpha) and the LayerNorm bias, `[d]` each.
    pub fn buffers(&self) -> (&GpuBuffer, Option<&GpuBuffer>) {
        match &self.params {
            Params::Rms { alpha, .. } => (alpha, None),
            Params::Layer { weight, bias, .. } => (weight, Some(bias)),
        }
    }

    /// This norm as the fused input transform of the following linear layer.
    pub fn as_linear_input(&self) -> LinearInput<'_> {
        match &self.params {
            Params::Rms { alpha, eps } => LinearInput::RmsNorm {
                weight: alpha.view(),
                eps: *eps,
            },
            Params::Layer { weight, bias, eps } => LinearInput::LayerNorm {
                weight: weight.view(),
                bias: bias.view(),
                eps: *eps,
            },
        }
    }

    /// `y = norm(x)` for `rows` rows (`y` a different buffer from `x`).
    pub fn forward(&self, rec: &mut Recorder, x: View, y: View, rows: u32) -> crate::Result<()> {
        match &self.params {
            Params::Rms { alpha, eps } => {
                norm::rms_norm(rec, x, alpha.view(), y, rows, self.d, *eps)?
            }
            Params::Layer { weight, bias, eps } => LayerNorm {
                weight: weight.view(),
                bias: bias.view(),
                eps: *eps,
            }
            .apply(rec, x, y, rows, self.d)?,
        }
        Ok(())
    }
}
