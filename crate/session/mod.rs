//! One conversation, the only frame loop of the engine: every 80 ms frame of microphone audio
//! goes through Mimi's encoder, one LM step (temporal transformer + depformer, tokens sampled on
//! the GPU into the token ring) and Mimi's decoder of Moshi's completed frame — all recorded into
//! one command buffer and submitted once, with no CPU wait inside the frame and one small async
//! readback (PCM + the frame's tokens). [`Session::push`] submits a frame; [`Session::pull`]
//! awaits the oldest pending one, so frame N+1 can run while frame N is being read back.
//!
//! A directory that holds only Mimi runs the codec loopback: encode → decode, the codes as the
//! frame's tokens.

pub mod bench;
mod codec;
mod load;

/// What front ends set: how tokens are drawn, LM and weight options.
pub use crate::lm::{LmOptions, Sampling, StepDispatches};
pub use crate::nn::WeightOptions;
pub use crate::weights::{quant_format, WeightFormat};
pub use codec::{CodecFrame, CodecInput, CodecMode, CodecSession};
pub use load::ModelSources;

use std::collections::VecDeque;
use std::sync::Arc;

mod error;
pub use error::SessionError;

use crate::gpu::{BufferUsage, Context, FrameReadback, GpuBuffer, Recorder};
use crate::lm::{Lm, LmConfig, TokenChoice};
use crate::mimi::{Mimi, MimiConfig};
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
}

/// How to build a session.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Mimi codebooks in loopback mode (default: all of the model's).
    pub codebooks: Option<usize>,
    pub sampling: Sampling,
    pub lm: LmOptions,
    pub weights: WeightOptions,
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
    /// `[frame_size f32 | width u32]`: what one frame reads back.
    out: GpuBuffer,
    width: usize,
    readback: FrameReadback,
    pending: VecDeque<Pending>,
    step: usize,
    last: FrameStats,
}

/// Frames the double-buffered readback lets be in flight.
pub const MAX_IN_FLIGHT: usize = 2;

impl Session {
    /// Build a session from its parts.
    pub fn load(ctx: &Context, parts: ModelParts, opts: &SessionOptions) -> crate::Result<Self> {
        let mimi_cfg = match parts.config {
            Some(t) => MimiConfig::from_json(t)?,
            None => MimiConfig::default(),
        };
        let (kind, lm, n_q) = match parts.lm {
            Some(w) => {
                let cfg = match parts.config {
                    Some(t) => LmConfig::from_json(t)?,
                    None => LmConfig::default(),
                };
                let user = cfg.user_streams();
                if user != cfg.dep_q {
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
                let lm = Lm::load(ctx, cfg, &w, &opts.lm)?;
                (Kind::Moshi, Some(lm), Some(user))
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
        let bytes = ((mimi.frame_size() + width) * 4) as u64;
        Ok(Self {
            kind,
            out: ctx.create_buffer("session out", bytes, BufferUsage::Storage)?,
            readback: FrameReadback::new(ctx, "session", bytes)?,
            width,
            mimi,
            lm,
            text,
            sampling: opts.sampling,
            pending: VecDeque::new(),
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

    /// Codebooks per stream: Moshi's (= the user's) in a conversation, the codec's in loopback.
    pub fn codebooks(&self) -> usize {
        match &self.lm {
            Some(lm) => lm.config().dep_q,
            None => self.mimi.num_codebooks(),
        }
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
        if pcm.len() != self.frame_size() {
            return Err(SessionError::FrameSize {
                want: self.frame_size(),
                got: pcm.len(),
            }
            .into());
        }
        if self.pending.len() >= MAX_IN_FLIGHT {
            return Err(SessionError::TooManyInFlight { max: MAX_IN_FLIGHT }.into());
        }
        ctx.write(self.mimi.pcm_in(), 0, bytemuck::cast_slice(pcm));
        let mut rec = Recorder::new(ctx, "frame");
        self.mimi.record_encode(&mut rec)?;
        let mimi_encode = rec.dispatch_count();
        let mut lm_counts = StepDispatches::default();
        let mut decode_from = None;
        let pcm_bytes = self.mimi.frame_size() as u64 * 4;
        let tokens_out = self.out.slice(pcm_bytes, self.width as u64 * 4);
        let frame = match &mut self.lm {
            Some(lm) => {
                let s = self.step;
                rec.copy(self.mimi.codes().view(), lm.user_codes_view(s));
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
        self.pending.push_back(Pending { slot, frame });
        self.step += 1;
        Ok(())
    }

    /// Await the oldest frame in flight.
    pub async fn pull(&mut self, ctx: &Context) -> crate::Result<StepOutput> {
        let Some(p) = self.pending.pop_front() else {
            return Err(SessionError::NothingInFlight.into());
        };
        let bytes = self.readback.read(ctx, p.slot).await?;
        ctx.check()?;
        let Some(frame) = p.frame else {
            return Ok(StepOutput::default());
        };
        let n = self.mimi.frame_size();
        let pcm: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..n * 4]);
        let tokens: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes[n * 4..(n + self.width) * 4]);
        Ok(match &self.lm {
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
                }
            }
            None => StepOutput {
                pcm: Some(pcm),
                text: String::new(),
                text_token: None,
                audio_tokens: Some(tokens),
                user_tokens: None,
                frame: Some(frame),
            },
        })
    }

    /// One frame in, the oldest frame out (`push` then `pull`).
    pub async fn step(&mut self, ctx: &Context, pcm: &[f32]) -> crate::Result<StepOutput> {
        self.push(ctx, pcm)?;
        self.pull(ctx).await
    }
}
