//! Every WGSL kernel against its plain Rust reference, natively (lavapipe in CI).
//! Set `PARLE_FORCE_F32=1` / `PARLE_NO_SUBGROUPS=1` to test the fallback paths.
#![cfg(not(target_arch = "wasm32"))]

mod cases;
mod common;

use common::{run_cases, Size};
use parle::gpu::{Context, Options};

fn context() -> Context {
    let ctx = pollster::block_on(Context::new(&Options::from_env()))
        .expect("no GPU adapter for the kernel tests");
    println!("{}", ctx.caps().report().replace('\n', "\n  "));
    ctx
}

fn run_family(name: &str) {
    let ctx = context();
    let (_, cases) = cases::all()
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("unknown family");
    if let Err(e) = pollster::block_on(run_cases(&ctx, name, cases, Size::Full)) {
        panic!("{e}");
    }
}

macro_rules! family_tests {
    ($($f:ident),* $(,)?) => { $( #[test] fn $f() { run_family(stringify!($f)); } )* };
}

family_tests!(
    elementwise,
    linear,
    norm,
    rope,
    attention,
    softmax,
    conv,
    embed,
    rvq,
    sampling,
    sample_embed,
    fused,
    fused_qkv,
    mlp_split,
    res_linear
);

/// Every family is listed above exactly once.
#[test]
fn all_families_have_tests() {
    let listed: &[&str] = &[
        "elementwise",
        "linear",
        "norm",
        "rope",
        "attention",
        "softmax",
        "conv",
        "embed",
        "rvq",
        "sampling",
        "sample_embed",
        "fused",
        "fused_qkv",
        "mlp_split",
        "res_linear",
    ];
    let all: Vec<&str> = cases::all().iter().map(|(n, _)| *n).collect();
    assert_eq!(all, listed);
}
