//! The streaming Mimi model on the GPU: one call encodes one 1920-sample frame into `n_q` codes,
//! or decodes one frame of codes into 1920 samples. Mimi is a composition of streaming parts
//! ([`Streaming`]), each owning its weights, its state and its output buffer:
//!
//! - encode: [`SeanetEncoder`] → encoder [`CodecTransformer`] → [`Downsample`] → [`RvqEncoder`];
//! - decode: [`RvqDecoder`] → [`Upsample`] → decoder [`CodecTransformer`] → [`SeanetDecoder`].
//!
//! All conv, conv-transpose and KV state stays on the GPU between calls; `reset()` starts a new
//! stream.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use crate::gpu::{BufferUsage, Context, FrameReadback, GpuBuffer, GpuError, Recorder};
use crate::nn::Weights;
#[cfg(not(target_arch = "wasm32"))]
use crate::weights::SafetensorsFile;
use crate::weights::{TensorSource, WeightsError};

use super::config::MimiConfig;
use super::quantizer::{self, RvqDecoder, RvqEncoder};
use super::resample::{Downsample, Upsample};
use super::seanet::{SeanetDecoder, SeanetEncoder};
use super::streaming::Streaming;
use super::transformer::CodecTransformer;

/// The `[steps, D]` rows SEANet's encoder and the upsampling wrote, copied before the codec
/// transformers overwrite them.
struct Taps {
    enc_seanet: GpuBuffer,
    dec_upsampled: GpuBuffer,
}

/// Streaming Mimi on the GPU.
pub struct Mimi {
    pub cfg: MimiConfig,
    n_q: u32,
    /// Samples to encode: `[frame_size]` f32.
    pcm_in: GpuBuffer,
    encoder: SeanetEncoder,
    encoder_transformer: CodecTransformer,
    downsample: Downsample,
    rvq_encoder: RvqEncoder,
    /// Codes to decode: `[n_q]` u32.
    codes_in: GpuBuffer,
    rvq_decoder: RvqDecoder,
    upsample: Upsample,
    decoder_transformer: CodecTransformer,
    decoder: SeanetDecoder,
    codes_readback: FrameReadback,
    pcm_readback: FrameReadback,
    /// Copies of the codec transformers' inputs for [`Mimi::debug_read`] (the transformers run
    /// in place on them), made only after [`Mimi::keep_intermediates`].
    taps: Option<Taps>,
    /// Kernel launches recorded by the last encode and decode.
    pub last_dispatches: (u32, u32),
}

impl Mimi {
    #[cfg(not(target_arch = "wasm32"))]
    /// Load a model directory: `config.json` (optional, `"mimi"` key) and the Mimi checkpoint
    /// that [`crate::weights::ModelFiles`] resolves (a Mimi-only directory's one checkpoint, or
    /// the Mimi file beside an LM).
    pub fn load_dir(ctx: &Context, dir: &Path, n_q: Option<usize>) -> crate::Result<Self> {
        let files = crate::weights::ModelFiles::resolve(dir)?;
        let cfg = match &files.config_json {
            Some(obj) => {
                let cfg = crate::weights::config::section::<MimiConfig>(obj, "mimi")
                    .and_then(|c| {
                        let c = c.unwrap_or_default();
                        c.validate().map(|_| c)
                    })
                    .map_err(|e| match e {
                        WeightsError::Config(message) => WeightsError::ConfigFile {
                            file: dir.join("config.json").display().to_string(),
                            message,
                        },
                        other => other,
                    })?;
                cfg
            }
            None => MimiConfig::default(),
        };
        let path = files.mimi.as_ref().unwrap_or(&files.lm);
        let f = SafetensorsFile::open(path)?;
        Self::load(ctx, cfg, &f, n_q)
    }

