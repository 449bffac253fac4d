//! Frame profiles: launches, bytes read and (where the device has timestamp queries) GPU time
//! per group of a recorded frame.
//!
//! A caller labels the launches it records with [`super::Recorder::set_group`] (the label stays until
//! the next call). A recorder made with [`super::Recorder::profiled`] also logs every launch into
//! *segments*: runs of consecutive launches with the same group and kernel. With timestamps
//! (the device opened with [`super::Options::timestamps`]), each segment runs in compute passes
//! of its own whose beginning and end are written into a query set
//! (`ComputePassDescriptor::timestamp_writes`, core WebGPU); the queries are resolved into a
//! buffer at the submit and read back afterwards ([`Profiler::read`]), so profiling waits
//! where the normal frame loop does not. Without a profiler a recorder only keeps the label:
//! its passes, launches and submit are those of an unprofiled frame.
//!
//! Bytes read are counted from the bindings: the sizes of the views a launch binds read-only
//! (weights, inputs, tables), unless the launcher states what it reads
//! ([`super::Recorder::note_reads`]: the attention's keys and values in range, the embedding rows
//! gathered). Read-write bindings are not counted.

use super::{Context, GpuError, GpuResult};

/// The most timed compute passes one profiled frame can hold (two queries each; wgpu's and
/// WebGPU's query-set limit is 4096 queries).
pub const MAX_TIMED_PASSES: u32 = 2048;

/// Group of launches recorded before any [`super::Recorder::set_group`].
pub const UNLABELED: &str = "unlabeled";

/// A run of consecutive launches with the same group and kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub group: &'static str,
    pub kernel: &'static str,
    pub launches: u32,
    pub bytes_read: u64,
    /// GPU time in nanoseconds (the sum of the segment's passes), when timed.
    pub ns: Option<f64>,
}

/// What a profiled recorder logged; [`Profiler::read`] turns it into a [`FrameProfile`].
#[derive(Debug, Default)]
pub struct FrameLog {
    segments: Vec<Segment>,
    /// Per timed pass (queries `2i`, `2i + 1`): the segment it belongs to.
    passes: Vec<usize>,
    /// A segment boundary was crossed: the next launch opens a new (timed) pass.
    new_pass: bool,
}

impl FrameLog {
    /// Log one launch; returns whether it needs a fresh compute pass (a new timed segment).
    pub(super) fn launch(
        &mut self,
        group: &'static str,
        kernel: &'static str,
        bytes_read: u64,
    ) -> bool {
        match self.segments.last_mut() {
            Some(s) if s.group == group && s.kernel == kernel => {
                s.launches += 1;
                s.bytes_read += bytes_read;
            }
            _ => {
                self.segments.push(Segment {
                    group,
                    kernel,
                    launches: 1,
                    bytes_read,
                    ns: None,
                });
                self.new_pass = true;
            }
        }
        std::mem::take(&mut self.new_pass)
    }

    /// A compute pass is being opened for the current segment: the query pair it writes, or an
    /// error when the frame has more timed passes than the query set holds.
    pub(super) fn timed_pass(&mut self) -> GpuResult<u32> {
        let n = self.passes.len() as u32;
        if n >= MAX_TIMED_PASSES {
            return Err(GpuError::Launch {
                kernel: "profile",
                message: format!(
                    "the frame needs more than {MAX_TIMED_PASSES} timed passes (segments of one group and kernel); profile fewer launches per recorder"
                ),
            });
        }
        self.passes.push(self.segments.len().saturating_sub(1));
        Ok(2 * n)
    }

    pub(super) fn queries(&self) -> u32 {
        2 * self.passes.len() as u32
    }

    /// Launches logged so far.
    pub fn launches(&self) -> u32 {
        self.segments.iter().map(|s| s.launches).sum()
    }
}

/// The query set, resolve and readback buffers of a device with timestamp queries.
#[derive(Clone)]
pub(super) struct Timer {
    pub(super) queries: wgpu::QuerySet,
    pub(super) resolve: wgpu::Buffer,
    pub(super) readback: wgpu::Buffer,
}

/// Made once per profiled run (it allocates the query set and its buffers when the device has
/// timestamps), then handed to every profiled recorder.
pub struct Profiler {
    timer: Option<Timer>,
    period_ns: f64,
}

