//! `Linear`: a weight that keeps its published format on the GPU (f32, bf16, Q8_0, MLX q4/q8),
//! an optional bias, and the one call the model code makes, whatever the format.

use crate::gpu::{BufferUsage, Context, GpuBuffer, Recorder, View};
use crate::kernels::fill::{self, FillMode};
use crate::kernels::linear::{self, LinearInput, LinearOpts, LinearOutput, LinearWeights};
use crate::weights::{HostLinear, TensorSource, WeightFormat};

/// How weights are kept on the GPU when they are loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeightOptions {
    /// Quantize (or convert) every linear weight to this format at load; `None` keeps the
    /// checkpoint's own format.
    pub quant: Option<WeightFormat>,
}

/// A linear layer `y = x·Wᵀ (+ b)` with `W` `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    w: LinearWeights,
    bias: Option<GpuBuffer>,
    /// Input features as the model names them. The weight may be zero-padded to `w.k()` (the
    /// format's K granularity); then the input must be one row whose padding stays zero.
    k: u32,
}

impl Linear {
    /// Load `name` (`[out, inp]`) from a checkpoint: in its published layout (f32, bf16, Q8_0,
    /// MLX q4/q8: [`crate::weights::linear_weight`]), or converted to `opts.quant`.
    pub fn load(
        ctx: &Context,
        src: &dyn TensorSource,
        name: &str,
        out: usize,
        inp: usize,
        opts: &WeightOptions,
    ) -> crate::Result<Self> {
        let t = crate::weights::linear_weight(src, name, out, inp)?;
        let format = opts.quant.unwrap_or(t.format());
        if format == t.format() && format.padded_k(inp as u32) == inp as u32 {
            return Self::from_host(ctx, name, &t.into_host(out, inp)?);
        }
        Self::from_f32(
            ctx,
            name,
            &t.to_f32(),
            out as u32,
            inp as u32,
            &WeightOptions {
                quant: Some(format),
            },
        )
    }

    /// Upload f32 weights `[rows, k]` in `opts.quant` (default f32), zero-padding K to the
    /// format's granularity.
    pub fn from_f32(
        ctx: &Context,
        label: &str,
        w: &[f32],
        rows: u32,
        k: u32,
        opts: &WeightOptions,
    ) -> crate::Result<Self> {
        let format = opts.quant.unwrap_or(WeightFormat::F32);
        let kp = format.padded_k(k);
        let host = if kp == k {
            HostLinear::quantize(format, w, rows, k)?
        } else {
            let mut padded = vec![0f32; rows as usize * kp as usize];
            for (dst, src) in padded.chunks_mut(kp as usize).zip(w.chunks(k as usize)) {
                dst[..k as usize].copy_from_slice(src);
            }
            HostLinear::quantize(format, &padded, rows, kp)?
        };
        Ok(Self {
            w: LinearWeights::upload(ctx, &host, label)?,
            bias: None,
            k,
        })
    }

    /// A weight already in its GPU layout.
    pub fn from_host(ctx: &Context, label: &str, host: &HostLinear) -> crate::Result<Self> {
        Ok(Self {
            w: LinearWeights::upload(ctx, host, label)?,
            bias: None,
            k: host.k,
        })
    }

    /// A `[rows, k]` weight in `format` filled with reproducible pseudo-random values on the GPU
    /// (benchmarks at the real size). Values are uniform in about ±1/√k.
    pub fn random(
        ctx: &Context,
        label: &str,
        format: WeightFormat,
        rows: u32,
        k: u32,
        seed: u32,
    ) -> crate::Result<Self> {
        let kp = format.padded_k(k);
        let max = ctx.caps().max_storage_binding;
        let per_row = 4 * format.data_words(1, kp).max(1);
        let max_rows = ((max / per_row) / 4 * 4).clamp(4, u32::MAX as u64) as u32;
        let scale = 1.0 / (k as f32).sqrt();
        let mut parts = Vec::new();
        let mut rec = Recorder::new(ctx, "random weights");
        let mut r0 = 0;
        let mut part_seed = seed;
        while r0 < rows {
            let n = max_rows.min(rows - r0);
            let data = ctx.create_buffer(
                &format!("{label} w"),
                4 * format.data_words(n, kp),
                BufferUsage::Storage,
            )?;
            let (mode, s_mode, s_scale) = match format {
                WeightFormat::F32 => (FillMode::F32, None, 0.0),
                WeightFormat::Bf16 => (FillMode::Bf16Pair, None, 0.0),
                WeightFormat::Q8_0 => (
                    FillMode::Bits,
                    Some(FillMode::F16PairPositive),
                    scale / 64.0,
                ),
                WeightFormat::Affine { bits, .. } => (
                    FillMode::Bits,
                    Some(FillMode::AffineScaleBias),
                    2.0 * scale / ((1u32 << bits) as f32),
                ),
                // w = q·scb/127 with |q| ≤ 128: |w| ≲ |scb|.
                WeightFormat::Int8Row => (FillMode::Bits, Some(FillMode::F32), scale),
            };
            fill::fill(&mut rec, data.view(), mode, part_seed, scale)?;
            let scales = match s_mode {
                Some(m) => {
                    let words = match format {
                        WeightFormat::Q8_0 => (n as u64 * kp as u64 / 32).div_ceil(2),
                        _ => format.scale_words(n, kp),
                    };
                    let s =
                        ctx.create_buffer(&format!("{label} s"), 4 * words, BufferUsage::Storage)?;
                    fill::fill(&mut rec, s.view(), m, part_seed ^ 0x5bd1_e995, s_scale)?;
                    Some(s)
                }
                None => None,
            };
            parts.push((n, data, scales));
            r0 += n;
            part_seed = part_seed.wrapping_add(0x9e37_79b9);
        }
        rec.submit()?;
        Ok(Self {
            w: LinearWeights::from_parts(format, kp, parts)?,
            bias: None,
            k,
        })
    }

