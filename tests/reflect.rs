//! WGSL ↔ Rust contracts by reflection. Every kernel variant the launchers compile
//! (`parle::kernels::variants`, on every combination of the device defines `F16`, `SUBGROUPS`,
//! `WEB`) is assembled exactly as the runtime does (`parle::gpu::assemble`: preprocessor, injected
//! constants, prelude), parsed and validated with naga, its override constants applied, and
//! checked against its launcher's `Kernel`:
//! * the entry point exists and is a compute shader with the launcher's workgroup size;
//! * every resource the entry point uses is in group 0; bindings `0..n-1` are storage buffers
//!   whose access (`read` / `read_write`) is the launcher's binding list; binding `n` is the
//!   `Params` uniform; nothing is bound above;
//! * the WGSL `struct Params` has the Rust struct's members (names, offsets, sizes, scalar types)
//!   and size, under WGSL's uniform layout rules (padding members `_…` may differ in name);
//! * every override constant the variant sets is declared.
//!
//! And every `@compute` entry point of every `shaders/*.wgsl` file has a launcher variant, so a
//! new kernel cannot skip the table. Native only (naga is the WGSL front end wgpu uses natively).
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeSet;

use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ScalarKind, ShaderStage, StorageAccess, TypeInner};
use parle::gpu::{assemble, prelude, Binding, Kernel, ParamsLayout, Variant};

/// Every combination of the defines a context adds (`Context::defines`).
fn device_define_sets() -> Vec<Vec<&'static str>> {
    let all = ["F16", "SUBGROUPS", "WEB"];
    (0..1u32 << all.len())
        .map(|mask| {
            all.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, d)| *d)
                .collect()
        })
        .collect()
}

/// Parse, validate and specialize one kernel variant as a native context would compile it.
fn compile(
    kernel: &Kernel,
    variant: &Variant,
    device: &[&str],
) -> Result<(Module, ModuleInfo), String> {
    // Natively the prelude never enables subgroups (naga rejects it; Tint needs it).
    let source = assemble(
        kernel,
        variant,
        device,
        &prelude(device.contains(&"F16"), false),
    )?;
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::all())
        .validate(&module)
        .map_err(|e| e.emit_to_string(&source))?;
    let declared: Vec<&str> = module
        .overrides
        .iter()
        .filter_map(|(_, o)| o.name.as_deref())
        .collect();
    let mut constants = naga::back::PipelineConstants::default();
    for (name, value) in &variant.constants {
        if !declared.contains(name) {
            return Err(format!(
                "the launcher sets override `{name}`, the WGSL declares only {declared:?}"
            ));
        }
        constants.insert(name.to_string(), *value as f64);
    }
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((ShaderStage::Compute, kernel.entry)),
        &constants,
    )
    .map_err(|e| format!("override constants {:?}: {e}", variant.constants))?;
    Ok((module.into_owned(), info.into_owned()))
}

/// Check one compiled variant against its launcher's `Kernel`; every mismatch is a line.
fn check(kernel: &Kernel, module: &Module, info: &ModuleInfo) -> Vec<String> {
    let mut errs = Vec::new();
    let Some(ep_index) = module
        .entry_points
        .iter()
        .position(|e| e.name == kernel.entry)
    else {
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        return vec![format!(
            "no entry point `{}` (the WGSL has {names:?})",
            kernel.entry
        )];
    };
    let ep = &module.entry_points[ep_index];
    if ep.stage != ShaderStage::Compute {
        errs.push(format!("`{}` is a {:?} entry point", ep.name, ep.stage));
    }
    if ep.workgroup_size != kernel.workgroup {
        errs.push(format!(
            "@workgroup_size is {:?}, the launcher dispatches for {:?}",
            ep.workgroup_size, kernel.workgroup
        ));
    }

    let n = kernel.bindings.len() as u32;
    let uses = info.get_entry_point(ep_index);
    let mut params_used = false;
    for (handle, var) in module.global_variables.iter() {
        if uses[handle].is_empty() {
            continue;
        }
        let Some(rb) = &var.binding else { continue };
        let name = var.name.as_deref().unwrap_or("?");
        if rb.group != 0 {
            errs.push(format!(
                "`{name}` is in group {}, launchers bind group 0",
                rb.group
            ));
            continue;
        }
        match (rb.binding.cmp(&n), var.space) {
            (std::cmp::Ordering::Less, AddressSpace::Storage { access }) => {
                let want = kernel.bindings[rb.binding as usize];
                let got = if access.contains(StorageAccess::STORE) {
                    Binding::ReadWrite
                } else {
                    Binding::Read
                };
                if got != want {
                    errs.push(format!(
                        "binding {} `{name}` is {got:?} in the WGSL, {want:?} in the launcher",
                        rb.binding
                    ));
                }
            }
            (std::cmp::Ordering::Equal, AddressSpace::Uniform) => {
                params_used = true;
                errs.extend(
                    check_params(module, var.ty, kernel.params)
                        .into_iter()
                        .map(|e| format!("Params: {e}")),
                );
            }
            (std::cmp::Ordering::Greater, _) => errs.push(format!(
                "binding {} `{name}` is beyond the launcher's {n} storage buffers + Params",
                rb.binding
            )),
            (_, space) => errs.push(format!(
                "binding {} `{name}` is {space:?}; the launcher binds {}",
                rb.binding,
                if rb.binding < n {
                    "a storage buffer"
                } else {
                    "the Params uniform"
                }
            )),
        }
    }
    if !params_used {
        errs.push(format!(
            "the entry point does not use the Params uniform at binding {n}"
        ));
    }
    errs
}

