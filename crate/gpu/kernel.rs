//! Kernels (WGSL sources with a declared binding list), their compiled pipelines, and a bounded
//! bind-group cache.
//!
//! Binding convention for every kernel: `@group(0)`, bindings `0..n-1` are the storage buffers in
//! the order of [`Kernel::bindings`], and binding `n` is `var<uniform> p: Params` bound with a
//! dynamic offset into the recorder's parameter arena.
//!
//! A `Kernel` is also the contract between its launcher and its WGSL: the defines that select its
//! bindings, the geometry constants injected into the source ([`Kernel::consts`]), the workgroup
//! size the launcher's dispatch assumes and the Rust layout of its `Params`. `tests/reflect.rs`
//! parses every kernel variant with naga and checks the WGSL against all of them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Context, GpuError, GpuResult, ParamsLayout};

/// How a kernel uses one storage binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binding {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
}

/// A compute kernel: WGSL source, entry point, binding list, and what the launcher assumes of it.
#[derive(Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
    pub bindings: &'static [Binding],
    /// `//#if` defines this kernel is always compiled with (those that select its entry point and
    /// its binding numbers), on top of the device's and the [`Variant`]'s.
    pub defines: &'static [&'static str],
    /// Geometry constants, injected ahead of the source as `const NAME: u32 = VALUEu;` so that the
    /// launcher's Rust constant is the only place the number is written.
    pub consts: &'static [(&'static str, u32)],
    /// `@workgroup_size` the launcher's dispatch geometry assumes.
    pub workgroup: [u32; 3],
    /// The Rust layout of the `Params` block bound at binding `bindings.len()`.
    pub params: &'static ParamsLayout,
}

/// The variant of a kernel to compile: extra `//#if` defines and pipeline-override constants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Variant {
    pub defines: Vec<&'static str>,
    /// Override constants as (name, value); values are integers in parle's kernels.
    pub constants: Vec<(&'static str, i64)>,
}

impl Variant {
    pub fn none() -> Self {
        Self::default()
    }
    pub fn define(mut self, d: &'static str) -> Self {
        self.defines.push(d);
        self
    }
    pub fn constant(mut self, name: &'static str, value: i64) -> Self {
        self.constants.push((name, value));
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    kernel: &'static str,
    entry: &'static str,
    variant: Variant,
}

static NEXT_PIPELINE_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled kernel.
pub struct Pipeline {
    pub id: u64,
    pub kernel: &'static Kernel,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

impl Context {
    /// The compiled pipeline for a kernel variant, from the cache or compiled now.
    ///
    /// Natively, compile and validation errors come back here as [`GpuError::Shader`]; in the
    /// browser they arrive later through [`Context::check`].
    pub fn pipeline(&self, kernel: &'static Kernel, variant: &Variant) -> GpuResult<Arc<Pipeline>> {
        let key = PipelineKey {
            kernel: kernel.name,
            entry: kernel.entry,
            variant: variant.clone(),
        };
        if let Some(p) = self.caches.borrow().pipelines.get(&key) {
            return Ok(p.clone());
        }
        let source =
            super::assemble(kernel, variant, &self.defines(), &self.prelude()).map_err(|m| {
                GpuError::Shader {
                    kernel: kernel.name.into(),
                    message: m,
                }
            })?;

        let mut entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *b == Binding::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: kernel.bindings.len() as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        });

        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.name),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let constants: Vec<(&str, f64)> = variant
            .constants
            .iter()
            .map(|(k, v)| (*k, *v as f64))
            .collect();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader {
                kernel: kernel.name.into(),
                message: e.to_string(),
            });
        }
        let p = Arc::new(Pipeline {
            id: NEXT_PIPELINE_ID.fetch_add(1, Ordering::Relaxed),
            kernel,
            pipeline,
            layout,
        });
        self.caches.borrow_mut().pipelines.insert(key, p.clone());
        Ok(p)
    }
}

/// (pipeline id, [(buffer id, offset, size)]) identifies a bind group.
pub(crate) type BindKey = (u64, Vec<(u64, u64, u64)>);

/// A bounded FIFO cache of bind groups: per-frame recording reuses the bind groups created for
/// the first frame, so steady-state frames create none.
pub(crate) struct BindGroupCache {
    map: HashMap<BindKey, wgpu::BindGroup>,
    order: VecDeque<BindKey>,
    capacity: usize,
    pub created: u64,
}

impl BindGroupCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            created: 0,
        }
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn get_or_insert(
        &mut self,
        key: BindKey,
        make: impl FnOnce() -> wgpu::BindGroup,
    ) -> wgpu::BindGroup {
        if let Some(bg) = self.map.get(&key) {
            return bg.clone();
        }
        if self.map.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
        let bg = make();
        self.created += 1;
        self.order.push_back(key.clone());
        self.map.insert(key, bg.clone());
        bg
    }
}
