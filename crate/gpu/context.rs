//! Device acquisition, capabilities, and the caches that hang off a device.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::kernel::{BindGroupCache, Pipeline, PipelineKey};
use super::{BufferUsage, GpuBuffer, GpuError, GpuResult};

/// Switches for device acquisition. Native: read from the environment by [`Options::from_env`]
/// (`PARLE_FORCE_F32=1`, `PARLE_NO_SUBGROUPS=1`; `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and
/// `WGPU_POWER_PREF` are honoured as in wgpu). Web: passed by the page.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Never use `shader-f16`, even when the adapter has it.
    pub force_f32: bool,
    /// Never use subgroup operations, even when the adapter has them.
    pub no_subgroups: bool,
    /// Minimum storage-buffer binding size the caller needs (bytes); 0 = parle's default minimum.
    pub min_storage_binding: u64,
    /// Request `timestamp-query` when the adapter has it, for frame profiles
    /// ([`super::Profiler`]); normal runs leave it off.
    pub timestamps: bool,
}

impl Options {
    /// Options from `PARLE_FORCE_F32` and `PARLE_NO_SUBGROUPS` (any value but `0` or empty sets them).
    pub fn from_env() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let flag = |k: &str| {
                std::env::var(k)
                    .map(|v| !v.is_empty() && v != "0")
                    .unwrap_or(false)
            };
            Self {
                force_f32: flag("PARLE_FORCE_F32"),
                no_subgroups: flag("PARLE_NO_SUBGROUPS"),
                min_storage_binding: 0,
                timestamps: false,
            }
        }
        #[cfg(target_arch = "wasm32")]
        Self::default()
    }
}

/// What the device gives us, and which optional paths are on.
#[derive(Debug, Clone)]
pub struct Capabilities {
    pub adapter_name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// CPU (software) rasterizer such as lavapipe, SwiftShader or WARP.
    pub is_software: bool,
    /// `shader-f16` is enabled and used.
    pub f16: bool,
    /// The adapter offers `shader-f16` (even if forced off).
    pub f16_available: bool,
    /// Subgroup operations are enabled and used.
    pub subgroups: bool,
    /// The adapter offers subgroups (even if forced off).
    pub subgroups_available: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// Running on the browser's WebGPU (Tint/Dawn), not wgpu-core + naga.
    pub web: bool,
    /// The adapter offers timestamp queries.
    pub timestamp_query: bool,
    /// Timestamp queries are enabled on the device ([`Options::timestamps`]).
    pub timestamps: bool,
    pub max_storage_binding: u64,
    pub max_buffer_size: u64,
    pub max_storage_buffers_per_stage: u32,
    pub max_workgroup_size_x: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroup_storage: u32,
    pub max_workgroups_per_dimension: u32,
    pub min_storage_offset_alignment: u32,
    pub min_uniform_offset_alignment: u32,
}

impl Capabilities {
    /// Human-readable multi-line summary, as printed by `parle info`.
    pub fn report(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        format!(
            "adapter:            {}\n\
             backend:            {}{}\n\
             device type:        {} ({})\n\
             driver:             {}\n\
             shader-f16:         {}\n\
             subgroups:          {}\n\
             timestamp queries:  {}\n\
             max storage binding: {:.0} MiB\n\
             max buffer size:    {:.0} MiB\n\
             storage buffers/stage: {}\n\
             workgroup:          {} invocations, x ≤ {}, {} B shared, {} groups/dim\n\
             offset alignment:   storage {} B, uniform {} B",
            self.adapter_name,
            self.backend,
            if self.web { " (browser WebGPU)" } else { "" },
            self.device_type,
            if self.is_software {
                "software"
            } else {
                "hardware"
            },
            if self.driver.is_empty() {
                "-"
            } else {
                &self.driver
            },
            on_off(self.f16, self.f16_available),
            if self.subgroups {
                format!(
                    "on (size {}..{})",
                    self.subgroup_min_size, self.subgroup_max_size
                )
            } else {
                on_off(false, self.subgroups_available)
            },
            if self.timestamp_query { "yes" } else { "no" },
            mib(self.max_storage_binding),
            mib(self.max_buffer_size),
            self.max_storage_buffers_per_stage,
            self.max_invocations_per_workgroup,
            self.max_workgroup_size_x,
            self.max_workgroup_storage,
            self.max_workgroups_per_dimension,
            self.min_storage_offset_alignment,
            self.min_uniform_offset_alignment,
        )
    }
}

fn on_off(on: bool, available: bool) -> String {
    match (on, available) {
        (true, _) => "on".into(),
        (false, true) => "off (available, switched off)".into(),
        (false, false) => "not available".into(),
    }
}

