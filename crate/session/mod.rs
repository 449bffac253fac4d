//! One conversation, the only frame loop of the engine: every 80 ms frame of microphone audio
//! goes through Mimi's encoder, one LM step (temporal transformer + depformer, tokens sampled on
//! the GPU into the token ring) and Mimi's decoder of Moshi's completed frame — all recorded into
//! one command buffer and submitted once, with no CPU wait inside the frame and one small async
//! readback (PCM + the frame's tokens). [`Session::push`] submits a frame; [`Session::pull`]
//! awaits the oldest pending one, so frame N+1 can run while frame N is being read back. `pull` is
//! [`Session::wait_oldest`] (a [`FrameWait`] that owns what it awaits, so the session is free
//! meanwhile: a front end can push a frame that arrives during the wait) then [`Session::take`].
//!
//! A directory that holds only Mimi runs the codec loopback: encode → decode, the codes as the
//! frame's tokens. An LM without a depformer (`dep_q` 0, Kyutai STT) runs speech to text: Mimi
//! encode → one LM step, no decode; the frame reads back its text token, the codes the LM heard
//! and the extra heads' probabilities ([`stt`] has Kyutai's procedure around it).

pub mod bench;
mod codec;
mod config;
pub mod estimate;
pub mod hibiki;
mod load;
mod sampling;
pub mod stt;

/// What front ends set: how tokens are drawn, LM and weight options.
pub use crate::lm::{LmOptions, Sampling, StepDispatches};
pub use crate::nn::WeightOptions;
pub use crate::weights::{quant_format, WeightFormat};
pub use codec::{CodecFrame, CodecInput, CodecMode, CodecSession};
pub use config::{GenerationConfig, ModelConfig, ModelIo, ModelKind, ModelType, SttConfig};
pub use load::ModelSources;
pub use sampling::SamplingSettings;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

mod error;
pub use error::SessionError;

use crate::gpu::{BufferUsage, Context, FrameReadback, GpuBuffer, GpuResult, Recorder, SlotRead};
use crate::lm::{Lm, TokenChoice};
use crate::mimi::Mimi;
use crate::nn::Weights;
use crate::text::{TextStream, Tokenizer};
use crate::weights::{TensorSource, WeightsError};

/// What a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Full-duplex Moshi: Mimi + LM.
    Moshi,
    /// The codec alone: each frame encoded and decoded again.
    Mimi,
    /// Speech to text (Kyutai STT): Mimi encode + an LM with no depformer, text out.
    Stt,
    /// Speech translation (Kyutai Hibiki): Moshi's frame loop with the LM's conditioning and
    /// optional classifier-free guidance, and an end-of-input frame ([`hibiki`]).
    Hibiki,
}

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Mimi codebooks in loopback mode (default: all of the model's).
    pub codebooks: Option<usize>,
    /// How tokens are drawn: these settings over the model's defaults
    /// ([`ModelConfig::sampling`]).
    pub sampling: SamplingSettings,
    pub lm: LmOptions,
    pub weights: WeightOptions,
    /// Classifier-free guidance coefficient (default: the model's `lm_gen_config.cfg_coef`, 1
    /// when absent); any value but 1 needs a conditioned model (Hibiki).
    pub cfg: Option<f32>,
}

/// One frame's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutput {
    /// 1920 samples of Moshi's completed frame (loopback: the decoded input), or `None` while
    /// no frame is complete yet (the first `max(delays)` steps).
    pub pcm: Option<Vec<f32>>,
    /// Text to append to the transcript (often empty).
    pub text: String,
    /// The text token aligned with the completed frame.
    pub text_token: Option<u32>,
    /// Moshi's codebooks of the completed frame (loopback: the frame's Mimi codes).
    pub audio_tokens: Option<Vec<u32>>,
    /// The user's codebooks of the same frame, as the LM heard them (Moshi mode only).
    pub user_tokens: Option<Vec<u32>>,
    /// Index of the completed frame.
    pub frame: Option<usize>,
    /// STT: the extra heads' probabilities of this step, `[heads × head_dim]` row-major.
    pub extra_heads: Option<Vec<f32>>,
    /// STT: the end-of-turn probability Kyutai's scripts read (extra head 2, entry 0; `None`
    /// for models with fewer than 3 extra heads).
    pub end_of_turn: Option<f32>,
}

