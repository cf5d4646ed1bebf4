//! LitData's leaf serializers: what each `data_format` name means and how its bytes decode.
//!
//! The byte layouts are LitData's (litdata/streaming/serializers.py); each is checked against
//! the leaf's length so a corrupt item gives an error, never a wrong value.

use crate::dtype::DType;

/// A LitData serializer that slipstream reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serializer {
    /// `bytes`: stored verbatim.
    Bytes,
    /// `jpeg`: the JPEG file's bytes (or a re-encode).
    Jpeg,
    /// `image:EXT`: an encoded image file's bytes.
    Image,
    /// `pil`: `u32 width, u32 height, u32 len(mode), mode, raw pixels`.
    Pil,
    /// `int`: 8-byte little-endian signed.
    Int,
    /// `float`: 8-byte little-endian IEEE double.
    Float,
    /// `bool`: one byte.
    Bool,
    /// `str` and `text`: UTF-8.
    Str,
    /// `numpy`: `u32 dtype, u32 ndim, u32 shape[ndim]` little-endian, then the data.
    Numpy,
    /// `tensor`: the same header but big-endian, then the data (native little-endian).
    Tensor,
    /// `no_header_numpy:K`: 1-D data of numpy dtype index K.
    NoHeaderNumpy(DType),
    /// `no_header_tensor:K`: 1-D data of torch dtype index K.
    NoHeaderTensor(DType),
}

/// Which framework an array leaf came from, so Python can hand back the same kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Numpy,
    Torch,
}

/// One decoded leaf, borrowing from the item bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'a> {
    Bytes(&'a [u8]),
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Pil {
        width: u32,
        height: u32,
        mode: &'a str,
        pixels: &'a [u8],
    },
    Array {
        dtype: DType,
        shape: Vec<u32>,
        data: &'a [u8],
    },
}

impl Serializer {
    /// Parse a `data_format` entry. The error says why it is not read.
    pub fn parse(name: &str) -> Result<Serializer, String> {
        let (base, arg) = match name.split_once(':') {
            Some((b, a)) => (b, Some(a)),
            None => (name, None),
        };
        let dtype_arg = |table: fn(u32) -> Option<DType>| {
            arg.and_then(|a| a.parse::<u32>().ok())
                .and_then(table)
                .ok_or_else(|| format!("unknown dtype index in {name:?}"))
        };
        Ok(match base {
            "bytes" => Serializer::Bytes,
            "jpeg" => Serializer::Jpeg,
            "image" => Serializer::Image,
            "pil" => Serializer::Pil,
            "int" => Serializer::Int,
            "float" => Serializer::Float,
            "bool" => Serializer::Bool,
            "str" | "text" => Serializer::Str,
            "numpy" => Serializer::Numpy,
            "tensor" => Serializer::Tensor,
            "no_header_numpy" => Serializer::NoHeaderNumpy(dtype_arg(DType::from_litdata_numpy)?),
            "no_header_tensor" => Serializer::NoHeaderTensor(dtype_arg(DType::from_litdata_torch)?),
            "json" | "pickle" | "jpeg_array" | "video" | "audio" | "graph" | "mesh" | "pdf"
            | "nifti" | "tifffile" | "tiff" | "file" => {
                return Err(format!("'{base}' values are not read by slipstream"));
            }
            _ => return Err("unknown serializer".into()),
        })
    }

    /// Whether values of this serializer are encoded images (their size is probed at build).
    pub fn is_encoded_image(&self) -> bool {
        matches!(self, Serializer::Jpeg | Serializer::Image)
    }

    pub fn framework(&self) -> Option<Framework> {
        match self {
            Serializer::Numpy | Serializer::NoHeaderNumpy(_) => Some(Framework::Numpy),
            Serializer::Tensor | Serializer::NoHeaderTensor(_) => Some(Framework::Torch),
            _ => None,
        }
    }

