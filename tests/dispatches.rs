//! Kernel launches per Moshi frame, by group, at the 7B's structure: its layer, head, codebook
//! and step counts with small widths (the launch count depends on the structure, not on the
//! widths, as long as no weight is large enough to be split into parts), plus real-size Mimi,
//! random weights. The 7B itself does not fit a software adapter's memory and time.
#![cfg(not(target_arch = "wasm32"))]

use parle::gpu::{Context, Options};
use parle::session::bench::{chirp, Preset};
use parle::session::{FrameStats, Session, WeightFormat};

/// The 7B's config (`LmConfig::default`) with every width cut down; heads, layers, codebooks,
/// delays, context and the depformer's schedule kept.
const SEVEN_B_STRUCTURE: &str = r#"{
  "dim": 256, "num_heads": 32, "num_layers": 32, "hidden_scale": 4.125, "context": 3000,
  "text_card": 320, "card": 64,
  "depformer_dim": 128, "depformer_num_heads": 16, "depformer_num_layers": 6,
  "depformer_dim_feedforward": 576
}"#;

/// The most launches a frame at the 7B's structure may take: what the fusions reach today (662
/// before the fused KV write and the depformer's fused attention, 518 before the depformer's
/// stacked input projections, the sampler's fused embedding gather and the codec transformers'
/// rows read by the next conv, 501 before the input embedding's 17 streams went into one launch,
/// 500 before Mimi's attention moved into its in-projection's launch (Mimi encode 68 → 60, decode
/// 60 → 52), 484 before the convs wrote the codec transformers' rows and Mimi's semantic and
/// acoustic RVQs shared their launches (encode −4, decode −3), 477 before Mimi's and the
/// depformer's layers took 3 launches, the MLP split by hidden units and summed by the next
/// layer's in-projection (Mimi −7 per transformer call, depformer 25 → 20 per step), 423 before
/// the depformer's head read the last layer's partials itself (depformer 20 → 19 per step).
/// Issue 14's target of 450 is reached. Past position 256 the temporal attention splits its key
/// range and adds one combine per layer (32 more): [`MAX_STEADY_DISPATCHES`].
const MAX_DISPATCHES: u32 = 415;
/// The same past position 256 (455 before the depformer's head read the partials): also within
/// issue 14's 450.
const MAX_STEADY_DISPATCHES: u32 = 447;
/// Frames pushed after the first full one to get past 256 temporal keys.
const STEADY_FRAMES: usize = 260;
/// The same for the tiny fixture (236 before the first two fusions, 198 before the next three, 188
/// before the one-launch embedding, 187 before Mimi's fused attention (its codec transformers have
/// 2 layers each), 183 before the rows-out convs and shared RVQ launches, 176 before the 3-launch
/// layers: Mimi encode and decode −1 each).
/// Its depformer rows (32 floats, 128 bytes) are not a multiple of 256 bytes, so its per-step
/// inputs are not stacked on any adapter.
const MAX_TINY_DISPATCHES: u32 = 174;

fn context() -> Context {
    pollster::block_on(Context::new(&Options::from_env())).expect("no GPU adapter")
}

fn report(name: &str, f: &FrameStats) -> String {
    let l = f.lm;
    format!(
        "{name}: {} dispatches per frame = Mimi encode {} + LM {} (embedding {}, temporal {}, text head {}, depformer {} = {} per step, sampling {}) + Mimi decode {}",
        f.dispatches,
        f.mimi_encode,
        l.total(),
        l.embed,
        l.temporal,
        l.text_head,
        l.depformer,
        l.depformer / 8,
        l.sampling,
        f.mimi_decode
    )
}

/// Push frames until one runs the whole pipeline (Mimi encode, LM step, Mimi decode).
fn full_frame(ctx: &Context, session: &mut Session) -> FrameStats {
    let pcm = chirp(session.frame_size());
    for _ in 0..=session.latency_frames().max(1) {
        session.push(ctx, &pcm).expect("push");
        pollster::block_on(session.pull(ctx)).expect("pull");
    }
    session.last_frame()
}

