use parle::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use parle::kernels::embed::{self, reference, EmbedTable, Stream};
use parle::weights::{table_bytes, table_piece, LinearTensor, WeightFormat};

use crate::cases;
use crate::common::{assert_close, gpu, log, CaseResult, Rng, Size};

cases!(
    every_format_gathers_exact_f32,
    mixed_formats_one_launch,
    moshi_17_streams_bf16,
    f32_many_streams_accumulate,
    no_streams_and_tiny_dim,
    bad_arguments
);

/// A reproducible bf16 value for element `i` of the virtual concatenated table: sign and 7
/// mantissa bits random, magnitude in [2^-7, 2).
fn bf16_bits(i: u64) -> u16 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    z = (z ^ (z >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 32;
    let sign = (z & 1) as u16;
    let exp = 120 + ((z >> 1) % 8) as u16;
    let mant = ((z >> 8) & 0x7f) as u16;
    sign << 15 | exp << 7 | mant
}

/// A `[rows, dim]` table in `format`, quantized from random values the way the published
/// checkpoints were (ggml's Q8_0, MLX's affine and bitsandbytes' int8 quantizers); Q8_0 tables get
/// a subnormal f16 scale in their second block.
pub(crate) fn table(format: WeightFormat, rows: usize, dim: usize, seed: u64) -> LinearTensor {
    let mut rng = Rng::new(seed);
    let w = rng.vec(rows * dim, 1.5);
    let t = LinearTensor::F32(w)
        .quantized(Some(format), dim)
        .expect("quantize");
    match t {
        LinearTensor::Q8_0(mut b) if b.len() > 34 => {
            b[34..36].copy_from_slice(&0x0003u16.to_le_bytes()); // 3 · 2^-24
            LinearTensor::Q8_0(b)
        }
        t => t,
    }
}

/// Pieces (rows `first .. first + n` of `tables[t]`) packed one after the other, as the LM's
/// loader does: the words to upload and each piece's base word.
pub(crate) fn pack(
    tables: &[LinearTensor],
    pieces: &[(usize, u32, u32)],
    dim: u32,
) -> (Vec<u32>, Vec<u32>) {
    let mut words = Vec::new();
    let mut bases = Vec::new();
    for &(t, first, n) in pieces {
        bases.push(words.len() as u32);
        let p = table_piece(&tables[t], dim, first, n).expect("piece");
        assert_eq!(
            p.len() as u64 * 4,
            table_bytes(tables[t].format(), n, dim),
            "table_bytes is the piece's size"
        );
        words.extend(p);
    }
    (words, bases)
}

/// Bit-for-bit equality (±0 equal).
pub(crate) fn exact(what: &str, got: &[f32], want: &[f32]) -> CaseResult {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.to_bits() != w.to_bits() && !(*g == 0.0 && *w == 0.0) {
            return Err(format!(
                "{what}: element {i} is {g:e} ({:#010x}), the CPU's dequantization {w:e} ({:#010x})",
                g.to_bits(),
                w.to_bits()
            ));
        }
    }
    Ok(())
}

async fn run(
    ctx: &Context,
    words: &[u32],
    dim: u32,
    tokens: &[u32],
    streams: &[Stream],
    init: Option<&[f32]>,
) -> Result<Vec<f32>, String> {
    let tb = gpu(ctx.upload("table", words))?;
    let kb = gpu(ctx.upload("tokens", tokens))?;
    let ob = gpu(ctx.upload("out", init.unwrap_or(&vec![f32::NAN; dim as usize])))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(embed::embed_sum(
        &mut rec,
        &EmbedTable {
            view: tb.view(),
            dim,
        },
        kb.view(),
        streams,
        ob.view(),
        init.is_some(),
    ))?;
    gpu(rec.submit())?;
    gpu(ctx.read_f32(&ob).await)
}

