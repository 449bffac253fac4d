//! `linear` against an f64 CPU matmul on the host-dequantized weights, for every weight format.
//! The published layouts are built first (bf16 bytes, ggml Q8_0 blocks, MLX u32 codes + bf16
//! scales/biases, PyTorch int8 codes + f32 row absmax), dequantized on the host *from the published layout*, and converted to the GPU
//! layout with the same helpers the model loader uses, so a packing bug fails the comparison.

use parle::gpu::{Context, Recorder};
use parle::kernels::linear::{
    self, reference, LinearInput, LinearOpts, LinearOutput, LinearWeights,
};
use parle::weights::{quant, HostLinear, LinearTensor, MlxAffine, WeightFormat};

use crate::cases;
use crate::common::{gpu, log, CaseResult, Rng, Size};

cases!(
    f32_shapes,
    bf16_shapes,
    q8_0_shapes,
    q4_shapes,
    q8_affine_shapes,
    int8_row_shapes,
    affine_other_groups,
    odd_k_and_n,
    row_block_and_bias,
    split_weights,
    streamed_uploads,
    batch_tiles,
    q4_big,
    fused_inputs,
    fused_outputs,
    fused_split_parts,
    fused_model_shapes,
    published_layouts,
    bad_arguments,
    bad_fused_arguments,
);

const Q4: WeightFormat = WeightFormat::MLX_Q4;
const Q8: WeightFormat = WeightFormat::MLX_Q8;
const I8: WeightFormat = WeightFormat::Int8Row;

/// Build a `[rows, k]` weight in `format` via its published layout. Returns the GPU-layout host
/// weight and the dequantized f32 weights (from the published layout).
fn make_weight(
    format: WeightFormat,
    rows: u32,
    k: u32,
    seed: u64,
) -> Result<(HostLinear, Vec<f32>), String> {
    let mut rng = Rng::new(seed);
    // A little structure: per-row magnitudes differ, and a few large outliers.
    let mut w = Vec::with_capacity(rows as usize * k as usize);
    for r in 0..rows {
        let scale = 0.25 + (r % 7) as f32 * 0.25;
        for _ in 0..k {
            w.push(rng.uniform() * scale);
        }
    }
    for _ in 0..(w.len() / 997).max(1) {
        let i = rng.below(w.len() as u32) as usize;
        w[i] *= 6.0;
    }
    let (host, deq) = match format {
        WeightFormat::F32 => (gpu(HostLinear::from_f32(&w, rows, k))?, w.clone()),
        WeightFormat::Bf16 => {
            let bytes: Vec<u8> = w
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
                .collect();
            let deq = bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect();
            (gpu(HostLinear::from_bf16_bytes(&bytes, rows, k))?, deq)
        }
        WeightFormat::Q8_0 => {
            let blocks = gpu(quant::q8_0_quantize(&w, k))?;
            let deq = quant::q8_0_dequantize(&blocks);
            (gpu(HostLinear::from_q8_0_blocks(&blocks, rows, k))?, deq)
        }
        WeightFormat::Affine { bits, group } => {
            let q = gpu(quant::mlx_quantize(&w, k, bits, group))?;
            let deq = quant::mlx_dequantize(&q);
            let wb: Vec<u8> = bytemuck::cast_slice(&q.weight).to_vec();
            let sb: Vec<u8> = bytemuck::cast_slice(&q.scales).to_vec();
            let bb: Vec<u8> = bytemuck::cast_slice(&q.biases).to_vec();
            (
                gpu(HostLinear::from_mlx_bytes(
                    &wb, &sb, &bb, rows, k, bits, group,
                ))?,
                deq,
            )
        }
        WeightFormat::Int8Row => {
            let (codes, scb) = gpu(quant::int8_row_quantize(&w, k))?;
            let deq = quant::int8_row_dequantize(&codes, &scb, k as usize);
            (gpu(HostLinear::from_int8_row(&codes, &scb, rows, k))?, deq)
        }
    };
    // The quantized weights must still resemble the originals (catches a degenerate quantizer):
    // max |w − deq| relative to max |w|.
    let amax = w.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let worst = w
        .iter()
        .zip(&deq)
        .fold(0.0f32, |a, (x, y)| a.max((x - y).abs()))
        / amax;
    let limit = match format {
        WeightFormat::F32 => 0.0,
        WeightFormat::Bf16 => 0.004,
        WeightFormat::Q8_0 => 0.01,
        // The bf16 scale and bias of a group add up to ~2^-9 of its range to the half step.
        WeightFormat::Affine { bits: 8, .. } => 0.02,
        WeightFormat::Affine { .. } => 0.15,
        // Half a step of max|row|/127, plus the f16 rounding before quantization.
        WeightFormat::Int8Row => 0.005,
    };
    if worst > limit {
        return Err(format!(
            "{} quantization error too large: {worst} > {limit} of max |w|",
            format.name()
        ));
    }
    Ok((host, deq))
}