/// wgpu's web backend names the adapter from `GPUAdapterInfo.description`, which Chrome leaves
/// empty; fall back to its vendor, architecture and device (SwiftShader: "google swiftshader").
#[cfg(target_arch = "wasm32")]
fn with_web_adapter_name(mut info: wgpu::AdapterInfo, device: &wgpu::Device) -> wgpu::AdapterInfo {
    use wasm_bindgen::JsValue;
    if !info.name.is_empty() {
        return info;
    }
    let Some(dev) = device.as_webgpu() else {
        return info;
    };
    let get = |obj: &JsValue, key: &str| {
        js_sys::Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    };
    let adapter_info = get(dev.as_ref(), "adapterInfo");
    let parts: Vec<String> = ["vendor", "architecture", "device"]
        .iter()
        .filter_map(|k| get(&adapter_info, k).as_string())
        .filter(|s| !s.is_empty())
        .collect();
    info.name = if parts.is_empty() {
        "unnamed browser adapter".into()
    } else {
        parts.join(" ")
    };
    info
}

/// The least a device must offer for parle's kernels.
pub const MIN_STORAGE_BUFFERS_PER_STAGE: u32 = 8;
pub const MIN_INVOCATIONS_PER_WORKGROUP: u32 = 256;
pub const MIN_WORKGROUP_STORAGE: u32 = 16384;
pub const MIN_STORAGE_BINDING: u64 = 128 << 20;

pub(crate) struct Caches {
    pub pipelines: HashMap<PipelineKey, Arc<Pipeline>>,
    pub bind_groups: BindGroupCache,
}

/// A GPU device with its queue, capabilities and caches. Not `Send` on the web; one per thread.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    caps: Capabilities,
    pub(crate) caches: RefCell<Caches>,
    /// Errors the device reported outside any error scope, classified by wgpu's error type.
    errors: Arc<Mutex<Vec<GpuError>>>,
    lost: Arc<Mutex<Option<String>>>,
    /// Uniform buffer holding one 256-byte parameter slot per kernel launch of a frame (a larger
    /// parameter block takes consecutive slots).
    pub(crate) param_arena: GpuBuffer,
    allocated: std::cell::Cell<u64>,
}

impl Context {
    /// Find an adapter and open a device with the limits and features parle needs.
    pub async fn new(opts: &Options) -> GpuResult<Self> {
        #[cfg(not(target_arch = "wasm32"))]
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        #[cfg(target_arch = "wasm32")]
        let instance = {
            let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
            desc.backends = wgpu::Backends::BROWSER_WEBGPU;
            wgpu::Instance::new(desc)
        };
        let adapter = Self::pick_adapter(&instance).await?;
        Self::from_adapter(adapter, opts).await
    }

