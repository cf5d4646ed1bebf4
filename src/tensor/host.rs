//! Tensors in host memory: a typed, shaped view of a shared [`Buffer`].

use std::sync::Arc;

use crate::buffer::Buffer;
use crate::dtype::DType;

#[derive(Debug, Clone)]
pub struct HostTensor {
    pub buffer: Arc<Buffer>,
    /// Offset of the first element in the buffer.
    pub byte_offset: usize,
    pub dtype: DType,
    pub shape: Vec<i64>,
    /// Element strides when not C-contiguous (a permutation of a dense layout, such as
    /// channels-last); `None` for C order.
    pub strides: Option<Vec<i64>>,
}

impl HostTensor {
    pub fn new(buffer: Arc<Buffer>, dtype: DType, shape: Vec<i64>) -> HostTensor {
        let t = HostTensor {
            buffer,
            byte_offset: 0,
            dtype,
            shape,
            strides: None,
        };
        assert!(
            t.nbytes() <= t.buffer.len(),
            "tensor larger than its buffer"
        );
        t
    }

    /// The same elements with `strides` (in elements), which must describe a dense layout.
    pub fn with_strides(mut self, strides: Vec<i64>) -> HostTensor {
        assert_eq!(strides.len(), self.shape.len(), "one stride per dimension");
        self.strides = Some(strides);
        self
    }

    /// A 1-D int64 tensor holding `values`.
    pub fn from_i64(values: &[i64]) -> HostTensor {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        HostTensor::new(
            Arc::new(Buffer::copy_from(&bytes)),
            DType::Int64,
            vec![values.len() as i64],
        )
    }

    /// The values of an int64 tensor.
    pub fn i64_values(&self) -> Vec<i64> {
        assert_eq!(
            self.dtype,
            DType::Int64,
            "i64_values of a {} tensor",
            self.dtype.name()
        );
        self.bytes()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product::<i64>() as usize
    }

    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }

    /// The tensor's bytes (little-endian elements, C order).
    pub fn bytes(&self) -> &[u8] {
        &self.buffer.as_slice()[self.byte_offset..self.byte_offset + self.nbytes()]
    }
}
