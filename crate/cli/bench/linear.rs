//! `linear` at the LM's shapes, batch 1: the temporal transformer's FFN in (4096 → 2·11264) and
//! out (11264 → 4096), the text head (4096 → 32000), each in bf16, Q8_0 and MLX q4; and a
//! depformer-sized f32 in-projection (1024 → 3072). Then the fused forms a Moshi layer uses
//! ([`linear::linear_with`]): RMSNorm → qkv (4096 → 12288) next to the plain qkv, and the
//! SiLU-gated FFN out (11264 → 4096) accumulating into the residual; and Mimi's LayerNorm →
//! in_proj (512 → 1536, M = 2) and GELU → linear2 with the layer scale (2048 → 512, M = 2), f32.
//! Bytes = weight streams + x (+ norm weight) + y (read and written when accumulating).
//! Weights are zero-filled buffers of the right size (the timing does not depend on values);
//! weights over the storage-binding limit are split into parts as the loader would.

use anyhow::Result;
use parle::gpu::{BufferUsage, Context};
use parle::kernels::linear::{self, LinearInput, LinearOpts, LinearOutput, LinearWeights};
use parle::weights::WeightFormat;

use super::{buf, Case};

/// A zero-filled weight of `rows × k`, split into parts under the binding limit.
fn weight(ctx: &Context, f: WeightFormat, rows: u32, k: u32) -> Result<LinearWeights> {
    let max = ctx.caps().max_storage_binding;
    let per_row = 4 * f.data_words(1, k);
    let max_rows = ((max / per_row) as u32 / 4 * 4).max(4);
    let mut parts = Vec::new();
    let mut r0 = 0;
    while r0 < rows {
        let r = max_rows.min(rows - r0);
        let data = ctx.create_buffer("w", 4 * f.data_words(r, k), BufferUsage::Storage)?;
        let scales = match f.scale_words(r, k) {
            0 => None,
            n => Some(ctx.create_buffer("s", 4 * n, BufferUsage::Storage)?),
        };
        parts.push((r, data, scales));
        r0 += r;
    }
    Ok(LinearWeights::from_parts(f, k, parts)?)
}

fn parts_note(w: &LinearWeights) -> String {
    match w.part_count() {
        1 => String::new(),
        n => format!(", {n} parts"),
    }
}

/// The fused variants timed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fused {
    Plain,
    RmsNorm,
    SiluAccumulate,
    LayerNorm,
    GeluScaled,
}

pub fn cases(ctx: &Context) -> Result<Vec<Case>> {
    let x = buf(ctx, "x", 2 * 11264)?;
    let y = buf(ctx, "y", 32000)?;
    let vecs = buf(ctx, "norm weight / bias / scale", 4096)?;
    let mut v = Vec::new();
    let shapes: [(u32, u32, &str); 3] = [
        (4096, 22528, "FFN in"),
        (11264, 4096, "FFN out"),
        (4096, 32000, "text head"),
    ];
    let mut list: Vec<(WeightFormat, u32, u32, u32, &str, Fused)> = Vec::new();
    let lm = [WeightFormat::Bf16, WeightFormat::Q8_0, WeightFormat::MLX_Q4];
    for (k, n, what) in shapes {
        for f in lm {
            list.push((f, k, n, 1, what, Fused::Plain));
        }
    }
    list.push((
        WeightFormat::F32,
        1024,
        3072,
        1,
        "depformer in_proj",
        Fused::Plain,
    ));
    for f in lm {
        list.push((f, 4096, 12288, 1, "qkv", Fused::Plain));
        list.push((f, 4096, 12288, 1, "qkv", Fused::RmsNorm));
        list.push((f, 11264, 4096, 1, "FFN out", Fused::SiluAccumulate));
    }
    let mimi = [
        (512, 1536, "Mimi in_proj", Fused::Plain),
        (512, 1536, "Mimi in_proj", Fused::LayerNorm),
        (512, 1536, "Mimi in_proj", Fused::RmsNorm),
        (2048, 512, "Mimi linear2", Fused::Plain),
        (2048, 512, "Mimi linear2", Fused::GeluScaled),
    ];
    for (k, n, what, fused) in mimi {
        list.push((WeightFormat::F32, k, n, 2, what, fused));
    }
    for (f, k, n, m, what, fused) in list {
        let w = weight(ctx, f, n, k)?;
        let (mk, mn) = (m as u64 * k as u64, m as u64 * n as u64);
        let (label, io_floats) = match fused {
            Fused::Plain => ("", mk + mn),
            Fused::RmsNorm => (", RMSNorm fused", mk + k as u64 + mn),
            Fused::SiluAccumulate => (", SiLU gate fused, y +=", 2 * mk + 2 * mn),
            Fused::LayerNorm => (", LayerNorm fused", mk + 2 * k as u64 + mn),
            Fused::GeluScaled => (", GELU fused, y += scale ⊙", mk + n as u64 + 2 * mn),
        };
        let bytes = w.bytes() + 4 * io_floats;
        let name = format!(
            "linear {} {k}→{n} M={m} ({what}{label}{})",
            f.name(),
            parts_note(&w)
        );
        let (x1, y1, s1) = (x.clone(), y.clone(), vecs.clone());
        v.push(Case::new(name, bytes, move |r| {
            let s = s1.view();
            let input = match fused {
                Fused::RmsNorm => LinearInput::RmsNorm {
                    weight: s,
                    eps: 1e-8,
                },
                Fused::SiluAccumulate => LinearInput::SiluGate,
                Fused::LayerNorm => LinearInput::LayerNorm {
                    weight: s,
                    bias: s,
                    eps: 1e-5,
                },
                Fused::GeluScaled => LinearInput::GeluErf,
                Fused::Plain => LinearInput::Plain,
            };
            let out = match fused {
                Fused::SiluAccumulate => LinearOutput::Accumulate,
                Fused::GeluScaled => LinearOutput::AccumulateScaled { scale: s },
                _ => LinearOutput::Store,
            };
            let opts = LinearOpts {
                bias: None,
                input,
                out,
            };
            linear::linear_with(r, &w, x1.view(), y1.view(), m, &opts)
        }));
    }
    Ok(v)
}
