//! Frame profiles (`parle bench lm|mimi --profile`): the groups cover every launch of a frame
//! exactly once and agree with the frame's own counters, times are finite and non-negative where
//! the device has timestamp queries, profiling changes no count of the frame, and without
//! timestamps a profile still counts launches and bytes.
#![cfg(not(target_arch = "wasm32"))]

use parle::gpu::profile::UNLABELED;
use parle::gpu::{Context, FrameProfile, Options};
use parle::session::bench::{chirp, Preset, Workload};
use parle::session::profile::{profile_frames, MIMI_DECODE, MIMI_ENCODE};
use parle::session::{CodecSession, FrameStats, Session, WeightFormat};

fn context(timestamps: bool) -> Context {
    let opts = Options {
        timestamps,
        ..Options::from_env()
    };
    pollster::block_on(Context::new(&opts)).expect("no GPU adapter")
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

/// One profiled frame of `session` and the frame's counters.
fn profiled_frame(ctx: &Context, session: &mut Session) -> (FrameProfile, FrameStats) {
    session.set_profiling(ctx, true);
    let pcm = chirp(session.frame_size());
    session.push(ctx, &pcm).expect("push");
    pollster::block_on(session.pull(ctx)).expect("pull");
    let p = pollster::block_on(session.read_profile(ctx)).expect("read profile");
    session.set_profiling(ctx, false);
    (p, session.last_frame())
}

/// Every launch in exactly one group; each group's count equals the frame's own counter.
fn check_cover(p: &FrameProfile, f: &FrameStats, what: &str) {
    let groups = f.by_group();
    assert_eq!(
        groups.iter().map(|(_, n)| n).sum::<u32>(),
        f.dispatches,
        "{what}: the frame's counters add up"
    );
    assert_eq!(
        p.total_launches(),
        f.dispatches,
        "{what}: the profile's launches are the frame's dispatches"
    );
    for (g, n) in &groups {
        assert_eq!(p.launches(g), *n, "{what}: launches of group '{g}'");
    }
    for s in &p.segments {
        assert!(
            groups.iter().any(|(g, _)| *g == s.group),
            "{what}: launches of kernel {} in group '{}' (not a frame group; '{UNLABELED}' = recorded before any label)",
            s.kernel,
            s.group
        );
        assert!(s.launches > 0, "{what}: empty segment {s:?}");
        assert!(s.bytes_read > 0, "{what}: {s:?} reads nothing");
    }
}

/// Times exist exactly when the device has timestamps, and are finite and non-negative.
fn check_times(ctx: &Context, p: &FrameProfile, what: &str) {
    if !ctx.caps().timestamps {
        assert!(
            p.segments.iter().all(|s| s.ns.is_none()) && p.span_ns.is_none(),
            "{what}: times without timestamps"
        );
        return;
    }
    let mut sum = 0.0;
    for s in &p.segments {
        let ns = s.ns.unwrap_or_else(|| panic!("{what}: {s:?} has no time"));
        assert!(ns.is_finite() && ns >= 0.0, "{what}: {s:?}");
        sum += ns;
    }
    let span = p.span_ns.expect("a span");
    assert!(sum > 0.0, "{what}: the frame took no time");
    assert!(
        span.is_finite() && span >= sum * 0.999,
        "{what}: span {span} ns shorter than its passes' {sum} ns"
    );
}

#[test]
fn tiny_frame_profile_covers_every_launch() {
    let ctx = context(true);
    println!("{}", ctx.caps().report());
    let mut session = Preset::Tiny.load(&ctx, WeightFormat::MLX_Q4).expect("load");
    let plain = full_frame(&ctx, &mut session);
    let (p, f) = profiled_frame(&ctx, &mut session);
    println!("{f:?}");
    check_cover(&p, &f, "tiny");
    check_times(&ctx, &p, "tiny");
    // Profiling changes no count of the frame.
    assert_eq!(f, plain, "profiled frame counters vs the frame before");
    // Off again: frames keep no log.
    let pcm = chirp(session.frame_size());
    session.push(&ctx, &pcm).expect("push");
    pollster::block_on(session.pull(&ctx)).expect("pull");
    assert_eq!(session.last_frame(), plain);
    let e = pollster::block_on(session.read_profile(&ctx)).expect_err("no profiled frame");
    assert!(e.to_string().contains("no profiled frame"), "{e}");
}

#[test]
fn seven_b_structure_profile_covers_every_launch() {
    // The 7B's layer, head, codebook and step counts with small widths (as tests/dispatches.rs).
    const CONFIG: &str = r#"{
      "dim": 256, "num_heads": 32, "num_layers": 32, "hidden_scale": 4.125, "context": 3000,
      "text_card": 320, "card": 64,
      "depformer_dim": 128, "depformer_num_heads": 16, "depformer_num_layers": 6,
      "depformer_dim_feedforward": 576
    }"#;
    let ctx = context(true);
    let preset = Preset::Custom {
        config: Some(CONFIG.into()),
        lm: true,
    };
    let mut session = preset.load(&ctx, WeightFormat::MLX_Q4).expect("load");
    let plain = full_frame(&ctx, &mut session);
    let (p, f) = profiled_frame(&ctx, &mut session);
    check_cover(&p, &f, "7B structure");
    check_times(&ctx, &p, "7B structure");
    assert_eq!(f, plain);
    // The report's table: a row per group, the groups' launches the frame's.
    let report = pollster::block_on(profile_frames(&ctx, Workload::Session(&mut session), 1))
        .expect("profile_frames");
    println!("{}", report.table());
    assert_eq!(report.launches(), plain.dispatches);
    assert_eq!(report.timed, ctx.caps().timestamps);
    if report.timed {
        let copy = report.copy.expect("a copy rate where timed");
        assert!(
            copy.read_gbps.is_finite() && copy.read_gbps > 0.0,
            "{copy:?}"
        );
        assert!(report.groups().all(|r| r.ms.is_some()));
    }
}

#[test]
fn codec_profile_has_its_two_groups() {
    let ctx = context(true);
    let mut codec = CodecSession::random(&ctx, 8).expect("load");
    let enc = pollster::block_on(profile_frames(&ctx, Workload::Encode(&mut codec), 1))
        .expect("encode profile");
    let dec = pollster::block_on(profile_frames(&ctx, Workload::Decode(&mut codec), 1))
        .expect("decode profile");
    let names = |r: &parle::session::profile::ProfileReport| -> Vec<&str> {
        r.groups().map(|g| g.group).collect()
    };
    assert_eq!(names(&enc), [MIMI_ENCODE]);
    assert_eq!(names(&dec), [MIMI_DECODE]);
    assert_eq!(dec.launches(), codec.last_frame().mimi_decode);
    assert!(enc.launches() > 0);
}

#[test]
fn without_timestamps_a_profile_counts_only() {
    let ctx = context(false);
    assert!(
        !ctx.caps().timestamps,
        "timestamps are requested only for profiles"
    );
    let mut session = Preset::Tiny.load(&ctx, WeightFormat::MLX_Q4).expect("load");
    let plain = full_frame(&ctx, &mut session);
    let (p, f) = profiled_frame(&ctx, &mut session);
    check_cover(&p, &f, "untimed");
    check_times(&ctx, &p, "untimed");
    assert_eq!(f, plain);
    let report = pollster::block_on(profile_frames(&ctx, Workload::Session(&mut session), 1))
        .expect("profile_frames");
    let table = report.table();
    println!("{table}");
    assert!(!report.timed && report.copy.is_none() && report.span_ms.is_none());
    assert!(
        table.contains("launches and bytes read only"),
        "the table says that nothing was timed: {table}"
    );
}
