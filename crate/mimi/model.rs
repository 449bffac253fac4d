//! The streaming Mimi model on the GPU: one call encodes one 1920-sample frame into `n_q` codes,
//! or decodes one frame of codes into 1920 samples. All conv, conv-transpose and KV state stays
//! on the GPU between calls; `reset()` starts a new stream.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use crate::gpu::{BufferUsage, Context, FrameReadback, GpuBuffer, GpuError, Recorder};
use crate::kernels::conv::{Conv1d, ConvTr1d, PadMode};
use crate::kernels::rvq::{
    self, Codebooks, CodesLayout, CodesView, EncodeScratch, Frames, IoLayout,
};
#[cfg(not(target_arch = "wasm32"))]
use crate::weights::SafetensorsFile;
use crate::weights::{TensorSource, WeightsError};

use super::config::MimiConfig;
use super::transformer::Transformer;
use crate::nn::conv::{ConvLayer, ConvTrLayer, ResBlock, ResBlockShape};

/// Encoder stage: ResBlock at `c` channels, then ELU + strided conv to `2c`.
struct EncStage {
    res: ResBlock,
    down: ConvLayer,
    out: GpuBuffer,
}

/// Decoder stage: ELU + transposed conv `c → c/2`, then ResBlock.
struct DecStage {
    up: ConvTrLayer,
    res: ResBlock,
    out: GpuBuffer,
}

/// Streaming Mimi on the GPU.
pub struct Mimi {
    pub cfg: MimiConfig,
    n_q: u32,
    // Encoder.
    pcm_in: GpuBuffer,
    enc_in: ConvLayer,
    enc_in_out: GpuBuffer,
    enc_stages: Vec<EncStage>,
    enc_final: ConvLayer,
    enc_seanet: GpuBuffer,
    enc_tr: Transformer,
    enc_tr_out: GpuBuffer,
    downsample: ConvLayer,
    latent: GpuBuffer,
    proj_first: ConvLayer,
    proj_rest: ConvLayer,
    rvq_first_in: GpuBuffer,
    rvq_rest_in: GpuBuffer,
    codebooks_first: GpuBuffer,
    codebooks_rest: GpuBuffer,
    rvq_residual: GpuBuffer,
    rvq_parts: GpuBuffer,
    /// Codes of the last encoded frame: `[n_q]` u32.
    pub codes: GpuBuffer,
    // Decoder.
    /// Codes to decode: `[n_q]` u32.
    pub codes_in: GpuBuffer,
    q_first: GpuBuffer,
    q_rest: GpuBuffer,
    out_first: ConvLayer,
    out_rest: ConvLayer,
    quantized: GpuBuffer,
    upsample: ConvTrLayer,
    dec_up: GpuBuffer,
    dec_tr: Transformer,
    dec_tr_out: GpuBuffer,
    dec_in: ConvLayer,
    dec_in_out: GpuBuffer,
    dec_stages: Vec<DecStage>,
    dec_final: ConvLayer,
    /// Decoded samples of the last decoded frame: `[frame_size]` f32.
    pub pcm_out: GpuBuffer,
    codes_readback: FrameReadback,
    pcm_readback: FrameReadback,
    /// Kernel launches recorded by the last encode and decode.
    pub last_dispatches: (u32, u32),
}

/// Codes of one frame, level `l` at element `offset + l`.
fn codes_at(offset: u32) -> CodesLayout {
    CodesLayout {
        offset,
        level_stride: 1,
        t_stride: 1,
    }
}

fn fbuf(ctx: &Context, label: &str, floats: u32) -> crate::Result<GpuBuffer> {
    Ok(ctx.create_buffer(label, floats as u64 * 4, BufferUsage::Storage)?)
}

