//! The two kinds of image a cache holds, as the pipelines read them.

use super::probe::image_size;
use super::yuv420::Yuv420;

/// An image as a cache holds it: encoded (JPEG, PNG) or decode-free planes.
#[derive(Debug, Clone, Copy)]
pub enum Image<'a> {
    Encoded(&'a [u8]),
    Yuv420(Yuv420<'a>),
}

impl Image<'_> {
    /// Width and height, from the header or the record.
    pub fn size(&self) -> Result<(u32, u32), String> {
        match self {
            Image::Encoded(bytes) => image_size(bytes),
            Image::Yuv420(planes) => Ok((planes.width, planes.height)),
        }
    }
}