/// The WGSL struct `ty` against the Rust layout.
fn check_params(module: &Module, ty: naga::Handle<naga::Type>, rust: &ParamsLayout) -> Vec<String> {
    let mut errs = Vec::new();
    let t = &module.types[ty];
    let TypeInner::Struct { members, span } = &t.inner else {
        return vec![format!("the uniform is not a struct ({:?})", t.inner)];
    };
    if t.name.as_deref() != Some("Params") {
        errs.push(format!(
            "the uniform's type is `{:?}`, not `Params`",
            t.name
        ));
    }
    let mut layouter = naga::proc::Layouter::default();
    if let Err(e) = layouter.update(module.to_ctx()) {
        return vec![format!("layout: {e}")];
    }
    if *span as usize != rust.size {
        errs.push(format!(
            "the WGSL struct has {span} bytes, Rust's {} has {}",
            rust.name, rust.size
        ));
    }
    let is_pad = |name: &str| name.starts_with('_');
    for m in members {
        let name = m.name.as_deref().unwrap_or("?");
        if is_pad(name) {
            continue;
        }
        let size = layouter[m.ty].size as usize;
        let Some(f) = rust.fields.iter().find(|f| f.name == name) else {
            errs.push(format!(
                "`{name}` (offset {}) is not in Rust's {}",
                m.offset, rust.name
            ));
            continue;
        };
        if f.offset != m.offset as usize || f.size != size {
            errs.push(format!(
                "`{name}` is at offset {} with {size} bytes in the WGSL, offset {} with {} bytes in Rust",
                m.offset, f.offset, f.size
            ));
        }
        let wgsl_kind = match module.types[m.ty].inner {
            TypeInner::Scalar(s) => Some(s.kind),
            _ => None,
        };
        let rust_kind = match f.ty {
            "u32" => Some(ScalarKind::Uint),
            "i32" => Some(ScalarKind::Sint),
            "f32" => Some(ScalarKind::Float),
            _ => None,
        };
        if (wgsl_kind.is_some() || rust_kind.is_some()) && wgsl_kind != rust_kind {
            errs.push(format!(
                "`{name}` is {:?} in the WGSL, {} in Rust",
                module.types[m.ty].inner, f.ty
            ));
        }
    }
    for f in rust.fields.iter().filter(|f| !is_pad(f.name)) {
        if !members.iter().any(|m| m.name.as_deref() == Some(f.name)) {
            errs.push(format!("Rust's `{}` is not in the WGSL struct", f.name));
        }
    }
    errs
}

/// Check every variant; the failures, one line each, and how many variants were checked.
fn check_all(variants: &[(Vec<&'static str>, &'static Kernel, Variant)]) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    for (device, kernel, variant) in variants {
        let errs = match compile(kernel, variant, device) {
            Ok((module, info)) => check(kernel, &module, &info),
            Err(e) => vec![e],
        };
        for e in errs {
            failures.push(format!(
                "{} (entry `{}`, defines {:?} + {:?}, constants {:?}): {e}",
                kernel.name, kernel.entry, device, variant.defines, variant.constants
            ));
        }
    }
    (failures, variants.len())
}