    /// Decode one leaf's bytes.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<Leaf<'a>, String> {
        let fixed = |n: usize| -> Result<[u8; 8], String> {
            if bytes.len() != n {
                return Err(format!("expected {n} bytes, found {}", bytes.len()));
            }
            let mut out = [0u8; 8];
            out[..n].copy_from_slice(bytes);
            Ok(out)
        };
        Ok(match self {
            Serializer::Bytes | Serializer::Jpeg | Serializer::Image => Leaf::Bytes(bytes),
            Serializer::Str => Leaf::Str(
                std::str::from_utf8(bytes).map_err(|e| format!("text is not UTF-8: {e}"))?,
            ),
            Serializer::Int => Leaf::Int(i64::from_le_bytes(fixed(8)?)),
            Serializer::Float => Leaf::Float(f64::from_le_bytes(fixed(8)?)),
            Serializer::Bool => Leaf::Bool(fixed(1)?[0] != 0),
            Serializer::Pil => decode_pil(bytes)?,
            Serializer::Numpy => decode_array(bytes, false)?,
            Serializer::Tensor => decode_array(bytes, true)?,
            Serializer::NoHeaderNumpy(dtype) | Serializer::NoHeaderTensor(dtype) => {
                if !bytes.len().is_multiple_of(dtype.size()) {
                    return Err(format!(
                        "{} bytes is not a whole number of {} elements",
                        bytes.len(),
                        dtype.name()
                    ));
                }
                Leaf::Array {
                    dtype: *dtype,
                    shape: vec![(bytes.len() / dtype.size()) as u32],
                    data: bytes,
                }
            }
        })
    }
}

fn read_u32(bytes: &[u8], at: usize, big_endian: bool) -> Result<u32, String> {
    let b: [u8; 4] = bytes
        .get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("header truncated at byte {at} of {}", bytes.len()))?;
    Ok(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

fn decode_pil(bytes: &[u8]) -> Result<Leaf<'_>, String> {
    let width = read_u32(bytes, 0, false)?;
    let height = read_u32(bytes, 4, false)?;
    let mode_len = read_u32(bytes, 8, false)? as usize;
    let mode_end = 12usize
        .checked_add(mode_len)
        .filter(|&e| e <= bytes.len())
        .ok_or("PIL mode runs past the end of the value")?;
    let mode = std::str::from_utf8(&bytes[12..mode_end]).map_err(|_| "PIL mode is not UTF-8")?;
    let pixels = &bytes[mode_end..];
    if let Some(expected) = pil_frame_size(mode, width as u64, height as u64)
        && expected != pixels.len() as u64
    {
        return Err(format!(
            "PIL image {width}x{height} mode {mode} needs {expected} bytes of pixels, found {}",
            pixels.len()
        ));
    }
    Ok(Leaf::Pil {
        width,
        height,
        mode,
        pixels,
    })
}

/// Bytes of raw pixels Pillow's `tobytes()` gives for a mode, where the mode is a common one
/// (`u64::MAX` when the size overflows: no value is that long).
pub fn pil_frame_size(mode: &str, width: u64, height: u64) -> Option<u64> {
    let (row, per_row) = match mode {
        "1" => (width.div_ceil(8), 1),
        "L" | "P" => (width, 1),
        "LA" | "La" | "PA" | "I;16" | "I;16B" | "I;16L" => (width, 2),
        "RGB" | "YCbCr" | "LAB" | "HSV" => (width, 3),
        "RGBA" | "RGBa" | "RGBX" | "CMYK" | "I" | "F" => (width, 4),
        _ => return None,
    };
    Some(
        row.checked_mul(per_row)
            .and_then(|r| r.checked_mul(height))
            .unwrap_or(u64::MAX),
    )
}

