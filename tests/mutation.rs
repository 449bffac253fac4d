//! Mutation tests for every reader of untrusted bytes: each gets ≥ 100 000 damaged inputs per run
//! made from valid (and structurally damaged) seed inputs, and must answer each with `Ok` or an
//! `Err` with a message: never a panic, never a hang, never an allocation out of proportion to
//! the input.
//!
//! How each property is checked:
//! - **panics**: every parse runs under `catch_unwind`; the panic hook records the message and
//!   location instead of printing it; the run goes on and the test fails at the end listing each
//!   distinct panic with the mutation that caused it.
//! - **hangs**: a watchdog thread aborts the process, naming the mutation, if one input takes
//!   longer than [`HANG_S`]; the slowest input of each reader is printed, and any input slower
//!   than [`SLOW_S`] fails the test.
//! - **allocations**: this test binary's global allocator counts, per thread, the bytes live
//!   since the parse began; the peak must stay under `alloc_factor × input length + ALLOC_SLACK`
//!   (per reader; see each reader's comment for why its factor is what it is). A single request
//!   above [`HARD_CAP`] (1 GiB) is refused: the process aborts after printing the mutation (an
//!   allocation failure cannot be caught), rather than taking the memory.
//!
//! The inputs are deterministic (xorshift64* seeded per reader). `PARLE_MUTATIONS=N` changes the
//! count, `PARLE_MUTATION_SEED=S` the seed, and `PARLE_MUTATION_TRACE=1` prints every mutation
//! before it runs (to find the input behind an abort).
//!
//! Adding a reader is a seed list and a closure:
//! `mutate_reader("name", &seeds, 16, |b| parse(b).map_err(|e| e.to_string()))`.
#![cfg(not(target_arch = "wasm32"))]

/// The CLI's WAV module, compiled in to fuzz its reader.
#[path = "../crate/cli/audio.rs"]
#[allow(dead_code)]
mod audio;
mod gguf_bytes;
use gguf_bytes::Gguf;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Allocation tracking

struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

/// A single request above this during a parse is refused: the process aborts ("memory
/// allocation failed") after naming the mutation, instead of really taking gigabytes (which an
/// overcommitting OS may grant, and the machine then run out of).
const HARD_CAP: usize = 1 << 30;

thread_local! {
    /// The mutation being parsed, for the message before such an abort.
    static CURRENT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Whether a request of `size` bytes is refused; if so, say which input asked (without
/// allocating: fixed strings, digits on the stack, the description by reference).
fn refuse(size: usize) -> bool {
    use std::io::Write;
    if size <= HARD_CAP || !TRACKING.try_with(|t| t.get()).unwrap_or(false) {
        return false;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = size;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\nmutation test: a parse asked for ");
    let _ = err.write_all(&digits[i..]);
    let _ = err.write_all(b" bytes at once; the input: ");
    let _ = CURRENT.try_with(|c| c.try_borrow().map(|c| err.write_all(c.as_bytes())));
    let _ = err.write_all(b"\n");
    true
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        note(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refuse(layout.size()) {
            return std::ptr::null_mut();
        }
        note(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refuse(new_size) {
            return std::ptr::null_mut();
        }
        // Counted as the worst case: both blocks live at once.
        note(new_size as isize);
        note(-(layout.size() as isize));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Run `f` and return its result and the peak of bytes it kept allocated at once (this thread).
fn peak_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    TRACKING.with(|t| t.set(true));
    let r = f();
    TRACKING.with(|t| t.set(false));
    (r, PEAK.with(|p| p.get()).max(0) as usize)
}

// ---------------------------------------------------------------------------------------------
// Panic capture

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    /// Message and location of the last captured panic.
    static LAST_PANIC: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(|c| c.get()) {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic)".into());
                let loc = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some((msg, loc)));
            } else {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// Deterministic inputs

/// xorshift64* (no crates).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const U32S: &[u32] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x10000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];
const U64S: &[u64] = &[
    u64::MAX,
    u64::MAX - 1,
    i64::MAX as u64,
    1 << 63,
    1 << 32,
    (1 << 32) - 1,
    100 << 20,
    (100 << 20) + 1,
    1 << 40,
];
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e308",
    "1e999",
    "-0",
    "1.5",
    "-1e-9",
    "NaN",
    "null",
    "\"x\"",
];
const BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xfe, 0xff, b'"', b'{', b'}', b'[', b']', b',', b':', b'\\',
];

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A position in `0..=len`: half uniform, half in the first 64 bytes (where headers are).
fn pos(rng: &mut Rng, len: usize, inclusive: bool) -> usize {
    let n = len + inclusive as usize;
    if n == 0 {
        return 0;
    }
    if rng.chance(2) {
        rng.below(n)
    } else {
        rng.below(n.min(64))
    }
}

/// Maximal runs of ASCII digits (with a leading '-'), and spans between consecutive quotes.
type Spans = Vec<(usize, usize)>;

fn spans(b: &[u8]) -> (Spans, Spans) {
    let mut nums = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let s = if i > 0 && b[i - 1] == b'-' { i - 1 } else { i };
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                j += 1;
            }
            nums.push((s, j));
            i = j;
        } else {
            i += 1;
        }
    }
    let quotes: Vec<usize> = b
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == b'"')
        .map(|(i, _)| i)
        .collect();
    let strs = quotes.windows(2).map(|w| (w[0] + 1, w[1])).collect();
    (nums, strs)
}

