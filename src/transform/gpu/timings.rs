//! Where GPU batches spend their time: host time measured by `submit`, device time from three
//! events per batch, read once the batch has completed (when the next one waits for it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{CudaEvent, sys};

use crate::cuda::{Gpu, cuda_error};
use crate::error::Result;
use crate::transform::gpu_api::GpuTimings;

/// The events that time one batch on the GPU.
pub(super) struct BatchEvents {
    pub(super) start: CudaEvent,
    pub(super) decoded: CudaEvent,
    pub(super) ready: Arc<CudaEvent>,
}

/// The totals so far, and the batch in flight.
#[derive(Default)]
pub(super) struct Timings {
    pub(super) totals: GpuTimings,
    previous: Option<BatchEvents>,
}

/// An event recorded now on the loader's stream, for timing.
pub(super) fn timing_event(gpu: &Gpu) -> Result<CudaEvent> {
    let event = gpu
        .context()
        .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(cuda_error("creating a CUDA event"))?;
    event
        .record(gpu.stream())
        .map_err(cuda_error("recording a CUDA event"))?;
    Ok(event)
}

impl Timings {
    /// Wait for the batch in flight to complete and count its device time. nvJPEG's decode
    /// states keep staging buffers from one call to the next, so `submit` waits for the
    /// previous batch before handing nvJPEG the next. Returns the time waited.
    pub(super) fn wait_for_previous(&mut self) -> Result<Duration> {
        let waiting = Instant::now();
        if let Some(previous) = self.previous.take() {
            previous
                .ready
                .synchronize()
                .map_err(cuda_error("waiting for the previous batch"))?;
            let t = &mut self.totals;
            t.gpu_batches += 1;
            let ms = |a: &CudaEvent, b: &CudaEvent| a.elapsed_ms(b).map_or(0.0, |ms| ms as f64);
            t.gpu_decode_s += ms(&previous.start, &previous.decoded) / 1e3;
            t.gpu_transform_s += ms(&previous.decoded, &previous.ready) / 1e3;
        }
        Ok(waiting.elapsed())
    }

    /// Count a submitted batch: its events, to be read by the next [`Self::wait_for_previous`],
    /// and its host times.
    pub(super) fn submitted(
        &mut self,
        events: BatchEvents,
        prepare: Duration,
        waited: Duration,
        submit: Duration,
    ) {
        self.previous = Some(events);
        let t = &mut self.totals;
        t.batches += 1;
        t.host_prepare_s += prepare.as_secs_f64();
        t.host_wait_s += waited.as_secs_f64();
        t.host_submit_s += submit.as_secs_f64();
    }
}
