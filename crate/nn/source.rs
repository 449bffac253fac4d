//! Where a model's weights come from: a checkpoint (any [`TensorSource`]) or reproducible random
//! values made on the GPU (benchmarks at the real size). Model loaders are written once against
//! [`Weights`] and never see the difference.

use crate::gpu::{Context, GpuBuffer};
use crate::weights::{TensorSource, WeightFormat};

use super::linear::{Linear, WeightOptions};
use super::norm::{Norm, NormKind};

/// The weights a model is built from.
#[derive(Clone, Copy)]
pub enum Weights<'a> {
    /// A checkpoint, with the linear weights kept as `options` say.
    Checkpoint {
        source: &'a dyn TensorSource,
        options: WeightOptions,
    },
    /// Pseudo-random weights made on the GPU, linear weights in `format`.
    Random { format: WeightFormat, seed: u32 },
}

fn name_seed(seed: u32, name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5 ^ seed;
    for b in name.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h
}

impl<'a> Weights<'a> {
    /// A checkpoint with default options (weights in f32).
    pub fn checkpoint(source: &'a dyn TensorSource) -> Self {
        Self::Checkpoint {
            source,
            options: WeightOptions::default(),
        }
    }

    /// The linear weight `name` `[out, inp]`.
    pub fn linear(
        &self,
        ctx: &Context,
        name: &str,
        out: usize,
        inp: usize,
    ) -> crate::Result<Linear> {
        match self {
            Self::Checkpoint { source, options } => {
                Linear::load(ctx, *source, name, out, inp, options)
            }
            Self::Random { format, seed } => Linear::random(
                ctx,
                name,
                *format,
                out as u32,
                inp as u32,
                name_seed(*seed, name),
            ),
        }
    }

    /// A normalisation layer under `prefix`.
    pub fn norm(
        &self,
        ctx: &Context,
        prefix: &str,
        kind: NormKind,
        d: usize,
    ) -> crate::Result<Norm> {
        match self {
            Self::Checkpoint { source, .. } => Norm::load(ctx, *source, prefix, kind, d),
            Self::Random { .. } => Norm::ones(ctx, prefix, kind, d),
        }
    }

    /// An f32 tensor of `shape` uploaded as is (random: `fill` everywhere).
    pub fn tensor(
        &self,
        ctx: &Context,
        name: &str,
        shape: &[usize],
        fill: f32,
    ) -> crate::Result<GpuBuffer> {
        let v = match self {
            Self::Checkpoint { source, .. } => source.f32(name, shape)?,
            Self::Random { .. } => vec![fill; shape.iter().product()],
        };
        Ok(ctx.upload(name, &v)?)
    }

    /// The f32 values of a tensor (checkpoint only; random sources give `None`).
    pub fn host_f32(&self, name: &str, shape: &[usize]) -> crate::Result<Option<Vec<f32>>> {
        match self {
            Self::Checkpoint { source, .. } => Ok(Some(source.f32(name, shape)?)),
            Self::Random { .. } => Ok(None),
        }
    }

    pub fn is_random(&self) -> bool {
        matches!(self, Self::Random { .. })
    }
}