/// Compare with a per-output tolerance: `atol + 1e-5·|want| + 4·eps·Σ_k|x·w|` (accumulation order
/// differs from the reference; for a scaled output the sum is scaled too). A wrong code changes
/// an output by ~|s·x| ≫ that. Logs the largest error relative to that sum.
fn compare(what: &str, got: &[f32], want: &[f32], absum: &[f32]) -> CaseResult {
    if got.len() < want.len() {
        return Err(format!(
            "{what}: got {} values, want {}",
            got.len(),
            want.len()
        ));
    }
    let mut worst: Option<(usize, f32)> = None;
    for i in 0..want.len() {
        let tol = 1e-6 + 1e-5 * want[i].abs() + 4.0 * f32::EPSILON * absum[i];
        let err = (got[i] - want[i]).abs();
        if (err > tol || err.is_nan()) && worst.is_none_or(|(_, e)| err / tol > e) {
            worst = Some((i, err / tol));
        }
        WORST.with(|w| {
            let (e, r) = w.get();
            w.set((e.max(err), r.max(err / tol)));
        });
    }
    match worst {
        None => Ok(()),
        Some((i, r)) => Err(format!(
            "{what}: element {i} is {}, want {} (error {:.1}× the tolerance)",
            got[i], want[i], r
        )),
    }
}

thread_local! {
    /// The largest |error| and |error| / tolerance seen by [`compare`] since [`worst_reset`].
    static WORST: std::cell::Cell<(f32, f32)> = const { std::cell::Cell::new((0.0, 0.0)) };
}

fn worst_reset() {
    WORST.with(|w| w.set((0.0, 0.0)));
}

/// Log the largest error since [`worst_reset`].
fn worst_log(what: &str) {
    let (e, r) = WORST.with(|w| w.get());
    log(&format!(
        "     {what}: max |error| {e:.2e}, max error / tolerance {r:.3}"
    ));
}

/// Input transform of a case (the views are made by [`run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum In {
    Plain,
    Rms,
    Layer,
    Silu,
    Gelu,
}

/// Output mode of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Store,
    Acc,
    Scaled,
}

const INPUTS: [In; 5] = [In::Plain, In::Rms, In::Layer, In::Silu, In::Gelu];
const OUTPUTS: [Out; 3] = [Out::Store, Out::Acc, Out::Scaled];
const FORMATS: [WeightFormat; 6] = [
    WeightFormat::F32,
    WeightFormat::Bf16,
    WeightFormat::Q8_0,
    Q4,
    Q8,
    I8,
];

struct Case {
    format: WeightFormat,
    n: u32,
    k: u32,
    m: u32,
    /// Rows of the stored tensor (≥ row_offset + n).
    total_rows: u32,
    row_offset: u32,
    bias: bool,
    input: In,
    out: Out,
    /// Rows per weight part (`upload_split`); 0 = `upload`.
    split_rows: u32,
    /// Added to every input (LayerNorm must remove large means).
    x_offset: f32,
    seed: u64,
}

impl Case {
    fn new(format: WeightFormat, k: u32, n: u32, m: u32) -> Self {
        Self {
            format,
            n,
            k,
            m,
            total_rows: n,
            row_offset: 0,
            bias: false,
            input: In::Plain,
            out: Out::Store,
            split_rows: 0,
            x_offset: 0.0,
            seed: (k as u64) << 32 ^ (n as u64) << 8 ^ m as u64,
        }
    }
    fn fused(mut self, input: In, out: Out, bias: bool) -> Self {
        self.input = input;
        self.out = out;
        self.bias = bias;
        self.seed ^= (input as u64) << 20 ^ (out as u64) << 24 ^ (bias as u64) << 28;
        self
    }
}

