//! Kernel source assembly: a tiny line preprocessor, injected constants and backend preludes.
//!
//! Kernels keep both their subgroup and shared-memory variants (and f16/f32 variants) in one
//! file, separated by `//#if NAME`, `//#else`, `//#endif` lines (nestable). Code shared between
//! shader files lives in `shaders/common/` and is pasted in by `//#include "common/NAME.wgsl"`
//! (itself preprocessed with the same defines; the files are listed in [`SHARED`]). Lines that
//! begin with `//#` are always removed; everything else is kept or dropped as a whole line.

use super::{Kernel, Variant};

/// The shader code that `//#include "NAME"` pastes in, by name.
const SHARED: &[(&str, &str)] = &[
    (
        "common/rope.wgsl",
        include_str!("../../shaders/common/rope.wgsl"),
    ),
    (
        "common/reduce.wgsl",
        include_str!("../../shaders/common/reduce.wgsl"),
    ),
    (
        "common/table.wgsl",
        include_str!("../../shaders/common/table.wgsl"),
    ),
    (
        "common/linear_core.wgsl",
        include_str!("../../shaders/common/linear_core.wgsl"),
    ),
];

/// Includes nest at most this deep (an include cycle is an error, not a hang).
const MAX_INCLUDE_DEPTH: usize = 4;

/// The WGSL that compiles `kernel` for `variant` on a device with `device_defines`: `prelude`
/// (the backend's `enable` directives), then one `const NAME: u32 = VALUEu;` per
/// [`Kernel::consts`] entry, then the source preprocessed with the device's, the kernel's and the
/// variant's defines. The runtime and `tests/reflect.rs` both go through here.
pub fn assemble(
    kernel: &Kernel,
    variant: &Variant,
    device_defines: &[&str],
    prelude: &str,
) -> Result<String, String> {
    let mut defines: Vec<&str> = device_defines.to_vec();
    defines.extend(kernel.defines.iter().copied());
    defines.extend(variant.defines.iter().copied());
    let body = preprocess(kernel.source, &defines)?;
    let mut out = String::with_capacity(prelude.len() + body.len() + 64);
    out.push_str(prelude);
    for (name, value) in kernel.consts {
        out.push_str(&format!("const {name}: u32 = {value}u;\n"));
    }
    out.push_str(&body);
    Ok(out)
}

/// The `enable` directives a backend accepts: `enable f16;` with shader-f16, and `enable
/// subgroups;` only where the compiler requires it (Chrome's Tint does; naga rejects it).
pub fn prelude(f16: bool, enable_subgroups: bool) -> String {
    let mut p = String::new();
    if f16 {
        p.push_str("enable f16;\n");
    }
    if enable_subgroups {
        p.push_str("enable subgroups;\n");
    }
    p
}

/// Keep the lines whose `//#if` conditions hold for the set of `defines`, with the shared files
/// of their `//#include` lines pasted in.
pub fn preprocess(source: &str, defines: &[&str]) -> Result<String, String> {
    preprocess_at(source, defines, 0)
}

