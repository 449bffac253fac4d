//! Where a model's weights come from: a checkpoint (any [`TensorSource`]) or reproducible random
//! values made on the GPU (benchmarks at the real size). Model loaders are written once against
//! [`Weights`] and never see the difference. [`Weights::pp`] opens a [`Scope`]: a view under a
//! name prefix, so that a loader names only its own tensors (`w.pp("encoder").pp("model").pp(0)`
//! reads `encoder.model.0.*`).

use std::fmt::Display;

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
        Ok(ctx.upload(name, &self.values(name, shape, fill)?)?)
    }

    /// The f32 values of a tensor (checkpoint only; random sources give `None`).
    pub fn host_f32(&self, name: &str, shape: &[usize]) -> crate::Result<Option<Vec<f32>>> {
        match self {
            Self::Checkpoint { source, .. } => Ok(Some(source.f32(name, shape)?)),
            Self::Random { .. } => Ok(None),
        }
    }

    /// The f32 values of a tensor on the CPU (random: `fill` everywhere).
    pub fn values(&self, name: &str, shape: &[usize], fill: f32) -> crate::Result<Vec<f32>> {
        match self {
            Self::Checkpoint { source, .. } => Ok(source.f32(name, shape)?),
            Self::Random { .. } => Ok(vec![fill; shape.iter().product()]),
        }
    }

    pub fn is_random(&self) -> bool {
        matches!(self, Self::Random { .. })
    }

    /// The weights under `name` (see [`Scope`]).
    pub fn pp(&self, name: impl Display) -> Scope<'a> {
        self.root().pp(name)
    }

    /// Every weight, by its full name.
    pub fn root(&self) -> Scope<'a> {
        Scope {
            weights: *self,
            prefix: String::new(),
        }
    }
}

/// The weights under a name prefix: `scope.pp("layers").pp(3)` is the scope `{prefix}.layers.3`
/// and `scope.linear(ctx, "weight", …)` reads `{prefix}.weight`. Model parts load from the scope
/// of their module and name only their own tensors, as the reference's modules do.
#[derive(Clone)]
pub struct Scope<'a> {
    weights: Weights<'a>,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The sub-scope `{prefix}.{name}` (`name` alone at the root).
    pub fn pp(&self, name: impl Display) -> Scope<'a> {
        Scope {
            weights: self.weights,
            prefix: self.name(&name.to_string()),
        }
    }

    /// The full name of `leaf` in this scope.
    pub fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }

    /// This scope's own name (empty at the root); also a label for its buffers.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn weights(&self) -> &Weights<'a> {
        &self.weights
    }

    /// The linear weight `{prefix}.{leaf}` `[out, inp]`.
    pub fn linear(
        &self,
        ctx: &Context,
        leaf: &str,
        out: usize,
        inp: usize,
    ) -> crate::Result<Linear> {
        self.weights.linear(ctx, &self.name(leaf), out, inp)
    }

    /// The normalisation layer whose parameters are this scope's (`{prefix}.weight`, …).
    pub fn norm(&self, ctx: &Context, kind: NormKind, d: usize) -> crate::Result<Norm> {
        self.weights.norm(ctx, &self.prefix, kind, d)
    }

    /// The f32 tensor `{prefix}.{leaf}` uploaded as is (random: `fill` everywhere).
    pub fn tensor(
        &self,
        ctx: &Context,
        leaf: &str,
        shape: &[usize],
        fill: f32,
    ) -> crate::Result<GpuBuffer> {
        self.weights.tensor(ctx, &self.name(leaf), shape, fill)
    }

    /// The f32 values of `{prefix}.{leaf}` on the CPU (random: `fill` everywhere).
    pub fn values(&self, leaf: &str, shape: &[usize], fill: f32) -> crate::Result<Vec<f32>> {
        self.weights.values(&self.name(leaf), shape, fill)
    }
}