async fn run(ctx: &Context, c: Case) -> CaseResult {
    let what = format!(
        "{} {}→{} M={}{}{}{}{}{}",
        c.format.name(),
        c.k,
        c.n,
        c.m,
        if c.row_offset > 0 || c.total_rows != c.n {
            format!(
                " rows {}..{} of {}",
                c.row_offset,
                c.row_offset + c.n,
                c.total_rows
            )
        } else {
            String::new()
        },
        if c.bias { " +bias" } else { "" },
        if c.input != In::Plain {
            format!(" input {:?}", c.input)
        } else {
            String::new()
        },
        if c.out != Out::Store {
            format!(" out {:?}", c.out)
        } else {
            String::new()
        },
        if c.split_rows > 0 {
            format!(" parts of {} rows", c.split_rows)
        } else {
            String::new()
        },
    );
    let (host, deq) = make_weight(c.format, c.total_rows, c.k, c.seed)?;
    let (m, n, k) = (c.m as usize, c.n as usize, c.k as usize);
    let mut rng = Rng::new(c.seed ^ 0xabc);
    let x_cols = if c.input == In::Silu { 2 * k } else { k };
    // Inputs with an offset and a spread (LayerNorm must remove the mean), ×3 for GELU/SiLU.
    let mut x = rng.vec(m * x_cols, 1.0);
    match c.input {
        In::Layer => x.iter_mut().for_each(|v| *v = *v * 2.0 + 0.75 + c.x_offset),
        In::Gelu | In::Silu => x.iter_mut().for_each(|v| *v *= 3.0),
        _ => {}
    }
    let bias = c.bias.then(|| rng.vec(n, 2.0));
    let nw = rng.vec(k, 1.5);
    let nb = rng.vec(k, 0.5);
    let scale = rng.vec(n, 0.3);
    let y0 = rng.vec(m * n, 4.0);
    let eps = match c.input {
        In::Layer => 1e-5,
        _ => 1e-8,
    };
    let how = match c.input {
        In::Plain => reference::Input::Plain,
        In::Rms => reference::Input::RmsNorm { weight: &nw, eps },
        In::Layer => reference::Input::LayerNorm {
            weight: &nw,
            bias: &nb,
            eps,
        },
        In::Silu => reference::Input::SiluGate,
        In::Gelu => reference::Input::GeluErf,
    };
    let xt = reference::input(&x, m, k, how);
    let wsel = &deq[c.row_offset as usize * k..(c.row_offset as usize + n) * k];
    let v = reference::linear(&xt, wsel, bias.as_deref(), m, n, k);
    let mut absum = reference::abs_linear(&xt, wsel, m, n, k);
    if c.input == In::Layer {
        // x − mean is rounded to f32 at the scale of |x|, not of the row's spread: that error,
        // relative to the standard deviation, goes through Σ_k |nw_k · W_nk|.
        for (r, xr) in x.chunks(k).enumerate() {
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / k as f64;
            let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / k as f64;
            let amax = xr.iter().fold(0f64, |a, &v| a.max(v.abs() as f64));
            let cond = (amax / (var + eps as f64).sqrt()) as f32;
            for j in 0..n {
                let gw: f32 = (0..k).map(|i| (nw[i] * wsel[j * k + i]).abs()).sum();
                absum[r * n + j] += cond * gw;
            }
        }
    }
    let mut want = y0.clone();
    match c.out {
        Out::Store => reference::output(&mut want, &v, n, false, None),
        Out::Acc => reference::output(&mut want, &v, n, true, None),
        Out::Scaled => {
            reference::output(&mut want, &v, n, true, Some(&scale));
            for (i, a) in absum.iter_mut().enumerate() {
                *a *= scale[i % n].abs();
            }
        }
    }

    let full = if c.split_rows > 0 {
        gpu(LinearWeights::upload_split(ctx, &host, "w", c.split_rows))?
    } else {
        gpu(LinearWeights::upload(ctx, &host, "w"))?
    };
    let w = if c.row_offset > 0 || c.total_rows != c.n {
        gpu(full.rows(c.row_offset, c.n))?
    } else {
        full
    };
    let xb = gpu(ctx.upload("x", &x))?;
    // Poison the output so unwritten elements show (the accumulating modes start from y0).
    let yb = if c.out == Out::Store {
        gpu(ctx.upload("y", &vec![f32::NAN; m * n]))?
    } else {
        gpu(ctx.upload("y", &y0))?
    };
    let bb = match &bias {
        Some(b) => Some(gpu(ctx.upload("bias", b))?),
        None => None,
    };
    let nwb = gpu(ctx.upload("norm w", &nw))?;
    let nbb = gpu(ctx.upload("norm b", &nb))?;
    let sb = gpu(ctx.upload("scale", &scale))?;
    let opts = LinearOpts {
        bias: bb.as_ref().map(|b| b.view()),
        input: match c.input {
            In::Plain => LinearInput::Plain,
            In::Rms => LinearInput::RmsNorm {
                weight: nwb.view(),
                eps,
            },
            In::Layer => LinearInput::LayerNorm {
                weight: nwb.view(),
                bias: nbb.view(),
                eps,
            },
            In::Silu => LinearInput::SiluGate,
            In::Gelu => LinearInput::GeluErf,
        },
        out: match c.out {
            Out::Store => LinearOutput::Store,
            Out::Acc => LinearOutput::Accumulate,
            Out::Scaled => LinearOutput::AccumulateScaled { scale: sb.view() },
        },
    };
    let mut rec = Recorder::new(ctx, "test");
    if c.input == In::Plain && c.out == Out::Store && c.split_rows == 0 {
        // The thin wrapper existing callers use.
        gpu(linear::linear(
            &mut rec,
            &w,
            xb.view(),
            yb.view(),
            c.m,
            opts.bias,
        ))?;
    } else {
        gpu(linear::linear_with(
            &mut rec,
            &w,
            xb.view(),
            yb.view(),
            c.m,
            &opts,
        ))?;
    }
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&yb).await)?;
    compare(&what, &got, &want, &absum)
}

/// The shared shape list of one format.
async fn shapes(ctx: &Context, size: Size, f: WeightFormat) -> CaseResult {
    let list: &[(u32, u32, u32)] = match size {
        Size::Small => &[(64, 96, 1), (64, 96, 2)],
        Size::Full => &[
            (1024, 2048, 1),
            (1024, 2048, 3),
            (512, 1536, 2),
            (64, 96, 1),
        ],
    };
    for &(k, n, m) in list {
        run(ctx, Case::new(f, k, n, m)).await?;
    }
    Ok(())
}

