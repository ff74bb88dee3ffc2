//! The GPU: one adapter, its device and queue, and what keeps their errors
//! from being lost. wgpu panics on an error nobody captured, and reports a
//! lost device through a callback; here both become [`GpuError`]s returned
//! by the next call, so a caller can drop the context and build a new one.

use crate::error::GpuError;
use crate::program::ProgramCache;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the device reported outside any call's error scope.
#[derive(Default)]
struct Health {
    lost: Mutex<Option<String>>,
    uncaptured: Mutex<Option<wgpu::Error>>,
}

/// An adapter's device and queue, with error capture and a thread that
/// drives buffer mapping, so that nothing waiting for the GPU blocks the
/// caller's thread.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    health: Arc<Health>,
    programs: ProgramCache,
    poller: Poller,
    /// Every buffer made through [`GpuContext::create_buffer`]: the count
    /// that shows a steady-state run allocates nothing on the GPU.
    buffers_created: AtomicU64,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.describe()).finish_non_exhaustive()
    }
}

impl GpuContext {
    /// Opens the high-performance adapter (no surface: compute only) with
    /// all of its limits. `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` in the
    /// environment narrow the choice, as in every wgpu program.
    pub async fn new() -> Result<Self, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let options = wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() };
        let adapter = instance.request_adapter(&options).await.map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let limits = adapter.limits();
        let descriptor = wgpu::DeviceDescriptor { label: Some("byob-webgpu"), required_limits: limits.clone(), ..Default::default() };
        let (device, queue) = adapter.request_device(&descriptor).await.map_err(|e| GpuError::RequestDevice(e.to_string()))?;
        Self::with_device(&adapter, device, queue)
    }

    /// A context on the caller's device and queue, so that its buffers and
    /// byob's are one device's: a session's inputs can be written by the
    /// caller's own compute passes and its outputs read by the caller's
    /// copies, in queue order. The device's lost-device callback and
    /// uncaptured-error handler are replaced by this context's (errors then
    /// come back from byob's next call). byob uses the device's limits.
    pub fn with_device(adapter: &wgpu::Adapter, device: wgpu::Device, queue: wgpu::Queue) -> Result<Self, GpuError> {
        let limits = device.limits();
        let health = Arc::new(Health::default());
        let lost = Arc::clone(&health);
        device.set_device_lost_callback(move |reason, message| {
            *lost.lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(format!("{reason:?}: {message}"));
        });
        let uncaptured = Arc::clone(&health);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            // The first error is the cause; later ones tend to be its echoes.
            uncaptured.uncaptured.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(error);
        }));
        let poller = Poller::start(device.clone()).map_err(|e| GpuError::Internal { what: "starting the GPU polling thread".into(), message: e.to_string() })?;
        Ok(Self { device, queue, info: adapter.get_info(), limits, health, programs: ProgramCache::default(), poller, buffers_created: AtomicU64::new(0) })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device's limits: the adapter's own, all requested.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The compiled programs of this device.
    pub fn programs(&self) -> &ProgramCache {
        &self.programs
    }

    /// Creates a buffer and counts it. Every buffer of this crate is made
    /// here (or by [`create_buffer_init`](Self::create_buffer_init)).
    pub fn create_buffer(&self, descriptor: &wgpu::BufferDescriptor<'_>) -> wgpu::Buffer {
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(descriptor)
    }

    /// Creates a buffer holding `descriptor.contents` and counts it.
    pub fn create_buffer_init(&self, descriptor: &wgpu::util::BufferInitDescriptor<'_>) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer_init(descriptor)
    }

    /// Buffers created on this device so far, by anyone in this crate.
    pub fn buffers_created(&self) -> u64 {
        self.buffers_created.load(Ordering::Relaxed)
    }

    /// One line for logs and `byob info`: name, backend, type and driver.
    pub fn describe(&self) -> String {
        let i = &self.info;
        format!("{} ({:?}, {:?}, {} {})", i.name, i.backend, i.device_type, i.driver, i.driver_info).trim_end().to_string()
    }

    /// Fails once the device is lost, or with the first error that
    /// happened outside a scope since the last check.
    pub fn check(&self) -> Result<(), GpuError> {
        if let Some(reason) = self.health.lost.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Err(GpuError::DeviceLost(reason));
        }
        match self.health.uncaptured.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some(error) => Err(GpuError::from_wgpu(error, "earlier GPU work")),
            None => Ok(()),
        }
    }

    /// Runs `f` (which records or submits GPU work) inside error scopes
    /// and returns what they caught as an error naming `what`.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        self.check()?;
        let memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let value = f();
        // Native wgpu resolves scopes at once; a backend that did not would
        // report through the uncaptured handler instead.
        let errors = [internal.pop(), validation.pop(), memory.pop()].map(|scope| ready(scope).flatten());
        self.check()?;
        match errors.into_iter().flatten().next() {
            Some(error) => Err(GpuError::from_wgpu(error, what)),
            None => Ok(value),
        }
    }

    /// Waits, without holding the thread, until the GPU has finished every
    /// piece of work submitted so far (a run whose outputs stay on the GPU
    /// returns before that).
    pub async fn idle(&self) -> Result<(), GpuError> {
        let signal = std::sync::Arc::new(crate::sync::Signal::default());
        let done = std::sync::Arc::clone(&signal);
        let waiting = self.poller.begin();
        self.queue.on_submitted_work_done(move || {
            done.set(Ok(()));
            waiting.end();
        });
        let finished = signal.wait().await;
        self.check()?;
        finished.map_err(|message| GpuError::Internal { what: "waiting for the GPU".into(), message })
    }

    /// Maps `buffer` for reading and calls `done` when it is mapped (or
    /// failed to map), from the polling thread.
    pub(crate) fn map_read(&self, buffer: &wgpu::Buffer, size: u64, done: impl FnOnce(Result<(), wgpu::BufferAsyncError>) + Send + 'static) {
        let waiting = self.poller.begin();
        buffer.map_async(wgpu::MapMode::Read, ..size, move |result| {
            done(result);
            waiting.end();
        });
    }
}

