//! Readback from the GPU without blocking the browser's event loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use super::{BufferUsage, Context, GpuBuffer, GpuError, GpuResult, Recorder};

#[derive(Default)]
struct MapState {
    result: Option<Result<(), String>>,
    waker: Option<Waker>,
}

/// A future that resolves when `map_async` calls back. In the browser the callback comes from
/// the event loop; natively, polling the future waits on the device.
struct MapFuture<'a> {
    ctx: &'a Context,
    state: Arc<Mutex<MapState>>,
}

impl Future for MapFuture<'_> {
    type Output = Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            if let Err(e) = self.ctx.device.poll(wgpu::PollType::wait_indefinitely()) {
                return Poll::Ready(Err(e.to_string()));
            }
        }
        #[cfg(target_arch = "wasm32")]
        let _ = self.ctx;
        let mut st = self.state.lock().expect("map state poisoned");
        match st.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Map `size` bytes of a MAP_READ buffer, copy them out and unmap.
pub(crate) async fn map_read(
    ctx: &Context,
    buffer: &wgpu::Buffer,
    size: u64,
) -> GpuResult<Vec<u8>> {
    let state: Arc<Mutex<MapState>> = Arc::default();
    let cb_state = state.clone();
    buffer.map_async(wgpu::MapMode::Read, 0..size, move |r| {
        let mut st = cb_state.lock().expect("map state poisoned");
        st.result = Some(r.map_err(|e| e.to_string()));
        if let Some(w) = st.waker.take() {
            w.wake();
        }
    });
    // A map that fails on a lost device is the loss, not a readback fault.
    MapFuture { ctx, state }
        .await
        .map_err(|m| ctx.check_lost().err().unwrap_or(GpuError::Readback(m)))?;
    let out = {
        let view = buffer
            .get_mapped_range(0..size)
            .map_err(|e| GpuError::Readback(format!("{e:?}")))?;
        view.to_vec()
    };
    buffer.unmap();
    Ok(out)
}

/// One staging buffer's read, detached from its [`FrameReadback`] ([`FrameReadback::slot_read`]).
pub struct SlotRead {
    buffer: GpuBuffer,
    size: u64,
}

impl SlotRead {
    /// Await the copy and return its bytes.
    pub async fn read(self, ctx: &Context) -> GpuResult<Vec<u8>> {
        map_read(ctx, self.buffer.raw(), self.size).await
    }
}

/// Double-buffered per-frame readback of a small region (PCM, tokens, counters): frame N copies
/// into staging buffer N mod 2, so the next frame can be recorded and submitted while frame N's
/// buffer is still being mapped.
pub struct FrameReadback {
    staging: [GpuBuffer; 2],
    size: u64,
    next: usize,
}

impl FrameReadback {
    pub fn new(ctx: &Context, label: &str, size: u64) -> GpuResult<Self> {
        let size = size.div_ceil(4) * 4;
        Ok(Self {
            staging: [
                ctx.create_buffer(&format!("{label} staging 0"), size, BufferUsage::Readback)?,
                ctx.create_buffer(&format!("{label} staging 1"), size, BufferUsage::Readback)?,
            ],
            size,
            next: 0,
        })
    }

    /// Record the copy of `size` bytes from `src` at `offset` into the next staging buffer.
    /// Returns the slot to pass to [`FrameReadback::read`] after the recorder is submitted.
    pub fn record(&mut self, rec: &mut Recorder, src: &GpuBuffer, offset: u64) -> usize {
        let slot = self.next;
        self.next ^= 1;
        rec.copy(src.slice(offset, self.size), self.staging[slot].view());
        slot
    }

    /// Await the copy of `slot` and return its bytes.
    pub async fn read(&self, ctx: &Context, slot: usize) -> GpuResult<Vec<u8>> {
        map_read(ctx, self.staging[slot].raw(), self.size).await
    }

    /// The read of `slot` as a value that owns its staging buffer (a shared handle), so that it can
    /// be awaited without borrowing this readback (or what owns it).
    pub fn slot_read(&self, slot: usize) -> SlotRead {
        SlotRead {
            buffer: self.staging[slot].clone(),
            size: self.size,
        }
    }

    /// The slot the next [`FrameReadback::record`] copies into.
    pub fn next_slot(&self) -> usize {
        self.next
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}