    async fn pick_adapter(instance: &wgpu::Instance) -> GpuResult<wgpu::Adapter> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
            let wanted_lc = wanted.to_lowercase();
            let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            return adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&wanted_lc))
                .ok_or_else(|| GpuError::NoAdapter {
                    detail: format!("WGPU_ADAPTER_NAME='{wanted}' matches none of {names:?}"),
                    hint: "Unset WGPU_ADAPTER_NAME or set it to part of one of the names listed."
                        .into(),
                });
        }
        let power =
            wgpu::PowerPreference::from_env().unwrap_or(wgpu::PowerPreference::HighPerformance);
        instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: power,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| GpuError::NoAdapter {
                detail: e.to_string(),
                hint: if cfg!(target_arch = "wasm32") {
                    "This browser has no usable WebGPU: use a recent Chrome, Edge or Safari with WebGPU enabled, and check that hardware acceleration is on.".into()
                } else {
                    "Install a Vulkan driver (on Debian/Ubuntu: `apt-get install mesa-vulkan-drivers` gives the lavapipe CPU driver), check WGPU_BACKEND and VK_ICD_FILENAMES, or run on a machine with a GPU.".into()
                },
            })
    }

    /// Open a device on a chosen adapter.
    pub async fn from_adapter(adapter: wgpu::Adapter, opts: &Options) -> GpuResult<Self> {
        let info = adapter.get_info();
        let have = adapter.limits();
        let feats = adapter.features();
        let need_binding = opts
            .min_storage_binding
            .max(MIN_STORAGE_BINDING)
            .min(have.max_buffer_size);
        let checks: [(&'static str, u64, u64); 4] = [
            (
                "maxStorageBuffersPerShaderStage",
                have.max_storage_buffers_per_shader_stage as u64,
                MIN_STORAGE_BUFFERS_PER_STAGE as u64,
            ),
            (
                "maxComputeInvocationsPerWorkgroup",
                have.max_compute_invocations_per_workgroup as u64,
                MIN_INVOCATIONS_PER_WORKGROUP as u64,
            ),
            (
                "maxComputeWorkgroupStorageSize",
                have.max_compute_workgroup_storage_size as u64,
                MIN_WORKGROUP_STORAGE as u64,
            ),
            (
                "maxStorageBufferBindingSize",
                have.max_storage_buffer_binding_size,
                need_binding,
            ),
        ];
        for (what, h, n) in checks {
            if h < n {
                return Err(GpuError::LimitsTooSmall {
                    adapter: info.name.clone(),
                    what,
                    have: h,
                    need: n,
                });
            }
        }
        let f16_available = feats.contains(wgpu::Features::SHADER_F16);
        let subgroups_available = feats.contains(wgpu::Features::SUBGROUP);
        let f16 = f16_available && !opts.force_f32;
        let subgroups = subgroups_available && !opts.no_subgroups;
        let timestamp_query = feats.contains(wgpu::Features::TIMESTAMP_QUERY);
        let mut required_features = wgpu::Features::empty();
        if f16 {
            required_features |= wgpu::Features::SHADER_F16;
        }
        if subgroups {
            required_features |= wgpu::Features::SUBGROUP;
        }
        let timestamps = timestamp_query && opts.timestamps;
        if timestamps {
            required_features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        // Ask for what the adapter has: the big models need its full buffer limits.
        let required_limits = have.clone();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("parle"),
                required_features,
                required_limits: required_limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::RequestDevice {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;

        let errors: Arc<Mutex<Vec<GpuError>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("uncaptured GPU error: {e}");
            let e = match e {
                wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemoryReported {
                    message: e.to_string(),
                },
                _ => GpuError::Validation(e.to_string()),
            };
            if let Ok(mut v) = sink.lock() {
                v.push(e);
            }
        }));
        let lost: Arc<Mutex<Option<String>>> = Arc::default();
        let lost_sink = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut l) = lost_sink.lock() {
                *l = Some(format!("{reason:?}: {msg}"));
            }
        });
        #[cfg(target_arch = "wasm32")]
        let info = with_web_adapter_name(info, &device);
        let lim = device.limits();
        let is_software = info.device_type == wgpu::DeviceType::Cpu
            || ["llvmpipe", "lavapipe", "swiftshader", "warp", "software"]
                .iter()
                .any(|s| {
                    info.name.to_lowercase().contains(s) || info.driver.to_lowercase().contains(s)
                });
        let caps = Capabilities {
            adapter_name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: [info.driver.as_str(), info.driver_info.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            is_software,
            f16,
            f16_available,
            subgroups,
            subgroups_available,
            subgroup_min_size: info.subgroup_min_size,
            subgroup_max_size: info.subgroup_max_size,
            web: info.backend == wgpu::Backend::BrowserWebGpu,
            timestamp_query,
            timestamps,
            max_storage_binding: lim.max_storage_buffer_binding_size,
            max_buffer_size: lim.max_buffer_size,
            max_storage_buffers_per_stage: lim.max_storage_buffers_per_shader_stage,
            max_workgroup_size_x: lim.max_compute_workgroup_size_x,
            max_invocations_per_workgroup: lim.max_compute_invocations_per_workgroup,
            max_workgroup_storage: lim.max_compute_workgroup_storage_size,
            max_workgroups_per_dimension: lim.max_compute_workgroups_per_dimension,
            min_storage_offset_alignment: lim.min_storage_buffer_offset_alignment,
            min_uniform_offset_alignment: lim.min_uniform_buffer_offset_alignment,
        };
        let arena_bytes = super::recorder::PARAM_SLOTS as u64 * super::PARAM_SLOT_BYTES;
        let param_arena = GpuBuffer::from_raw(
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel parameters"),
                size: arena_bytes,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            "kernel parameters",
            arena_bytes,
        );
        Ok(Self {
            allocated: std::cell::Cell::new(arena_bytes),
            param_arena,
            device,
            queue,
            caps,
            caches: RefCell::new(Caches {
                pipelines: HashMap::new(),
                bind_groups: BindGroupCache::new(4096),
            }),
            errors,
            lost,
        })
    }

    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }

    /// Defines that select kernel variants (`F16`, `SUBGROUPS`, `WEB`).
    pub fn defines(&self) -> Vec<&'static str> {
        let mut d = Vec::new();
        if self.caps.f16 {
            d.push("F16");
        }
        if self.caps.subgroups {
            d.push("SUBGROUPS");
        }
        if self.caps.web {
            d.push("WEB");
        }
        d
    }

    /// The per-backend WGSL prelude: `enable` directives that this backend accepts.
    /// naga rejects `enable subgroups;` while Chrome's Tint requires it.
    pub fn prelude(&self) -> String {
        super::wgsl::prelude(self.caps.f16, self.caps.subgroups && self.caps.web)
    }

    /// Allocate a zero-filled buffer.
    pub fn create_buffer(
        &self,
        label: &str,
        bytes: u64,
        usage: BufferUsage,
    ) -> GpuResult<GpuBuffer> {
        self.check_lost()?;
        if bytes > self.caps.max_buffer_size {
            return Err(GpuError::BufferTooLarge {
                label: label.into(),
                bytes,
                max: self.caps.max_buffer_size,
            });
        }
        let usage = match usage {
            BufferUsage::Storage => {
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_DST
                    | wgpu::BufferUsages::COPY_SRC
            }
            BufferUsage::Readback => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        };
        // Storage bindings must be a multiple of 4 bytes and non-empty.
        let size = bytes.max(4).div_ceil(4) * 4;
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        });
        #[cfg(not(target_arch = "wasm32"))]
        if pollster::block_on(scope.pop()).is_some() {
            return Err(GpuError::OutOfMemory {
                label: label.into(),
                bytes,
            });
        }
        self.allocated.set(self.allocated.get() + size);
        Ok(GpuBuffer::from_raw(buffer, label, size))
    }

    /// Bytes of GPU buffers created on this context so far (the static plan's footprint).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.get()
    }

    /// Allocate a buffer and fill it with `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> GpuResult<GpuBuffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buf = self.create_buffer(label, bytes.len() as u64, BufferUsage::Storage)?;
        self.write(&buf, 0, bytes);
        Ok(buf)
    }

    /// Write bytes into a buffer (queued before the next submit). Pads to 4 bytes.
    pub fn write(&self, buf: &GpuBuffer, offset: u64, bytes: &[u8]) {
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(buf.raw(), offset, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(bytes.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(buf.raw(), offset, &padded);
        }
    }

    /// Errors reported asynchronously by the device (validation, out of memory) since last call.
    pub fn take_errors(&self) -> Vec<GpuError> {
        self.errors
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }

    /// `Err` if the device was lost or reported an error since the last check.
    pub fn check(&self) -> GpuResult<()> {
        self.check_lost()?;
        let mut errs = self.take_errors();
        // Out of memory is the actionable one when both kinds were reported.
        if let Some(i) = errs
            .iter()
            .position(|e| matches!(e, GpuError::OutOfMemoryReported { .. }))
        {
            return Err(errs.swap_remove(i));
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(GpuError::Validation(
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )),
        }
    }

    /// Destroy the device on purpose (the page's device-loss drill). The context is lost from
    /// now on, before the browser's lost callback comes.
    pub fn destroy(&self) {
        if let Ok(mut l) = self.lost.lock() {
            l.get_or_insert_with(|| "Destroyed: the device was destroyed".into());
        }
        self.device.destroy();
    }

    pub(crate) fn check_lost(&self) -> GpuResult<()> {
        match self.lost.lock().ok().and_then(|l| l.clone()) {
            Some(reason) => Err(GpuError::DeviceLost { reason }),
            None => Ok(()),
        }
    }

    /// Copy `size` bytes at `offset` of `buf` to the CPU. Never blocks the browser: on the web
    /// it awaits the map callback; natively it waits on the device.
    pub async fn read(&self, buf: &GpuBuffer, offset: u64, size: u64) -> GpuResult<Vec<u8>> {
        let size4 = size.div_ceil(4) * 4;
        let staging = self.create_buffer("readback", size4, BufferUsage::Readback)?;
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        enc.copy_buffer_to_buffer(buf.raw(), offset, staging.raw(), 0, size4);
        self.queue.submit([enc.finish()]);
        let mut out = super::readback::map_read(self, staging.raw(), size4).await?;
        out.truncate(size as usize);
        self.check()?;
        Ok(out)
    }

    /// Read a buffer as f32 values.
    pub async fn read_f32(&self, buf: &GpuBuffer) -> GpuResult<Vec<f32>> {
        let bytes = self.read(buf, 0, buf.size()).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Read a buffer as u32 values.
    pub async fn read_u32(&self, buf: &GpuBuffer) -> GpuResult<Vec<u32>> {
        let bytes = self.read(buf, 0, buf.size()).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Block until the GPU is idle (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_idle(&self) -> GpuResult<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::DeviceLost {
                reason: e.to_string(),
            })
    }

    /// Number of cached pipelines and bind groups (for diagnostics).
    pub fn cache_sizes(&self) -> (usize, usize) {
        let c = self.caches.borrow();
        (c.pipelines.len(), c.bind_groups.len())
    }
}