/// Every table format the published checkpoints use (and MLX q8 g32, q4 g64), at odd row counts, each
/// gathered alone: every row equals the CPU's f32 dequantization (`LinearTensor::to_f32`, the
/// values the reference tools compute) bit for bit. Q8_0 at width 96 (3 blocks per row: a row's
/// scales straddle words), a table split into two pieces at an odd row, bf16 at an odd width.
async fn every_format_gathers_exact_f32(ctx: &Context, _size: Size) -> CaseResult {
    let cases: [(WeightFormat, usize, u32); 7] = [
        (WeightFormat::F32, 13, 67),
        (WeightFormat::Bf16, 13, 67),
        (WeightFormat::Q8_0, 13, 96),
        (WeightFormat::MLX_Q4, 13, 96),
        (WeightFormat::Affine { bits: 8, group: 32 }, 13, 96),
        (WeightFormat::Affine { bits: 4, group: 64 }, 11, 192),
        (WeightFormat::MLX_Q8, 11, 192),
    ];
    for (ci, &(format, rows, dim)) in cases.iter().enumerate() {
        let t = table(format, rows, dim as usize, 100 + ci as u64);
        let values = t.to_f32();
        // Rows 0..7 and 7..rows as two pieces of one buffer.
        let (words, bases) = pack(
            std::slice::from_ref(&t),
            &[(0, 0, 7), (0, 7, rows as u32 - 7)],
            dim,
        );
        for id in 0..rows as u32 {
            let (piece, first) = if id < 7 { (0, 0) } else { (1, 7) };
            let s = Stream {
                token: 0,
                format,
                base: bases[piece],
                first_id: first,
                rows: if piece == 0 { 7 } else { rows as u32 - 7 },
            };
            let got = run(ctx, &words, dim, &[id], &[s], None).await?;
            let d = dim as usize;
            exact(
                &format!("{} row {id}", format.name()),
                &got,
                &values[id as usize * d..(id as usize + 1) * d],
            )?;
        }
    }
    Ok(())
}

/// Tables of five formats in one buffer, summed by one launch (plus the zero token and an id
/// outside its table), onto an accumulator: within f32 summation error of the f64 sum of the CPU's
/// dequantized rows.
async fn mixed_formats_one_launch(ctx: &Context, _size: Size) -> CaseResult {
    let dim = 96u32;
    let formats = [
        WeightFormat::Q8_0,
        WeightFormat::MLX_Q4,
        WeightFormat::Bf16,
        WeightFormat::Affine { bits: 8, group: 32 },
        WeightFormat::F32,
        WeightFormat::MLX_Q4,
    ];
    let rows = [21u32, 9, 17, 5, 33, 3];
    let tables: Vec<LinearTensor> = formats
        .iter()
        .zip(rows)
        .enumerate()
        .map(|(i, (&f, r))| table(f, r as usize, dim as usize, 200 + i as u64))
        .collect();
    let pieces: Vec<(usize, u32, u32)> = rows.iter().enumerate().map(|(i, &r)| (i, 0, r)).collect();
    let (words, bases) = pack(&tables, &pieces, dim);
    let tokens = [20u32, 8, 0, u32::MAX, 31, 3]; // stream 3: −1, stream 5: past its 3 rows
    let streams: Vec<Stream> = (0..formats.len())
        .map(|i| Stream::new(i as u32, formats[i], bases[i], rows[i]))
        .collect();
    let mut rng = Rng::new(7);
    let init = rng.vec(dim as usize, 2.0);
    let got = run(ctx, &words, dim, &tokens, &streams, Some(&init)).await?;
    let values: Vec<Vec<f32>> = tables.iter().map(|t| t.to_f32()).collect();
    let refs: Vec<&[f32]> = values.iter().map(|v| v.as_slice()).collect();
    let want = reference::embed_sum(&refs, dim as usize, &tokens, &streams, Some(&init));
    assert_close("mixed formats", &got, &want, 2e-6, 2e-6)
}