/// Counters of the last frame (for stats and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    pub dispatches: u32,
    pub submits: u32,
    pub readbacks: u32,
    /// Kernel launches of the frame's Mimi encode and decode (0 when it did not run).
    pub mimi_encode: u32,
    pub mimi_decode: u32,
    /// Kernel launches of the frame's LM step, by part (all 0 without an LM).
    pub lm: StepDispatches,
}

struct Pending {
    slot: usize,
    frame: Option<usize>,
    /// Unique over the process (a [`FrameBytes`] of another session or of a frame dropped by a
    /// reset never matches).
    id: u64,
}

static NEXT_FRAME_ID: AtomicU64 = AtomicU64::new(1);

/// The readback of the oldest frame in flight ([`Session::wait_oldest`]), awaited without the
/// session.
pub struct FrameWait {
    id: u64,
    slot: usize,
    read: SlotRead,
}

impl FrameWait {
    /// Await the frame's readback; give the result to [`Session::take`] (also when it failed).
    pub async fn wait(self, ctx: &Context) -> FrameBytes {
        FrameBytes {
            id: self.id,
            slot: self.slot,
            bytes: self.read.read(ctx).await,
        }
    }
}

/// What a [`FrameWait`] read back, for [`Session::take`].
pub struct FrameBytes {
    id: u64,
    slot: usize,
    bytes: GpuResult<Vec<u8>>,
}

/// The pieces a session is built from, whatever they were read from (files natively, bytes or
/// streams in the browser).
pub struct ModelParts<'a> {
    /// `config.json` text, if any.
    pub config: Option<&'a str>,
    pub mimi: &'a dyn TensorSource,
    /// LM weights: `None` for the Mimi loopback.
    pub lm: Option<Weights<'a>>,
    pub tokenizer: Option<Tokenizer>,
}

/// One conversation.
pub struct Session {
    kind: Kind,
    mimi: Mimi,
    lm: Option<Lm>,
    text: Option<TextStream>,
    sampling: Sampling,
    /// `[pcm f32 | width u32 | extra heads f32]`: what one frame reads back (STT: no pcm).
    out: GpuBuffer,
    /// Samples of PCM in `out` (0 for STT).
    pcm_len: usize,
    width: usize,
    /// Extra-head probabilities in `out` (`heads × head_dim`, STT only).
    extra_len: usize,
    stt: SttConfig,
    /// Hibiki's end-of-input codes (`card` in every user codebook).
    end_codes: Option<GpuBuffer>,
    readback: FrameReadback,
    pending: VecDeque<Pending>,
    /// The staging slot a [`FrameWait`] is mapping (no push may copy into it until its take).
    waiting: Option<usize>,
    step: usize,
    last: FrameStats,
}

/// Frames the double-buffered readback lets be in flight.
pub const MAX_IN_FLIGHT: usize = 2;

impl Session {
    /// Build a session from its parts.
    pub fn load(ctx: &Context, parts: ModelParts, opts: &SessionOptions) -> crate::Result<Self> {
        let cfg = ModelConfig::parse(parts.config)?;
        Self::load_config(ctx, &cfg, parts, opts)
    }