#[test]
fn seven_b_structure_frame_dispatches() {
    let ctx = context();
    let preset = Preset::Custom {
        config: Some(SEVEN_B_STRUCTURE.into()),
        lm: true,
    };
    let mut session = preset.load(&ctx, WeightFormat::MLX_Q4).expect("load");
    let f = full_frame(&ctx, &mut session);
    let line = report("7B structure + real-size Mimi (q4)", &f);
    println!("{line}");
    check(&f, &line, MAX_DISPATCHES);
}

/// Past 256 keys the temporal attention splits its key range over several workgroups and adds
/// one combine launch per layer. Measured after 260 frames of the same LM structure with the tiny
/// fixtures' Mimi (`tests/fixtures/lm/delay1`'s, 64 bins = the structure's card; real-size Mimi
/// takes ~1.6 s per frame on lavapipe), whose launch counts do not depend on the position (its
/// window stays under its fused attention's key limit): the frame's count is real-size Mimi's,
/// measured on the first frame, plus the LM's there.
#[test]
fn seven_b_structure_steady_state_dispatches() {
    let ctx = context();
    let real = Preset::Custom {
        config: Some(SEVEN_B_STRUCTURE.into()),
        lm: true,
    };
    let mut session = real.load(&ctx, WeightFormat::MLX_Q4).expect("load");
    let f0 = full_frame(&ctx, &mut session);
    drop(session);

    let mut config: serde_json::Value = serde_json::from_str(SEVEN_B_STRUCTURE).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/lm/delay1/config.json"),
        )
        .expect("tests/fixtures/lm/delay1/config.json"),
    )
    .expect("the fixture's config.json");
    config["mimi"] = fixture["mimi"].clone();
    let small = Preset::Custom {
        config: Some(config.to_string()),
        lm: true,
    };
    let mut session = small.load(&ctx, WeightFormat::MLX_Q4).expect("load");
    let first = full_frame(&ctx, &mut session);
    assert_eq!(
        first.lm, f0.lm,
        "the LM's launches do not depend on Mimi's size"
    );
    let pcm = chirp(session.frame_size());
    for _ in 0..STEADY_FRAMES {
        session.push(&ctx, &pcm).expect("push");
        pollster::block_on(session.pull(&ctx)).expect("pull");
    }
    let lm = session.last_frame().lm;
    assert_eq!(
        lm.temporal,
        first.lm.temporal + 32,
        "past 256 keys each of the 32 temporal layers adds one combine launch"
    );
    let f = FrameStats {
        dispatches: f0.mimi_encode + lm.total() + f0.mimi_decode,
        lm,
        ..f0
    };
    let line = report(
        &format!("7B structure + real-size Mimi (q4), {STEADY_FRAMES} frames on (past 256 keys)"),
        &f,
    );
    println!("{line}");
    check(&f, &line, MAX_STEADY_DISPATCHES);
}

#[test]
fn tiny_fixture_frame_dispatches() {
    let ctx = context();
    let mut session = Preset::Tiny.load(&ctx, WeightFormat::MLX_Q4).expect("load");
    let f = full_frame(&ctx, &mut session);
    let line = report("tiny fixture (q4)", &f);
    println!("{line}");
    check(&f, &line, MAX_TINY_DISPATCHES);
}

/// The groups are all there, add up to the frame's count, and the count is within `max`.
fn check(f: &FrameStats, line: &str, max: u32) {
    assert!(
        f.mimi_encode > 0 && f.mimi_decode > 0 && f.lm.total() > 0,
        "{line}"
    );
    assert_eq!(
        f.dispatches,
        f.mimi_encode + f.lm.total() + f.mimi_decode,
        "the groups must add up: {line}"
    );
    assert!(f.dispatches <= max, "more than {max} dispatches: {line}");
}
