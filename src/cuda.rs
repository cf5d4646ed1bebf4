//! The CUDA device, through cudarc's driver API loaded at run time: one context per GPU (the
//! primary context, shared with PyTorch), the loader's stream, a stream-ordered memory pool for
//! batch tensors, pinned host memory, and CUDA errors as [`Error::Cuda`].
//!
//! Nothing here panics without a driver: [`Gpu::open`] checks that libcuda loads before the
//! first driver call (cudarc panics otherwise).

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::driver::result::DriverError;
use cudarc::driver::{CudaContext, CudaEvent, CudaStream, result, sys};

use crate::error::{Error, Result};

/// `Error::Cuda` saying what was being done.
pub fn cuda_error(what: &str) -> impl Fn(DriverError) -> Error + '_ {
    move |e| {
        let text = e
            .error_string()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Error::Cuda(format!("{what}: {:?} {text}", e.0))
    }
}

/// One GPU, the stream slipstream's work runs on, and the pool its batch tensors come from.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pool: sys::CUmemoryPool,
    ordinal: usize,
    name: String,
    capability: (i32, i32),
}

// SAFETY: `pool` is a driver handle usable from any thread once the context is bound (every
// method binds it); the rest is cudarc's thread-safe types.
unsafe impl Send for Gpu {}
// SAFETY: as for `Send`; the driver API is thread-safe.
unsafe impl Sync for Gpu {}

/// Load libcuda and initialise the driver, or say clearly why there is none.
fn init_driver() -> Result<()> {
    // SAFETY: only tries to load libcuda; no driver call is made.
    if !unsafe { sys::is_culib_present() } {
        return Err(Error::Cuda(
            "no CUDA driver found (libcuda.so does not load): this machine has no usable \
             NVIDIA GPU; use device=\"cpu\""
                .into(),
        ));
    }
    result::init().map_err(cuda_error("cuInit"))
}

/// The CUDA version the driver supports, as (major, minor): (13, 0) for a 580 driver.
pub fn driver_version() -> Result<(i32, i32)> {
    init_driver()?;
    let mut version = 0;
    // SAFETY: libcuda is loaded and initialised (above); the out pointer is a live i32.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(cuda_error("cuDriverGetVersion"))?;
    Ok((version / 1000, version % 1000 / 10))
}

/// How many GPUs the driver shows this process.
pub fn device_count() -> Result<usize> {
    init_driver()?;
    let count = CudaContext::device_count().map_err(cuda_error("counting GPUs"))?;
    Ok(count.max(0) as usize)
}

/// The oldest CUDA version a driver may support: the kernels and nvJPEG 12 are CUDA 12 code,
/// which every CUDA 12.x driver (525 or newer) runs by CUDA's minor-version compatibility.
pub const MIN_DRIVER: (i32, i32) = (12, 0);
/// The oldest GPUs the kernels run on (build.rs: the target of their PTX).
pub use crate::kernel_images::MIN_COMPUTE_CAPABILITY;

/// Whether the GPU path can run on this driver and GPU; if not, what is there and what is needed.
pub fn check_support(gpu: &str, driver: (i32, i32), capability: (i32, i32)) -> Result<()> {
    if driver < MIN_DRIVER {
        return Err(Error::Cuda(format!(
            "the NVIDIA driver supports CUDA {}.{}; slipstream's GPU path needs CUDA {}.{} or newer \
             (driver 525 or newer): update the driver, or use device=\"cpu\"",
            driver.0, driver.1, MIN_DRIVER.0, MIN_DRIVER.1
        )));
    }
    if capability < MIN_COMPUTE_CAPABILITY {
        return Err(Error::Cuda(format!(
            "{gpu} has compute capability {}.{}; slipstream's kernels need {}.{} or newer \
             (Volta, Turing, Ampere, Ada, Hopper, Blackwell): use device=\"cpu\"",
            capability.0, capability.1, MIN_COMPUTE_CAPABILITY.0, MIN_COMPUTE_CAPABILITY.1
        )));
    }
    Ok(())
}