    /// Build a session from its parts with their config already parsed (`parts.config` is not
    /// read again).
    pub fn load_config(
        ctx: &Context,
        config: &ModelConfig,
        parts: ModelParts,
        opts: &SessionOptions,
    ) -> crate::Result<Self> {
        let mimi_cfg = config.mimi.clone();
        let stt = config.stt.clone().unwrap_or_default();
        let (kind, lm, n_q) = match parts.lm {
            Some(w) => {
                let cfg = config.lm.clone();
                let user = cfg.user_streams();
                let kind = if cfg.dep_q == 0 {
                    Kind::Stt
                } else if config.model_type == ModelType::Hibiki {
                    Kind::Hibiki
                } else {
                    Kind::Moshi
                };
                if kind != Kind::Stt && user != cfg.dep_q {
                    return Err(WeightsError::Config(format!(
                        "the LM listens to {user} user codebooks and speaks {}: parle needs them equal",
                        cfg.dep_q
                    ))
                    .into());
                }
                let w = match w {
                    Weights::Checkpoint { source, .. } => Weights::Checkpoint {
                        source,
                        options: opts.weights,
                    },
                    r => r,
                };
                let mut lm = Lm::load(ctx, cfg, &w, &opts.lm)?;
                lm.set_cfg_coef(ctx, opts.cfg.unwrap_or(config.cfg_coef()))
                    .map_err(SessionError::Input)??;
                (kind, Some(lm), Some(user))
            }
            None => (Kind::Mimi, None, opts.codebooks),
        };
        let mimi = Mimi::load(ctx, mimi_cfg, parts.mimi, n_q)?;
        let text = match (&lm, parts.tokenizer) {
            (Some(lm), Some(tok)) => {
                let c = lm.config();
                if tok.vocab_size() < c.text_card_out {
                    return Err(WeightsError::Config(format!(
                        "tokenizer '{}' has {} pieces, the LM's text head {}: wrong tokenizer for this model",
                        tok.name(),
                        tok.vocab_size(),
                        c.text_card_out
                    ))
                    .into());
                }
                Some(TextStream::with_padding(
                    Arc::new(tok),
                    c.existing_text_padding_id,
                    Some(c.existing_text_end_padding_id),
                ))
            }
            _ => None,
        };
        let width = match &lm {
            Some(lm) => lm.width(),
            None => mimi.num_codebooks(),
        };
        // Kyutai's STT scripts run greedy whatever `lm_gen_config` says (`LMGen(lm, temp=0,
        // temp_text=0)`); the user's settings still apply on top.
        let base_sampling = if kind == Kind::Stt {
            Sampling {
                text_temperature: 0.0,
                audio_temperature: 0.0,
                ..config.sampling()
            }
        } else {
            config.sampling()
        };
        let pcm_len = if kind == Kind::Stt {
            0
        } else {
            mimi.frame_size()
        };
        let extra = lm.as_ref().map(|lm| lm.extra_heads()).unwrap_or_default();
        let extra_len = extra.heads * extra.dim;
        let bytes = ((pcm_len + width + extra_len) * 4) as u64;
        let end_codes = match &lm {
            Some(lm) if kind == Kind::Hibiki => {
                let c = lm.config();
                Some(ctx.upload("end of input codes", &vec![c.card as u32; c.user_streams()])?)
            }
            _ => None,
        };
        Ok(Self {
            kind,
            end_codes,
            out: ctx.create_buffer("session out", bytes, BufferUsage::Storage)?,
            readback: FrameReadback::new(ctx, "session", bytes)?,
            pcm_len,
            width,
            extra_len,
            stt,
            mimi,
            lm,
            text,
            sampling: opts
                .sampling
                .apply(base_sampling)
                .map_err(SessionError::Input)?,
            pending: VecDeque::new(),
            waiting: None,
            step: 0,
            last: FrameStats::default(),
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Samples per frame (1920 at 24 kHz).
    pub fn frame_size(&self) -> usize {
        self.mimi.frame_size()
    }

    /// Steps before the first complete frame comes out (`max(delays)`; 0 for the loopback).
    pub fn latency_frames(&self) -> usize {
        self.lm.as_ref().map_or(0, |lm| lm.config().max_delay())
    }

    pub fn lm(&self) -> Option<&Lm> {
        self.lm.as_ref()
    }

    pub fn mimi(&self) -> &Mimi {
        &self.mimi
    }

    /// Codebooks per stream: Moshi's (= the user's) in a conversation, the codec's in loopback
    /// and what the LM hears in STT.
    pub fn codebooks(&self) -> usize {
        match (&self.lm, self.kind) {
            (Some(lm), Kind::Moshi | Kind::Hibiki) => lm.config().dep_q,
            _ => self.mimi.num_codebooks(),
        }
    }

    /// The STT keys of the model's `config.json` (defaults for a model without them).
    pub fn stt_config(&self) -> &SttConfig {
        &self.stt
    }

    /// Counters of the last submitted frame.
    pub fn last_frame(&self) -> FrameStats {
        self.last
    }

    /// Change how tokens are drawn (applies from the next frame).
    pub fn configure(&mut self, sampling: Sampling) {
        self.sampling = sampling;
    }

    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// The classifier-free guidance coefficient (1: none).
    pub fn cfg(&self) -> f32 {
        self.lm.as_ref().map_or(1.0, |lm| lm.cfg_coef())
    }

    /// Change the guidance coefficient (from the next frame). Switching guidance on (from 1) or
    /// off (to 1) allocates or frees the second lane and is allowed only at the start of a
    /// stream (after [`Session::reset`]); a model without conditioners accepts only 1.
    pub fn set_cfg(&mut self, ctx: &Context, cfg: f32) -> crate::Result<()> {
        match &mut self.lm {
            Some(lm) => lm.set_cfg_coef(ctx, cfg).map_err(SessionError::Input)?,
            None if cfg == 1.0 => Ok(()),
            None => Err(SessionError::Input(format!(
                "cfg {cfg}: the Mimi loopback has no LM to guide"
            ))
            .into()),
        }
    }

    /// Frames submitted and not yet pulled.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Start a new conversation. Frames in flight are dropped (pull them first to keep them).
    pub fn reset(&mut self, ctx: &Context) {
        self.pending.clear();
        self.step = 0;
        self.mimi.reset();
        if let Some(lm) = &mut self.lm {
            lm.reset(ctx);
        }
        if let Some(t) = &mut self.text {
            t.reset();
        }
    }

    /// Record and submit one frame of `frame_size` samples. Nothing waits on the GPU.
    pub fn push(&mut self, ctx: &Context, pcm: &[f32]) -> crate::Result<()> {
        self.push_frame(ctx, Some(pcm))
    }

    /// Hibiki: record and submit the end-of-input frame (`card` in every user codebook, as
    /// Kyutai's `run_inference` gives once after the file; Mimi's encoder does not run).
    pub fn push_end_of_input(&mut self, ctx: &Context) -> crate::Result<()> {
        if self.end_codes.is_none() {
            return Err(SessionError::Input(
                "only a Hibiki session takes an end-of-input frame".into(),
            )
            .into());
        }
        self.push_frame(ctx, None)
    }

    fn push_frame(&mut self, ctx: &Context, pcm: Option<&[f32]>) -> crate::Result<()> {
        if let Some(pcm) = pcm.filter(|p| p.len() != self.frame_size()) {
            return Err(SessionError::FrameSize {
                want: self.frame_size(),
                got: pcm.len(),
            }
            .into());
        }
        if self.pending.len() >= MAX_IN_FLIGHT {
            return Err(SessionError::TooManyInFlight { max: MAX_IN_FLIGHT }.into());
        }
        if self.waiting == Some(self.readback.next_slot()) {
            // Only after a reset during a wait: that frame's staging buffer is still mapping.
            return Err(SessionError::AlreadyWaiting.into());
        }
        let mut rec = Recorder::new(ctx, "frame");
        let codes = match (pcm, &self.end_codes) {
            (Some(pcm), _) => {
                ctx.write(self.mimi.pcm_in(), 0, bytemuck::cast_slice(pcm));
                self.mimi.record_encode(&mut rec)?;
                self.mimi.codes().view()
            }
            (None, Some(end)) => end.view(),
            (None, None) => unreachable!("checked by push_end_of_input"),
        };
        let mimi_encode = rec.dispatch_count();
        let mut lm_counts = StepDispatches::default();
        let mut decode_from = None;
        let pcm_bytes = self.pcm_len as u64 * 4;
        let tokens_out = self.out.slice(pcm_bytes, self.width as u64 * 4);
        let frame = match &mut self.lm {
            Some(lm) if self.kind == Kind::Stt => {
                let s = self.step;
                rec.copy(self.mimi.codes().view(), lm.user_codes_view(s));
                lm.record_step(&mut rec, TokenChoice::Sample(self.sampling))?;
                lm_counts = lm.last_dispatches();
                rec.copy(lm.frame_view(s), tokens_out);
                if let Some(probs) = lm.extra_probs_view() {
                    let at = pcm_bytes + self.width as u64 * 4;
                    rec.copy(probs, self.out.slice(at, self.extra_len as u64 * 4));
                }
                Some(s)
            }
            Some(lm) => {
                let s = self.step;
                rec.copy(codes, lm.user_codes_view(s));
                lm.record_step(&mut rec, TokenChoice::Sample(self.sampling))?;
                lm_counts = lm.last_dispatches();
                let f = s.checked_sub(lm.config().max_delay());
                if let Some(f) = f {
                    rec.copy(lm.audio_token_view(f), self.mimi.codes_in().view());
                    decode_from = Some(rec.dispatch_count());
                    self.mimi.record_decode(&mut rec)?;
                    rec.copy(
                        self.mimi.pcm_out().slice(0, pcm_bytes),
                        self.out.slice(0, pcm_bytes),
                    );
                    rec.copy(lm.frame_view(f), tokens_out);
                }
                f
            }
            None => {
                rec.copy(self.mimi.codes().view(), self.mimi.codes_in().view());
                decode_from = Some(rec.dispatch_count());
                self.mimi.record_decode(&mut rec)?;
                rec.copy(
                    self.mimi.pcm_out().slice(0, pcm_bytes),
                    self.out.slice(0, pcm_bytes),
                );
                rec.copy(self.mimi.codes().view(), tokens_out);
                Some(self.step)
            }
        };
        let dispatches = rec.dispatch_count();
        let slot = self.readback.record(&mut rec, &self.out, 0);
        rec.submit()?;
        self.last = FrameStats {
            dispatches,
            submits: 1,
            readbacks: 1,
            mimi_encode,
            mimi_decode: decode_from.map_or(0, |d| dispatches - d),
            lm: lm_counts,
        };
        self.pending.push_back(Pending {
            slot,
            frame,
            id: NEXT_FRAME_ID.fetch_add(1, Ordering::Relaxed),
        });
        self.step += 1;
        Ok(())
    }

    /// Await the oldest frame in flight ([`Session::wait_oldest`], then [`Session::take`]).
    pub async fn pull(&mut self, ctx: &Context) -> crate::Result<StepOutput> {
        let wait = self.wait_oldest()?;
        let bytes = wait.wait(ctx).await;
        self.take(ctx, bytes)
    }

    /// The readback of the oldest frame in flight, to await without holding the session (frames
    /// may be pushed meanwhile, up to [`MAX_IN_FLIGHT`] in all); one wait at a time.
    pub fn wait_oldest(&mut self) -> crate::Result<FrameWait> {
        let Some(p) = self.pending.front() else {
            return Err(SessionError::NothingInFlight.into());
        };
        if self.waiting.is_some() {
            return Err(SessionError::AlreadyWaiting.into());
        }
        self.waiting = Some(p.slot);
        Ok(FrameWait {
            id: p.id,
            slot: p.slot,
            read: self.readback.slot_read(p.slot),
        })
    }

    /// The oldest frame's output from what its [`FrameWait`] read back. The frame leaves the
    /// session (also when the readback failed); a frame dropped by a reset meanwhile is an error.
    pub fn take(&mut self, ctx: &Context, read: FrameBytes) -> crate::Result<StepOutput> {
        if self.waiting == Some(read.slot) {
            self.waiting = None;
        }
        let p = match self.pending.front() {
            Some(p) if p.id == read.id => self.pending.pop_front().expect("a pending frame"),
            _ => {
                read.bytes?;
                return Err(SessionError::FrameDropped.into());
            }
        };
        let bytes = read.bytes?;
        ctx.check()?;
        let Some(frame) = p.frame else {
            return Ok(StepOutput::default());
        };
        let n = self.pcm_len;
        let pcm: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..n * 4]);
        let tokens: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes[n * 4..(n + self.width) * 4]);
        Ok(match &self.lm {
            Some(lm) if self.kind == Kind::Stt => {
                let at = (n + self.width) * 4;
                let probs: Vec<f32> =
                    bytemuck::pod_collect_to_vec(&bytes[at..at + self.extra_len * 4]);
                let dim = lm.extra_heads().dim;
                let text_token = tokens[0];
                StepOutput {
                    pcm: None,
                    text: self
                        .text
                        .as_mut()
                        .map(|t| t.push(text_token))
                        .unwrap_or_default(),
                    text_token: Some(text_token),
                    audio_tokens: None,
                    user_tokens: Some(tokens[1..].to_vec()),
                    frame: Some(frame),
                    end_of_turn: probs.get(2 * dim).copied(),
                    extra_heads: (self.extra_len > 0).then_some(probs),
                }
            }
            Some(lm) => {
                let text_token = tokens[0];
                let text = self
                    .text
                    .as_mut()
                    .map(|t| t.push(text_token))
                    .unwrap_or_default();
                StepOutput {
                    pcm: Some(pcm),
                    text,
                    text_token: Some(text_token),
                    audio_tokens: Some(tokens[1..1 + lm.config().dep_q].to_vec()),
                    user_tokens: Some(tokens[1 + lm.config().dep_q..].to_vec()),
                    frame: Some(frame),
                    ..StepOutput::default()
                }
            }
            None => StepOutput {
                pcm: Some(pcm),
                text: String::new(),
                text_token: None,
                audio_tokens: Some(tokens),
                user_tokens: None,
                frame: Some(frame),
                ..StepOutput::default()
            },
        })
    }

    /// One frame in, the oldest frame out (`push` then `pull`).
    pub async fn step(&mut self, ctx: &Context, pcm: &[f32]) -> crate::Result<StepOutput> {
        self.push(ctx, pcm)?;
        self.pull(ctx).await
    }
}