/// The 17 Moshi streams `[text, moshi_cb0..7, user_cb0..7]` (bf16; text 32001 rows, audio 2049
/// rows each at full size), packed into buffers of at most the device's binding size, so that the
/// text table (and some audio tables) are split across buffers by rows and summed with
/// accumulating launches, reading ids from a token ring with per-stream delays.
async fn moshi_17_streams_bf16(ctx: &Context, size: Size) -> CaseResult {
    let (text_rows, audio_rows, dim, max_bytes) = match size {
        Size::Small => (101u32, 33u32, 64u32, 300 * 128),
        Size::Full => {
            let caps = ctx.caps();
            (
                32001,
                2049,
                4096u32,
                caps.max_storage_binding.min(caps.max_buffer_size),
            )
        }
    };
    let n_streams = 17usize;
    let table_rows: Vec<u32> = (0..n_streams)
        .map(|s| if s == 0 { text_rows } else { audio_rows })
        .collect();
    let table_start: Vec<u64> = table_rows
        .iter()
        .scan(0u64, |acc, &r| {
            let s = *acc;
            *acc += r as u64;
            Some(s)
        })
        .collect();

    // Token ring: 3 frames of 17 ids after 5 unrelated words; stream s reads frame (2 - delay_s).
    let ring_base = 5u32;
    let mut rng = Rng::new(11);
    let mut tokens: Vec<u32> = (0..ring_base + 3 * 17).map(|_| rng.below(7)).collect();
    let mut stream_token = Vec::new();
    for (s, &rows) in table_rows.iter().enumerate() {
        let delay = if s == 0 || s == 1 || s == 9 { 0 } else { 1 };
        let idx = ring_base + (2 - delay) * 17 + s as u32;
        stream_token.push(idx);
        tokens[idx as usize] = rng.below(rows);
    }
    tokens[stream_token[0] as usize] = text_rows - 1; // text BOS (32000): last row of the text table
    tokens[stream_token[1] as usize] = audio_rows - 1; // audio BOS (2048): last row
    tokens[stream_token[4] as usize] = 0; // first row of a table
    tokens[stream_token[6] as usize] = u32::MAX; // -1: zero vector
    tokens[stream_token[12] as usize] = 0;
    let tok_buf = gpu(ctx.upload("tokens", &tokens))?;

    // Fill buffers of at most `max_bytes`, splitting tables by rows where they do not fit.
    let f = WeightFormat::Bf16;
    let mut buffers: Vec<(GpuBuffer, Vec<Stream>)> = Vec::new();
    let mut words: Vec<u32> = Vec::new();
    let mut streams = Vec::new();
    for s in 0..n_streams {
        let mut first = 0u32;
        while first < table_rows[s] {
            let room = max_bytes - 4 * words.len() as u64;
            // The most rows that fit (table_bytes grows with the rows).
            let (mut n, mut hi) = (0u32, table_rows[s] - first);
            while n < hi {
                let mid = n + (hi - n).div_ceil(2);
                if table_bytes(f, mid, dim) <= room {
                    n = mid;
                } else {
                    hi = mid - 1;
                }
            }
            if n == 0 {
                buffers.push((
                    gpu(ctx.upload("table", &words))?,
                    std::mem::take(&mut streams),
                ));
                words.clear();
                continue;
            }
            let e0 = (table_start[s] + first as u64) * dim as u64;
            let bytes: Vec<u8> = (0..n as u64 * dim as u64)
                .flat_map(|e| bf16_bits(e0 + e).to_le_bytes())
                .collect();
            streams.push(Stream {
                token: stream_token[s],
                format: f,
                base: words.len() as u32,
                first_id: first,
                rows: n,
            });
            words.extend(
                table_piece(&LinearTensor::Bf16(bytes), dim, 0, n).map_err(|e| e.to_string())?,
            );
            first += n;
        }
    }
    buffers.push((gpu(ctx.upload("table", &words))?, streams));
    drop(words);
    if size == Size::Full {
        log(&format!(
            "  embed: 17 streams, dim {dim}, bf16 in {} buffers",
            buffers.len()
        ));
    }
    let out = gpu(ctx.upload("out", &vec![f32::NAN; dim as usize]))?;
    let mut rec = Recorder::new(ctx, "test");
    for (i, (buf, streams)) in buffers.iter().enumerate() {
        gpu(embed::embed_sum(
            &mut rec,
            &EmbedTable {
                view: buf.view(),
                dim,
            },
            tok_buf.view(),
            streams,
            out.view(),
            i > 0,
        ))?;
    }
    // One launch per buffer: the 17 streams fit one parameter block.
    if rec.dispatch_count() as usize != buffers.len() {
        return Err(format!(
            "17 streams in {} buffers took {} launches",
            buffers.len(),
            rec.dispatch_count()
        ));
    }
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&out).await)?;

    // Expected, straight from the generator: Σ over streams with an in-range id.
    let mut want = vec![0f64; dim as usize];
    for s in 0..n_streams {
        let id = tokens[stream_token[s] as usize];
        if id >= table_rows[s] {
            continue;
        }
        let row = table_start[s] + id as u64;
        for (d, w) in want.iter_mut().enumerate() {
            *w += f32::from_bits((bf16_bits(row * dim as u64 + d as u64) as u32) << 16) as f64;
        }
    }
    let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
    assert_close("embed 17 streams bf16", &got, &want, 1e-5, 1e-5)
}