fn decode_array(bytes: &[u8], big_endian_header: bool) -> Result<Leaf<'_>, String> {
    let index = read_u32(bytes, 0, big_endian_header)?;
    let dtype = if big_endian_header {
        DType::from_litdata_torch(index)
    } else {
        DType::from_litdata_numpy(index)
    }
    .ok_or_else(|| format!("unknown dtype index {index}"))?;
    let ndim = read_u32(bytes, 4, big_endian_header)? as usize;
    if ndim > 32 {
        return Err(format!("array header claims {ndim} dimensions"));
    }
    let shape = (0..ndim)
        .map(|d| read_u32(bytes, 8 + 4 * d, big_endian_header))
        .collect::<Result<Vec<_>, _>>()?;
    let data = &bytes[8 + 4 * ndim..];
    let elements = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .ok_or("array shape overflows")?;
    // torch.empty(shape) for a zero-size tensor writes no data; anything else must match.
    if elements.checked_mul(dtype.size() as u64) != Some(data.len() as u64) {
        return Err(format!(
            "array of shape {shape:?} and dtype {} needs {} bytes, found {}",
            dtype.name(),
            elements.saturating_mul(dtype.size() as u64),
            data.len()
        ));
    }
    Ok(Leaf::Array { dtype, shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pil_sizes_that_overflow_never_match_a_value() {
        assert_eq!(pil_frame_size("RGB", 4, 2), Some(24));
        assert_eq!(pil_frame_size("1", 9, 2), Some(4));
        let huge = u32::MAX as u64;
        assert_eq!(pil_frame_size("RGBA", huge, huge), Some(u64::MAX));
        assert_eq!(pil_frame_size("weird", 1, 1), None);
    }

    #[test]
    fn numpy_and_tensor_headers() {
        let mut numpy = Vec::new();
        for v in [9u32, 2, 2, 3] {
            numpy.extend_from_slice(&v.to_le_bytes());
        }
        numpy.extend_from_slice(&[0u8; 24]);
        let leaf = Serializer::Numpy.decode(&numpy).unwrap();
        assert_eq!(
            leaf,
            Leaf::Array {
                dtype: DType::Float32,
                shape: vec![2, 3],
                data: &[0u8; 24]
            }
        );

        let mut tensor = Vec::new();
        for v in [18u32, 1, 3] {
            tensor.extend_from_slice(&v.to_be_bytes());
        }
        tensor.extend_from_slice(&[1u8; 24]);
        let Leaf::Array { dtype, shape, .. } = Serializer::Tensor.decode(&tensor).unwrap() else {
            panic!()
        };
        assert_eq!((dtype, shape), (DType::Int64, vec![3]));
        // One byte short is an error, not a shorter array.
        assert!(
            Serializer::Tensor
                .decode(&tensor[..tensor.len() - 1])
                .is_err()
        );
    }

    #[test]
    fn pil_checks_its_size() {
        let mut pil = Vec::new();
        for v in [2u32, 1, 3] {
            pil.extend_from_slice(&v.to_le_bytes());
        }
        pil.extend_from_slice(b"RGB");
        pil.extend_from_slice(&[7u8; 6]);
        assert!(matches!(
            Serializer::Pil.decode(&pil).unwrap(),
            Leaf::Pil {
                width: 2,
                height: 1,
                mode: "RGB",
                ..
            }
        ));
        pil.pop();
        assert!(Serializer::Pil.decode(&pil).is_err());
    }

    #[test]
    fn scalar_sizes_are_checked() {
        assert_eq!(
            Serializer::Int.decode(&7i64.to_le_bytes()).unwrap(),
            Leaf::Int(7)
        );
        assert!(Serializer::Int.decode(&[0u8; 4]).is_err());
        assert_eq!(Serializer::Bool.decode(&[1]).unwrap(), Leaf::Bool(true));
        assert!(Serializer::parse("pickle").is_err());
        assert!(Serializer::parse("whatever").is_err());
        assert_eq!(
            Serializer::parse("no_header_numpy:10").unwrap(),
            Serializer::NoHeaderNumpy(DType::Float64)
        );
        assert!(Serializer::parse("no_header_numpy:99").is_err());
    }
}
