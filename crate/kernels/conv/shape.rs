//! The geometry of a causal Conv1d and ConvTranspose1d layer: channels, kernel, stride,
//! dilation, groups; the lengths derived from them, and their validation.

use super::{launch_err, PadMode};
use crate::gpu::GpuResult;

/// Geometry of a causal Conv1d (weight `[c_out, c_in/groups, kernel]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv1d {
    pub c_in: u32,
    pub c_out: u32,
    pub kernel: u32,
    pub stride: u32,
    pub dilation: u32,
    pub groups: u32,
    pub pad_mode: PadMode,
}

impl Conv1d {
    /// Stride 1, dilation 1, one group, zero padding.
    pub fn new(c_in: u32, c_out: u32, kernel: u32) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride: 1,
            dilation: 1,
            groups: 1,
            pad_mode: PadMode::Zeros,
        }
    }
    pub fn stride(mut self, s: u32) -> Self {
        self.stride = s;
        self
    }
    pub fn dilation(mut self, d: u32) -> Self {
        self.dilation = d;
        self
    }
    pub fn groups(mut self, g: u32) -> Self {
        self.groups = g;
        self
    }
    pub fn pad_mode(mut self, m: PadMode) -> Self {
        self.pad_mode = m;
        self
    }
    /// `(K−1)·d + 1`.
    pub fn k_eff(&self) -> u32 {
        (self.kernel.max(1) - 1) * self.dilation + 1
    }
    /// Left padding / state length `P = K_eff − S`.
    pub fn padding(&self) -> u32 {
        self.k_eff().saturating_sub(self.stride)
    }
    /// Elements of the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.c_out as usize * (self.c_in / self.groups.max(1)) as usize * self.kernel as usize
    }
    /// Output length for `t` input samples.
    pub fn out_len(&self, t: u32) -> u32 {
        t / self.stride.max(1)
    }
    pub(super) fn validate(&self, kernel: &'static str) -> GpuResult<()> {
        let bad = |m: String| Err(launch_err(kernel, m));
        if self.c_in == 0 || self.c_out == 0 || self.kernel == 0 {
            return bad(format!("empty conv {self:?}"));
        }
        if self.stride == 0 || self.dilation == 0 || self.groups == 0 {
            return bad(format!("stride, dilation and groups must be ≥ 1: {self:?}"));
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return bad(format!("groups must divide c_in and c_out: {self:?}"));
        }
        if self.k_eff() < self.stride {
            return bad(format!(
                "effective kernel {} is shorter than the stride: {self:?}",
                self.k_eff()
            ));
        }
        Ok(())
    }
}

/// Geometry of a causal ConvTranspose1d (weight `[c_in, c_out/groups, kernel]`, `kernel ≥ stride`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvTr1d {
    pub c_in: u32,
    pub c_out: u32,
    pub kernel: u32,
    pub stride: u32,
    pub groups: u32,
}

impl ConvTr1d {
    /// One group.
    pub fn new(c_in: u32, c_out: u32, kernel: u32, stride: u32) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride,
            groups: 1,
        }
    }
    pub fn groups(mut self, g: u32) -> Self {
        self.groups = g;
        self
    }
    /// Length of the carried partial, `K − S`.
    pub fn partial_len(&self) -> u32 {
        self.kernel.saturating_sub(self.stride)
    }
    /// Elements of the weight tensor.
    pub fn weight_len(&self) -> usize {
        self.c_in as usize * (self.c_out / self.groups.max(1)) as usize * self.kernel as usize
    }
    /// Output length for `t` inputs: `t·S`.
    pub fn out_len(&self, t: u32) -> u32 {
        t * self.stride
    }
    pub(super) fn validate(&self, kernel: &'static str) -> GpuResult<()> {
        let bad = |m: String| Err(launch_err(kernel, m));
        if self.c_in == 0 || self.c_out == 0 || self.kernel == 0 {
            return bad(format!("empty conv-transpose {self:?}"));
        }
        if self.stride == 0 || self.groups == 0 {
            return bad(format!("stride and groups must be ≥ 1: {self:?}"));
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return bad(format!("groups must divide c_in and c_out: {self:?}"));
        }
        if self.kernel < self.stride {
            return bad(format!("kernel must be ≥ stride: {self:?}"));
        }
        Ok(())
    }
}
