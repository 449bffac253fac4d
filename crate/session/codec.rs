//! A codec-only session: Mimi frames encoded, decoded, or both, with the conversation's
//! discipline — each frame recorded into one command buffer, submitted once, its result read
//! back asynchronously ([`CodecSession::pull`]), so frame N+1 can run while frame N is read back.

use std::collections::VecDeque;

use super::profile::{Profiling, MIMI_DECODE, MIMI_ENCODE};
use super::{FrameStats, MAX_IN_FLIGHT};
use crate::gpu::{BufferUsage, Context, FrameReadback, GpuBuffer, GpuError, Recorder};
use crate::mimi::{Mimi, MimiConfig};
use crate::weights::{RandomWeights, TensorSource};

/// What a frame of PCM goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecMode {
    /// PCM → codes.
    Encode,
    /// PCM → codes → PCM.
    Roundtrip,
}

/// One frame's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodecFrame {
    /// The frame's codes (encode and roundtrip frames).
    pub codes: Option<Vec<u32>>,
    /// `frame_size` samples (decode and roundtrip frames).
    pub pcm: Option<Vec<f32>>,
}

/// One frame's input.
#[derive(Debug, Clone, Copy)]
pub enum CodecInput<'a> {
    /// `frame_size` samples, encoded (and decoded again in [`CodecMode::Roundtrip`]).
    Pcm(&'a [f32], CodecMode),
    /// `num_codebooks` codes, decoded.
    Codes(&'a [u32]),
}

#[derive(Clone, Copy)]
struct Pending {
    slot: usize,
    codes: bool,
    pcm: bool,
}

/// Mimi alone, frame by frame.
pub struct CodecSession {
    mimi: Mimi,
    /// `[frame_size f32 | n_q u32]`: what one frame reads back.
    out: GpuBuffer,
    readback: FrameReadback,
    pending: VecDeque<Pending>,
    last: FrameStats,
    /// Frame profiles ([`CodecSession::set_profiling`]); off unless a benchmark asks.
    pub(super) profiling: Profiling,
}

fn bad(message: String) -> crate::Error {
    GpuError::Launch {
        kernel: "codec session",
        message,
    }
    .into()
}

impl CodecSession {
    /// Mimi from `source` (`n_q`: codebooks, default all of the model's).
    pub fn load(
        ctx: &Context,
        cfg: MimiConfig,
        source: &dyn TensorSource,
        n_q: Option<usize>,
    ) -> crate::Result<Self> {
        Self::new(ctx, Mimi::load(ctx, cfg, source, n_q)?)
    }

    /// Mimi at its published size with random weights (benchmarks).
    pub fn random(ctx: &Context, n_q: usize) -> crate::Result<Self> {
        Self::load(
            ctx,
            MimiConfig::default(),
            &RandomWeights { seed: 1 },
            Some(n_q),
        )
    }

    /// A Mimi model directory: `config.json` (optional) and the codec weights.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(
        ctx: &Context,
        dir: &std::path::Path,
        n_q: Option<usize>,
    ) -> crate::Result<Self> {
        Self::new(ctx, Mimi::load_dir(ctx, dir, n_q)?)
    }

    fn new(ctx: &Context, mimi: Mimi) -> crate::Result<Self> {
        let bytes = ((mimi.frame_size() + mimi.num_codebooks()) * 4) as u64;
        Ok(Self {
            out: ctx.create_buffer("codec out", bytes, BufferUsage::Storage)?,
            readback: FrameReadback::new(ctx, "codec", bytes)?,
            mimi,
            pending: VecDeque::new(),
            last: FrameStats::default(),
            profiling: Profiling::default(),
        })
    }

    /// Samples per frame (1920 at 24 kHz).
    pub fn frame_size(&self) -> usize {
        self.mimi.frame_size()
    }

    pub fn num_codebooks(&self) -> usize {
        self.mimi.num_codebooks()
    }

    pub fn sample_rate(&self) -> f64 {
        self.mimi.cfg.sample_rate
    }

    /// Counters of the last submitted frame.
    pub fn last_frame(&self) -> FrameStats {
        self.last
    }

    /// Profile the frames pushed from now on, or stop ([`super::Session::set_profiling`]).
    pub fn set_profiling(&mut self, ctx: &Context, on: bool) {
        self.profiling.enable(ctx, on);
    }

    /// The profile of the last profiled frame pushed (waits for it).
    pub async fn read_profile(&mut self, ctx: &Context) -> crate::Result<crate::gpu::FrameProfile> {
        self.profiling.read(ctx).await
    }

    /// Frames submitted and not yet pulled.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn check_room(&self) -> crate::Result<()> {
        if self.pending.len() >= MAX_IN_FLIGHT {
            return Err(bad(format!(
                "{MAX_IN_FLIGHT} frames are already in flight: pull one first"
            )));
        }
        Ok(())
    }

    /// Record and submit the encoding (and in [`CodecMode::Roundtrip`] the decoding) of one frame
    /// of `frame_size` samples. Nothing waits on the GPU.
    pub fn push_pcm(&mut self, ctx: &Context, pcm: &[f32], mode: CodecMode) -> crate::Result<()> {
        if pcm.len() != self.frame_size() {
            return Err(bad(format!(
                "a frame has {} samples, got {}",
                self.frame_size(),
                pcm.len()
            )));
        }
        self.check_room()?;
        ctx.write(self.mimi.pcm_in(), 0, bytemuck::cast_slice(pcm));
        let mut rec = self.profiling.recorder(ctx, "codec frame");
        rec.set_group(MIMI_ENCODE);
        let mark = rec.dispatch_count();
        self.mimi.record_encode(&mut rec)?;
        let encode = rec.dispatch_count() - mark;
        let pcm_bytes = self.frame_size() as u64 * 4;
        let codes_bytes = self.num_codebooks() as u64 * 4;
        rec.copy(
            self.mimi.codes().view(),
            self.out.slice(pcm_bytes, codes_bytes),
        );
        let decode = mode == CodecMode::Roundtrip;
        if decode {
            rec.copy(self.mimi.codes().view(), self.mimi.codes_in().view());
            self.record_decode(&mut rec)?;
        }
        self.submit(rec, true, decode, encode)
    }

    /// Record and submit the decoding of one frame of `num_codebooks` codes.
    pub fn push_codes(&mut self, ctx: &Context, codes: &[u32]) -> crate::Result<()> {
        if codes.len() != self.num_codebooks() {
            return Err(bad(format!(
                "expected {} codes, got {}",
                self.num_codebooks(),
                codes.len()
            )));
        }
        let bins = self.mimi.cfg.quantizer.bins;
        if let Some(&c) = codes.iter().find(|&&c| c as usize >= bins) {
            return Err(bad(format!("code {c} is out of range 0..{bins}")));
        }
        self.check_room()?;
        ctx.write(self.mimi.codes_in(), 0, bytemuck::cast_slice(codes));
        let mut rec = self.profiling.recorder(ctx, "codec frame");
        self.record_decode(&mut rec)?;
        self.submit(rec, false, true, 0)
    }

    fn record_decode(&mut self, rec: &mut Recorder) -> crate::Result<()> {
        rec.set_group(MIMI_DECODE);
        self.mimi.record_decode(rec)?;
        let pcm_bytes = self.frame_size() as u64 * 4;
        rec.copy(
            self.mimi.pcm_out().slice(0, pcm_bytes),
            self.out.slice(0, pcm_bytes),
        );
        Ok(())
    }

    fn submit(
        &mut self,
        mut rec: Recorder,
        codes: bool,
        pcm: bool,
        mimi_encode: u32,
    ) -> crate::Result<()> {
        let dispatches = rec.dispatch_count();
        let slot = self.readback.record(&mut rec, &self.out, 0);
        self.profiling.submit(rec)?;
        self.last = FrameStats {
            dispatches,
            submits: 1,
            readbacks: 1,
            mimi_encode,
            mimi_decode: dispatches - mimi_encode,
            ..FrameStats::default()
        };
        self.pending.push_back(Pending { slot, codes, pcm });
        Ok(())
    }

    /// Await the oldest frame in flight.
    pub async fn pull(&mut self, ctx: &Context) -> crate::Result<CodecFrame> {
        let Some(p) = self.pending.pop_front() else {
            return Err(GpuError::Readback("no frame in flight: push one first".into()).into());
        };
        let bytes = self.readback.read(ctx, p.slot).await?;
        ctx.check()?;
        let n = self.frame_size();
        let pcm_end = n * 4;
        let codes_end = pcm_end + self.num_codebooks() * 4;
        Ok(CodecFrame {
            codes: p
                .codes
                .then(|| bytemuck::pod_collect_to_vec(&bytes[pcm_end..codes_end])),
            pcm: p
                .pcm
                .then(|| bytemuck::pod_collect_to_vec(&bytes[..pcm_end])),
        })
    }

    /// Push one frame's input.
    pub fn push(&mut self, ctx: &Context, input: CodecInput) -> crate::Result<()> {
        match input {
            CodecInput::Pcm(pcm, mode) => self.push_pcm(ctx, pcm, mode),
            CodecInput::Codes(codes) => self.push_codes(ctx, codes),
        }
    }

    /// Run every frame of `inputs` in order, up to [`MAX_IN_FLIGHT`] in flight, handing each
    /// result to `on_frame` as it comes back.
    pub async fn run<'a>(
        &mut self,
        ctx: &Context,
        inputs: impl IntoIterator<Item = CodecInput<'a>>,
        mut on_frame: impl FnMut(CodecFrame),
    ) -> crate::Result<()> {
        for input in inputs {
            if self.in_flight() >= MAX_IN_FLIGHT {
                on_frame(self.pull(ctx).await?);
            }
            self.push(ctx, input)?;
        }
        while self.in_flight() > 0 {
            on_frame(self.pull(ctx).await?);
        }
        Ok(())
    }
}