fn preprocess_at(source: &str, defines: &[&str], depth: usize) -> Result<String, String> {
    // Each stack entry: (this branch active, some branch of this `if` was already taken, parent active).
    let mut stack: Vec<(bool, bool, bool)> = Vec::new();
    let mut out = String::with_capacity(source.len());
    let active = |stack: &Vec<(bool, bool, bool)>| stack.last().map(|s| s.0).unwrap_or(true);
    for (lineno, line) in source.lines().enumerate() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("//#") {
            let mut words = rest.split_whitespace();
            match words.next() {
                Some("if") => {
                    let name = words
                        .next()
                        .ok_or(format!("line {}: `//#if` needs a name", lineno + 1))?;
                    let (negate, name) = match name.strip_prefix('!') {
                        Some(n) => (true, n),
                        None => (false, name),
                    };
                    let cond = defines.contains(&name) != negate;
                    let parent = active(&stack);
                    stack.push((parent && cond, cond, parent));
                }
                Some("else") => {
                    let top = stack
                        .last_mut()
                        .ok_or(format!("line {}: `//#else` without `//#if`", lineno + 1))?;
                    top.0 = top.2 && !top.1;
                    top.1 = true;
                }
                Some("endif") => {
                    stack
                        .pop()
                        .ok_or(format!("line {}: `//#endif` without `//#if`", lineno + 1))?;
                }
                Some("include") if active(&stack) => {
                    let name = rest.trim_start()["include".len()..]
                        .trim()
                        .trim_matches('"');
                    let shared = SHARED
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, src)| *src)
                        .ok_or(format!(
                            "line {}: `//#include \"{name}\"`: no such shared shader file (known: {})",
                            lineno + 1,
                            SHARED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        ))?;
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(format!(
                            "line {}: `//#include \"{name}\"` nests deeper than {MAX_INCLUDE_DEPTH} (an include cycle?)",
                            lineno + 1
                        ));
                    }
                    let body = preprocess_at(shared, defines, depth + 1)
                        .map_err(|e| format!("in {name}: {e}"))?;
                    out.push_str(&body);
                }
                Some("include") => {}
                other => {
                    return Err(format!(
                        "line {}: unknown directive {:?}",
                        lineno + 1,
                        other
                    ))
                }
            }
            continue;
        }
        if active(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err("unterminated `//#if`".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocess_branches() {
        let src = "a\n//#if X\nb\n//#if !Y\nc\n//#else\nd\n//#endif\n//#else\ne\n//#endif\nf\n";
        assert_eq!(preprocess(src, &["X"]).unwrap(), "a\nb\nc\nf\n");
        assert_eq!(preprocess(src, &["X", "Y"]).unwrap(), "a\nb\nd\nf\n");
        assert_eq!(preprocess(src, &[]).unwrap(), "a\ne\nf\n");
        assert!(preprocess("//#if X\n", &[]).is_err());
        assert!(preprocess("//#endif\n", &[]).is_err());
    }

    #[test]
    fn include_pastes_shared_code() {
        let rope = SHARED[0].1;
        let src = "a\n//#include \"common/rope.wgsl\"\nb\n";
        assert_eq!(
            preprocess(src, &[]).unwrap(),
            format!("a\n{}b\n", preprocess(rope, &[]).unwrap())
        );
        assert!(rope.contains("fn cos_sin("));
        // Only where its branch is active.
        let inactive = "a\n//#if X\n//#include \"common/rope.wgsl\"\n//#endif\nb\n";
        assert_eq!(preprocess(inactive, &[]).unwrap(), "a\nb\n");
        let e = preprocess("//#include \"common/none.wgsl\"\n", &[]).unwrap_err();
        assert!(
            e.contains("common/none.wgsl") && e.contains("common/rope.wgsl"),
            "{e}"
        );
    }

    #[test]
    fn assemble_puts_prelude_constants_then_the_variant_body() {
        static LAYOUT: crate::gpu::ParamsLayout = crate::gpu::ParamsLayout {
            name: "Params",
            size: 0,
            fields: &[],
        };
        static K: Kernel = Kernel {
            name: "k",
            source: "a\n//#if K\nb\n//#endif\n//#if V\nc\n//#endif\n//#if D\nd\n//#endif\n",
            entry: "main",
            bindings: &[],
            defines: &["K"],
            consts: &[("WG", 64), ("R", 4)],
            workgroup: [64, 1, 1],
            params: &LAYOUT,
        };
        let v = Variant::none().define("V");
        assert_eq!(
            assemble(&K, &v, &["D"], "enable f16;\n").unwrap(),
            "enable f16;\nconst WG: u32 = 64u;\nconst R: u32 = 4u;\na\nb\nc\nd\n"
        );
        assert_eq!(
            assemble(&K, &Variant::none(), &[], "").unwrap(),
            "const WG: u32 = 64u;\nconst R: u32 = 4u;\na\nb\n"
        );
        assert_eq!(prelude(true, true), "enable f16;\nenable subgroups;\n");
        assert_eq!(prelude(false, false), "");
    }
}
