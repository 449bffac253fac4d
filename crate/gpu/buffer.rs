//! GPU buffers with stable ids (for the bind-group cache) and byte-range views of them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT_BUFFER_ID: AtomicU64 = AtomicU64::new(1);

/// What a buffer is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferUsage {
    /// Read and written by kernels; can be uploaded to and copied from.
    Storage,
    /// A map-readable staging buffer for readback.
    Readback,
}

struct Inner {
    id: u64,
    label: String,
    size: u64,
    buffer: wgpu::Buffer,
}

/// A GPU buffer. Cheap to clone (shared handle); `id` is unique for the process.
#[derive(Clone)]
pub struct GpuBuffer(Arc<Inner>);

impl GpuBuffer {
    // On the web wgpu handles are neither Send nor Sync; buffers stay on their context's thread.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub(crate) fn from_raw(buffer: wgpu::Buffer, label: &str, size: u64) -> Self {
        Self(Arc::new(Inner {
            id: NEXT_BUFFER_ID.fetch_add(1, Ordering::Relaxed),
            label: label.to_string(),
            size,
            buffer,
        }))
    }
    pub fn id(&self) -> u64 {
        self.0.id
    }
    pub fn label(&self) -> &str {
        &self.0.label
    }
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.0.size
    }
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.0.buffer
    }
    /// The whole buffer as a binding view.
    pub fn view(&self) -> View<'_> {
        View {
            buffer: self,
            offset: 0,
            size: self.size(),
        }
    }
    /// A byte range of the buffer as a binding view. `offset` must respect the device's
    /// storage-offset alignment (256 bytes on most GPUs).
    pub fn slice(&self, offset: u64, size: u64) -> View<'_> {
        View {
            buffer: self,
            offset,
            size,
        }
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuBuffer({} '{}', {} B)",
            self.0.id, self.0.label, self.0.size
        )
    }
}

/// A byte range of a buffer bound to one kernel binding.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub buffer: &'a GpuBuffer,
    pub offset: u64,
    pub size: u64,
}

impl<'a> From<&'a GpuBuffer> for View<'a> {
    fn from(b: &'a GpuBuffer) -> Self {
        b.view()
    }
}