async fn f32_shapes(ctx: &Context, size: Size) -> CaseResult {
    shapes(ctx, size, WeightFormat::F32).await
}
async fn bf16_shapes(ctx: &Context, size: Size) -> CaseResult {
    shapes(ctx, size, WeightFormat::Bf16).await
}
async fn q8_0_shapes(ctx: &Context, size: Size) -> CaseResult {
    shapes(ctx, size, WeightFormat::Q8_0).await
}
async fn q4_shapes(ctx: &Context, size: Size) -> CaseResult {
    shapes(ctx, size, Q4).await
}
async fn q8_affine_shapes(ctx: &Context, size: Size) -> CaseResult {
    shapes(ctx, size, Q8).await
}
async fn int8_row_shapes(ctx: &Context, size: Size) -> CaseResult {
    shapes(ctx, size, I8).await
}

/// Affine q4 with group 64 and q8 with group 32 (group and bits are independent parameters).
async fn affine_other_groups(ctx: &Context, size: Size) -> CaseResult {
    let (k, n) = match size {
        Size::Small => (128, 40),
        Size::Full => (1024, 520),
    };
    for f in [
        WeightFormat::Affine { bits: 4, group: 64 },
        WeightFormat::Affine { bits: 8, group: 32 },
    ] {
        run(ctx, Case::new(f, k, n, 1)).await?;
        run(ctx, Case::new(f, k, n, 2)).await?;
    }
    Ok(())
}

/// The depformer FFN's K = 2816 (not a power of two), and N not a multiple of the 4 rows per
/// workgroup, in every format.
async fn odd_k_and_n(ctx: &Context, size: Size) -> CaseResult {
    let (k, n) = match size {
        Size::Small => (2816, 7),
        Size::Full => (2816, 1027),
    };
    for f in [
        WeightFormat::F32,
        WeightFormat::Bf16,
        WeightFormat::Q8_0,
        Q4,
        Q8,
        I8,
    ] {
        let mut c = Case::new(f, k, n, 1);
        c.bias = true;
        run(ctx, c).await?;
    }
    // Tiny N (fewer rows than one workgroup) and the smallest K of each format.
    for (f, k) in [
        (WeightFormat::F32, 4),
        (WeightFormat::Bf16, 8),
        (WeightFormat::Q8_0, 32),
        (Q4, 32),
        (Q8, 64),
        (I8, 8),
    ] {
        run(ctx, Case::new(f, k, 1, 1)).await?;
        run(ctx, Case::new(f, k, 6, 3)).await?;
    }
    Ok(())
}

/// A row block of a stacked weight (the depformer's per-step in_proj), with a bias.
async fn row_block_and_bias(ctx: &Context, size: Size) -> CaseResult {
    let (k, n, blocks) = match size {
        Size::Small => (64, 24, 3),
        Size::Full => (1024, 3072, 3),
    };
    for f in [
        WeightFormat::Bf16,
        WeightFormat::Q8_0,
        Q4,
        Q8,
        WeightFormat::F32,
        I8,
    ] {
        for (blk, m) in [(1u32, 1u32), (blocks - 1, 2)] {
            let mut c = Case::new(f, k, n, m);
            c.total_rows = n * blocks;
            c.row_offset = n * blk;
            c.bias = blk == 1;
            run(ctx, c).await?;
            if size == Size::Full && f != WeightFormat::Bf16 {
                break; // lavapipe time: the full block sweep for bf16 only
            }
        }
    }
    // An odd row block (not a multiple of 4 rows) with an odd count.
    let mut c = Case::new(Q4, 64, 13, 2);
    c.total_rows = 40;
    c.row_offset = 21;
    run(ctx, c).await
}

/// A weight split into several buffers (as for weights over the storage-binding limit): the full
/// weight, and a row block that spans three parts, with a bias and M = 3.
async fn split_weights(ctx: &Context, _size: Size) -> CaseResult {
    let (k, rows) = (96u32, 30u32);
    for f in [WeightFormat::Q8_0, WeightFormat::Bf16, Q4] {
        let k = if f == Q4 { 128 } else { k };
        let (host, deq) = make_weight(f, rows, k, 77)?;
        let w = gpu(LinearWeights::upload_split(ctx, &host, "w", 10))?; // parts of 8 rows: 8, 8, 8, 6
        if w.part_count() != 4 {
            return Err(format!("{} parts, want 4", w.part_count()));
        }
        let (m, ku) = (3usize, k as usize);
        let mut rng = Rng::new(5);
        let x = rng.vec(m * ku, 1.0);
        let bias = rng.vec(rows as usize, 1.0);
        let xb = gpu(ctx.upload("x", &x))?;
        let bb = gpu(ctx.upload("bias", &bias))?;
        for (start, count) in [(0u32, rows), (5, 20), (17, 3)] {
            let (s, c) = (start as usize, count as usize);
            let wsel = &deq[s * ku..(s + c) * ku];
            let want = reference::linear(&x, wsel, Some(&bias[..c]), m, c, ku);
            let absum = reference::abs_linear(&x, wsel, m, c, ku);
            let yb = gpu(ctx.upload("y", &vec![f32::NAN; m * c]))?;
            let mut rec = Recorder::new(ctx, "test");
            let ws = gpu(w.rows(start, count))?;
            gpu(linear::linear(
                &mut rec,
                &ws,
                xb.view(),
                yb.view(),
                m as u32,
                Some(bb.view()),
            ))?;
            gpu(rec.submit())?;
            let got = gpu(ctx.read_f32(&yb).await)?;
            compare(
                &format!("{} split, rows {start}..{}", f.name(), start + count),
                &got,
                &want,
                &absum,
            )?;
        }
    }
    Ok(())
}