fn load_codebooks(
    ctx: &Context,
    f: &dyn TensorSource,
    rvq: &str,
    levels: u32,
    bins: usize,
    dim: usize,
) -> crate::Result<GpuBuffer> {
    let mut all = Vec::with_capacity(levels as usize * bins * dim);
    for l in 0..levels {
        let p = format!("quantizer.{rvq}.vq.layers.{l}._codebook");
        let sum = f.f32(&format!("{p}.embedding_sum"), &[bins, dim])?;
        let usage = f.f32(&format!("{p}.cluster_usage"), &[bins])?;
        for (j, row) in sum.chunks(dim).enumerate() {
            let u = usage[j].max(1e-5);
            all.extend(row.iter().map(|v| v / u));
        }
    }
    Ok(ctx.upload(&format!("{rvq} codebooks"), &all)?)
}

impl Mimi {
    #[cfg(not(target_arch = "wasm32"))]
    /// Load a model directory: `config.json` (optional, `"mimi"` key) and the weights file
    /// (`model.safetensors`, or the published `tokenizer-e351c8d8-checkpoint125.safetensors`).
    pub fn load_dir(ctx: &Context, dir: &Path, n_q: Option<usize>) -> crate::Result<Self> {
        // Only a missing config.json means the published Mimi; an unreadable or malformed one is
        // an error that names it.
        let path = dir.join("config.json");
        let cfg = match std::fs::read_to_string(&path) {
            Ok(text) => MimiConfig::from_json(&text).map_err(|e| {
                WeightsError::Config(format!("{}: {}", path.display(), e).replace("config: ", ""))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MimiConfig::default(),
            Err(e) => {
                return Err(WeightsError::Io {
                    file: path.display().to_string(),
                    message: e.to_string(),
                }
                .into())
            }
        };
        let candidates = [
            "model.safetensors",
            "tokenizer-e351c8d8-checkpoint125.safetensors",
            "mimi.safetensors",
        ];
        let path = candidates
            .iter()
            .map(|c| dir.join(c))
            .find(|p| p.exists())
            .ok_or_else(|| WeightsError::Io {
                file: dir.display().to_string(),
                message: format!("no Mimi weights found (looked for {candidates:?})"),
            })?;
        let f = SafetensorsFile::open(&path)?;
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
        let s = &cfg.seanet;
        let nf = s.n_filters as u32;
        let d = s.dimension as u32;
        let frame = cfg.frame_size() as u32;
        let steps = cfg.downsample_stride() as u32; // 25 Hz steps per frame
        let ratios: Vec<u32> = s.ratios.iter().map(|&r| r as u32).collect();
        let n = ratios.len();

        // --- Encoder ---
        let enc_in = ConvLayer::load(
            ctx,
            f,
            "encoder.model.0.conv.conv",
            Conv1d::new(1, nf, s.kernel_size as u32),
            true,
            frame,
        )?;
        let enc_in_out = fbuf(ctx, "enc in out", nf * frame)?;
        let res_shape = |channels: u32, frames: u32| ResBlockShape {
            channels,
            compress: cfg.seanet.compress as u32,
            kernel: cfg.seanet.residual_kernel_size as u32,
            frames,
        };
        let mut enc_stages = Vec::new();
        let (mut c, mut t) = (nf, frame);
        for (i, &r) in ratios.iter().rev().enumerate() {
            let res = ResBlock::load(
                ctx,
                f,
                &format!("encoder.model.{}", 1 + 3 * i),
                res_shape(c, t),
            )?;
            let down = ConvLayer::load(
                ctx,
                f,
                &format!("encoder.model.{}.conv.conv", 3 + 3 * i),
                Conv1d::new(c, 2 * c, 2 * r).stride(r),
                true,
                t,
            )?;
            let out = fbuf(ctx, "enc stage out", 2 * c * (t / r))?;
            enc_stages.push(EncStage { res, down, out });
            c *= 2;
            t /= r;
        }
        if t != steps {
            return Err(WeightsError::Config(format!(
                "SEANet gives {t} steps per frame, expected {steps}"
            ))
            .into());
        }
        let enc_final = ConvLayer::load(
            ctx,
            f,
            &format!("encoder.model.{}.conv.conv", 3 * n + 2),
            Conv1d::new(c, d, s.last_kernel_size as u32),
            true,
            t,
        )?;
        let enc_seanet = fbuf(ctx, "enc seanet", d * t)?;
        let enc_tr = Transformer::load(ctx, f, "encoder_transformer", &cfg.transformer, t)?;
        let enc_tr_out = fbuf(ctx, "enc tr out", d * t)?;
        let downsample = ConvLayer::load(
            ctx,
            f,
            "downsample.conv.conv.conv",
            Conv1d::new(d, d, 2 * steps)
                .stride(steps)
                .pad_mode(PadMode::Replicate),
            false,
            t,
        )?;
        let latent = fbuf(ctx, "latent", d)?;

        // --- Quantizer ---
        let q = &cfg.quantizer;
        let qd = q.dimension as u32;
        let proj_first = ConvLayer::load(
            ctx,
            f,
            "quantizer.rvq_first.input_proj",
            Conv1d::new(d, qd, 1),
            false,
            1,
        )?;
        let proj_rest = ConvLayer::load(
            ctx,
            f,
            "quantizer.rvq_rest.input_proj",
            Conv1d::new(d, qd, 1),
            false,
            1,
        )?;
        let codebooks_first = load_codebooks(ctx, f, "rvq_first", 1, q.bins, q.dimension)?;
        let codebooks_rest =
            load_codebooks(ctx, f, "rvq_rest", n_q as u32 - 1, q.bins, q.dimension)?;
        let out_first = ConvLayer::load(
            ctx,
            f,
            "quantizer.rvq_first.output_proj",
            Conv1d::new(qd, d, 1),
            false,
            1,
        )?;
        let out_rest = ConvLayer::load(
            ctx,
            f,
            "quantizer.rvq_rest.output_proj",
            Conv1d::new(qd, d, 1),
            false,
            1,
        )?;

        // --- Decoder ---
        let upsample = ConvTrLayer::load(
            ctx,
            f,
            "upsample.convtr.convtr.convtr",
            ConvTr1d::new(d, d, 2 * steps, steps).groups(d),
            false,
            1,
        )?;
        let dec_tr = Transformer::load(ctx, f, "decoder_transformer", &cfg.transformer, steps)?;
        let mut c = nf << n;
        let mut t = steps;
        let dec_in = ConvLayer::load(
            ctx,
            f,
            "decoder.model.0.conv.conv",
            Conv1d::new(d, c, s.kernel_size as u32),
            true,
            t,
        )?;
        let dec_in_out = fbuf(ctx, "dec in out", c * t)?;
        let mut dec_stages = Vec::new();
        for (i, &r) in ratios.iter().enumerate() {
            let up = ConvTrLayer::load(
                ctx,
                f,
                &format!("decoder.model.{}.convtr.convtr", 2 + 3 * i),
                ConvTr1d::new(c, c / 2, 2 * r, r),
                true,
                t,
            )?;
            c /= 2;
            t *= r;
            let res = ResBlock::load(
                ctx,
                f,
                &format!("decoder.model.{}", 3 + 3 * i),
                res_shape(c, t),
            )?;
            let out = fbuf(ctx, "dec stage out", c * t)?;
            dec_stages.push(DecStage { up, res, out });
        }
        let dec_final = ConvLayer::load(
            ctx,
            f,
            &format!("decoder.model.{}.conv.conv", 3 * n + 2),
            Conv1d::new(c, 1, s.last_kernel_size as u32),
            true,
            t,
        )?;

        let u32buf =
            |label: &str, n: u32| ctx.create_buffer(label, n as u64 * 4, BufferUsage::Storage);
        Ok(Self {
            n_q: n_q as u32,
            pcm_in: fbuf(ctx, "pcm in", frame)?,
            enc_in,
            enc_in_out,
            enc_stages,
            enc_final,
            enc_seanet,
            enc_tr,
            enc_tr_out,
            downsample,
            latent,
            proj_first,
            proj_rest,
            rvq_first_in: fbuf(ctx, "rvq first in", qd)?,
            rvq_rest_in: fbuf(ctx, "rvq rest in", qd)?,
            codebooks_first,
            codebooks_rest,
            rvq_residual: ctx.create_buffer(
                "rvq residual",
                rvq::residual_bytes(1, qd),
                BufferUsage::Storage,
            )?,
            rvq_parts: ctx.create_buffer(
                "rvq parts",
                rvq::parts_bytes(1, q.bins as u32),
                BufferUsage::Storage,
            )?,
            codes: u32buf("codes", n_q as u32)?,
            codes_in: u32buf("codes in", n_q as u32)?,
            q_first: fbuf(ctx, "q first", qd)?,
            q_rest: fbuf(ctx, "q rest", qd)?,
            out_first,
            out_rest,
            quantized: fbuf(ctx, "quantized", d)?,
            upsample,
            dec_up: fbuf(ctx, "dec up", d * steps)?,
            dec_tr,
            dec_tr_out: fbuf(ctx, "dec tr out", d * steps)?,
            dec_in,
            dec_in_out,
            dec_stages,
            dec_final,
            pcm_out: fbuf(ctx, "pcm out", frame)?,
            codes_readback: FrameReadback::new(ctx, "codes", n_q as u64 * 4)?,
            pcm_readback: FrameReadback::new(ctx, "pcm", frame as u64 * 4)?,
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
        self.enc_in.reset();
        for s in &mut self.enc_stages {
            s.res.reset();
            s.down.reset();
        }
        self.enc_final.reset();
        self.enc_tr.reset();
        self.downsample.reset();
        self.proj_first.reset();
        self.proj_rest.reset();
    }

    pub fn reset_decoder(&mut self) {
        self.out_first.reset();
        self.out_rest.reset();
        self.upsample.reset();
        self.dec_tr.reset();
        self.dec_in.reset();
        for s in &mut self.dec_stages {
            s.up.reset();
            s.res.reset();
        }
        self.dec_final.reset();
    }

    /// The input buffer for [`Mimi::record_encode`]: `[frame_size]` f32.
    pub fn pcm_in(&self) -> &GpuBuffer {
        &self.pcm_in
    }

    /// The semantic and acoustic codebooks, and the quantizer's `[1, dim]` input/output layout.
    fn quantizer_views(&self) -> (Codebooks<'_>, Codebooks<'_>, IoLayout) {
        let q = &self.cfg.quantizer;
        let (dim, bins) = (q.dimension as u32, q.bins as u32);
        let first = Codebooks {
            view: self.codebooks_first.view(),
            levels: 1,
            bins,
            dim,
        };
        let rest = Codebooks {
            view: self.codebooks_rest.view(),
            levels: self.n_q - 1,
            bins,
            dim,
        };
        (first, rest, IoLayout::time_major(dim))
    }

    /// Record the encoding of the frame in [`Mimi::pcm_in`] into [`Mimi::codes`].
    pub fn record_encode(&mut self, rec: &mut Recorder) -> crate::Result<()> {
        self.enc_in.run(
            rec,
            self.pcm_in.view(),
            self.enc_in_out.view(),
            false,
            false,
        )?;
        let mut x = self.enc_in_out.clone();
        for s in &mut self.enc_stages {
            s.res.run(rec, &x)?;
            s.down.run(rec, x.view(), s.out.view(), true, false)?;
            x = s.out.clone();
        }
        self.enc_final
            .run(rec, x.view(), self.enc_seanet.view(), true, false)?;
        self.enc_tr
            .forward_channels(rec, &self.enc_seanet, &self.enc_tr_out)?;
        self.downsample.run(
            rec,
            self.enc_tr_out.view(),
            self.latent.view(),
            false,
            false,
        )?;
        self.proj_first.run(
            rec,
            self.latent.view(),
            self.rvq_first_in.view(),
            false,
            false,
        )?;
        self.proj_rest.run(
            rec,
            self.latent.view(),
            self.rvq_rest_in.view(),
            false,
            false,
        )?;
        let (first, rest, io) = self.quantizer_views();
        rvq::encode(
            rec,
            &first,
            1,
            Frames {
                view: self.rvq_first_in.view(),
                layout: io,
                frames: 1,
            },
            CodesView {
                view: self.codes.view(),
                layout: codes_at(0),
            },
            EncodeScratch {
                residual: self.rvq_residual.view(),
                parts: self.rvq_parts.view(),
            },
        )?;
        rvq::encode(
            rec,
            &rest,
            self.n_q - 1,
            Frames {
                view: self.rvq_rest_in.view(),
                layout: io,
                frames: 1,
            },
            CodesView {
                view: self.codes.view(),
                layout: codes_at(1),
            },
            EncodeScratch {
                residual: self.rvq_residual.view(),
                parts: self.rvq_parts.view(),
            },
        )?;
        Ok(())
    }

    /// Record the decoding of the codes in [`Mimi::codes_in`] into [`Mimi::pcm_out`].
    pub fn record_decode(&mut self, rec: &mut Recorder) -> crate::Result<()> {
        let (first, rest, io) = self.quantizer_views();
        rvq::decode(
            rec,
            &first,
            1,
            CodesView {
                view: self.codes_in.view(),
                layout: codes_at(0),
            },
            Frames {
                view: self.q_first.view(),
                layout: io,
                frames: 1,
            },
        )?;
        rvq::decode(
            rec,
            &rest,
            self.n_q - 1,
            CodesView {
                view: self.codes_in.view(),
                layout: codes_at(1),
            },
            Frames {
                view: self.q_rest.view(),
                layout: io,
                frames: 1,
            },
        )?;
        self.out_first.run(
            rec,
            self.q_first.view(),
            self.quantized.view(),
            false,
            false,
        )?;
        self.out_rest
            .run(rec, self.q_rest.view(), self.quantized.view(), false, true)?;
        self.upsample
            .run(rec, self.quantized.view(), self.dec_up.view(), false)?;
        self.dec_tr
            .forward_channels(rec, &self.dec_up, &self.dec_tr_out)?;
        self.dec_in.run(
            rec,
            self.dec_tr_out.view(),
            self.dec_in_out.view(),
            false,
            false,
        )?;
        let mut x = self.dec_in_out.clone();
        for s in &mut self.dec_stages {
            s.up.run(rec, x.view(), s.out.view(), true)?;
            s.res.run(rec, &s.out)?;
            x = s.out.clone();
        }
        self.dec_final
            .run(rec, x.view(), self.pcm_out.view(), true, false)?;
        Ok(())
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
        let slot = self.codes_readback.record(&mut rec, &self.codes, 0);
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
        let slot = self.pcm_readback.record(&mut rec, &self.pcm_out, 0);
        rec.submit()?;
        let bytes = self.pcm_readback.read(ctx, slot).await?;
        ctx.check()?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Read back an intermediate for debugging and tests.
    pub async fn debug_read(&self, ctx: &Context, what: &str) -> crate::Result<Vec<f32>> {
        let b = match what {
            "enc_seanet" => &self.enc_seanet,
            "enc_transformer" => &self.enc_tr_out,
            "latent" => &self.latent,
            "quantized" => &self.quantized,
            "dec_upsampled" => &self.dec_up,
            "dec_transformer" => &self.dec_tr_out,
            "rvq_first_in" => &self.rvq_first_in,
            "rvq_rest_in" => &self.rvq_rest_in,
            _ => return Err(GpuError::Readback(format!("unknown intermediate {what}")).into()),
        };
        Ok(ctx.read_f32(b).await?)
    }
}
