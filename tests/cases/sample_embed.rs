//! `sampling::sample_embed`: the sampler fused with the gather of the drawn token's embedding
//! row (the LM's sampling of one step and the embedding the next depformer step reads). Checked
//! against the unfused pair (`sample_rows` then `embed_sum`, bit for bit) and the CPU references
//! (`sampling::reference::sample`, the table's f32 dequantization).

use parle::gpu::{Context, Recorder};
use parle::kernels::embed::{self, EmbedTable, Stream};
use parle::kernels::sampling::{self, reference, EmbedRow, LogitRows, SampleConfig, TokenSlots};
use parle::weights::WeightFormat;

use super::embed::{exact, pack, table};
use crate::cases;
use crate::common::{gpu, CaseResult, Rng, Size};

cases!(matches_unfused_and_reference, bad_arguments);

/// Logits with a bell shape (sum of uniforms) and a few planted maxima.
fn logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.uniform() + rng.uniform() + rng.uniform()) * 3.0)
        .collect()
}

/// Every table format at odd shapes (vocabularies 2049 and 37, widths 67, 96, 192), greedy and
/// top-k draws, store and accumulate, a piece that starts at id 5 (ids below it give a zero row)
/// and sits after another table in its buffer, an output offset: the fused launch writes the
/// same token and the same bits as `sample_rows` + `embed_sum`, the token is the CPU reference's
/// draw, and the row is the CPU's dequantized table row (plus the accumulator).
async fn matches_unfused_and_reference(ctx: &Context, _size: Size) -> CaseResult {
    let cases: [(WeightFormat, u32, u32); 6] = [
        (WeightFormat::F32, 67, 2049),
        (WeightFormat::Bf16, 67, 37),
        (WeightFormat::Q8_0, 96, 2049),
        (WeightFormat::MLX_Q4, 96, 37),
        (WeightFormat::Affine { bits: 4, group: 64 }, 192, 2049),
        (WeightFormat::MLX_Q8, 192, 2049),
    ];
    let mut rng = Rng::new(91);
    for (ci, &(format, dim, vocab)) in cases.iter().enumerate() {
        let rows = vocab + 1;
        let decoy = table(format, 3, dim as usize, 300 + ci as u64);
        let t = table(format, rows as usize, dim as usize, 400 + ci as u64);
        let values = t.to_f32();
        // The decoy table, then rows 5.. of the real one as a piece with first id 5.
        let (words, bases) = pack(&[decoy, t], &[(0, 0, 3), (1, 5, rows - 5)], dim);
        let tb = gpu(ctx.upload("table", &words))?;
        for (vi, cfg) in [
            SampleConfig::greedy(),
            SampleConfig::top_k(0.9, 25, 7, 3 + ci as u32, 2),
            SampleConfig::top_k(1.3, 0, 8, 1, 5),
        ]
        .iter()
        .enumerate()
        {
            let mut lg = logits(&mut rng, vocab as usize);
            if vi == 0 && ci % 2 == 0 {
                lg[2] = 100.0; // greedy draws id 2: below the piece, a zero row
            }
            let accumulate = vi != 1;
            let offset = 3u32;
            let init = rng.vec((offset + dim) as usize, 2.0);
            let lb = gpu(ctx.upload("logits", &lg))?;
            let fused_out = gpu(ctx.upload("fused out", &init))?;
            let plain_out = gpu(ctx.upload("plain out", &init[offset as usize..]))?;
            let tokens = gpu(ctx.upload("tokens", &[0xdead_beefu32; 4]))?;
            let row = LogitRows::one(lb.view(), 0, vocab);
            let mut rec = Recorder::new(ctx, "test");
            gpu(sampling::sample_embed(
                &mut rec,
                &row,
                cfg,
                TokenSlots {
                    view: tokens.view(),
                    index: 1,
                },
                &EmbedRow {
                    table: tb.view(),
                    format,
                    base: bases[1],
                    first_id: 5,
                    rows: rows - 5,
                    dim,
                    out: fused_out.view(),
                    offset,
                    accumulate,
                },
            ))?;
            gpu(sampling::sample_rows(
                &mut rec,
                &row,
                cfg,
                TokenSlots {
                    view: tokens.view(),
                    index: 2,
                },
            ))?;
            let stream = Stream {
                token: 2,
                format,
                base: bases[1],
                first_id: 5,
                rows: rows - 5,
            };
            gpu(embed::embed_sum(
                &mut rec,
                &EmbedTable {
                    view: tb.view(),
                    dim,
                },
                tokens.view(),
                &[stream],
                plain_out.view(),
                accumulate,
            ))?;
            gpu(rec.submit())?;
            let what = format!("{} dim {dim} vocab {vocab} draw {vi}", format.name());
            let ids = gpu(ctx.read_u32(&tokens).await)?;
            if ids[0] != 0xdead_beef || ids[3] != 0xdead_beef {
                return Err(format!("{what}: wrote outside its token slot: {ids:?}"));
            }
            if ids[1] != ids[2] {
                return Err(format!("{what}: fused drew {}, unfused {}", ids[1], ids[2]));
            }
            let want_id = reference::sample(&lg, cfg, 0);
            if ids[1] != want_id {
                return Err(format!("{what}: drew {}, reference {want_id}", ids[1]));
            }
            if vi == 0 && ci % 2 == 0 && want_id != 2 {
                return Err(format!("{what}: the planted maximum was not drawn"));
            }
            let fused = gpu(ctx.read_f32(&fused_out).await)?;
            let plain = gpu(ctx.read_f32(&plain_out).await)?;
            exact(
                &format!("{what}: fused vs unfused"),
                &fused[offset as usize..],
                &plain,
            )?;
            let d = dim as usize;
            let mut want: Vec<f32> = init.clone();
            for j in 0..d {
                let v = if want_id >= 5 {
                    values[want_id as usize * d + j]
                } else {
                    0.0
                };
                let at = offset as usize + j;
                want[at] = if accumulate { init[at] + v } else { v };
            }
            exact(&format!("{what}: vs CPU"), &fused, &want)?;
        }
    }
    Ok(())
}