    /// Build the model from a config and an open checkpoint, streaming each tensor to the GPU.
    pub fn load(
        ctx: &Context,
        cfg: MimiConfig,
        f: &dyn TensorSource,
        n_q: Option<usize>,
    ) -> crate::Result<Self> {
        cfg.validate()?;
        let n_q = n_q.unwrap_or(cfg.quantizer.n_q);
        if n_q < 2 || n_q > cfg.quantizer.n_q {
            return Err(WeightsError::Config(format!(
                "{n_q} codebooks requested, the model has 2..={}",
                cfg.quantizer.n_q
            ))
            .into());
        }
        let w = Weights::checkpoint(f);
        let d = cfg.seanet.dimension as u32;
        let frame = cfg.frame_size() as u32;
        let steps = cfg.downsample_stride() as u32; // 25 Hz steps per frame

        let encoder = SeanetEncoder::load(ctx, &w.pp("encoder"), &cfg.seanet, frame)?;
        if encoder.steps() != steps {
            return Err(WeightsError::Config(format!(
                "SEANet gives {} steps per frame, expected {steps}",
                encoder.steps()
            ))
            .into());
        }
        let tr = &cfg.transformer;
        // The codec transformers run in place on the rows the conv before them writes.
        let encoder_transformer = CodecTransformer::load(
            ctx,
            &w.pp("encoder_transformer"),
            tr,
            steps,
            encoder.output(),
        )?;
        let downsample = Downsample::load(ctx, &w.pp("downsample"), d, steps)?;
        let (rvq_encoder, rvq_decoder) =
            quantizer::load(ctx, &w.pp("quantizer"), &cfg.quantizer, d, n_q as u32)?;
        let upsample = Upsample::load(ctx, &w.pp("upsample"), d, steps)?;
        let decoder_transformer = CodecTransformer::load(
            ctx,
            &w.pp("decoder_transformer"),
            tr,
            steps,
            upsample.output(),
        )?;
        let decoder = SeanetDecoder::load(ctx, &w.pp("decoder"), &cfg.seanet, steps)?;

        Ok(Self {
            n_q: n_q as u32,
            pcm_in: ctx.create_buffer("pcm in", frame as u64 * 4, BufferUsage::Storage)?,
            encoder,
            encoder_transformer,
            downsample,
            rvq_encoder,
            codes_in: ctx.create_buffer("codes in", n_q as u64 * 4, BufferUsage::Storage)?,
            rvq_decoder,
            upsample,
            decoder_transformer,
            decoder,
            codes_readback: FrameReadback::new(ctx, "codes", n_q as u64 * 4)?,
            pcm_readback: FrameReadback::new(ctx, "pcm", frame as u64 * 4)?,
            taps: None,
            last_dispatches: (0, 0),
            cfg,
        })
    }

    pub fn num_codebooks(&self) -> usize {
        self.n_q as usize
    }

    pub fn frame_size(&self) -> usize {
        self.cfg.frame_size()
    }

    /// Start a new stream (all conv states, partial sums and KV caches).
    pub fn reset(&mut self) {
        self.reset_encoder();
        self.reset_decoder();
    }

    pub fn reset_encoder(&mut self) {
        self.encoder.reset();
        self.encoder_transformer.reset();
        self.downsample.reset();
        self.rvq_encoder.reset();
    }

    pub fn reset_decoder(&mut self) {
        self.rvq_decoder.reset();
        self.upsample.reset();
        self.decoder_transformer.reset();
        self.decoder.reset();
    }

    /// The input of [`Mimi::record_encode`]: `[frame_size]` f32.
    pub fn pcm_in(&self) -> &GpuBuffer {
        &self.pcm_in
    }

    /// The output of [`Mimi::record_encode`]: the frame's codes, `[n_q]` u32.
    pub fn codes(&self) -> &GpuBuffer {
        self.rvq_encoder.output()
    }

    /// The input of [`Mimi::record_decode`]: `[n_q]` u32 codes.
    pub fn codes_in(&self) -> &GpuBuffer {
        &self.codes_in
    }

    /// The output of [`Mimi::record_decode`]: `[frame_size]` f32 samples.
    pub fn pcm_out(&self) -> &GpuBuffer {
        self.decoder.output()
    }

    /// Keep copies of the codec transformers' inputs (`enc_seanet`, `dec_upsampled`) for
    /// [`Mimi::debug_read`] from the next frame on: two buffers and a copy per call (tests).
    pub fn keep_intermediates(&mut self, ctx: &Context) -> crate::Result<()> {
        let bytes = self.encoder.output().size();
        let buffer = |label| ctx.create_buffer(label, bytes, BufferUsage::Storage);
        self.taps = Some(Taps {
            enc_seanet: buffer("enc seanet tap")?,
            dec_upsampled: buffer("dec upsampled tap")?,
        });
        Ok(())
    }

    /// Record the encoding of the frame in [`Mimi::pcm_in`] into [`Mimi::codes`].
    pub fn record_encode(&mut self, rec: &mut Recorder) -> crate::Result<()> {
        self.encoder.record(rec, &self.pcm_in)?;
        if let Some(taps) = &self.taps {
            rec.copy(self.encoder.output().view(), taps.enc_seanet.view());
        }
        self.encoder_transformer
            .record(rec, self.encoder.output())?;
        self.downsample
            .record(rec, self.encoder_transformer.output())?;
        self.rvq_encoder.record(rec, self.downsample.output())
    }

