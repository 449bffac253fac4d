use parle::gpu::{BufferUsage, Context, GpuBuffer, Recorder};
use parle::kernels::embed::{self, reference, EmbedTable, Stream, TableFormat};

use crate::cases;
use crate::common::{assert_close, gpu, log, CaseResult, Rng, Size};

cases!(
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

/// The 17 Moshi streams `[text, moshi_cb0..7, user_cb0..7]` over tables concatenated in that
/// order (text 32001 rows, audio 2049 rows each), cut into buffers of at most the device's
/// binding size, so that the text table (and some audio tables) are split across buffers by rows
/// and summed with accumulating launches, reading ids from a token ring with per-stream delays.
async fn moshi_17_streams_bf16(ctx: &Context, size: Size) -> CaseResult {
    let (text_rows, audio_rows, dim, max_rows) = match size {
        Size::Small => (101u32, 33u32, 64u32, 300u64),
        Size::Full => {
            // dim 4096 (Moshi's d_model); buffers as large as the device binds.
            let dim = 4096u32;
            let caps = ctx.caps();
            let max_rows = caps.max_storage_binding.min(caps.max_buffer_size) / (dim as u64 * 2);
            (32001, 2049, dim, max_rows)
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
    let total_rows: u64 = table_rows.iter().map(|&r| r as u64).sum();

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

    // Cut the concatenated rows into buffers of at most `max_rows` rows.
    let words_per_row = dim as u64 / 2;
    let out = gpu(ctx.upload("out", &vec![f32::NAN; dim as usize]))?;
    let mut buffers: Vec<(GpuBuffer, Vec<Stream>)> = Vec::new();
    let mut g0 = 0u64;
    while g0 < total_rows {
        let g1 = (g0 + max_rows).min(total_rows);
        let mut words = Vec::with_capacity(((g1 - g0) * words_per_row) as usize);
        let e0 = g0 * dim as u64;
        for w in 0..(g1 - g0) * words_per_row {
            let e = e0 + 2 * w;
            words.push(bf16_bits(e) as u32 | (bf16_bits(e + 1) as u32) << 16);
        }
        let buf = gpu(ctx.upload("table", &words))?;
        drop(words);
        let mut streams = Vec::new();
        for s in 0..n_streams {
            let (t0, t1) = (table_start[s], table_start[s] + table_rows[s] as u64);
            let (a, b) = (g0.max(t0), g1.min(t1));
            if a < b {
                streams.push(Stream {
                    token: stream_token[s],
                    row_offset: (a - g0) as u32,
                    first_id: (a - t0) as u32,
                    rows: (b - a) as u32,
                });
            }
        }
        buffers.push((buf, streams));
        g0 = g1;
    }
    if size == Size::Full {
        log(&format!(
            "  embed: 17 streams, dim {dim}, {total_rows} bf16 rows in {} buffers",
            buffers.len()
        ));
    }
    let mut rec = Recorder::new(ctx, "test");
    for (i, (buf, streams)) in buffers.iter().enumerate() {
        gpu(embed::embed_sum(
            &mut rec,
            &EmbedTable {
                view: buf.view(),
                format: TableFormat::Bf16,
                dim,
            },
            tok_buf.view(),
            streams,
            out.view(),
            i > 0,
        ))?;
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
            *w += reference::bf16_to_f32(bf16_bits(row * dim as u64 + d as u64)) as f64;
        }
    }
    let want: Vec<f32> = want.into_iter().map(|v| v as f32).collect();
    assert_close("embed 17 streams bf16", &got, &want, 1e-5, 1e-5)
}

/// f32 table with an odd dim, 25 streams (more than one launch holds), accumulation onto
/// existing values, the zero token, an out-of-range id, and a table split by rows.
async fn f32_many_streams_accumulate(ctx: &Context, size: Size) -> CaseResult {
    let (dim, vocab) = match size {
        Size::Small => (67usize, 40u32),
        Size::Full => (1027, 300),
    };
    let n_streams = 25usize;
    let mut rng = Rng::new(21);
    let table_rows = n_streams as u32 * vocab;
    let table = rng.vec(table_rows as usize * dim, 1.0);
    let mut tokens: Vec<u32> = (0..n_streams + 3).map(|_| rng.below(vocab)).collect();
    tokens[3] = u32::MAX;
    tokens[7] = vocab + 5; // out of range for its table: zero
    tokens[10] = vocab - 1;
    tokens[11] = 0;
    let mut streams: Vec<Stream> = (0..n_streams)
        .map(|s| Stream::new(s as u32 + 3, s as u32 * vocab, vocab))
        .collect();
    // Stream 20's table split at id 17: two descriptors over the same rows, each covering half.
    let s20 = streams[20];
    streams[20] = Stream { rows: 17, ..s20 };
    streams.push(Stream {
        token: s20.token,
        row_offset: s20.row_offset + 17,
        first_id: 17,
        rows: vocab - 17,
    });
    tokens[20 + 3] = 30; // in the second half
    let init = rng.vec(dim, 3.0);
    let (tb, kb, ob) = (
        gpu(ctx.upload("table", &table))?,
        gpu(ctx.upload("tokens", &tokens))?,
        gpu(ctx.upload("out", &init))?,
    );
    let mut rec = Recorder::new(ctx, "test");
    gpu(embed::embed_sum(
        &mut rec,
        &EmbedTable {
            view: tb.view(),
            format: TableFormat::F32,
            dim: dim as u32,
        },
        kb.view(),
        &streams,
        ob.view(),
        true,
    ))?;
    if rec.dispatch_count() != 2 {
        return Err(format!(
            "26 streams took {} launches, want 2",
            rec.dispatch_count()
        ));
    }
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&ob).await)?;
    let want = reference::embed_sum(
        reference::Table::F32(&table),
        dim,
        &tokens,
        &streams,
        Some(&init),
    );
    assert_close("embed f32 accumulate", &got, &want, 1e-5, 1e-5)?;

    // The same without accumulation overwrites whatever was there.
    let mut rec = Recorder::new(ctx, "test");
    gpu(embed::embed_sum(
        &mut rec,
        &EmbedTable {
            view: tb.view(),
            format: TableFormat::F32,
            dim: dim as u32,
        },
        kb.view(),
        &streams,
        ob.view(),
        false,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&ob).await)?;
    let want = reference::embed_sum(reference::Table::F32(&table), dim, &tokens, &streams, None);
    assert_close("embed f32 store", &got, &want, 1e-5, 1e-5)
}

