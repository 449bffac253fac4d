//! Frame profiles of a session (`parle bench lm|mimi --profile`, the page's benchmark): per
//! group of the frame (Mimi encode, the LM's embedding, temporal transformer, text head,
//! depformer and sampling, Mimi decode) and per kernel within it, the launches, the bytes read
//! and, where the device has timestamp queries, the GPU time, GB/s and its fraction of a buffer
//! copy's read rate timed the same way in the same run ([`crate::gpu::profile`] records them).
//!
//! A profiled frame is recorded with compute passes split at every change of group or kernel,
//! so it is read back and measured on its own, after the timed frames; the normal frame loop
//! records none of this.

use super::bench::Workload;
use super::{CodecMode, FrameStats};
use crate::gpu::profile::GroupTotal;
use crate::gpu::{
    BufferUsage, Context, FrameLog, FrameProfile, GpuError, GpuResult, Profiler, Recorder,
};
use crate::lm::groups;

/// The group of the launches of Mimi's encoder.
pub const MIMI_ENCODE: &str = "mimi encode";
/// The group of the launches of Mimi's decoder.
pub const MIMI_DECODE: &str = "mimi decode";
/// The group of the yardstick copy ([`copy_rate`]).
pub const COPY: &str = "copy";

impl FrameStats {
    /// The frame's launch counts by profile group, in the order a frame records them.
    pub fn by_group(&self) -> Vec<(&'static str, u32)> {
        let mut v = vec![(MIMI_ENCODE, self.mimi_encode)];
        v.extend(self.lm.by_group());
        v.push((MIMI_DECODE, self.mimi_decode));
        v
    }
}

/// A session's profiler and the log of its last profiled frame.
#[derive(Default)]
pub(super) struct Profiling {
    profiler: Option<Profiler>,
    log: Option<FrameLog>,
}

impl Profiling {
    /// Profile the frames from now on (`true`) or stop (`false`).
    pub(super) fn enable(&mut self, ctx: &Context, on: bool) {
        self.profiler = on.then(|| Profiler::new(ctx));
        self.log = None;
    }

    /// A frame's recorder, profiled when profiling is on.
    pub(super) fn recorder<'c>(&self, ctx: &'c Context, label: &'static str) -> Recorder<'c> {
        let rec = Recorder::new(ctx, label);
        match &self.profiler {
            Some(p) => rec.profiled(p),
            None => rec,
        }
    }

    /// Submit a frame, keeping its profile log.
    pub(super) fn submit(&mut self, rec: Recorder) -> GpuResult<()> {
        let (_, log) = rec.submit_profiled()?;
        if log.is_some() {
            self.log = log;
        }
        Ok(())
    }

    /// The profile of the last profiled frame submitted (waits for it).
    pub(super) async fn read(&mut self, ctx: &Context) -> crate::Result<FrameProfile> {
        let (Some(p), Some(log)) = (&self.profiler, self.log.take()) else {
            return Err(GpuError::Launch {
                kernel: "profile",
                message: "no profiled frame to read: enable profiling, then push a frame".into(),
            }
            .into());
        };
        Ok(p.read(ctx, log).await?)
    }
}

/// One row of a [`ProfileReport`]: a group's total or one kernel within it, per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    pub group: &'static str,
    /// `None` for the group's total.
    pub kernel: Option<&'static str>,
    pub launches: u32,
    pub bytes_read: u64,
    /// GPU time per frame (ms), when timed.
    pub ms: Option<f64>,
}

impl ProfileRow {
    /// Bytes read per second (GB/s), when timed and non-zero.
    pub fn gbps(&self) -> Option<f64> {
        self.ms
            .filter(|&ms| ms > 0.0)
            .map(|ms| self.bytes_read as f64 / (ms * 1e6))
    }
}

/// The yardstick: a vec4 copy kernel between two buffers, timed with timestamps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyRate {
    /// Bytes the copy reads (and writes) per launch.
    pub bytes: u64,
    /// Bytes read per second, in GB/s (the copy writes as many).
    pub read_gbps: f64,
}