/// Apply one mutation to `b`, describing it in `desc`.
fn mutate_once(rng: &mut Rng, b: &mut Vec<u8>, seeds: &[Seed], desc: &mut String) {
    use std::fmt::Write;
    let len = b.len();
    match rng.below(14) {
        0 => {
            let n = if rng.chance(2) && len > 0 {
                len - 1 - rng.below(len.min(16))
            } else {
                pos(rng, len, true)
            };
            b.truncate(n);
            let _ = write!(desc, " truncate@{n}");
        }
        1 if len > 0 => {
            for _ in 0..1 + rng.below(3) {
                let p = pos(rng, len, false);
                let bit = rng.below(8);
                b[p] ^= 1 << bit;
                let _ = write!(desc, " bitflip@{p}.{bit}");
            }
        }
        2 if len > 0 => {
            let p = pos(rng, len, false);
            let v = if rng.chance(2) {
                *rng.pick(BYTES)
            } else {
                rng.next() as u8
            };
            b[p] = v;
            let _ = write!(desc, " byte@{p}={v:#04x}");
        }
        3 if len >= 4 => {
            let p = pos(rng, len - 3, false);
            let v = match rng.below(4) {
                0 => len as u32,
                1 => len as u32 + 1 + rng.below(8) as u32,
                _ => *rng.pick(U32S),
            };
            b[p..p + 4].copy_from_slice(&v.to_le_bytes());
            let _ = write!(desc, " u32@{p}={v:#x}");
        }
        4 if len >= 8 => {
            let p = pos(rng, len - 7, false);
            let v = match rng.below(4) {
                0 => len as u64 + rng.below(16) as u64,
                1 => *rng.pick(U32S) as u64,
                _ => *rng.pick(U64S),
            };
            b[p..p + 8].copy_from_slice(&v.to_le_bytes());
            let _ = write!(desc, " u64@{p}={v:#x}");
        }
        5 => {
            let p = pos(rng, len, true);
            let ins: Vec<u8> = if rng.chance(2) {
                (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect()
            } else {
                rng.pick(NUMBERS).as_bytes().to_vec()
            };
            let _ = write!(desc, " insert@{p}={ins:02x?}");
            b.splice(p..p, ins);
        }
        6 if len > 0 => {
            let p = pos(rng, len, false);
            let max = if rng.chance(4) { 4096 } else { 16 };
            let n = 1 + rng.below((len - p).min(max));
            b.drain(p..p + n);
            let _ = write!(desc, " delete@{p}+{n}");
        }
        7 if len > 0 => {
            let s = rng.below(len);
            let n = 1 + rng.below((len - s).min(256));
            let d = pos(rng, len, true);
            let chunk = b[s..s + n].to_vec();
            b.splice(d..d, chunk);
            let _ = write!(desc, " dup@{s}+{n}->{d}");
        }
        8 if len > 0 => {
            // A varint (length or count) written over the bytes at p.
            let p = pos(rng, len, false);
            let v = match rng.below(4) {
                0 => vec![0xff; 10 + rng.below(2)], // too long / past 64 bits
                1 => varint(*rng.pick(U32S) as u64),
                2 => varint(len as u64 + rng.below(16) as u64),
                _ => varint(*rng.pick(U64S)),
            };
            let end = (p + v.len()).min(len);
            let _ = write!(desc, " varint@{p}={v:02x?}");
            b.splice(p..end, v);
        }
        9..=11 => {
            let (nums, strs) = spans(b);
            let op = rng.below(3);
            if op == 0 && !nums.is_empty() {
                let (s, e) = *rng.pick(&nums);
                let v = *rng.pick(NUMBERS);
                let _ = write!(desc, " number@{s}..{e}={v}");
                b.splice(s..e, v.bytes());
            } else if op == 1 && !nums.is_empty() {
                // Another number of the same input: offsets past the end, overlapping ranges.
                let (s, e) = *rng.pick(&nums);
                let (s2, e2) = *rng.pick(&nums);
                let v = b[s2..e2].to_vec();
                let _ = write!(desc, " number@{s}..{e}=number@{s2}..{e2}");
                b.splice(s..e, v);
            } else if !strs.is_empty() {
                // Another string of the same input: wrong dtypes, duplicated names, bad keys.
                let (s, e) = *rng.pick(&strs);
                let (s2, e2) = *rng.pick(&strs);
                let v = b[s2..e2].to_vec();
                let _ = write!(desc, " string@{s}..{e}=string@{s2}..{e2}");
                b.splice(s..e, v);
            } else {
                let p = pos(rng, len, true);
                b.insert(p, b'"');
                let _ = write!(desc, " quote@{p}");
            }
        }
        12 => {
            let n = 1 + rng.below(64);
            b.extend((0..n).map(|_| rng.next() as u8));
            let _ = write!(desc, " append+{n}");
        }
        _ => {
            // Splice: our prefix, another seed's suffix.
            let other = &rng.pick(seeds).bytes;
            let p = pos(rng, len, true);
            let q = rng.below(other.len() + 1);
            b.truncate(p);
            b.extend_from_slice(&other[q..]);
            let _ = write!(desc, " splice@{p}+seed[{q}..]");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The harness

pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
}

fn seed(name: &str, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        name: name.into(),
        bytes: bytes.into(),
    }
}

/// Inputs per reader and run.
fn count() -> usize {
    std::env::var("PARLE_MUTATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// Bytes any parse may hold besides what scales with its input (error strings, small tables).
const ALLOC_SLACK: usize = 8 << 10;
/// An input slower than this fails the test (a pathological path, if not a hang).
const SLOW_S: f64 = 1.0;
/// An input slower than this aborts the process (a hang), naming the mutation.
const HANG_S: u64 = 30;

/// Feed `parse` the seeds, then `count()` damaged inputs made from them. Each must give `Ok` or
/// a non-empty `Err`, without panicking, within `SLOW_S`, holding at most
/// `alloc_factor × input length + ALLOC_SLACK` bytes at once.
fn mutate_reader<T>(
    name: &str,
    seeds: &[Seed],
    alloc_factor: usize,
    parse: impl Fn(&[u8]) -> Result<T, String>,
) {
    mutate_reader_n(name, seeds, alloc_factor, count(), parse)
}

fn mutate_reader_n<T>(
    name: &str,
    seeds: &[Seed],
    alloc_factor: usize,
    count: usize,
    parse: impl Fn(&[u8]) -> Result<T, String>,
) {
    install_panic_hook();
    let trace = std::env::var_os("PARLE_MUTATION_TRACE").is_some();
    let base_seed: u64 = std::env::var("PARLE_MUTATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = Rng::new(
        base_seed
            ^ name.bytes().fold(0xcbf29ce484222325u64, |h, c| {
                (h ^ c as u64).wrapping_mul(0x100000001b3)
            }),
    );

    // Watchdog: the current mutation and when it started.
    let current = Arc::new(Mutex::new(String::new()));
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let watchdog = {
        let (current, started, done) = (current.clone(), started.clone(), done.clone());
        let name = name.to_string();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let since = started.load(Ordering::Relaxed);
                let now = t0.elapsed().as_millis() as u64;
                if since > 0 && now.saturating_sub(since) > HANG_S * 1000 {
                    eprintln!(
                        "mutation test {name}: one input has run for more than {HANG_S} s: {}",
                        current.lock().unwrap()
                    );
                    std::process::abort();
                }
            }
        })
    };

    let (mut ok, mut err) = (0usize, 0usize);
    let mut failures: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut slowest = (Duration::ZERO, String::new());
    let mut max_use = (0f64, 0usize, 0usize, String::new());
    let mut max_peak = (0usize, 0usize, String::new());
    let total = seeds.len() + count;
    let mut input = Vec::new();
    let mut desc = String::new();
    let start = Instant::now();
    for i in 0..total {
        desc.clear();
        input.clear();
        if i < seeds.len() {
            input.extend_from_slice(&seeds[i].bytes);
            desc.push_str(&format!("seed '{}' (unmutated)", seeds[i].name));
        } else {
            let s = rng.pick(seeds);
            input.extend_from_slice(&s.bytes);
            desc.push_str(&format!("#{i} seed '{}':", s.name));
            let n = if rng.chance(4) { 2 + rng.below(3) } else { 1 };
            for _ in 0..n {
                mutate_once(&mut rng, &mut input, seeds, &mut desc);
            }
        }
        if trace {
            eprintln!("{name} {desc}");
        }
        current.lock().unwrap().clone_from(&desc);
        CURRENT.with(|c| c.borrow_mut().clone_from(&desc));
        started.store(t0.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);

        CAPTURING.with(|c| c.set(true));
        let t = Instant::now();
        let (result, peak) = peak_alloc(|| catch_unwind(AssertUnwindSafe(|| parse(&input))));
        let dt = t.elapsed();
        CAPTURING.with(|c| c.set(false));
        started.store(0, Ordering::Relaxed);

        // Failures are grouped by kind (a panic by its location); the first example is kept.
        let mut fail = |kind: String, example: String| {
            let e = failures.entry(kind).or_insert((0, example));
            e.0 += 1;
        };
        match result {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(m)) if m.trim().is_empty() => {
                fail("empty error message".into(), desc.clone());
            }
            Ok(Err(_)) => err += 1,
            Err(_) => {
                let (msg, at) = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| ("(unknown panic)".into(), String::new()));
                fail(format!("panic at {at}"), format!("{desc}\n        {msg}"));
            }
        }
        let budget = alloc_factor * input.len() + ALLOC_SLACK;
        if peak > budget {
            fail(
                "allocation over budget".into(),
                format!(
                    "{desc}\n        {peak} bytes for a {}-byte input",
                    input.len()
                ),
            );
        }
        let used = peak as f64 / budget as f64;
        if used > max_use.0 {
            max_use = (used, peak, input.len(), desc.clone());
        }
        if peak > max_peak.0 {
            max_peak = (peak, input.len(), desc.clone());
        }
        if dt > slowest.0 {
            slowest = (dt, desc.clone());
        }
        if dt.as_secs_f64() > SLOW_S {
            fail(
                format!("slower than {SLOW_S} s"),
                format!("{desc}\n        {:.2} s", dt.as_secs_f64()),
            );
        }
    }
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();

    println!(
        "{name}: {total} inputs ({} seeds + {} damaged) in {:.2} s: {ok} Ok, {err} Err, {} failing",
        seeds.len(),
        total - seeds.len(),
        elapsed.as_secs_f64(),
        failures.values().map(|f| f.0).sum::<usize>()
    );
    println!(
        "{name}: slowest input {:.1} ms ({})",
        slowest.0.as_secs_f64() * 1e3,
        slowest.1
    );
    println!(
        "{name}: allocation budget {alloc_factor}× input + {} KiB; largest peak {} bytes for a {}-byte input ({}); closest to the budget: {:.0}% ({} bytes for {} bytes; {})",
        ALLOC_SLACK >> 10,
        max_peak.0,
        max_peak.1,
        max_peak.2,
        max_use.0 * 100.0,
        max_use.1,
        max_use.2,
        max_use.3
    );
    if !failures.is_empty() {
        let mut report = format!("{name}: {} kinds of failure:\n", failures.len());
        for (kind, (n, example)) in &failures {
            report += &format!("  {n} × {kind}\n      e.g. {example}\n");
        }
        panic!("{report}");
    }
    assert!(ok > 0, "{name}: no input parsed, not even the seeds");
}