/// dim 2 bf16 (one word per row), a single stream, and no streams at all (store zeroes, or
/// leave an accumulator unchanged); out longer than dim keeps its tail.
async fn no_streams_and_tiny_dim(ctx: &Context, _size: Size) -> CaseResult {
    let bits: Vec<u16> = vec![0x3f80, 0xc000, 0x4040, 0x3f00, 0x0000, 0x8000]; // 1,-2,3,.5,0,-0
    let table = reference::pack_bf16(&bits);
    let tokens = vec![9u32, 1];
    let (tb, kb) = (
        gpu(ctx.upload("table", &table))?,
        gpu(ctx.upload("tokens", &tokens))?,
    );
    let ob = gpu(ctx.upload("out", &[7f32, 7.0, 7.0]))?;
    let mut rec = Recorder::new(ctx, "test");
    gpu(embed::embed_sum(
        &mut rec,
        &EmbedTable {
            view: tb.view(),
            format: TableFormat::Bf16,
            dim: 2,
        },
        kb.view(),
        &[Stream::new(1, 0, 3)],
        ob.view(),
        false,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&ob).await)?;
    assert_close("one bf16 stream", &got, &[3.0, 0.5, 7.0], 0.0, 0.0)?;

    let mut rec = Recorder::new(ctx, "test");
    gpu(embed::embed_sum(
        &mut rec,
        &EmbedTable {
            view: tb.view(),
            format: TableFormat::Bf16,
            dim: 2,
        },
        kb.view(),
        &[],
        ob.view(),
        true,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&ob).await)?;
    assert_close("no streams, accumulate", &got, &[3.0, 0.5, 7.0], 0.0, 0.0)?;

    let mut rec = Recorder::new(ctx, "test");
    gpu(embed::embed_sum(
        &mut rec,
        &EmbedTable {
            view: tb.view(),
            format: TableFormat::Bf16,
            dim: 2,
        },
        kb.view(),
        &[],
        ob.view(),
        false,
    ))?;
    gpu(rec.submit())?;
    let got = gpu(ctx.read_f32(&ob).await)?;
    assert_close("no streams, store", &got, &[0.0, 0.0, 7.0], 0.0, 0.0)
}

async fn bad_arguments(ctx: &Context, _size: Size) -> CaseResult {
    let t = gpu(ctx.create_buffer("t", 4 * 64, BufferUsage::Storage))?;
    let k = gpu(ctx.create_buffer("k", 8, BufferUsage::Storage))?;
    let o = gpu(ctx.create_buffer("o", 4 * 8, BufferUsage::Storage))?;
    let try_launch = |fmt: TableFormat, dim: u32, streams: &[Stream]| {
        let mut rec = Recorder::new(ctx, "test");
        embed::embed_sum(
            &mut rec,
            &EmbedTable {
                view: t.view(),
                format: fmt,
                dim,
            },
            k.view(),
            streams,
            o.view(),
            false,
        )
    };
    let checks: [(&str, TableFormat, u32, Vec<Stream>); 6] = [
        ("odd bf16 dim", TableFormat::Bf16, 3, vec![]),
        ("dim 0", TableFormat::F32, 0, vec![]),
        ("out too small", TableFormat::F32, 9, vec![]),
        (
            "rows past the table",
            TableFormat::F32,
            8,
            vec![Stream::new(0, 5, 4)],
        ),
        (
            "token outside the view",
            TableFormat::F32,
            8,
            vec![Stream::new(2, 0, 1)],
        ),
        (
            "ids reaching -1",
            TableFormat::F32,
            8,
            vec![Stream {
                token: 0,
                row_offset: 0,
                first_id: u32::MAX - 1,
                rows: 1,
            }],
        ),
    ];
    for (what, fmt, dim, streams) in checks {
        if try_launch(fmt, dim, &streams).is_ok() {
            return Err(format!("{what}: launch accepted"));
        }
    }
    // The largest valid launch is accepted.
    try_launch(TableFormat::Bf16, 8, &[Stream::new(1, 0, 16)]).map_err(|e| e.to_string())
}