    /// Record the decoding of the codes in [`Mimi::codes_in`] into [`Mimi::pcm_out`].
    pub fn record_decode(&mut self, rec: &mut Recorder) -> crate::Result<()> {
        self.rvq_decoder.record(rec, &self.codes_in)?;
        self.upsample.record(rec, self.rvq_decoder.output())?;
        if let Some(taps) = &self.taps {
            rec.copy(self.upsample.output().view(), taps.dec_upsampled.view());
        }
        self.decoder_transformer
            .record(rec, self.upsample.output())?;
        self.decoder.record(rec, self.decoder_transformer.output())
    }

    /// Encode one frame (exactly `frame_size` samples) and read its codes back.
    pub async fn encode_frame(&mut self, ctx: &Context, pcm: &[f32]) -> crate::Result<Vec<u32>> {
        if pcm.len() != self.frame_size() {
            return Err(GpuError::Launch {
                kernel: "mimi encode",
                message: format!(
                    "a frame has {} samples, got {}",
                    self.frame_size(),
                    pcm.len()
                ),
            }
            .into());
        }
        ctx.write(&self.pcm_in, 0, bytemuck::cast_slice(pcm));
        let mut rec = Recorder::new(ctx, "mimi encode");
        self.record_encode(&mut rec)?;
        self.last_dispatches.0 = rec.dispatch_count();
        let slot = self
            .codes_readback
            .record(&mut rec, self.rvq_encoder.output(), 0);
        rec.submit()?;
        let bytes = self.codes_readback.read(ctx, slot).await?;
        ctx.check()?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Decode one frame of `n_q` codes into `frame_size` samples.
    pub async fn decode_frame(&mut self, ctx: &Context, codes: &[u32]) -> crate::Result<Vec<f32>> {
        if codes.len() != self.n_q as usize {
            return Err(GpuError::Launch {
                kernel: "mimi decode",
                message: format!("expected {} codes, got {}", self.n_q, codes.len()),
            }
            .into());
        }
        if let Some(&bad) = codes
            .iter()
            .find(|&&c| c as usize >= self.cfg.quantizer.bins)
        {
            return Err(GpuError::Launch {
                kernel: "mimi decode",
                message: format!("code {bad} is out of range 0..{}", self.cfg.quantizer.bins),
            }
            .into());
        }
        ctx.write(&self.codes_in, 0, bytemuck::cast_slice(codes));
        let mut rec = Recorder::new(ctx, "mimi decode");
        self.record_decode(&mut rec)?;
        self.last_dispatches.1 = rec.dispatch_count();
        let slot = self.pcm_readback.record(&mut rec, self.decoder.output(), 0);
        rec.submit()?;
        let bytes = self.pcm_readback.read(ctx, slot).await?;
        ctx.check()?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Read back an intermediate for debugging and tests, channel-major `[channels, steps]`
    /// (the `[steps, D]` rows around the codec transformers are transposed here).
    /// `enc_seanet` and `dec_upsampled` need [`Mimi::keep_intermediates`] before the frame.
    pub async fn debug_read(&self, ctx: &Context, what: &str) -> crate::Result<Vec<f32>> {
        let tap = |pick: fn(&Taps) -> &GpuBuffer| {
            self.taps.as_ref().map(pick).ok_or_else(|| {
                GpuError::Readback(format!(
                    "{what} is overwritten in place by the codec transformer: call keep_intermediates before the frame"
                ))
            })
        };
        let b = match what {
            "enc_seanet" => tap(|t| &t.enc_seanet)?,
            "enc_transformer" => self.encoder_transformer.output(),
            "latent" => self.downsample.output(),
            "quantized" => self.rvq_decoder.output(),
            "dec_upsampled" => tap(|t| &t.dec_upsampled)?,
            "dec_transformer" => self.decoder_transformer.output(),
            "rvq_first_in" | "rvq_rest_in" => self.rvq_encoder.projected(),
            _ => return Err(GpuError::Readback(format!("unknown intermediate {what}")).into()),
        };
        let v = ctx.read_f32(b).await?;
        // The projected latents are stacked `[first; rest]`.
        let qd = self.cfg.quantizer.dimension;
        match what {
            "rvq_first_in" => return Ok(v[..qd].to_vec()),
            "rvq_rest_in" => return Ok(v[qd..2 * qd].to_vec()),
            _ => {}
        }
        if !matches!(
            what,
            "enc_seanet" | "enc_transformer" | "dec_upsampled" | "dec_transformer"
        ) {
            return Ok(v);
        }
        let d = self.cfg.transformer.d_model;
        let t = v.len() / d.max(1);
        Ok((0..d * t).map(|i| v[(i % t) * d + i / t]).collect())
    }
}
