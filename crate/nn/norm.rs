//! `Norm`: LayerNorm (weight and bias) or RMSNorm (alpha), accumulated in f32.

use crate::gpu::{Context, GpuBuffer, Recorder, View};
use crate::kernels::norm;
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

/// A normalisation layer over rows of `d`.
#[derive(Debug, Clone)]
pub struct Norm {
    kind: NormKind,
    d: u32,
    weight: GpuBuffer,
    bias: Option<GpuBuffer>,
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
        let (weight, bias) = match kind {
            NormKind::RmsNorm { .. } => {
                let name = format!("{prefix}.alpha");
                (ctx.upload(&name, &src.f32(&name, &[1, 1, d])?)?, None)
            }
            NormKind::LayerNorm { .. } => {
                let (w, b) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
                (
                    ctx.upload(&w, &src.f32(&w, &[d])?)?,
                    Some(ctx.upload(&b, &src.f32(&b, &[d])?)?),
                )
            }
        };
        Ok(Self {
            kind,
            d: d as u32,
            weight,
            bias,
        })
    }

    /// Norm parameters near 1 (weight) and 0 (bias), for benchmarks.
    pub fn ones(ctx: &Context, label: &str, kind: NormKind, d: usize) -> crate::Result<Self> {
        let bias = match kind {
            NormKind::LayerNorm { .. } => Some(ctx.upload(label, &vec![0f32; d])?),
            NormKind::RmsNorm { .. } => None,
        };
        Ok(Self {
            kind,
            d: d as u32,
            weight: ctx.upload(label, &vec![1f32; d])?,
            bias,
        })
    }

    pub fn kind(&self) -> NormKind {
        self.kind
    }

    /// `y = norm(x)` for `rows` rows (`y` a different buffer from `x`).
    pub fn forward(&self, rec: &mut Recorder, x: View, y: View, rows: u32) -> crate::Result<()> {
        match (self.kind, &self.bias) {
            (NormKind::RmsNorm { eps }, _) => {
                norm::rms_norm(rec, x, self.weight.view(), y, rows, self.d, eps)?
            }
            (NormKind::LayerNorm { eps }, Some(b)) => {
                norm::layer_norm(rec, x, self.weight.view(), b.view(), y, rows, self.d, eps)?
            }
            (NormKind::LayerNorm { .. }, None) => {
                return Err(crate::gpu::GpuError::Launch {
                    kernel: "layer_norm",
                    message: "LayerNorm without a bias buffer".into(),
                }
                .into())
            }
        }
        Ok(())
    }
}
