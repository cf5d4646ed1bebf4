//! Stand-in for `device.rs` in builds without the `cuda` feature: the same methods, so the
//! rest of the crate has no `cfg`s. No value of it can exist.

use crate::dtype::DType;
use crate::error::Result;

#[derive(Debug, Clone)]
pub enum DeviceTensor {}

impl DeviceTensor {
    pub fn nbytes(&self) -> usize {
        match *self {}
    }

    pub fn shape(&self) -> &[i64] {
        match *self {}
    }

    pub fn dtype(&self) -> DType {
        match *self {}
    }

    pub fn strides(&self) -> &[i64] {
        match *self {}
    }

    pub fn ordinal(&self) -> usize {
        match *self {}
    }

    pub fn data_ptr(&self) -> u64 {
        match *self {}
    }

    pub fn keep_alive(&self) -> Box<dyn std::any::Any + Send> {
        match *self {}
    }

    pub fn hand_to_stream(&self, _stream: usize) -> Result<()> {
        match *self {}
    }

    pub fn synchronize(&self) -> Result<()> {
        match *self {}
    }

    pub fn to_host(&self) -> Result<Vec<u8>> {
        match *self {}
    }
}