/// A weight uploaded from its published layout in row chunks (`upload_tensor_split`: parts of 8
/// rows, writes of 4) gives bit for bit the outputs of the same weight repacked on the host
/// (`HostLinear`, one part), for every format; and a layout that does not match its shape is
/// refused before any buffer is written.
async fn streamed_uploads(ctx: &Context, _size: Size) -> CaseResult {
    let (rows, m) = (30u32, 3usize);
    for f in FORMATS {
        let k: u32 = if matches!(f, WeightFormat::Affine { .. }) {
            128
        } else {
            96
        };
        let ku = k as usize;
        let mut rng = Rng::new(31);
        let w = rng.vec(rows as usize * ku, 1.0);
        let t = LinearTensor::F32(w)
            .quantized(Some(f), ku)
            .map_err(|e| e.to_string())?;
        let host = t
            .clone()
            .into_host(rows as usize, ku)
            .map_err(|e| e.to_string())?;
        let whole = gpu(LinearWeights::upload(ctx, &host, "host"))?;
        let chunked = gpu(LinearWeights::upload_tensor_split(
            ctx, &t, rows, k, "stream", 10, 4,
        ))?;
        if chunked.part_count() != 4 {
            return Err(format!(
                "{}: {} parts, want 4",
                f.name(),
                chunked.part_count()
            ));
        }
        let x = rng.vec(m * ku, 1.0);
        let xb = gpu(ctx.upload("x", &x))?;
        let mut outs = Vec::new();
        for wt in [&whole, &chunked] {
            let yb = gpu(ctx.upload("y", &vec![f32::NAN; m * rows as usize]))?;
            let mut rec = Recorder::new(ctx, "test");
            gpu(linear::linear(
                &mut rec,
                wt,
                xb.view(),
                yb.view(),
                m as u32,
                None,
            ))?;
            gpu(rec.submit())?;
            outs.push(gpu(ctx.read_f32(&yb).await)?);
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        if bits(&outs[0]) != bits(&outs[1]) {
            return Err(format!(
                "{}: streamed upload differs from the host repacking: {:?} vs {:?}",
                f.name(),
                &outs[1][..4],
                &outs[0][..4]
            ));
        }
        log(&format!(
            "  {} streamed in parts of 8 rows, writes of 4: equal",
            f.name()
        ));
        match LinearWeights::upload_tensor_split(ctx, &t, rows + 4, k, "short", 10, 4) {
            Err(e) if e.to_string().contains("want") => {}
            other => {
                return Err(format!(
                    "{}: a tensor shorter than its shape: {:?}",
                    f.name(),
                    other.map(|w| w.n())
                ))
            }
        }
    }
    Ok(())
}

/// Batch tiles: M = 5..16 (tile of 8; several tiles, the last partial).
async fn batch_tiles(ctx: &Context, size: Size) -> CaseResult {
    let (k, n) = match size {
        Size::Small => (64, 36),
        Size::Full => (512, 300),
    };
    for (f, m) in [
        (WeightFormat::Bf16, 5),
        (WeightFormat::F32, 8),
        (Q4, 11),
        (WeightFormat::Q8_0, 16),
        (Q8, 19),
        (I8, 13),
    ] {
        run(ctx, Case::new(f, k, n, m)).await?;
    }
    Ok(())
}

/// The LM's FFN in-projection shape, 4096 → 11264, in q4 (one large case; lavapipe is slow).
async fn q4_big(ctx: &Context, size: Size) -> CaseResult {
    let (k, n) = match size {
        Size::Small => (256, 128),
        Size::Full => (4096, 11264),
    };
    run(ctx, Case::new(Q4, k, n, 1)).await
}

/// Every input transform with every weight format, at K not a multiple of 256 (and, for the
/// 8-row batch tile, M = 9: two tiles, the second partial); the batch sizes 1, 2, 3, 9 rotate
/// so that each input meets each of them.
async fn fused_inputs(ctx: &Context, size: Size) -> CaseResult {
    worst_reset();
    let (k, n) = match size {
        Size::Small => (320, 13),
        Size::Full => (1344, 131),
    };
    for (i, input) in INPUTS.into_iter().enumerate() {
        for (j, f) in FORMATS.into_iter().enumerate() {
            let m = [1, 2, 3, 9][(i + j) % 4];
            let c = Case::new(f, k, n, m).fused(input, Out::Store, (i + j) % 2 == 0);
            run(ctx, c).await?;
        }
    }
    worst_log("fused inputs");
    Ok(())
}

/// Every output mode with every weight format (inputs rotating, with and without bias).
async fn fused_outputs(ctx: &Context, size: Size) -> CaseResult {
    worst_reset();
    let (k, n) = match size {
        Size::Small => (192, 9),
        Size::Full => (704, 77),
    };
    for (i, out) in OUTPUTS.into_iter().enumerate() {
        for (j, f) in FORMATS.into_iter().enumerate() {
            if size == Size::Small && j % 2 == 1 {
                continue;
            }
            let m = [1, 2, 3, 9][(i + 2 * j) % 4];
            let input = INPUTS[(i + j) % INPUTS.len()];
            run(ctx, Case::new(f, k, n, m).fused(input, out, j % 2 == 1)).await?;
        }
    }
    worst_log("fused outputs");
    Ok(())
}

/// Every option on a weight split into parts (several dispatches into one output), and on a row
/// block that spans parts.
async fn fused_split_parts(ctx: &Context, _size: Size) -> CaseResult {
    worst_reset();
    for (i, input) in INPUTS.into_iter().enumerate() {
        for (j, out) in OUTPUTS.into_iter().enumerate() {
            let f = FORMATS[(i + j) % FORMATS.len()];
            let k = if f == Q8 { 192 } else { 160 };
            let mut c = Case::new(f, k, 30, [1, 2, 3, 9][(i + j) % 4]).fused(input, out, j != 1);
            c.split_rows = 10;
            if (i + j) % 2 == 1 {
                c.total_rows = 30;
                c.n = 21;
                c.row_offset = 5;
            }
            run(ctx, c).await?;
        }
    }
    worst_log("fused split parts");
    Ok(())
}

/// The LM's fused shapes: RMSNorm → qkv 4096 → 12288 and SiLU-gated FFN out 11264 → 4096 with a
/// residual add, M = 1, in bf16 and q4; Mimi's LayerNorm → in_proj 512 → 1536 and GELU →
/// linear2 2048 → 512 with the layer scale, f32, M = 2.
async fn fused_model_shapes(ctx: &Context, size: Size) -> CaseResult {
    worst_reset();
    let s = |full: u32, small: u32| if size == Size::Full { full } else { small };
    for f in [WeightFormat::Bf16, Q4] {
        run(
            ctx,
            Case::new(f, s(4096, 256), s(12288, 24), 1).fused(In::Rms, Out::Store, false),
        )
        .await?;
        run(
            ctx,
            Case::new(f, s(11264, 256), s(4096, 24), 1).fused(In::Silu, Out::Acc, false),
        )
        .await?;
    }
    let f = WeightFormat::F32;
    run(
        ctx,
        Case::new(f, s(512, 64), s(1536, 24), 2).fused(In::Layer, Out::Store, false),
    )
    .await?;
    // LayerNorm of rows whose mean is 100 standard deviations away from zero.
    let mut c = Case::new(f, s(512, 64), s(96, 24), 3).fused(In::Layer, Out::Store, true);
    c.x_offset = 100.0;
    run(ctx, c).await?;
    run(
        ctx,
        Case::new(f, s(2048, 128), s(512, 24), 2).fused(In::Gelu, Out::Scaled, false),
    )
    .await?;
    worst_log("fused model shapes");
    Ok(())
}

/// The published → GPU conversions, bit for bit, on hand-made data.
async fn published_layouts(_ctx: &Context, _size: Size) -> CaseResult {
    // bf16: elements 2i / 2i+1 in the low / high halves.
    let bytes: Vec<u8> = [1.0f32, -2.0, 0.5, 3.0, 0.0, -0.0, 1.5, 8.0]
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes())
        .collect();
    let h = gpu(HostLinear::from_bf16_bytes(&bytes, 1, 8))?;
    if h.data[0] != (0xC000u32 << 16 | 0x3F80) {
        return Err(format!("bf16 word 0 is {:#010x}", h.data[0]));
    }
    if h.dequantize() != [1.0, -2.0, 0.5, 3.0, 0.0, -0.0, 1.5, 8.0] {
        return Err(format!("bf16 dequantize gives {:?}", h.dequantize()));
    }
    // Q8_0: three blocks (odd count: the last scale word is half used).
    let mut blocks = Vec::new();
    for (b, d) in [0.5f32, -0.25, 2.0].iter().enumerate() {
        blocks.extend_from_slice(&half::f16::from_f32(*d).to_bits().to_le_bytes());
        blocks.extend((0..32).map(|j| (j as i8 - 16 + b as i8) as u8));
    }
    let h = gpu(HostLinear::from_q8_0_blocks(&blocks, 1, 96))?;
    if h.data.len() != 24 || h.scales.len() != 2 {
        return Err(format!(
            "q8_0 streams {} / {} words",
            h.data.len(),
            h.scales.len()
        ));
    }
    if h.data[0] != u32::from_le_bytes([0xF0, 0xF1, 0xF2, 0xF3]) {
        return Err(format!("q8_0 word 0 is {:#010x}", h.data[0]));
    }
    if h.scales[0] != (0xB400u32 << 16 | 0x3800) || h.scales[1] != 0x4000 {
        return Err(format!("q8_0 scales {:#010x?}", h.scales));
    }
    let want = quant::q8_0_dequantize(&blocks);
    if h.dequantize() != want || want[0] != -8.0 || want[32 + 17] != -0.5 {
        return Err("q8_0 dequantization differs".into());
    }
    // MLX q4: element 8w + j is nibble j of word w; scale | bias << 16 per group.
    let q = MlxAffine {
        bits: 4,
        group: 32,
        weight: vec![0x7654_3210, 0xFEDC_BA98, 0, 0x1000_0000],
        scales: vec![half::bf16::from_f32(0.5).to_bits()],
        biases: vec![half::bf16::from_f32(-1.0).to_bits()],
    };
    let h = gpu(HostLinear::from_mlx(&q, 1, 32))?;
    if h.scales != [0xBF80_3F00] {
        return Err(format!("mlx scale|bias word {:#010x?}", h.scales));
    }
    let d = h.dequantize();
    if d != quant::mlx_dequantize(&q)
        || d[1] != -0.5
        || d[15] != 6.5
        || d[31] != -0.5
        || d[30] != -1.0
    {
        return Err(format!("mlx q4 dequantization {d:?}"));
    }
    // MLX q8 group 64: byte j of word w is element 4w + j.
    let mut weight = vec![0u32; 16];
    weight[0] = 0x0302_01FF;
    let q = MlxAffine {
        bits: 8,
        group: 64,
        weight,
        scales: vec![half::bf16::from_f32(2.0).to_bits()],
        biases: vec![half::bf16::from_f32(0.0).to_bits()],
    };
    let d = gpu(HostLinear::from_mlx(&q, 1, 64))?.dequantize();
    if d[..5] != [510.0, 2.0, 4.0, 6.0, 0.0] {
        return Err(format!("mlx q8 dequantization {:?}", &d[..5]));
    }
    // PyTorch int8 rows: codes 4 per word in element order, the f32 scb of each row kept bit for
    // bit; w = (q·scb)·(1/127) in f32.
    let codes: Vec<u8> = [1i8, -2, 3, -127, 127, 0, -1, 64]
        .iter()
        .chain(&[-64i8, 5, 6, 7, 8, 9, 10, 11])
        .map(|&q| q as u8)
        .collect();
    let h = gpu(HostLinear::from_int8_row(&codes, &[254.0, 0.5], 2, 8))?;
    if h.data[0] != u32::from_le_bytes([1, 0xFE, 3, 0x81]) || h.data.len() != 4 {
        return Err(format!("int8 row words {:#010x?}", h.data));
    }
    if h.scales != [254.0f32.to_bits(), 0.5f32.to_bits()] {
        return Err(format!("int8 row scb words {:#010x?}", h.scales));
    }
    let d = h.dequantize();
    if d != quant::int8_row_dequantize(&codes, &[254.0, 0.5], 8)
        || d[0] != (254.0f32 * quant::INV127)
        || d[3] != (-127.0 * 254.0f32) * quant::INV127
        || d[8] != (-64.0 * 0.5f32) * quant::INV127
    {
        return Err(format!("int8 row dequantization {d:?}"));
    }
    if gpu(HostLinear::from_int8_row(&codes, &[1.0], 2, 8)).is_ok() {
        return Err("int8 row weight with one scb for two rows accepted".into());
    }
    // bitsandbytes' quantizer: the row absmax maps to ±127, ties to even (torch.round), f16 first.
    let (q, scb) = gpu(quant::int8_row_quantize(
        &[127.0, -2.5, 0.5, 1.5, -0.5, 3.25, 1.0 + 1e-4, 0.0],
        8,
    ))?;
    if scb != [127.0] || q != [127, 0xFE, 0, 2, 0, 3, 1, 0] {
        return Err(format!("int8 row quantization {q:?} {scb:?}"));
    }
    // The quantizers reproduce their own grid exactly.
    let w: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) / 8.0).collect();
    let deq = quant::q8_0_dequantize(&gpu(quant::q8_0_quantize(&w, 64))?);
    let amax = 44.0f32 / 8.0;
    if w.iter()
        .zip(&deq)
        .any(|(a, b)| (a - b).abs() > amax / 127.0)
    {
        return Err("q8_0 quantization error beyond half a step".into());
    }
    let deq = quant::mlx_dequantize(&gpu(quant::mlx_quantize(&w, 64, 4, 32))?);
    if w.iter().zip(&deq).any(|(a, b)| (a - b).abs() > 0.3) {
        return Err(format!("mlx q4 quantization too coarse: {deq:?}"));
    }
    Ok(())
}

