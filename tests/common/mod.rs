//! Shared by the native (lavapipe) and browser (Chromium WebGPU) kernel tests.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;

use parle::gpu::Context;

/// How big the test shapes are: the browser's SwiftShader runs the small ones, lavapipe also the
/// real model's odd shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Small,
    Full,
}

pub type CaseResult = Result<(), String>;
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = CaseResult> + 'a>>;
pub type CaseFn = for<'a> fn(&'a Context, Size) -> CaseFuture<'a>;

/// Declare a list of test cases from `async fn name(ctx: &Context, size: Size) -> CaseResult`.
#[macro_export]
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        pub const CASES: &[(&str, $crate::common::CaseFn)] = &[
            $((stringify!($name), |ctx, size| Box::pin($name(ctx, size)))),*
        ];
    };
}

/// Run every case, collecting failures, and return them as one message.
pub async fn run_cases(
    ctx: &Context,
    family: &str,
    cases: &[(&str, CaseFn)],
    size: Size,
) -> CaseResult {
    let mut failures = Vec::new();
    for (name, case) in cases {
        match case(ctx, size).await {
            Ok(()) => log(&format!(
                "ok   {family}::{name} on '{}'",
                ctx.caps().adapter_name
            )),
            Err(e) => {
                log(&format!("FAIL {family}::{name}: {e}"));
                failures.push(format!("{family}::{name}: {e}"));
            }
        }
        if let Err(e) = ctx.check() {
            failures.push(format!("{family}::{name}: device error {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

pub fn log(s: &str) {
    #[cfg(target_arch = "wasm32")]
    web_sys::console::log_1(&s.into());
    #[cfg(not(target_arch = "wasm32"))]
    println!("{s}");
}

/// Deterministic pseudo-random numbers (SplitMix64) so tests need no `rand`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// Compare with `|got - want| <= atol + rtol * |want|` everywhere; report the worst element.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> CaseResult {
    if got.len() < want.len() {
        return Err(format!(
            "{what}: got {} values, want {}",
            got.len(),
            want.len()
        ));
    }
    let mut worst = (0usize, 0.0f32, 0.0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let excess = err - (atol + rtol * w.abs());
        if excess > worst.1 || g.is_nan() != w.is_nan() {
            worst = (i, excess.max(f32::MIN_POSITIVE), err);
            if g.is_nan() != w.is_nan() {
                return Err(format!("{what}: element {i} is {g}, want {w}"));
            }
        }
    }
    if worst.1 > 0.0 {
        let i = worst.0;
        return Err(format!(
            "{what}: element {i} is {}, want {} (|err| {:.3e} > {atol:.1e} + {rtol:.1e}·|want|)",
            got[i], want[i], worst.2
        ));
    }
    Ok(())
}

/// Any engine result (GPU, weights) with its error as the case's message.
pub fn gpu<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}