/// f32 tables with an odd dim, 39 streams (more than one launch holds), accumulation onto
/// existing values, the zero token, an out-of-range id, and a table split by rows.
async fn f32_many_streams_accumulate(ctx: &Context, size: Size) -> CaseResult {
    let (dim, vocab) = match size {
        Size::Small => (67usize, 40u32),
        Size::Full => (1027, 300),
    };
    let n_streams = 39usize;
    let mut rng = Rng::new(21);
    let tables: Vec<LinearTensor> = (0..n_streams)
        .map(|_| LinearTensor::F32(rng.vec(vocab as usize * dim, 1.0)))
        .collect();
    let mut tokens: Vec<u32> = (0..n_streams + 3).map(|_| rng.below(vocab)).collect();
    tokens[3] = u32::MAX;
    tokens[7] = vocab + 5; // out of range for its table: zero
    tokens[10] = vocab - 1;
    tokens[11] = 0;
    // Stream 20's table split at id 17 into two pieces.
    let mut pieces: Vec<(usize, u32, u32)> = (0..n_streams).map(|s| (s, 0, vocab)).collect();
    pieces[20] = (20, 0, 17);
    pieces.push((20, 17, vocab - 17));
    let (words, bases) = pack(&tables, &pieces, dim as u32);
    let streams: Vec<Stream> = pieces
        .iter()
        .zip(&bases)
        .map(|(&(t, first, n), &base)| Stream {
            token: t as u32 + 3,
            format: WeightFormat::F32,
            base,
            first_id: first,
            rows: n,
        })
        .collect();
    tokens[20 + 3] = 30; // in the second half
    let values: Vec<Vec<f32>> = pieces
        .iter()
        .map(|&(t, first, n)| {
            let v = tables[t].to_f32();
            v[first as usize * dim..(first + n) as usize * dim].to_vec()
        })
        .collect();
    let refs: Vec<&[f32]> = values.iter().map(|v| v.as_slice()).collect();
    let init = rng.vec(dim, 3.0);
    let (tb, kb, ob) = (
        gpu(ctx.upload("table", &words))?,
        gpu(ctx.upload("tokens", &tokens))?,
        gpu(ctx.upload("out", &init))?,
    );
    let launch = |accumulate: bool| -> Result<Recorder, String> {
        let mut rec = Recorder::new(ctx, "test");
        gpu(embed::embed_sum(
            &mut rec,
            &EmbedTable {
                view: tb.view(),
                dim: dim as u32,
            },
            kb.view(),
            &streams,
            ob.view(),
            accumulate,
        ))?;
        Ok(rec)
    };
    let rec = launch(true)?;
    if rec.dispatch_count() != 2 {
        return Err(format!(
            "40 streams took {} launches, want 2",
            rec.dispatch_count()
        ));
    }
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&ob).await)?;
    let want = reference::embed_sum(&refs, dim, &tokens, &streams, Some(&init));
    assert_close("embed f32 accumulate", &got, &want, 1e-5, 1e-5)?;

    // The same without accumulation overwrites whatever was there.
    gpu(launch(false)?.submit())?;
    let got = gpu(ctx.read_f32(&ob).await)?;
    let want = reference::embed_sum(&refs, dim, &tokens, &streams, None);
    assert_close("embed f32 store", &got, &want, 1e-5, 1e-5)
}

