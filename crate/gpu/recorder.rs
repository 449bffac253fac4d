//! The frame recorder: many kernel launches in one command encoder, one compute pass where
//! possible, one parameter upload and one submit.

use bytemuck::Pod;

use super::kernel::{Binding, Kernel, Pipeline, Variant};
use super::profile::{FrameLog, Profiler, Timer, UNLABELED};
use super::{Context, GpuError, GpuResult, View};

/// Bytes per kernel-parameter slot (the largest uniform offset alignment WebGPU allows).
pub const PARAM_SLOT_BYTES: u64 = 256;
/// Parameter slots one recorder can hold (a launch takes one, or several consecutive slots for a
/// parameter block larger than [`PARAM_SLOT_BYTES`]).
pub const PARAM_SLOTS: u32 = 16384;
/// The largest parameter block of one launch (4 slots).
pub const MAX_PARAM_BYTES: u64 = 4 * PARAM_SLOT_BYTES;

/// Records a frame's work. Parameters of every launch go into one CPU staging vector that is
/// written to the device's parameter arena with a single `write_buffer` just before the submit.
pub struct Recorder<'c> {
    ctx: &'c Context,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    params: Vec<u8>,
    dispatches: u32,
    label: &'static str,
    /// The group the next launches belong to ([`Recorder::set_group`]).
    group: &'static str,
    /// What the next launch reads, when its launcher said so ([`Recorder::note_reads`]).
    noted_reads: Option<u64>,
    /// Only in profiled recorders ([`Recorder::profiled`]).
    profile: Option<Profiling>,
}

struct Profiling {
    log: FrameLog,
    timer: Option<Timer>,
}

impl<'c> Recorder<'c> {
    pub fn new(ctx: &'c Context, label: &'static str) -> Self {
        let encoder = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
        Self {
            ctx,
            encoder: Some(encoder),
            pass: None,
            params: Vec::with_capacity(64 << 10),
            dispatches: 0,
            label,
            group: UNLABELED,
            noted_reads: None,
            profile: None,
        }
    }

    /// Log every launch for a frame profile (`crate::gpu::profile`): launches and bytes read by
    /// group and kernel and, when `profiler` is timed, each run of one group and kernel in
    /// compute passes of its own with timestamps. [`Recorder::submit_profiled`] returns the log.
    pub fn profiled(mut self, profiler: &Profiler) -> Self {
        self.profile = Some(Profiling {
            log: FrameLog::default(),
            timer: profiler.timer(),
        });
        self
    }

    /// Label the launches recorded from now on (for profiles); returns the previous label.
    pub fn set_group(&mut self, group: &'static str) -> &'static str {
        std::mem::replace(&mut self.group, group)
    }

    /// The label of the launches recorded now.
    pub fn group(&self) -> &'static str {
        self.group
    }

    /// The next launch reads `bytes` (for profiles), instead of the sizes of the views it binds
    /// read-only: for kernels that bind more than they read (a KV ring, embedding tables).
    pub fn note_reads(&mut self, bytes: u64) {
        self.noted_reads = Some(bytes);
    }