/// What [`profile_frames`] measured, averaged per frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileReport {
    pub frames: usize,
    /// The adapter offers timestamp queries.
    pub adapter_timestamps: bool,
    /// Frames were timed (timestamp queries enabled on the device).
    pub timed: bool,
    /// Group totals, each followed by its kernels.
    pub rows: Vec<ProfileRow>,
    /// From the first timed pass's start to the last one's end, per frame (ms).
    pub span_ms: Option<f64>,
    pub copy: Option<CopyRate>,
}

impl ProfileReport {
    fn from_frames(ctx: &Context, frames: &[FrameProfile], copy: Option<CopyRate>) -> Self {
        let n = frames.len().max(1);
        let all = FrameProfile {
            segments: frames.iter().flat_map(|f| f.segments.clone()).collect(),
            span_ns: None,
        };
        let row = |g: &GroupTotal| ProfileRow {
            group: g.group,
            kernel: g.kernel,
            launches: g.launches / n as u32,
            bytes_read: g.bytes_read / n as u64,
            ms: g.ns.map(|ns| ns / n as f64 / 1e6),
        };
        let mut rows = Vec::new();
        for (total, kernels) in all.groups() {
            rows.push(row(&total));
            rows.extend(kernels.iter().map(row));
        }
        let spans: Option<Vec<f64>> = frames.iter().map(|f| f.span_ns).collect();
        Self {
            frames: frames.len(),
            adapter_timestamps: ctx.caps().timestamp_query,
            timed: ctx.caps().timestamps,
            rows,
            span_ms: spans
                .filter(|s| !s.is_empty())
                .map(|s| s.iter().sum::<f64>() / s.len() as f64 / 1e6),
            copy,
        }
    }

    /// The group totals (no kernel rows).
    pub fn groups(&self) -> impl Iterator<Item = &ProfileRow> {
        self.rows.iter().filter(|r| r.kernel.is_none())
    }

    /// Launches per frame, all groups.
    pub fn launches(&self) -> u32 {
        self.groups().map(|r| r.launches).sum()
    }

    /// A row's GB/s as a fraction of the copy's read rate.
    pub fn of_copy(&self, row: &ProfileRow) -> Option<f64> {
        Some(row.gbps()? / self.copy?.read_gbps)
    }

    /// What was (not) timed, in a line.
    pub fn timing_line(&self) -> String {
        match (self.timed, self.adapter_timestamps, self.copy) {
            (true, _, Some(c)) => format!(
                "GPU times from timestamp queries, {} frame(s); copy yardstick: {:.1} MiB vec4 copy reads {:.2} GB/s (and writes as much)",
                self.frames,
                c.bytes as f64 / (1u64 << 20) as f64,
                c.read_gbps
            ),
            (true, _, None) => format!("GPU times from timestamp queries, {} frame(s)", self.frames),
            (false, true, _) => "timestamp queries not enabled on this device: launches and bytes read only".into(),
            (false, false, _) => "this adapter has no timestamp queries (timestamp-query): launches and bytes read only, no times".into(),
        }
    }

    /// The report as a text table (the CLI prints it; the page shows it).
    pub fn table(&self) -> String {
        let mut s = format!("{}\n", self.timing_line());
        s += &format!(
            "{:<28} {:>8} {:>11} {:>10} {:>8} {:>8}\n",
            "group / kernel", "launches", "MB read", "ms/frame", "GB/s", "of copy"
        );
        let opt =
            |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |x| format!("{x:.digits$}"));
        for r in &self.rows {
            let name = match r.kernel {
                Some(k) => format!("  {k}"),
                None => r.group.to_string(),
            };
            s += &format!(
                "{:<28} {:>8} {:>11.3} {:>10} {:>8} {:>8}\n",
                name,
                r.launches,
                r.bytes_read as f64 / 1e6,
                opt(r.ms, 3),
                opt(r.gbps(), 2),
                opt(self.of_copy(r), 2)
            );
        }
        let ms: Option<f64> = self.groups().map(|r| r.ms).sum();
        s += &format!(
            "{:<28} {:>8} {:>11.3} {:>10}\n",
            "frame (sum of groups)",
            self.launches(),
            self.groups().map(|r| r.bytes_read).sum::<u64>() as f64 / 1e6,
            opt(ms, 3)
        );
        if let Some(span) = self.span_ms {
            s += &format!(
                "first pass start to last pass end: {span:.3} ms per frame (groups + copies and gaps between passes)\n"
            );
        }
        s
    }
}