/// Wrong shapes come back as errors, not panics or GPU faults.
async fn bad_arguments(ctx: &Context, _size: Size) -> CaseResult {
    if HostLinear::quantize(WeightFormat::Q8_0, &[0.0; 48], 1, 48).is_ok() {
        return Err("Q8_0 accepted K = 48".into());
    }
    if HostLinear::quantize(Q8, &[0.0; 96], 1, 96).is_ok() {
        return Err("q8 group 64 accepted K = 96".into());
    }
    if HostLinear::quantize(
        WeightFormat::Affine { bits: 3, group: 32 },
        &[0.0; 32],
        1,
        32,
    )
    .is_ok()
    {
        return Err("3-bit affine accepted".into());
    }
    let host = gpu(HostLinear::quantize(
        WeightFormat::Bf16,
        &[0.5; 64 * 8],
        8,
        64,
    ))?;
    let w = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    if w.rows(6, 3).is_ok() {
        return Err("row block past the end accepted".into());
    }
    // Q8_0 parts that would split a pair of f16 scales.
    let q = gpu(ctx.upload("q", &[0u32; 24]))?;
    let qs = gpu(ctx.upload("qs", &[0u32; 2]))?;
    let parts = vec![(1, q.clone(), Some(qs.clone())), (1, q, Some(qs))];
    if LinearWeights::from_parts(WeightFormat::Q8_0, 96, parts).is_ok() {
        return Err("Q8_0 part with an odd block count accepted".into());
    }
    let x = gpu(ctx.upload("x", &[0f32; 64]))?;
    let y = gpu(ctx.upload("y", &[0f32; 16]))?;
    let mut rec = Recorder::new(ctx, "test");
    if linear::linear(&mut rec, &w, x.view(), y.view(), 2, None).is_ok() {
        return Err("x of one row accepted for M = 2".into());
    }
    if linear::linear(&mut rec, &w, x.view(), y.view(), 1, Some(x.slice(0, 16))).is_ok() {
        return Err("bias of 4 values accepted for N = 8".into());
    }
    if linear::linear(&mut rec, &w, x.view(), x.slice(0, 32), 1, None).is_ok() {
        return Err("y aliasing x accepted".into());
    }
    gpu(linear::linear(&mut rec, &w, x.view(), y.view(), 1, None))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&y).await)?;
    if got[..8].iter().any(|&v| v != 0.0) {
        return Err(format!("zero x gives {:?}", &got[..8]));
    }
    Ok(())
}

