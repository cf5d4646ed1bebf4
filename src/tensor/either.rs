//! A tensor of either kind, as pipelines produce them and the exporter hands them out.

use super::device::DeviceTensor;
use super::host::HostTensor;

/// A batch tensor in host or device memory.
#[derive(Debug, Clone)]
pub enum Tensor {
    Host(HostTensor),
    Device(DeviceTensor),
}
