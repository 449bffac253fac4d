//! Compile-time checks on WGSL sources and a tiny line preprocessor.
//!
//! Kernels keep both their subgroup and shared-memory variants (and f16/f32 variants) in one
//! file, separated by `//#if NAME`, `//#else`, `//#endif` lines (nestable). Code shared between
//! shader files lives in `shaders/common/` and is pasted in by `//#include "common/NAME.wgsl"`
//! (itself preprocessed with the same defines; the files are listed in [`SHARED`]). Lines that
//! begin with `//#` are always removed; everything else is kept or dropped as a whole line.

/// The shader code that `//#include "NAME"` pastes in, by name.
const SHARED: &[(&str, &str)] = &[(
    "common/rope.wgsl",
    include_str!("../../shaders/common/rope.wgsl"),
)];

/// Includes nest at most this deep (an include cycle is an error, not a hang).
const MAX_INCLUDE_DEPTH: usize = 4;

/// `true` when `needle` occurs in `hay`. Usable in `const` context, so launchers can assert at
/// compile time that their workgroup size and binding numbers match the WGSL text.
pub const fn wgsl_contains(hay: &str, needle: &str) -> bool {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.len() > h.len() {
        return false;
    }
    let mut i = 0;
    while i + n.len() <= h.len() {
        let mut j = 0;
        while j < n.len() && h[i + j] == n[j] {
            j += 1;
        }
        if j == n.len() {
            return true;
        }
        i += 1;
    }
    false
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
    fn contains_works_in_const() {
        const SRC: &str = "@compute @workgroup_size(64)\nfn main() {}";
        const _: () = assert!(wgsl_contains(SRC, "@workgroup_size(64)"));
        assert!(!wgsl_contains(SRC, "@workgroup_size(128)"));
    }

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
}