/// Wrong fused options come back as errors.
async fn bad_fused_arguments(ctx: &Context, _size: Size) -> CaseResult {
    let host = gpu(HostLinear::quantize(
        WeightFormat::F32,
        &[0.5; 64 * 8],
        8,
        64,
    ))?;
    let w = gpu(LinearWeights::upload(ctx, &host, "w"))?;
    let x = gpu(ctx.upload("x", &[0f32; 128]))?;
    let y = gpu(ctx.upload("y", &[0f32; 16]))?;
    let small = gpu(ctx.upload("small", &[1f32; 4]))?;
    let vecs = gpu(ctx.upload("vecs", &[1f32; 64]))?;
    let mut rec = Recorder::new(ctx, "test");
    let mut launch = |m: u32, opts: LinearOpts| {
        linear::linear_with(&mut rec, &w, x.view(), y.view(), m, &opts).is_err()
    };
    let rms = |weight| LinearInput::RmsNorm { weight, eps: 1e-8 };
    let bad = [
        // SiLU gate needs [m, 2K]: 128 floats hold one row of 2·64, not two.
        launch(
            2,
            LinearOpts {
                input: LinearInput::SiluGate,
                ..Default::default()
            },
        ),
        // Norm weight of 4 for K = 64.
        launch(
            1,
            LinearOpts {
                input: rms(small.view()),
                ..Default::default()
            },
        ),
        // LayerNorm bias too short.
        launch(
            1,
            LinearOpts {
                input: LinearInput::LayerNorm {
                    weight: vecs.view(),
                    bias: small.view(),
                    eps: 1e-5,
                },
                ..Default::default()
            },
        ),
        // Scale of 4 for N = 8.
        launch(
            1,
            LinearOpts {
                out: LinearOutput::AccumulateScaled {
                    scale: small.view(),
                },
                ..Default::default()
            },
        ),
        // y aliasing the norm weight or the scale.
        launch(
            1,
            LinearOpts {
                input: rms(y.view()),
                ..Default::default()
            },
        ),
        launch(
            1,
            LinearOpts {
                out: LinearOutput::AccumulateScaled { scale: y.view() },
                ..Default::default()
            },
        ),
        // NaN epsilon.
        launch(
            1,
            LinearOpts {
                input: LinearInput::RmsNorm {
                    weight: vecs.view(),
                    eps: f32::NAN,
                },
                ..Default::default()
            },
        ),
    ];
    let ok = launch(
        2,
        LinearOpts {
            input: rms(vecs.view()),
            out: LinearOutput::Accumulate,
            bias: Some(vecs.view()),
        },
    );
    gpu(rec.submit())?;
    if let Some(i) = bad.iter().position(|e| !e) {
        return Err(format!("bad fused launch {i} accepted"));
    }
    if ok {
        return Err("good fused launch rejected".into());
    }
    Ok(())
}