impl Profiler {
    /// A profiler for `ctx`: timed when the device was opened with timestamp queries, else one
    /// that counts launches and bytes only.
    pub fn new(ctx: &Context) -> Self {
        let timer = ctx.caps().timestamps.then(|| {
            let bytes = 2 * MAX_TIMED_PASSES as u64 * 8;
            let buffer = |label, usage| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            Timer {
                queries: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * MAX_TIMED_PASSES,
                }),
                resolve: buffer(
                    "profile resolve",
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                readback: buffer(
                    "profile readback",
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
            }
        });
        Self {
            timer,
            period_ns: ctx.queue.get_timestamp_period() as f64,
        }
    }

    /// Whether frames are timed (the device has timestamp queries enabled).
    pub fn timed(&self) -> bool {
        self.timer.is_some()
    }

    pub(super) fn timer(&self) -> Option<Timer> {
        self.timer.clone()
    }

    /// The profile of a submitted frame (waits for it: natively by polling the device, in the
    /// browser on the event loop). Read each log before the next profiled frame is submitted.
    pub async fn read(&self, ctx: &Context, log: FrameLog) -> GpuResult<FrameProfile> {
        let FrameLog {
            mut segments,
            passes,
            ..
        } = log;
        let mut span_ns = None;
        if let (Some(t), false) = (&self.timer, passes.is_empty()) {
            let bytes =
                super::readback::map_read(ctx, &t.readback, passes.len() as u64 * 16).await?;
            let ticks: &[u64] = bytemuck::cast_slice(&bytes);
            let (mut first, mut last) = (u64::MAX, 0u64);
            for s in segments.iter_mut() {
                s.ns = Some(0.0);
            }
            for (i, &seg) in passes.iter().enumerate() {
                let (b, e) = (ticks[2 * i], ticks[2 * i + 1]);
                first = first.min(b);
                last = last.max(e);
                let ns = e.saturating_sub(b) as f64 * self.period_ns;
                if let Some(s) = segments.get_mut(seg) {
                    s.ns = Some(s.ns.unwrap_or(0.0) + ns);
                }
            }
            span_ns = Some(last.saturating_sub(first) as f64 * self.period_ns);
        }
        Ok(FrameProfile { segments, span_ns })
    }
}

/// One profiled frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameProfile {
    pub segments: Vec<Segment>,
    /// From the first timed pass's beginning to the last one's end (ns), when timed: the
    /// groups' times plus what ran between passes (copies, barriers).
    pub span_ns: Option<f64>,
}

/// Launches, bytes and time of one group, or of one kernel within a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupTotal {
    pub group: &'static str,
    /// `None` for the group's total.
    pub kernel: Option<&'static str>,
    pub launches: u32,
    pub bytes_read: u64,
    pub ns: Option<f64>,
}

impl GroupTotal {
    fn add(&mut self, s: &Segment) {
        // Timed only when every segment added was.
        self.ns = if self.launches == 0 {
            s.ns
        } else {
            self.ns.zip(s.ns).map(|(a, b)| a + b)
        };
        self.launches += s.launches;
        self.bytes_read += s.bytes_read;
    }
}

impl FrameProfile {
    /// Per group in order of first appearance: the group's total, then one row per kernel.
    pub fn groups(&self) -> Vec<(GroupTotal, Vec<GroupTotal>)> {
        let mut out: Vec<(GroupTotal, Vec<GroupTotal>)> = Vec::new();
        for s in &self.segments {
            let i = match out.iter().position(|(g, _)| g.group == s.group) {
                Some(i) => i,
                None => {
                    out.push((
                        GroupTotal {
                            group: s.group,
                            ..GroupTotal::default()
                        },
                        Vec::new(),
                    ));
                    out.len() - 1
                }
            };
            let (total, kernels) = &mut out[i];
            total.add(s);
            match kernels.iter_mut().find(|k| k.kernel == Some(s.kernel)) {
                Some(k) => k.add(s),
                None => {
                    let mut k = GroupTotal {
                        group: s.group,
                        kernel: Some(s.kernel),
                        ..GroupTotal::default()
                    };
                    k.add(s);
                    kernels.push(k);
                }
            }
        }
        out
    }

    /// Launches of one group.
    pub fn launches(&self, group: &str) -> u32 {
        self.segments
            .iter()
            .filter(|s| s.group == group)
            .map(|s| s.launches)
            .sum()
    }

    /// Every launch of the frame.
    pub fn total_launches(&self) -> u32 {
        self.segments.iter().map(|s| s.launches).sum()
    }

    /// The most bytes one segment's launch read on average (for sizing a comparison copy).
    pub fn largest_read(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.bytes_read / s.launches.max(1) as u64)
            .max()
            .unwrap_or(0)
    }
}
