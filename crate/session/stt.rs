//! Kyutai's STT procedure around a [`Session`] of kind [`Kind::Stt`], as
//! `stt_from_file_pytorch.py` (delayed-streams-modeling) runs it: `audio_silence_prefix_seconds`
//! of silence, the audio (zero-padded to whole 80 ms frames), `audio_delay_seconds` of silence
//! to flush the text; one LM step per frame, greedy unless the session's sampling says otherwise.
//! Every frame goes through the session's frame loop (one submit, one async readback), with up
//! to [`MAX_IN_FLIGHT`] frames in flight.

use super::{Kind, Session, SessionError, StepOutput, SttConfig, MAX_IN_FLIGHT};
use crate::gpu::Context;
use crate::text::{word_timestamps, Word, WordIds};

/// Frames around the audio and the timestamp offset, from the model's `stt_config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SttPlan {
    pub prefix_frames: usize,
    pub flush_frames: usize,
    /// Seconds subtracted from a step's time for word timestamps.
    pub offset_seconds: f64,
    /// LM steps per second (12.5).
    pub frame_rate: f64,
}

/// The whole run's result.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    /// The text, as streamed.
    pub text: String,
    /// One text token per step (prefix and flush included).
    pub tokens: Vec<u32>,
    /// `[steps, heads, head_dim]` extra-head probabilities, empty without extra heads.
    pub extra_heads: Vec<f32>,
    /// Words with their times (Kyutai's end-of-padding procedure).
    pub words: Vec<Word>,
}

impl SttPlan {
    /// Kyutai's script: `ceil(seconds · frame_rate)` silent frames before and after the audio;
    /// timestamps offset by `int(prefix_frames / frame_rate) + audio_delay_seconds` (Python's
    /// `int`, a truncation).
    pub fn new(stt: &SttConfig, frame_rate: f64) -> Self {
        let prefix_frames = (stt.audio_silence_prefix_seconds * frame_rate).ceil() as usize;
        Self {
            prefix_frames,
            flush_frames: (stt.audio_delay_seconds * frame_rate).ceil() as usize,
            offset_seconds: (prefix_frames as f64 / frame_rate).trunc() + stt.audio_delay_seconds,
            frame_rate,
        }
    }
}

impl Session {
    /// Kyutai's STT plan for this session's model.
    pub fn stt_plan(&self) -> SttPlan {
        SttPlan::new(&self.stt, self.mimi.cfg.frame_rate)
    }

    /// Transcribe `pcm` (24 kHz mono) with Kyutai's procedure; `on_step` sees every step's
    /// output as it comes (prefix and flush steps included).
    pub async fn transcribe(
        &mut self,
        ctx: &Context,
        pcm: &[f32],
        mut on_step: impl FnMut(&StepOutput),
    ) -> crate::Result<Transcript> {
        if self.kind != Kind::Stt {
            return Err(SessionError::NotStt.into());
        }
        let plan = self.stt_plan();
        let n = self.frame_size();
        let audio_frames = pcm.len().div_ceil(n);
        let total = plan.prefix_frames + audio_frames + plan.flush_frames;
        let mut frame = vec![0f32; n];
        let mut t = Transcript::default();
        let mut take = |out: StepOutput, t: &mut Transcript| {
            on_step(&out);
            t.text.push_str(&out.text);
            t.tokens.extend(out.text_token);
            if let Some(h) = &out.extra_heads {
                t.extra_heads.extend_from_slice(h);
            }
        };
        for i in 0..total {
            frame.fill(0.0);
            if let Some(a) = i
                .checked_sub(plan.prefix_frames)
                .filter(|&a| a < audio_frames)
            {
                let src = &pcm[a * n..((a + 1) * n).min(pcm.len())];
                frame[..src.len()].copy_from_slice(src);
            }
            if self.in_flight() >= MAX_IN_FLIGHT {
                let out = self.pull(ctx).await?;
                take(out, &mut t);
            }
            self.push(ctx, &frame)?;
        }
        while self.in_flight() > 0 {
            let out = self.pull(ctx).await?;
            take(out, &mut t);
        }
        if let Some(text) = &mut self.text {
            t.text.push_str(&text.finish());
            let ids = WordIds::kyutai(text.tokenizer());
            t.words = word_timestamps(
                &t.tokens,
                text.tokenizer(),
                ids,
                plan.frame_rate,
                plan.offset_seconds,
            );
        }
        Ok(t)
    }
}

impl Session {
    /// Words of a live stream's text tokens with their times ([`word_timestamps`]): one token per
    /// step from the stream's first frame, no silence prefix, so a step's time is step /
    /// frame rate − `audio_delay_seconds` (the text's delay behind the audio). `None` for a
    /// session that is not STT or has no tokenizer.
    pub fn live_words(&self, tokens: &[u32]) -> Option<Vec<Word>> {
        if self.kind != Kind::Stt {
            return None;
        }
        let text = self.text.as_ref()?;
        let ids = WordIds::kyutai(text.tokenizer());
        Some(word_timestamps(
            tokens,
            text.tokenizer(),
            ids,
            self.mimi.cfg.frame_rate,
            self.live_offset_seconds(),
        ))
    }

    /// Seconds subtracted from a live step's time (see [`Session::live_words`]).
    pub fn live_offset_seconds(&self) -> f64 {
        self.stt.audio_delay_seconds
    }
}