/// The output of a future that is already complete.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// Native wgpu completes mappings only while someone polls the device. This
/// thread polls while mappings are outstanding and sleeps otherwise.
struct Poller {
    shared: Arc<PollShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct PollShared {
    state: Mutex<PollState>,
    changed: Condvar,
}

#[derive(Default)]
struct PollState {
    outstanding: usize,
    stop: bool,
}

/// One outstanding mapping; `end` when its callback ran.
struct Outstanding(Arc<PollShared>);

impl Outstanding {
    fn end(self) {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner).outstanding -= 1;
    }
}

impl Poller {
    fn start(device: wgpu::Device) -> std::io::Result<Self> {
        let shared = Arc::new(PollShared::default());
        let polled = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("byob-webgpu-poll".into())
            .spawn(move || loop {
                {
                    let mut state = polled.state.lock().unwrap_or_else(PoisonError::into_inner);
                    while state.outstanding == 0 && !state.stop {
                        state = polled.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                    }
                    if state.stop {
                        return;
                    }
                }
                // Waits for the newest submission; a mapping requested after
                // it resolves on the next round. A lost device resolves every
                // mapping with an error, so this never spins forever.
                let wait = wgpu::PollType::Wait { submission_index: None, timeout: Some(Duration::from_millis(100)) };
                if matches!(device.poll(wait), Ok(wgpu::PollStatus::QueueEmpty) | Err(_)) {
                    std::thread::sleep(Duration::from_micros(50));
                }
            })?;
        Ok(Self { shared, thread: Some(thread) })
    }

    fn begin(&self) -> Outstanding {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner).outstanding += 1;
        self.shared.changed.notify_one();
        Outstanding(Arc::clone(&self.shared))
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        self.shared.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