/// Shapes the fused launch cannot take are errors naming the cause.
async fn bad_arguments(ctx: &Context, _size: Size) -> CaseResult {
    let lb = gpu(ctx.upload("logits", &[0f32; 64]))?;
    let tb = gpu(ctx.upload("tokens", &[0u32; 4]))?;
    let tab = gpu(ctx.upload("table", &[0u32; 1024]))?;
    let out = gpu(ctx.upload("out", &[0f32; 32]))?;
    let run = |rows: u32, format: WeightFormat, base: u32, n_rows: u32, dim: u32, offset: u32| {
        let mut rec = Recorder::new(ctx, "test");
        sampling::sample_embed(
            &mut rec,
            &LogitRows {
                view: lb.view(),
                offset: 0,
                n: 16,
                row_stride: 16,
                rows,
            },
            &SampleConfig::greedy(),
            TokenSlots {
                view: tb.view(),
                index: 0,
            },
            &EmbedRow {
                table: tab.view(),
                format,
                base,
                first_id: 0,
                rows: n_rows,
                dim,
                out: out.view(),
                offset,
                accumulate: false,
            },
        )
    };
    let checks = [
        (
            "two rows",
            run(2, WeightFormat::F32, 0, 4, 32, 0),
            "one row",
        ),
        (
            "int8-row table",
            run(1, WeightFormat::Int8Row, 0, 4, 32, 0),
            "cannot be gathered",
        ),
        (
            "unaligned base",
            run(1, WeightFormat::F32, 3, 4, 32, 0),
            "multiple of",
        ),
        (
            "table past the view",
            run(1, WeightFormat::F32, 0, 40, 32, 0),
            "past the table view",
        ),
        (
            "out too small",
            run(1, WeightFormat::F32, 0, 4, 32, 1),
            "too small",
        ),
        ("dim 0", run(1, WeightFormat::F32, 0, 4, 0, 0), "width 0"),
    ];
    for (what, r, needle) in checks {
        match r {
            Ok(()) => return Err(format!("{what}: launch accepted")),
            Err(e) if !e.to_string().contains(needle) => {
                return Err(format!("{what}: message {e:?} does not say {needle:?}"))
            }
            Err(_) => {}
        }
    }
    Ok(())
}