// ---------------------------------------------------------------------------------------------
// Readers

fn fixture(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A safetensors file from a raw JSON header and `data` bytes of data.
fn safetensors(json: &str, data: usize) -> Vec<u8> {
    let mut v = (json.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v.extend((0..data).map(|i| (i * 7) as u8));
    v
}

fn entry(name: &str, dtype: &str, shape: &str, start: &str, end: &str) -> String {
    format!(r#""{name}":{{"dtype":"{dtype}","shape":[{shape}],"data_offsets":[{start},{end}]}}"#)
}

fn safetensors_seeds() -> Vec<Seed> {
    let valid = [
        entry("a.weight", "F32", "2,3", "0", "24"),
        entry("b.bias", "BF16", "4", "24", "32"),
        entry("c", "I64", "1,2", "32", "48"),
        entry("empty", "U8", "0", "48", "48"),
        entry("d", "F16", "2", "48", "52"),
    ];
    let meta = r#""__metadata__":{"format":"pt","n":"1"}"#;
    let header = |entries: &[String]| format!("{{{},{meta}}}", entries.join(","));
    let mut seeds = vec![
        seed("valid", safetensors(&header(&valid), 52)),
        seed(
            "valid, no metadata",
            safetensors(&format!("{{{}}}", valid.join(",")), 52),
        ),
        seed("empty header", safetensors("{}", 0)),
    ];
    let mut variant = |what: &str, i: usize, e: String| {
        let mut v = valid.to_vec();
        v[i] = e;
        seeds.push(seed(what, safetensors(&header(&v), 52)));
    };
    variant("overlap", 1, entry("b.bias", "BF16", "4", "16", "24"));
    variant("past the end", 4, entry("d", "F16", "4", "48", "56"));
    variant(
        "huge offsets",
        2,
        entry(
            "c",
            "I64",
            "1,2",
            "18446744073709551600",
            "18446744073709551615",
        ),
    );
    variant("start after end", 2, entry("c", "I64", "1,2", "48", "32"));
    variant("wrong dtype", 0, entry("a.weight", "F64", "2,3", "0", "24"));
    variant("dtype case", 0, entry("a.weight", "f32", "2,3", "0", "24"));
    variant(
        "huge shape",
        0,
        entry(
            "a.weight",
            "F32",
            "4294967296,4294967296,4294967296",
            "0",
            "24",
        ),
    );
    variant(
        "u64 max dim",
        0,
        entry("a.weight", "F32", "18446744073709551615", "0", "24"),
    );
    variant(
        "negative dim",
        0,
        entry("a.weight", "F32", "-2,-3", "0", "24"),
    );
    variant(
        "duplicated name",
        1,
        entry("a.weight", "BF16", "4", "24", "32"),
    );
    variant(
        "three offsets",
        2,
        r#""c":{"dtype":"I64","shape":[1,2],"data_offsets":[32,40,48]}"#.into(),
    );
    variant(
        "no offsets",
        2,
        r#""c":{"dtype":"I64","shape":[1,2]}"#.into(),
    );
    variant(
        "dtype not a string",
        2,
        r#""c":{"dtype":7,"shape":[1,2],"data_offsets":[32,48]}"#.into(),
    );
    variant(
        "metadata not strings",
        3,
        r#""__metadata__":{"a":[1,2],"b":{"c":null}}"#.into(),
    );
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    seeds.push(seed("deep nesting", safetensors(&deep, 0)));
    seeds.push(seed("not an object", safetensors(r#"["a","b"]"#, 8)));
    // Length prefixes that lie.
    for (what, n) in [
        ("length u64 max", u64::MAX),
        ("length u32 max", u32::MAX as u64),
        ("length past the end", 4096),
        ("length 0", 0),
        ("length 1", 1),
    ] {
        let mut b = safetensors(&header(&valid), 52);
        b[..8].copy_from_slice(&n.to_le_bytes());
        seeds.push(seed(what, b));
    }
    seeds
}

/// Read every tensor of a parsed file, as the model loaders do.
fn read_all(m: &parle::weights::MemorySafetensors) -> Result<usize, parle::weights::WeightsError> {
    use parle::weights::{DType, TensorSource};
    let mut n = 0;
    for (name, e) in &m.header.tensors {
        n += m.bytes(name, &e.shape)?.len();
        if matches!(e.dtype, DType::F32 | DType::F16 | DType::BF16) {
            n += m.f32(name, &e.shape)?.len();
        }
    }
    Ok(n)
}

/// Safetensors: the header reader (`header_len` + `parse` on the bytes) and `MemorySafetensors`
/// (which also slices every tensor). Allocation: the input is copied once (1×); serde_json's
/// `Value` tree takes up to ~16× its JSON text (32-byte values for 2-byte array elements), and
/// the shapes another 4×; 48× covers it with room for vector growth.
#[test]
fn safetensors_reader() {
    use parle::weights::{MemorySafetensors, SafetensorsHeader};
    let seeds = safetensors_seeds();
    mutate_reader("safetensors", &seeds, 48, |b| {
        let name = "fuzz.safetensors";
        let n = SafetensorsHeader::header_len(name, b).map_err(|e| e.to_string())?;
        if let Some(json) = b.get(8..(8 + n).min(b.len() as u64) as usize) {
            let _ = SafetensorsHeader::parse(name, json, b.len() as u64);
        }
        let m = MemorySafetensors::new(name, b.to_vec()).map_err(|e| e.to_string())?;
        read_all(&m).map_err(|e| e.to_string())
    });
}

/// Safetensors from a file (`SafetensorsFile::open`: the header read from disk, then every
/// tensor's range read back): count / 200 inputs, as each is written to a temporary file. Allocation as
/// in memory: the header (≤ the file) and one tensor at a time.
#[test]
fn safetensors_file_reader() {
    use parle::weights::{DType, SafetensorsFile, TensorSource};
    let seeds = safetensors_seeds();
    let path =
        std::env::temp_dir().join(format!("parle-mutation-{}.safetensors", std::process::id()));
    mutate_reader_n(
        "safetensors file",
        &seeds,
        48,
        (count() / 200).max(1),
        |b| {
            std::fs::write(&path, b).map_err(|e| format!("cannot write the test file: {e}"))?;
            let f = SafetensorsFile::open(&path).map_err(|e| e.to_string())?;
            let mut n = 0;
            for (name, e) in &f.header.tensors {
                n += f.bytes(name, &e.shape).map_err(|e| e.to_string())?.len();
                if matches!(e.dtype, DType::F32 | DType::F16 | DType::BF16) {
                    n += f.f32(name, &e.shape).map_err(|e| e.to_string())?.len();
                }
            }
            Ok(n)
        },
    );
    let _ = std::fs::remove_file(&path);
}

fn pb_field(field: u32, wire: u8, body: &[u8]) -> Vec<u8> {
    let mut out = varint((field as u64) << 3 | wire as u64);
    if wire == 2 {
        out.extend(varint(body.len() as u64));
    }
    out.extend_from_slice(body);
    out
}

fn pb_piece(piece: &str, score: f32, kind: u64) -> Vec<u8> {
    let mut m = pb_field(1, 2, piece.as_bytes());
    m.extend(pb_field(2, 5, &score.to_le_bytes()));
    m.extend(pb_field(3, 0, &varint(kind)));
    pb_field(1, 2, &m)
}

fn sentencepiece_seeds() -> Vec<Seed> {
    let mut small = Vec::new();
    for (i, (p, k)) in [
        ("<unk>", 2),
        ("<s>", 3),
        ("</s>", 3),
        ("<pad>", 3),
        ("▁the", 1),
        ("<0xE2>", 6),
        ("<0x82>", 6),
        ("<u>", 4),
        ("x", 5),
    ]
    .iter()
    .enumerate()
    {
        small.extend(pb_piece(p, -(i as f32), *k));
    }
    let mut trainer = pb_field(4, 0, &varint(9));
    trainer.extend(pb_field(44, 2, " ?? ".as_bytes()));
    small.extend(pb_field(2, 2, &trainer));
    let mut norm = pb_field(1, 2, b"identity");
    norm.extend(pb_field(3, 0, &[1]));
    norm.extend(pb_field(4, 0, &[0]));
    small.extend(pb_field(3, 2, &norm));
    // Unknown fields of every wire type, a group.
    let mut unknown = small.clone();
    unknown.extend(pb_field(9, 0, &varint(u64::MAX)));
    unknown.extend(pb_field(10, 1, &[1; 8]));
    unknown.extend(pb_field(11, 5, &[2; 4]));
    unknown.extend(pb_field(12, 2, b"skip me"));
    unknown.extend([
        13 << 3 | 3,
        14 << 3,
        1,
        15 << 3 | 3,
        15 << 3 | 4,
        13 << 3 | 4,
    ]);
    let mut huge_len = small.clone();
    huge_len.extend(varint(1 << 3 | 2));
    huge_len.extend(varint(u64::MAX));
    let mut u32_len = small.clone();
    u32_len.extend(varint(1 << 3 | 2));
    u32_len.extend(varint(u32::MAX as u64));
    let mut deep = small.clone();
    deep.extend(std::iter::repeat_n(5 << 3 | 3, 100));
    let mut bad_utf8 = small.clone();
    bad_utf8.extend(pb_field(1, 2, &pb_field(1, 2, &[0xff, 0xfe])));
    vec![
        seed("fixture", fixture("text/tokenizer.model")),
        seed("small", small),
        seed("unknown fields", unknown),
        seed("length u64 max", huge_len),
        seed("length u32 max", u32_len),
        seed("deep groups", deep),
        seed("bad utf-8", bad_utf8),
        seed("bad type", pb_piece("a", 0.0, 9)),
    ]
}

/// SentencePiece: `Tokenizer::from_bytes`, then every piece and a decode of every id.
/// Allocation: the piece strings' arena is reserved at the input's size (1×); each piece adds a
/// 16-byte entry for at least 5 input bytes (≤ 3.2×, twice while the vector grows); the decode
/// of every id writes at most a few bytes per piece byte. 16× covers it.
#[test]
fn sentencepiece_reader() {
    use parle::text::Tokenizer;
    let seeds = sentencepiece_seeds();
    mutate_reader("sentencepiece", &seeds, 16, |b| {
        let t = Tokenizer::from_bytes("fuzz.model", b).map_err(|e| e.to_string())?;
        let n = t.vocab_size() as u32;
        let mut total = 0;
        for id in 0..n + 2 {
            total += t.piece(id).map_or(0, str::len);
        }
        let ids: Vec<u32> = (0..n.min(400) + 2).collect();
        Ok(total + t.decode(&ids).len())
    });
}

/// A canonical WAV: fmt chunk (PCM 1 / float 3 / extensible 0xFFFE), optional extra chunk,
/// then data.
fn wav(format: u16, channels: u16, rate: u32, bits: u16, frames: usize, extra: bool) -> Vec<u8> {
    let block = channels * bits.div_ceil(8);
    let mut fmt = Vec::new();
    fmt.extend(format.to_le_bytes());
    fmt.extend(channels.to_le_bytes());
    fmt.extend(rate.to_le_bytes());
    fmt.extend((rate * block as u32).to_le_bytes());
    fmt.extend(block.to_le_bytes());
    fmt.extend(bits.to_le_bytes());
    if format == 0xFFFE {
        fmt.extend(22u16.to_le_bytes());
        fmt.extend(bits.to_le_bytes()); // valid bits
        fmt.extend(((1u32 << channels) - 1).to_le_bytes()); // channel mask
                                                            // KSDATAFORMAT_SUBTYPE_PCM
        fmt.extend([
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71,
        ]);
    }
    let data: Vec<u8> = (0..frames * block as usize)
        .map(|i| (i * 37 % 251) as u8)
        .collect();
    let mut body = b"WAVE".to_vec();
    body.extend(b"fmt ");
    body.extend((fmt.len() as u32).to_le_bytes());
    body.extend(&fmt);
    if extra {
        body.extend(b"LIST");
        body.extend(5u32.to_le_bytes());
        body.extend(b"INFO!\0"); // odd length + pad byte
    }
    body.extend(b"data");
    body.extend((data.len() as u32).to_le_bytes());
    body.extend(&data);
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

fn wav_seeds() -> Vec<Seed> {
    let mut seeds = vec![
        seed("pcm16 mono", wav(1, 1, 24000, 16, 64, false)),
        seed("pcm16 stereo 44.1k", wav(1, 2, 44100, 16, 48, true)),
        seed("pcm8", wav(1, 1, 8000, 8, 64, false)),
        seed("pcm24", wav(1, 2, 48000, 24, 32, false)),
        seed("pcm32", wav(1, 1, 16000, 32, 32, true)),
        seed("float32", wav(3, 1, 24000, 32, 32, false)),
        seed("extensible pcm16", wav(0xFFFE, 2, 24000, 16, 32, false)),
        seed("6 channels", wav(1, 6, 48000, 16, 8, false)),
    ];
    for (what, off, v) in [
        ("data length u32 max", 40, u32::MAX),
        ("data length past the end", 40, 1000),
        ("fmt length huge", 16, 0x7fff_fff0),
        ("riff length u32 max", 4, u32::MAX),
        ("rate 0", 24, 0),
        ("rate u32 max", 24, u32::MAX),
    ] {
        let mut b = wav(1, 1, 24000, 16, 64, false);
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        seeds.push(seed(what, b));
    }
    for (what, off, v) in [
        ("channels 0", 22, 0u16),
        ("block align 0", 32, 0),
        ("bits 0", 34, 0),
        ("bits 64", 34, 64),
        ("bits 33", 34, 33),
        ("format 2", 20, 2),
    ] {
        let mut b = wav(1, 1, 24000, 16, 64, false);
        b[off..off + 2].copy_from_slice(&v.to_le_bytes());
        seeds.push(seed(what, b));
    }
    seeds
}

/// WAV (the CLI's `audio::decode_wav_mono`: hound on the bytes, checks, mix to mono).
/// Allocation: samples are collected as read, 4 bytes per input sample (8-bit input: 4× its
/// bytes) and twice that while the vector grows, plus the mono copy: 16×.
#[test]
fn wav_reader() {
    let seeds = wav_seeds();
    mutate_reader("wav", &seeds, 16, |b| {
        audio::decode_wav_mono("fuzz.wav", std::io::Cursor::new(b))
            .map(|(s, rate)| s.len() + rate as usize)
            .map_err(|e| e.to_string())
    });
}

/// Mimi `config.json` (`MimiConfig::from_json`, which validates). Allocation: serde_json's
/// `Value` tree (up to ~16× the text), cloned once for the "mimi" key: 48×.
#[test]
fn mimi_config_reader() {
    use parle::mimi::MimiConfig;
    let full = fixture("mimi/tiny_a/config.json");
    let seeds = vec![
        seed("tiny_a", full),
        seed("empty object", "{}"),
        seed("empty mimi", r#"{"mimi": {}}"#),
        seed(
            "overrides",
            r#"{"mimi": {"sample_rate": 24000, "frame_rate": 12.5, "seanet": {"ratios": [8, 6, 5, 4], "n_filters": 8, "compress": 2}, "transformer": {"num_heads": 8, "d_model": 512, "context": 250, "max_period": 10000}, "quantizer": {"n_q": 32, "bins": 2048}}}"#,
        ),
    ];
    mutate_reader("mimi config", &seeds, 48, |b| {
        let text = std::str::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?;
        let c = MimiConfig::from_json(text).map_err(|e| e.to_string())?;
        Ok(c.hop() + c.frame_size() + c.downsample_stride())
    });
}

#[test]
fn lm_config_reader() {
    use parle::lm::LmConfig;
    let kyutai = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kyutai-test-lm/config.json"),
    )
    .expect("kyutai-test-lm config");
    let seeds = vec![
        seed("kyutai-test-lm", kyutai),
        seed("empty object", "{}"),
        seed(
            "moshi-like",
            r#"{"dim": 64, "num_heads": 4, "num_layers": 2, "n_q": 16, "dep_q": 8, "card": 64, "text_card": 320, "context": 16, "delays": [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1], "depformer_dim": 32, "depformer_num_heads": 2, "depformer_num_layers": 2, "depformer_weights_per_step_schedule": [0, 1, 2, 3, 4, 4, 4, 4], "mimi": {}}"#,
        ),
    ];
    mutate_reader("lm config", &seeds, 48, |b| {
        let text = std::str::from_utf8(b).map_err(|e| format!("not UTF-8: {e}"))?;
        let c = LmConfig::from_json(text).map_err(|e| e.to_string())?;
        Ok(c.max_delay()
            .saturating_add(c.depformer_in_count())
            .saturating_add(c.temporal().hidden())
            .saturating_add(c.depformer().hidden()))
    });
}

// ---------------------------------------------------------------------------------------------
// GGUF and checkpoints under canonical names (crate/weights: gguf.rs, names.rs, checkpoint.rs,
// linear.rs)

fn q8_blocks(n_blocks: usize, seed: u8) -> Vec<u8> {
    (0..n_blocks)
        .flat_map(|b| {
            let mut blk = half::f16::from_f32(0.01 * (b + 1) as f32)
                .to_bits()
                .to_le_bytes()
                .to_vec();
            blk.extend((0..32).map(|i| (i as u8).wrapping_mul(seed).wrapping_add(b as u8)));
            blk
        })
        .collect()
}

fn gguf_seeds() -> Vec<Seed> {
    use parle::weights::{write_gguf, DType, GgufValue};
    let f32s = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (i as f32 * 0.25).to_le_bytes())
            .collect()
    };
    let halves = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| ((i as u16) << 6).to_le_bytes())
            .collect()
    };
    let q8 = q8_blocks(4, 7);
    let every: Vec<(&str, DType, &[usize], Vec<u8>)> = vec![
        ("a.f32", DType::F32, &[3], f32s(3)),
        ("b.f16", DType::F16, &[2, 3], halves(6)),
        ("c.bf16", DType::BF16, &[1, 5, 7], halves(35)),
        ("d.q8", DType::Q8_0, &[2, 64], q8.clone()),
        ("e.i8", DType::I8, &[5], vec![1, 2, 3, 4, 5]),
        ("f.i32", DType::I32, &[2, 2], vec![7; 16]),
        ("g.i64", DType::I64, &[1], vec![9; 8]),
        ("h.4d", DType::F32, &[2, 1, 3, 2], f32s(12)),
    ];
    let refs: Vec<(&str, DType, &[usize], &[u8])> = every
        .iter()
        .map(|(n, d, s, b)| (*n, *d, *s, b.as_slice()))
        .collect();
    let meta = vec![
        ("general.architecture", GgufValue::String("moshi".into())),
        ("k.u8", GgufValue::U8(1)),
        ("k.i16", GgufValue::I16(-2)),
        ("k.u32", GgufValue::U32(3)),
        ("k.f32", GgufValue::F32(0.5)),
        ("k.bool", GgufValue::Bool(true)),
        ("k.u64", GgufValue::U64(5)),
        ("k.i64", GgufValue::I64(-6)),
        ("k.f64", GgufValue::F64(7.0)),
    ];
    let mut seeds = vec![
        seed("every dtype", write_gguf(&meta, &refs, 32)),
        seed("alignment 8", write_gguf(&meta[..2], &refs, 8)),
        seed("alignment 1", write_gguf(&[], &refs[..4], 1)),
        seed("no tensors", write_gguf(&meta, &[], 32)),
    ];
    // A candle-named LM slice: stacked norms, depformer slices, Q8_0 linears and tables.
    let norm = f32s(32);
    let lin = q8_blocks(32, 3);
    let candle: Vec<(&str, DType, &[usize], &[u8])> = vec![
        ("out_norm.alpha", DType::F32, &[1, 1, 32], &norm),
        ("emb.0.weight", DType::Q8_0, &[32, 32], &lin),
        (
            "transformer.layers.0.self_attn.in_proj_weight",
            DType::Q8_0,
            &[32, 32],
            &lin,
        ),
        ("depformer.0.linear_in.weight", DType::Q8_0, &[32, 32], &lin),
        ("depformer.1.emb.weight", DType::Q8_0, &[32, 32], &lin),
        (
            "depformer.0.transformer.layers.0.norm1.alpha",
            DType::F32,
            &[1, 1, 32],
            &norm,
        ),
        (
            "depformer.1.transformer.layers.0.norm1.alpha",
            DType::F32,
            &[1, 1, 32],
            &norm,
        ),
        (
            "depformer.1.transformer.layers.0.self_attn.in_proj_weight",
            DType::Q8_0,
            &[32, 32],
            &lin,
        ),
    ];
    seeds.push(seed("candle names", write_gguf(&[], &candle, 32)));
    // Arrays (strings, nested, numbers), version 2.
    let arrays = Gguf::arrays_v2(2).bytes(&q8_blocks(2, 5));
    seeds.push(seed("arrays v2", arrays.0));
    // The fixture's header and first tensors (candle names, 151 tensors).
    let fixture_gguf = fixture("lm/formats/candle_q8_gguf/model.q8.gguf");
    seeds.push(seed(
        "fixture head",
        fixture_gguf[..fixture_gguf.len().min(24 << 10)].to_vec(),
    ));
    // Counts and lengths that lie.
    for (what, b) in [
        ("kv count max", Gguf::new(3, 0, u64::MAX).0),
        ("tensor count max", Gguf::new(3, u64::MAX, 0).0),
        ("string length max", Gguf::new(3, 0, 1).u64(u64::MAX).0),
        (
            "array of 2^60 u64",
            Gguf::new(3, 0, 1).str("k").u32(9).u32(10).u64(1 << 60).0,
        ),
        (
            "dims max",
            Gguf::new(3, 1, 0)
                .str("t")
                .u32(2)
                .u64(u64::MAX)
                .u64(u64::MAX)
                .u32(0)
                .u64(0)
                .0,
        ),
    ] {
        seeds.push(seed(what, b));
    }
    seeds
}

/// Present a parsed file under canonical names and read every tensor as a model would: raw,
/// f32 (floats and Q8_0), and as a linear weight when it is a matrix.
fn read_checkpoint(ck: &parle::weights::Checkpoint) -> Result<usize, String> {
    use parle::weights::{linear_weight, DType, TensorSource};
    let mut n = 0;
    for name in ck.names() {
        let (dtype, shape) = ck.info(&name).ok_or("names() and info() disagree")?;
        n += ck.raw(&name).map_err(|e| e.to_string())?.bytes.len();
        if dtype.is_float() || dtype == DType::Q8_0 {
            n += ck.f32(&name, &shape).map_err(|e| e.to_string())?.len();
        }
        match (dtype, shape.as_slice()) {
            // MLX codes: try the 4-bit reading (k = 8 · words).
            (DType::U32, [r, c]) => {
                if let Ok(t) = linear_weight(ck, &name, *r, c.saturating_mul(8)) {
                    n += t.to_f32().len();
                }
            }
            (_, [r, k]) => {
                if let Ok(t) = linear_weight(ck, &name, *r, *k) {
                    n += t.to_f32().len();
                }
            }
            _ => {}
        }
    }
    Ok(n)
}

/// GGUF from memory (`MemoryGguf` and the checkpoint over it). Allocation: the input is copied
/// once (1×) and again by the checkpoint (1×); names are kept twice (canonical map); one tensor
/// at a time is read (1×) and converted to f32 (Q8_0: 128 bytes per 34-byte block, 3.8×; F16:
/// 2×); 16× covers it.
#[test]
fn gguf_reader() {
    use parle::weights::{Checkpoint, GgufHeader, MemoryGguf};
    let seeds = gguf_seeds();
    mutate_reader("gguf", &seeds, 16, |b| {
        let _ = GgufHeader::parse("fuzz.gguf", b);
        let m = MemoryGguf::new("fuzz.gguf", b.to_vec()).map_err(|e| e.to_string())?;
        let ck = Checkpoint::new(Box::new(m), None).map_err(|e| e.to_string())?;
        read_checkpoint(&ck)
    });
}

/// GGUF from a file (`GgufFile::open`: the header parsed from a buffered reader, then every
/// tensor's range read back): count / 200 inputs, as each is written to a temporary file.
#[test]
fn gguf_file_reader() {
    use parle::weights::Checkpoint;
    let seeds = gguf_seeds();
    let path = std::env::temp_dir().join(format!("parle-mutation-{}.gguf", std::process::id()));
    mutate_reader_n("gguf file", &seeds, 16, (count() / 200).max(1), |b| {
        std::fs::write(&path, b).map_err(|e| format!("cannot write the test file: {e}"))?;
        let ck = Checkpoint::open(&path, None).map_err(|e| e.to_string())?;
        read_checkpoint(&ck)
    });
    let _ = std::fs::remove_file(&path);
}

/// Safetensors checkpoints under canonical names: MLX-quantized (codes + scales + biases), MLX
/// norms, PyTorch stacked depformer attention (row blocks), a schedule; damaged names, shapes
/// and dtypes reach the name maps and `linear_weight`. Allocation as for safetensors (48×).
#[test]
fn checkpoint_reader() {
    use parle::weights::Checkpoint;
    let obj = |entries: &[String]| format!("{{{}}}", entries.join(","));
    let mlx = safetensors(
        &obj(&[
            entry("audio_embs.0.weight", "U32", "2,4", "0", "32"),
            entry("audio_embs.0.scales", "BF16", "2,1", "32", "36"),
            entry("audio_embs.0.biases", "BF16", "2,1", "36", "40"),
            entry("out_norm.weight", "BF16", "4", "40", "48"),
            entry(
                "depformer.slices.1.linear_in.weight",
                "U32",
                "2,4",
                "48",
                "80",
            ),
            entry(
                "depformer.slices.1.linear_in.scales",
                "BF16",
                "2,1",
                "80",
                "84",
            ),
            entry(
                "depformer.slices.1.linear_in.biases",
                "BF16",
                "2,1",
                "84",
                "88",
            ),
            entry(
                "depformer.slices.2.transformer.layers.0.norm1.weight",
                "BF16",
                "4",
                "88",
                "96",
            ),
            entry(
                "depformer.slices.3.transformer.layers.0.norm1.weight",
                "BF16",
                "4",
                "96",
                "104",
            ),
            entry(
                "transformer.layers.0.self_attn.in_proj.weight",
                "U32",
                "3,8",
                "104",
                "200",
            ),
            entry(
                "transformer.layers.0.self_attn.in_proj.scales",
                "BF16",
                "3,2",
                "200",
                "212",
            ),
            entry(
                "transformer.layers.0.self_attn.in_proj.biases",
                "BF16",
                "3,2",
                "212",
                "224",
            ),
        ]),
        224,
    );
    let torch = safetensors(
        &obj(&[
            entry(
                "depformer.layers.0.self_attn.in_proj_weight",
                "BF16",
                "12,2",
                "0",
                "48",
            ),
            entry(
                "depformer.layers.0.self_attn.out_proj.weight",
                "BF16",
                "4,2",
                "48",
                "64",
            ),
            entry(
                "transformer.layers.0.self_attn.in_projs.0.weight",
                "F32",
                "6,2",
                "64",
                "112",
            ),
            entry("out_norm.alpha", "F16", "1,1,2", "112", "116"),
        ]),
        116,
    );
    let seeds = vec![seed("mlx q4", mlx), seed("pytorch stacked", torch)];
    mutate_reader("checkpoint", &seeds, 48, |b| {
        let sched: &[usize] = &[0, 1, 1, 2];
        let ck = Checkpoint::from_bytes("fuzz.safetensors", b.to_vec(), Some(sched))
            .map_err(|e| e.to_string())?;
        read_checkpoint(&ck)
    });
}

// ---------------------------------------------------------------------------------------------
// The harness catches what it should (small runs of deliberately broken readers).

fn broken_seeds() -> Vec<Seed> {
    vec![seed("bytes", (0u8..64).collect::<Vec<u8>>())]
}

#[test]
#[should_panic(expected = "panic at tests/mutation.rs")]
fn harness_catches_panics() {
    mutate_reader_n("broken (panics)", &broken_seeds(), 16, 2000, |b| {
        Ok(b[b.len() / 2 + 40])
    });
}

#[test]
#[should_panic(expected = "allocation over budget")]
fn harness_catches_allocations_from_untrusted_lengths() {
    mutate_reader_n("broken (allocates)", &broken_seeds(), 16, 2000, |b| {
        let n = *b.get(3).ok_or("short")? as usize * 4096;
        Ok(vec![1u8; n].len())
    });
}

#[test]
#[should_panic(expected = "empty error message")]
fn harness_catches_empty_errors() {
    mutate_reader_n("broken (empty error)", &broken_seeds(), 16, 2000, |b| {
        if b.len() == 64 {
            Ok(())
        } else {
            Err(String::new())
        }
    });
}
