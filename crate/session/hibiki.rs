//! Kyutai's Hibiki procedure around a [`Session`] of kind [`Kind::Hibiki`], as PyPI moshi's
//! `run_inference` runs it for `model_type` "hibiki": the audio's whole 80 ms frames (a last
//! partial frame is dropped, as there), then one end-of-input frame (`card` in every user
//! codebook, [`Session::push_end_of_input`]), then encoded silence until the text stream says
//! EOS. Every frame goes through the session's frame loop (one submit, one async readback), with
//! up to [`MAX_IN_FLIGHT`] frames in flight. The reference feeds its first frame twice (its
//! `LMGen` ignores its first input); the session's schedule (spec §3.1) reads each frame one step
//! after it is given, which is the same thing.

use super::{Kind, Session, SessionError, StepOutput, MAX_IN_FLIGHT};
use crate::gpu::Context;

/// The text token that ends a translation (SentencePiece's `</s>`, id 2 in Kyutai's
/// tokenizers; PyPI moshi's `get_moshi` makes the LM read it as padding when it comes early).
pub const TEXT_EOS: u32 = 2;

/// A translation's result.
#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// The text, as streamed.
    pub text: String,
    /// One text token per output frame (the EOS included when it came).
    pub text_tokens: Vec<u32>,
    /// `[frames][dep_q]` audio tokens of every output frame.
    pub audio_tokens: Vec<Vec<u32>>,
    /// The translated speech, 1920 samples per output frame.
    pcm: Vec<f32>,
    /// Whether the text stream ended with EOS (else the tail limit stopped it).
    pub ended: bool,
    /// LM steps that counted: up to the one whose output ended the text (or all of them); a
    /// step pushed ahead of that (frames in flight) is not counted.
    pub steps: usize,
}

impl Translation {
    pub fn pcm(&self) -> &[f32] {
        &self.pcm
    }
}

/// Silent frames fed after the end of input before giving up waiting for EOS: as many as the
/// input's frames, at least 10 s (`run_inference` has no limit).
pub fn tail_limit(input_frames: usize) -> usize {
    input_frames.max(125)
}

impl Session {
    /// Translate `pcm` (24 kHz mono) with Kyutai's procedure; `on_step` sees every output
    /// frame as it comes.
    pub async fn translate(
        &mut self,
        ctx: &Context,
        pcm: &[f32],
        mut on_step: impl FnMut(&StepOutput),
    ) -> crate::Result<Translation> {
        if self.kind != Kind::Hibiki {
            return Err(SessionError::Input(
                "translate needs a Hibiki model (config.json \"model_type\": \"hibiki\")".into(),
            )
            .into());
        }
        let n = self.frame_size();
        let frames = pcm.len() / n;
        let limit = frames + 1 + tail_limit(frames);
        let silence = vec![0f32; n];
        let mut t = Translation::default();
        // `at`: the step whose output `out` is; the end-of-input frame was given at step
        // `frames`, and an EOS counts from the step after it (run_inference's check).
        let mut take = |out: StepOutput, t: &mut Translation, at: usize| {
            if t.ended {
                return;
            }
            t.steps = at + 1;
            let eos_given = at > frames;
            if out.frame.is_none() {
                return;
            }
            on_step(&out);
            t.text.push_str(&out.text);
            if let Some(tok) = out.text_token {
                t.text_tokens.push(tok);
                t.ended = eos_given && tok == TEXT_EOS;
            }
            t.audio_tokens.extend(out.audio_tokens);
            t.pcm.extend(out.pcm.unwrap_or_default());
        };
        let mut step = 0;
        while step < limit && !t.ended {
            if self.in_flight() >= MAX_IN_FLIGHT {
                let out = self.pull(ctx).await?;
                take(out, &mut t, step - MAX_IN_FLIGHT);
                if t.ended {
                    break;
                }
            }
            match step.cmp(&frames) {
                std::cmp::Ordering::Less => self.push(ctx, &pcm[step * n..(step + 1) * n])?,
                std::cmp::Ordering::Equal => self.push_end_of_input(ctx)?,
                std::cmp::Ordering::Greater => self.push(ctx, &silence)?,
            }
            step += 1;
        }
        while self.in_flight() > 0 {
            let oldest = step - self.in_flight();
            let out = self.pull(ctx).await?;
            take(out, &mut t, oldest);
        }
        if let Some(text) = &mut self.text {
            t.text.push_str(&text.finish());
        }
        Ok(t)
    }
}
