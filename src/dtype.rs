//! Element types of the arrays slipstream stores and hands out.
//!
//! One enum serves LitData's two dtype tables (numpy's and torch's index numbering), the cache
//! format (numpy-style names) and DLPack export.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Float16,
    Bfloat16,
    Float32,
    Float64,
    Complex64,
    Complex128,
}

/// `x.clamp(0, 255).to(torch.uint8)` of a float32: clamped, then truncated (NaN gives 0).
/// Written so that loops over it vectorize and need no libm: on the baseline x86-64 target
/// `trunc` is a library call, and a checked `as` cast converts one value at a time.
#[inline(always)]
pub fn clamp_to_u8(x: f32) -> u8 {
    // `max` returns its other operand for NaN (where `clamp` would return NaN).
    #[allow(clippy::manual_clamp)]
    let x = x.max(0.0).min(255.0);
    // SAFETY: `x` is a number in [0, 255], so its truncation is representable in an i32.
    unsafe { x.to_int_unchecked::<i32>() as u8 }
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        use DType::*;
        match self {
            Bool | Int8 | Uint8 => 1,
            Int16 | Uint16 | Float16 | Bfloat16 => 2,
            Int32 | Uint32 | Float32 => 4,
            Int64 | Uint64 | Float64 | Complex64 => 8,
            Complex128 => 16,
        }
    }

    /// The numpy / torch name (`"int64"`, `"float16"`, ...).
    pub fn name(self) -> &'static str {
        use DType::*;
        match self {
            Bool => "bool",
            Int8 => "int8",
            Int16 => "int16",
            Int32 => "int32",
            Int64 => "int64",
            Uint8 => "uint8",
            Uint16 => "uint16",
            Uint32 => "uint32",
            Uint64 => "uint64",
            Float16 => "float16",
            Bfloat16 => "bfloat16",
            Float32 => "float32",
            Float64 => "float64",
            Complex64 => "complex64",
            Complex128 => "complex128",
        }
    }

    /// LitData's `numpy` / `no_header_numpy:K` index (its `_NUMPY_DTYPES_MAPPING`).
    pub fn from_litdata_numpy(index: u32) -> Option<DType> {
        use DType::*;
        Some(match index {
            0 => Int8,
            1 => Int16,
            2 => Int32,
            3 => Int64,
            4 => Uint8,
            5 => Uint16,
            6 => Uint32,
            7 => Uint64,
            8 => Float16,
            9 => Float32,
            10 => Float64,
            11 => Complex64,
            12 => Complex128,
            13 => Bool,
            _ => return None,
        })
    }

    /// LitData's `tensor` / `no_header_tensor:K` index (its `_TORCH_DTYPES_MAPPING`, where
    /// several indices alias one dtype).
    pub fn from_litdata_torch(index: u32) -> Option<DType> {
        use DType::*;
        Some(match index {
            0 | 1 => Float32,
            2 | 3 => Float64,
            4 | 5 => Complex64,
            6 | 7 => Complex128,
            8 | 9 => Float16,
            10 => Bfloat16,
            11 => Uint8,
            12 => Int8,
            13 | 14 => Int16,
            15 | 16 => Int32,
            17 | 18 => Int64,
            19 => Bool,
            20 => Uint16,
            _ => return None,
        })
    }
}
