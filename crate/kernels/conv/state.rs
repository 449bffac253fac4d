//! The streaming state of a conv layer: two buffers used in turn (a call reads one and writes
//! the other) and whether the stream has just started.

use super::{Conv1d, ConvTr1d};
use crate::gpu::{BufferUsage, Context, GpuBuffer, GpuResult, View};

/// Two state buffers, the parity saying which one holds the current state, and the
/// stream-start flag.
pub(super) struct PingPong {
    bufs: [GpuBuffer; 2],
    parity: usize,
    pub(super) first: bool,
}

impl PingPong {
    fn new(ctx: &Context, label: &str, bytes: u64) -> GpuResult<Self> {
        let a = ctx.create_buffer(&format!("{label} state a"), bytes, BufferUsage::Storage)?;
        let b = ctx.create_buffer(&format!("{label} state b"), bytes, BufferUsage::Storage)?;
        Ok(Self {
            bufs: [a, b],
            parity: 0,
            first: true,
        })
    }
    /// (read, write) views of the first `bytes` bytes.
    pub(super) fn pair(&self, bytes: u64) -> (View<'_>, View<'_>) {
        (
            self.bufs[self.parity].slice(0, bytes),
            self.bufs[self.parity ^ 1].slice(0, bytes),
        )
    }
    pub(super) fn advance(&mut self) {
        self.parity ^= 1;
        self.first = false;
    }
}

/// Bytes of one state buffer: at least 4 (a binding is never empty).
fn state_bytes(elems: u64) -> u64 {
    (elems * 4).max(4)
}

/// The streaming state of one [`Conv1d`]: two `[C_in, P]` buffers (ping-pong) and whether the
/// stream has just started.
pub struct Conv1dState {
    pub(super) conv: Conv1d,
    pub(super) pp: PingPong,
}

impl Conv1dState {
    /// Bytes of each of the two state buffers (`C_in · P · 4`, at least 4).
    pub fn buffer_bytes(conv: &Conv1d) -> u64 {
        state_bytes(conv.c_in as u64 * conv.padding() as u64)
    }
    /// Allocate the two state buffers.
    pub fn new(ctx: &Context, label: &str, conv: Conv1d) -> GpuResult<Self> {
        conv.validate("conv1d")?;
        Ok(Self {
            conv,
            pp: PingPong::new(ctx, label, Self::buffer_bytes(&conv))?,
        })
    }
    pub fn conv(&self) -> &Conv1d {
        &self.conv
    }
    /// Start a new stream: the next call pads with zeros or replicates its first column.
    /// Records nothing (the state buffers are simply not read by the next call).
    pub fn reset(&mut self) {
        self.pp.first = true;
    }
    /// `true` until the first call after creation or [`Self::reset`].
    pub fn is_fresh(&self) -> bool {
        self.pp.first
    }
    /// The buffer holding the state after the last recorded call (`[C_in, P]`; meaningless
    /// while [`Self::is_fresh`]).
    pub fn current(&self) -> &GpuBuffer {
        &self.pp.bufs[self.pp.parity]
    }
}

/// The streaming state of one [`ConvTr1d`]: two `[C_out, K−S]` partial buffers (ping-pong).
pub struct ConvTr1dState {
    pub(super) conv: ConvTr1d,
    pub(super) pp: PingPong,
}

impl ConvTr1dState {
    /// Bytes of each of the two partial buffers (`C_out · (K−S) · 4`, at least 4).
    pub fn buffer_bytes(conv: &ConvTr1d) -> u64 {
        state_bytes(conv.c_out as u64 * conv.partial_len() as u64)
    }
    /// Allocate the two partial buffers.
    pub fn new(ctx: &Context, label: &str, conv: ConvTr1d) -> GpuResult<Self> {
        conv.validate("conv_tr1d")?;
        Ok(Self {
            conv,
            pp: PingPong::new(ctx, label, Self::buffer_bytes(&conv))?,
        })
    }
    pub fn conv(&self) -> &ConvTr1d {
        &self.conv
    }
    /// Start a new stream: the next call treats the partial as zeros. Records nothing.
    pub fn reset(&mut self) {
        self.pp.first = true;
    }
    /// `true` until the first call after creation or [`Self::reset`].
    pub fn is_fresh(&self) -> bool {
        self.pp.first
    }
    /// The buffer holding the partial after the last recorded call (`[C_out, K−S]`).
    pub fn current(&self) -> &GpuBuffer {
        &self.pp.bufs[self.pp.parity]
    }
}