impl Gpu {
    /// Open GPU `ordinal`, or say clearly why there is none or why it cannot be used.
    pub fn open(ordinal: usize) -> Result<Arc<Gpu>> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(Error::Cuda(format!(
                "device cuda:{ordinal} does not exist: this machine has {count} GPU(s)"
            )));
        }
        // Before the first call that a driver older than cudarc's bindings might lack.
        let device = result::device::get(ordinal as i32).map_err(cuda_error("cuDeviceGet"))?;
        let attribute = |a| {
            // SAFETY: `device` came from cuDeviceGet; the attribute is a plain integer query.
            unsafe { result::device::get_attribute(device, a) }
                .map_err(cuda_error("reading the compute capability"))
        };
        use sys::CUdevice_attribute::*;
        let capability = (
            attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let name = result::device::get_name(device).unwrap_or_else(|_| "unknown GPU".into());
        check_support(
            &format!("cuda:{ordinal} ({name})"),
            driver_version()?,
            capability,
        )?;
        let ctx = CudaContext::new(ordinal).map_err(cuda_error("creating the CUDA context"))?;
        let stream = ctx
            .new_stream()
            .map_err(cuda_error("creating a CUDA stream"))?;
        // Our own pool, so that keeping freed batch memory for reuse (the release threshold)
        // does not change the default pool other libraries use.
        // SAFETY: zero is a valid bit pattern for this plain C struct; the fields that matter
        // are set below.
        let mut props: sys::CUmemPoolProps = unsafe { std::mem::zeroed() };
        props.allocType = sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
        props.location.type_ = sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE;
        props.location.id = ordinal as i32;
        // SAFETY: `props` is a valid, initialised pool description and the context is bound.
        let pool = unsafe { result::mem_pool::create(&props) }
            .map_err(cuda_error("creating a CUDA memory pool"))?;
        let mut keep = u64::MAX;
        // SAFETY: `pool` was just created; the release threshold attribute is a u64.
        unsafe {
            result::mem_pool::set_attribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut keep as *mut u64 as *mut c_void,
            )
        }
        .map_err(cuda_error("configuring the CUDA memory pool"))?;
        Ok(Arc::new(Gpu {
            ctx,
            stream,
            pool,
            ordinal,
            name,
            capability,
        }))
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// (major, minor): (9, 0) for an H100.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.capability
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Make the context current on this thread (nvJPEG and raw driver calls need it).
    pub fn bind(&self) -> Result<()> {
        self.ctx
            .bind_to_thread()
            .map_err(cuda_error("binding the CUDA context"))
    }

    /// `bytes` of device memory, allocated in stream order on our stream.
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> Result<DeviceMemory> {
        self.bind()?;
        // SAFETY: the pool and stream are live; the memory is only used in stream order.
        let ptr = unsafe {
            result::mem_pool::alloc_async(self.pool, bytes.max(1), self.stream.cu_stream())
        }
        .map_err(cuda_error(&format!(
            "allocating {bytes} bytes on cuda:{}",
            self.ordinal
        )))?;
        Ok(DeviceMemory {
            gpu: Arc::clone(self),
            ptr,
            len: bytes,
            consumers: Mutex::new(Vec::new()),
        })
    }

    /// `bytes` of page-locked host memory, cached (not write-combined: the CPU writes and
    /// nvJPEG parses it).
    pub fn pinned(self: &Arc<Self>, bytes: usize) -> Result<PinnedMemory> {
        self.bind()?;
        // SAFETY: a plain allocation; freed once in `Drop`.
        let ptr = unsafe { result::malloc_host(bytes.max(1), 0) }.map_err(cuda_error(&format!(
            "allocating {bytes} bytes of pinned memory"
        )))?;
        // SAFETY: `ptr` points to at least `bytes` writable bytes; zeroing them once makes
        // every later read of the slice a read of initialised memory.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, bytes) };
        Ok(PinnedMemory {
            gpu: Arc::clone(self),
            ptr: ptr as *mut u8,
            len: bytes,
        })
    }

    /// Bytes the batch-tensor pool holds from the device (in use or kept for reuse).
    pub fn pool_bytes(&self) -> u64 {
        let mut value = 0u64;
        // SAFETY: the pool is live; the attribute is a u64.
        let ok = self.bind().is_ok()
            && unsafe {
                result::mem_pool::get_attribute(
                    self.pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT,
                    &mut value as *mut u64 as *mut c_void,
                )
            }
            .is_ok();
        if ok { value } else { 0 }
    }

    /// An event marking the work queued on our stream so far.
    pub fn record(&self) -> Result<CudaEvent> {
        self.stream
            .record_event(None)
            .map_err(cuda_error("recording a CUDA event"))
    }

    /// Make `consumer` (a raw `CUstream`, or the sentinels 1 and 2) wait for `event`.
    pub fn make_wait(&self, consumer: usize, event: &CudaEvent) -> Result<()> {
        self.bind()?;
        // SAFETY: the consumer handed us this stream handle through the DLPack protocol, which
        // requires it to be a live stream of this device (or a default-stream sentinel).
        unsafe {
            result::stream::wait_event(
                consumer as sys::CUstream,
                event.cu_event(),
                sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
            )
        }
        .map_err(cuda_error("making the consumer stream wait"))
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        // Errors cannot be returned from drop; the context records them.
        self.ctx.record_err(self.ctx.bind_to_thread());
        self.ctx.record_err(self.stream.synchronize());
        // SAFETY: every `DeviceMemory` holds an `Arc<Gpu>`, so none is left in the pool.
        self.ctx
            .record_err(unsafe { result::mem_pool::destroy(self.pool) });
    }
}