/// Profile `frames` frames of `work` (one at a time: push, pull, read its profile), then time
/// the yardstick copy at the size of the frame's largest read (clamped to 4 MiB ..= the largest
/// binding, at most 128 MiB). Run it after the timed frames: pipelines are compiled by then.
pub async fn profile_frames(
    ctx: &Context,
    mut work: Workload<'_>,
    frames: usize,
) -> crate::Result<ProfileReport> {
    work.set_profiling(ctx, true);
    let r = profile_loop(ctx, &mut work, frames.max(1)).await;
    work.set_profiling(ctx, false);
    let profiles = r?;
    let largest = profiles.iter().map(|p| p.largest_read()).max().unwrap_or(0);
    let copy = match ctx.caps().timestamps {
        true => copy_rate(ctx, largest).await?,
        false => None,
    };
    Ok(ProfileReport::from_frames(ctx, &profiles, copy))
}

async fn profile_loop(
    ctx: &Context,
    work: &mut Workload<'_>,
    frames: usize,
) -> crate::Result<Vec<FrameProfile>> {
    let pcm = super::bench::chirp(work.frame_size());
    let codes = match work {
        Workload::Decode(c) => {
            c.push_pcm(ctx, &pcm, CodecMode::Encode)?;
            c.pull(ctx).await?.codes.unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let mut out = Vec::with_capacity(frames);
    for _ in 0..frames {
        match work {
            Workload::Session(s) => {
                s.push(ctx, &pcm)?;
                drop(s.pull(ctx).await?);
                out.push(s.profiling.read(ctx).await?);
            }
            Workload::Encode(c) => {
                c.push_pcm(ctx, &pcm, CodecMode::Encode)?;
                drop(c.pull(ctx).await?);
                out.push(c.profiling.read(ctx).await?);
            }
            Workload::Decode(c) => {
                c.push_codes(ctx, &codes)?;
                drop(c.pull(ctx).await?);
                out.push(c.profiling.read(ctx).await?);
            }
        }
    }
    Ok(out)
}

impl Workload<'_> {
    fn frame_size(&self) -> usize {
        match self {
            Workload::Session(s) => s.frame_size(),
            Workload::Encode(c) | Workload::Decode(c) => c.frame_size(),
        }
    }

    fn set_profiling(&mut self, ctx: &Context, on: bool) {
        match self {
            Workload::Session(s) => s.profiling.enable(ctx, on),
            Workload::Encode(c) | Workload::Decode(c) => c.profiling.enable(ctx, on),
        }
    }
}

/// The copy kernel's read rate over `bytes` (clamped), timed with timestamp queries: the best of
/// three submits of four copies each; `None` without timestamps (or when every read gave 0 ns).
pub async fn copy_rate(ctx: &Context, bytes: u64) -> crate::Result<Option<CopyRate>> {
    let max = ctx.caps().max_storage_binding.min(128 << 20);
    let bytes = bytes.clamp(4 << 20, max.max(4 << 20)) / 16 * 16;
    let x = ctx.create_buffer("profile copy x", bytes, BufferUsage::Storage)?;
    let y = ctx.create_buffer("profile copy y", bytes, BufferUsage::Storage)?;
    let profiler = Profiler::new(ctx);
    if !profiler.timed() {
        return Ok(None);
    }
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut rec = Recorder::new(ctx, "profile copy").profiled(&profiler);
        rec.set_group(COPY);
        for _ in 0..4 {
            crate::kernels::elementwise::copy(&mut rec, x.view(), y.view(), (bytes / 4) as u32)?;
        }
        let (_, log) = rec.submit_profiled()?;
        let log = log.expect("a profiled recorder returns its log");
        let p = profiler.read(ctx, log).await?;
        let ns: f64 = p.segments.iter().filter_map(|s| s.ns).sum();
        if ns > 0.0 {
            best = best.min(ns / 4.0);
        }
    }
    ctx.check()?;
    Ok(best.is_finite().then(|| CopyRate {
        bytes,
        read_gbps: bytes as f64 / best,
    }))
}

/// The LM's group labels (with [`MIMI_ENCODE`] and [`MIMI_DECODE`], those of
/// [`FrameStats::by_group`]).
pub use groups::{DEPFORMER, EMBED, SAMPLING, TEMPORAL, TEXT_HEAD};