    /// One linear whose outputs are those of `linears` in order (`[Σ out, in]`), its weight
    /// copied on the GPU ([`LinearWeights::stack`]): one launch computes what took one each.
    /// `None` when they cannot be stacked (a bias, different input widths or formats, a weight
    /// split into parts, a stack past the binding limit).
    pub fn stack(ctx: &Context, label: &str, linears: &[&Linear]) -> crate::Result<Option<Self>> {
        let Some(first) = linears.first() else {
            return Ok(None);
        };
        if linears.iter().any(|l| l.has_bias() || l.k != first.k) {
            return Ok(None);
        }
        let weights: Vec<&LinearWeights> = linears.iter().map(|l| &l.w).collect();
        Ok(LinearWeights::stack(ctx, label, &weights)?.map(|w| Self {
            w,
            bias: None,
            k: first.k,
        }))
    }

    /// Whether a bias is attached.
    pub fn has_bias(&self) -> bool {
        self.bias.is_some()
    }

    /// Attach a bias `[out]`.
    pub fn with_bias(mut self, bias: GpuBuffer) -> Self {
        self.bias = Some(bias);
        self
    }

    /// The GPU weight (format, shape, buffers).
    pub fn weights(&self) -> &LinearWeights {
        &self.w
    }
    pub fn out_features(&self) -> u32 {
        self.w.n()
    }
    pub fn in_features(&self) -> u32 {
        self.k
    }
    /// The K the kernel reads per input row (≥ `in_features`): activation buffers feeding this
    /// layer hold this many floats, the padding zero.
    pub fn padded_in(&self) -> u32 {
        self.w.k()
    }
    /// Weight bytes on the GPU (read once per call with one input row).
    pub fn bytes(&self) -> u64 {
        self.w.bytes()
    }

    /// Whether the weight reads exactly `in_features` per row (no zero padding), so that fused
    /// input transforms (norms, SiLU gate, GELU) can read the input as the model lays it out.
    pub fn fusable(&self) -> bool {
        self.w.k() == self.k
    }

    /// `y = out(input(x)·Wᵀ (+ b))` with the kernel's fused input transform and output mode
    /// (see [`linear::linear_with`]). Needs [`Linear::fusable`] unless both are plain.
    pub fn forward_with(
        &self,
        rec: &mut Recorder,
        x: View,
        y: View,
        m: u32,
        input: LinearInput,
        out: LinearOutput,
    ) -> crate::Result<()> {
        if !self.fusable() && !matches!(input, LinearInput::Plain) {
            return Err(crate::gpu::GpuError::Launch {
                kernel: "linear",
                message: format!(
                    "a fused input transform needs K {} unpadded (the weight reads {})",
                    self.k,
                    self.w.k()
                ),
            }
            .into());
        }
        let opts = LinearOpts {
            bias: self.bias.as_ref().map(|b| b.view()),
            input,
            out,
        };
        linear::linear_with(rec, &self.w, x, y, m, &opts)?;
        Ok(())
    }

    /// `y[m, :] = x[m, :]·Wᵀ (+ b)` for `m` rows.
    pub fn forward(&self, rec: &mut Recorder, x: View, y: View, m: u32) -> crate::Result<()> {
        if self.w.k() != self.k && m != 1 {
            return Err(crate::gpu::GpuError::Launch {
                kernel: "linear",
                message: format!(
                    "a weight with K {} padded to {} takes one input row, got {m}",
                    self.k,
                    self.w.k()
                ),
            }
            .into());
        }
        linear::linear(rec, &self.w, x, y, m, self.bias.as_ref().map(|b| b.view()))?;
        Ok(())
    }
}