/// dim 2 bf16 (one word per row), a single stream, and no streams at all (store zeroes, or
/// leave an accumulator unchanged); out longer than dim keeps its tail.
async fn no_streams_and_tiny_dim(ctx: &Context, _size: Size) -> CaseResult {
    let bits: Vec<u16> = vec![0x3f80, 0xc000, 0x4040, 0x3f00, 0x0000, 0x8000]; // 1,-2,3,.5,0,-0
    let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    let words = gpu(table_piece(&LinearTensor::Bf16(bytes), 2, 0, 3))?;
    let tokens = vec![9u32, 1];
    let (tb, kb) = (
        gpu(ctx.upload("table", &words))?,
        gpu(ctx.upload("tokens", &tokens))?,
    );
    let ob = gpu(ctx.upload("out", &[7f32, 7.0, 7.0]))?;
    let table = EmbedTable {
        view: tb.view(),
        dim: 2,
    };
    let cases: [(&str, Vec<Stream>, bool, [f32; 3]); 3] = [
        (
            "one bf16 stream",
            vec![Stream::new(1, WeightFormat::Bf16, 0, 3)],
            false,
            [3.0, 0.5, 7.0],
        ),
        ("no streams, accumulate", vec![], true, [3.0, 0.5, 7.0]),
        ("no streams, store", vec![], false, [0.0, 0.0, 7.0]),
    ];
    for (what, streams, accumulate, want) in cases {
        let mut rec = Recorder::new(ctx, "test");
        gpu(embed::embed_sum(
            &mut rec,
            &table,
            kb.view(),
            &streams,
            ob.view(),
            accumulate,
        ))?;
        gpu(rec.submit())?;
        let got = gpu(ctx.read_f32(&ob).await)?;
        assert_close(what, &got, &want, 0.0, 0.0)?;
    }
    Ok(())
}

async fn bad_arguments(ctx: &Context, _size: Size) -> CaseResult {
    let t = gpu(ctx.create_buffer("t", 4 * 256, BufferUsage::Storage))?;
    let k = gpu(ctx.create_buffer("k", 8, BufferUsage::Storage))?;
    let o = gpu(ctx.create_buffer("o", 4 * 64, BufferUsage::Storage))?;
    let try_launch = |dim: u32, streams: &[Stream]| {
        let mut rec = Recorder::new(ctx, "test");
        embed::embed_sum(
            &mut rec,
            &EmbedTable {
                view: t.view(),
                dim,
            },
            k.view(),
            streams,
            o.view(),
            false,
        )
    };
    let f32s = WeightFormat::F32;
    let checks: [(&str, u32, Vec<Stream>); 10] = [
        ("dim 0", 0, vec![]),
        ("out too small", 65, vec![]),
        ("rows past the table", 8, vec![Stream::new(0, f32s, 64, 25)]),
        ("unaligned base", 8, vec![Stream::new(0, f32s, 8, 1)]),
        (
            "token outside the view",
            8,
            vec![Stream::new(2, f32s, 0, 1)],
        ),
        (
            "Q8_0 width not a multiple of 32",
            48,
            vec![Stream::new(0, WeightFormat::Q8_0, 0, 1)],
        ),
        (
            "MLX group not dividing the width",
            32,
            vec![Stream::new(0, WeightFormat::MLX_Q8, 0, 1)],
        ),
        (
            "MLX 2-bit",
            64,
            vec![Stream::new(
                0,
                WeightFormat::Affine { bits: 2, group: 64 },
                0,
                1,
            )],
        ),
        (
            "int8 rows",
            64,
            vec![Stream::new(0, WeightFormat::Int8Row, 0, 1)],
        ),
        (
            "ids reaching -1",
            8,
            vec![Stream {
                first_id: u32::MAX - 1,
                ..Stream::new(0, f32s, 0, 1)
            }],
        ),
    ];
    for (what, dim, streams) in checks {
        if try_launch(dim, &streams).is_ok() {
            return Err(format!("{what}: launch accepted"));
        }
    }
    // The largest valid launches are accepted: 24 f32 rows of 8 after a 64-word piece, and one
    // MLX q4 table of 3 rows of 64 (24 data words padded to 64, 6 scale words, padded to 128).
    try_launch(8, &[Stream::new(1, f32s, 64, 24)]).map_err(|e| e.to_string())?;
    try_launch(64, &[Stream::new(1, WeightFormat::MLX_Q4, 0, 3)]).map_err(|e| e.to_string())
}