fn all_variants() -> Vec<(Vec<&'static str>, &'static Kernel, Variant)> {
    let mut out = Vec::new();
    for device in device_define_sets() {
        for (k, v) in parle::kernels::variants(&device) {
            out.push((device.clone(), k, v));
        }
    }
    out
}

#[test]
fn every_kernel_variant_matches_its_launcher() {
    let variants = all_variants();
    let (failures, n) = check_all(&variants);
    println!("{n} kernel variants checked");
    assert!(n > 100, "only {n} kernel variants: is the table empty?");
    assert!(
        failures.is_empty(),
        "{} contract violations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The `@compute` entry points written in a WGSL file (the name after the next `fn`).
fn entry_points(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("@compute") {
        rest = &rest[i + "@compute".len()..];
        let f = rest.find("fn ").expect("`@compute` without a function");
        let name: String = rest[f + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        out.push(name);
    }
    out
}

#[test]
fn every_entry_point_has_a_launcher() {
    let launched: BTreeSet<(&str, &str)> = all_variants()
        .iter()
        .map(|(_, k, _)| (k.source, k.entry))
        .collect();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    let mut missing = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("shaders/") {
        let path = entry.expect("shaders/ entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        files += 1;
        let source = std::fs::read_to_string(&path).expect("read a shader");
        let entries = entry_points(&source);
        assert!(
            !entries.is_empty(),
            "{} has no @compute entry point",
            path.display()
        );
        for e in entries {
            if !launched.iter().any(|(s, k)| *s == source && *k == e) {
                missing.push(format!("{}: `{e}`", path.display()));
            }
        }
    }
    assert!(files >= 11, "found only {files} shader files in {dir}");
    assert!(
        missing.is_empty(),
        "entry points with no launcher variant in parle::kernels::variants:\n{}",
        missing.join("\n")
    );
}

/// The checks fail on a broken contract: each mutation of a real kernel's `Kernel` is caught.
#[test]
fn a_broken_contract_is_reported() {
    let variants = all_variants();
    let (_, rope, v) = variants
        .iter()
        .find(|(d, k, _)| d.is_empty() && k.name == "rope")
        .expect("the rope kernel");
    let leak = |k: Kernel| -> &'static Kernel { Box::leak(Box::new(k)) };
    let base = || Kernel {
        name: rope.name,
        source: rope.source,
        entry: rope.entry,
        bindings: rope.bindings,
        defines: rope.defines,
        consts: rope.consts,
        workgroup: rope.workgroup,
        params: rope.params,
    };
    let mut fields = rope.params.fields.to_vec();
    fields.swap(0, 1);
    let (f0, f1) = (fields[0].offset, fields[1].offset);
    fields[0].offset = f1;
    fields[1].offset = f0;
    let swapped: &'static [parle::gpu::ParamsField] = Box::leak(fields.into_boxed_slice());
    let mutants = [
        (
            "access",
            leak(Kernel {
                bindings: &[Binding::Read, Binding::Read],
                ..base()
            }),
            "binding 1 `x` is ReadWrite",
        ),
        (
            "count",
            leak(Kernel {
                bindings: &[Binding::Read],
                ..base()
            }),
            "beyond the launcher's 1",
        ),
        (
            "workgroup",
            leak(Kernel {
                workgroup: [128, 1, 1],
                ..base()
            }),
            "@workgroup_size is [256, 1, 1]",
        ),
        (
            "entry",
            leak(Kernel {
                entry: "rope",
                ..base()
            }),
            "no entry point `rope`",
        ),
        (
            "params",
            leak(Kernel {
                params: Box::leak(Box::new(ParamsLayout {
                    fields: swapped,
                    ..*rope.params
                })),
                ..base()
            }),
            "`rows` is at offset 0",
        ),
        (
            "size",
            leak(Kernel {
                params: Box::leak(Box::new(ParamsLayout {
                    size: 32,
                    ..*rope.params
                })),
                ..base()
            }),
            "Rust's Params has 32",
        ),
    ];
    for (what, kernel, expect) in mutants {
        let (failures, _) = check_all(&[(vec![], kernel, v.clone())]);
        assert!(
            failures.iter().any(|f| f.contains(expect)),
            "mutation `{what}` not reported as `{expect}`: {failures:?}"
        );
    }
}