/// Device memory from the pool. Freed in stream order after the work already queued on every
/// stream that consumed it (see [`DeviceMemory::consumed_on`]), so a consumer's pending kernels
/// never see it reused.
pub struct DeviceMemory {
    gpu: Arc<Gpu>,
    ptr: sys::CUdeviceptr,
    len: usize,
    consumers: Mutex<Vec<usize>>,
}

impl DeviceMemory {
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Remember that `stream` (a DLPack consumer's) may read this memory.
    pub fn consumed_on(&self, stream: usize) {
        let mut consumers = self.consumers.lock().unwrap_or_else(|e| e.into_inner());
        if !consumers.contains(&stream) {
            consumers.push(stream);
        }
    }

    fn release(&mut self) -> Result<()> {
        self.gpu.bind()?;
        let ours = self.gpu.stream.cu_stream();
        let consumers = std::mem::take(self.consumers.get_mut().unwrap_or_else(|e| e.into_inner()));
        for stream in consumers {
            let event = self
                .gpu
                .ctx
                .new_event(None)
                .map_err(cuda_error("creating a CUDA event"))?;
            // SAFETY: `stream` was handed to us by a consumer as a live stream; recording an
            // event on it orders our free after everything it has queued so far.
            let recorded =
                unsafe { result::event::record(event.cu_event(), stream as sys::CUstream) };
            match recorded {
                Ok(()) => self
                    .gpu
                    .stream
                    .wait(&event)
                    .map_err(cuda_error("ordering a free after the consumer"))?,
                // The stream is gone: wait for the whole device instead of guessing.
                Err(_) => self
                    .gpu
                    .ctx
                    .synchronize()
                    .map_err(cuda_error("synchronizing before a free"))?,
            }
        }
        // SAFETY: allocated from our pool on our stream, freed once, after every use above.
        unsafe { result::free_async(self.ptr, ours) }.map_err(cuda_error("freeing device memory"))
    }
}

impl Drop for DeviceMemory {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            // Drop cannot fail; the memory stays allocated (a leak, not a use after free).
            eprintln!("slipstream: {e}");
        }
    }
}

/// Page-locked host memory.
pub struct PinnedMemory {
    gpu: Arc<Gpu>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain host memory owned by this value; `&mut` access is exclusive as usual.
unsafe impl Send for PinnedMemory {}
// SAFETY: shared access only reads.
unsafe impl Sync for PinnedMemory {}

impl PinnedMemory {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised bytes (zeroed at allocation) owned by
        // this value.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as `as_slice`, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for PinnedMemory {
    fn drop(&mut self) {
        let ctx = &self.gpu.ctx;
        ctx.record_err(ctx.bind_to_thread());
        // SAFETY: allocated by `malloc_host` and freed once; whoever queued copies from it
        // waited for them (the ring's events) before letting it go.
        ctx.record_err(unsafe { result::free_host(self.ptr as *mut c_void) });
    }
}

#[cfg(test)]
mod tests {
    use super::{MIN_COMPUTE_CAPABILITY, MIN_DRIVER, check_support};

    #[test]
    fn unsupported_drivers_and_gpus_are_named_with_what_is_needed() {
        assert!(check_support("cuda:0 (NVIDIA H100)", (13, 0), (9, 0)).is_ok());
        assert!(check_support("cuda:0 (NVIDIA A100)", (12, 2), (8, 0)).is_ok());
        assert!(check_support("cuda:0 (Tesla V100)", (12, 0), (7, 0)).is_ok());
        assert!(check_support("cuda:0 (NVIDIA B200)", (13, 0), (10, 0)).is_ok());

        let old_driver = check_support("cuda:0 (Tesla T4)", (11, 8), (7, 5))
            .unwrap_err()
            .to_string();
        assert!(
            old_driver.contains("supports CUDA 11.8")
                && old_driver.contains("needs CUDA 12.0")
                && old_driver.contains("525"),
            "{old_driver}"
        );
        let pascal = check_support("cuda:1 (Tesla P100)", MIN_DRIVER, (6, 0))
            .unwrap_err()
            .to_string();
        assert!(
            pascal.contains("cuda:1 (Tesla P100) has compute capability 6.0")
                && pascal.contains(&format!(
                    "need {}.{} or newer",
                    MIN_COMPUTE_CAPABILITY.0, MIN_COMPUTE_CAPABILITY.1
                )),
            "{pascal}"
        );
    }
}