    pub fn ctx(&self) -> &'c Context {
        self.ctx
    }

    /// Kernel launches recorded so far.
    pub fn dispatch_count(&self) -> u32 {
        self.dispatches
    }

    /// Launch a kernel variant (pipeline taken from the cache, compiled on first use).
    pub fn launch<P: Pod>(
        &mut self,
        kernel: &'static Kernel,
        variant: &Variant,
        views: &[View],
        params: &P,
        groups: [u32; 3],
    ) -> GpuResult<()> {
        let pipeline = self.ctx.pipeline(kernel, variant)?;
        self.dispatch(&pipeline, views, params, groups)
    }

    /// Record one dispatch of a compiled pipeline.
    pub fn dispatch<P: Pod>(
        &mut self,
        pipeline: &Pipeline,
        views: &[View],
        params: &P,
        groups: [u32; 3],
    ) -> GpuResult<()> {
        let kernel = pipeline.kernel;
        let noted_reads = self.noted_reads.take();
        let bad = |message: String| GpuError::Launch {
            kernel: kernel.name,
            message,
        };
        if views.len() != kernel.bindings.len() {
            return Err(bad(format!(
                "{} buffers given, kernel has {} bindings",
                views.len(),
                kernel.bindings.len()
            )));
        }
        let pbytes = bytemuck::bytes_of(params);
        if pbytes.len() as u64 > MAX_PARAM_BYTES {
            return Err(bad(format!(
                "parameter block of {} bytes exceeds {MAX_PARAM_BYTES}",
                pbytes.len()
            )));
        }
        // The block's slots, bound as one uniform range.
        let slots = (pbytes.len() as u64).div_ceil(PARAM_SLOT_BYTES).max(1);
        let block_bytes = slots * PARAM_SLOT_BYTES;
        let max_groups = self.ctx.caps().max_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max_groups) {
            return Err(bad(format!(
                "grid {groups:?} exceeds {max_groups} workgroups per dimension"
            )));
        }
        let align = self.ctx.caps().min_storage_offset_alignment as u64;
        for v in views {
            if v.offset % align != 0
                || v.size == 0
                || v.offset + v.size > v.buffer.size()
                || v.size % 4 != 0
            {
                return Err(bad(format!(
                    "view of '{}' at offset {} size {} is invalid (buffer {} bytes, alignment {align})",
                    v.buffer.label(),
                    v.offset,
                    v.size,
                    v.buffer.size()
                )));
            }
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let slot = (self.params.len() as u64 / PARAM_SLOT_BYTES) as u32;
        if slot as u64 + slots > PARAM_SLOTS as u64 {
            return Err(GpuError::ParamArenaFull {
                capacity: PARAM_SLOTS,
            });
        }
        self.params.extend_from_slice(pbytes);
        self.params.resize(
            (slot as u64 + slots) as usize * PARAM_SLOT_BYTES as usize,
            0,
        );

        let arena = &self.ctx.param_arena;
        let mut key_bufs: Vec<(u64, u64, u64)> = views
            .iter()
            .map(|v| (v.buffer.id(), v.offset, v.size))
            .collect();
        key_bufs.push((arena.id(), 0, block_bytes));
        let bind_group =
            self.ctx
                .caches
                .borrow_mut()
                .bind_groups
                .get_or_insert((pipeline.id, key_bufs), || {
                    let mut entries: Vec<wgpu::BindGroupEntry> = views
                        .iter()
                        .enumerate()
                        .map(|(i, v)| wgpu::BindGroupEntry {
                            binding: i as u32,
                            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                buffer: v.buffer.raw(),
                                offset: v.offset,
                                size: wgpu::BufferSize::new(v.size),
                            }),
                        })
                        .collect();
                    entries.push(wgpu::BindGroupEntry {
                        binding: views.len() as u32,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: arena.raw(),
                            offset: 0,
                            size: wgpu::BufferSize::new(block_bytes),
                        }),
                    });
                    self.ctx
                        .device
                        .create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some(kernel.name),
                            layout: &pipeline.layout,
                            entries: &entries,
                        })
                });
        if let Some(p) = &mut self.profile {
            let bytes = noted_reads.unwrap_or_else(|| read_only_bytes(kernel, views));
            if p.log.launch(self.group, kernel.name, bytes) && p.timer.is_some() {
                // A new segment: its own timed pass.
                self.pass = None;
            }
        }
        let pass = self.pass()?;
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind_group, &[(slot as u64 * PARAM_SLOT_BYTES) as u32]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        self.dispatches += 1;
        Ok(())
    }

    fn pass(&mut self) -> GpuResult<&mut wgpu::ComputePass<'static>> {
        if self.pass.is_none() {
            let mut timed = None;
            if let Some(Profiling {
                log,
                timer: Some(t),
            }) = &mut self.profile
            {
                timed = Some((t.queries.clone(), log.timed_pass()?));
            }
            let timestamp_writes =
                timed
                    .as_ref()
                    .map(|(query_set, q)| wgpu::ComputePassTimestampWrites {
                        query_set,
                        beginning_of_pass_write_index: Some(*q),
                        end_of_pass_write_index: Some(q + 1),
                    });
            let enc = self.encoder.as_mut().expect("recorder already submitted");
            let pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(self.label),
                    timestamp_writes,
                })
                .forget_lifetime();
            self.pass = Some(pass);
        }
        Ok(self.pass.as_mut().expect("pass just opened"))
    }

    /// The encoder with the compute pass closed (for copies and clears).
    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.as_mut().expect("recorder already submitted")
    }

    /// Copy bytes between buffers (closes the current compute pass).
    pub fn copy(&mut self, src: View, dst: View) {
        let size = src.size.min(dst.size);
        self.encoder().copy_buffer_to_buffer(
            src.buffer.raw(),
            src.offset,
            dst.buffer.raw(),
            dst.offset,
            size,
        );
    }

    /// Zero a byte range (closes the current compute pass).
    pub fn clear(&mut self, v: View) {
        self.encoder()
            .clear_buffer(v.buffer.raw(), v.offset, Some(v.size));
    }

    /// Upload the parameters and submit everything recorded as one command buffer.
    pub fn submit(self) -> GpuResult<wgpu::SubmissionIndex> {
        self.submit_profiled().map(|(index, _)| index)
    }

    /// [`Recorder::submit`], also returning the profile log of a [`Recorder::profiled`]
    /// recorder (its timestamps resolved and copied for [`Profiler::read`] in the same submit).
    pub fn submit_profiled(mut self) -> GpuResult<(wgpu::SubmissionIndex, Option<FrameLog>)> {
        self.pass = None;
        let mut enc = self.encoder.take().expect("recorder already submitted");
        let log = self.profile.take().map(|p| {
            let n = p.log.queries();
            if let (Some(t), true) = (&p.timer, n > 0) {
                enc.resolve_query_set(&t.queries, 0..n, &t.resolve, 0);
                enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, n as u64 * 8);
            }
            p.log
        });
        if !self.params.is_empty() {
            self.ctx
                .queue
                .write_buffer(self.ctx.param_arena.raw(), 0, &self.params);
        }
        let idx = self.ctx.queue.submit([enc.finish()]);
        Ok((idx, log))
    }
}

/// Bytes of the views a launch binds read-only.
fn read_only_bytes(kernel: &Kernel, views: &[View]) -> u64 {
    kernel
        .bindings
        .iter()
        .zip(views)
        .filter(|(b, _)| **b == Binding::Read)
        .map(|(_, v)| v.size)
        .sum()
}
