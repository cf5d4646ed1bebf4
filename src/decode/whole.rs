//! Images decoded whole on the CPU, with no region or scaled decode: PNG (the `png` crate) and
//! WebP (`image-webp`, lossy and lossless, the first frame of an animation). Both are checked
//! against the pixel limit from their headers before any pixel memory is taken, and give RGB
//! with any alpha dropped, as Pillow's `convert("RGB")` does.

use std::io::Cursor;

use super::plan::{DecodePlan, Decoded, resize_fallibly};

/// `out` emptied, with room for `pixels` RGB pixels.
fn rgb_room(out: &mut Vec<u8>, pixels: usize) -> Result<(), String> {
    out.clear();
    out.try_reserve(pixels * 3)
        .map_err(|_| "not enough memory to decode the image".to_string())
}

/// Packed pixels of `channels` bytes each to RGB in `out`: grey repeated, alpha dropped.
fn to_rgb(data: &[u8], channels: usize, out: &mut Vec<u8>) -> Result<(), String> {
    rgb_room(out, data.len() / channels)?;
    match channels {
        1 | 2 => data
            .chunks_exact(channels)
            .for_each(|p| out.extend_from_slice(&[p[0], p[0], p[0]])),
        _ => data
            .chunks_exact(channels)
            .for_each(|p| out.extend_from_slice(&p[..3])),
    }
    Ok(())
}

pub(super) fn decode_png(
    bytes: &[u8],
    plan: DecodePlan,
    out: &mut Vec<u8>,
) -> Result<Decoded, String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // Palette → RGB, low bit depths → 8, 16 bits → 8, tRNS → alpha.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| format!("PNG: {e}"))?;
    let header = reader.info();
    plan.policy.check_size(header.width, header.height)?;
    let mut buf = Vec::new();
    resize_fallibly(
        &mut buf,
        reader.output_buffer_size().ok_or("PNG too large")?,
    )?;
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("PNG: {e}"))?;
    let data = &buf[..info.buffer_size()];
    match info.color_type {
        png::ColorType::Rgb => {
            rgb_room(out, data.len() / 3)?;
            out.extend_from_slice(data);
        }
        png::ColorType::Rgba => to_rgb(data, 4, out)?,
        png::ColorType::Grayscale => to_rgb(data, 1, out)?,
        png::ColorType::GrayscaleAlpha => to_rgb(data, 2, out)?,
        png::ColorType::Indexed => return Err("PNG palette was not expanded".into()),
    }
    Ok(Decoded::whole(info.width, info.height))
}

pub(super) fn decode_webp(
    bytes: &[u8],
    plan: DecodePlan,
    out: &mut Vec<u8>,
) -> Result<Decoded, String> {
    let webp_error = |e: image_webp::DecodingError| format!("WebP: {e}");
    let mut decoder = image_webp::WebPDecoder::new(Cursor::new(bytes)).map_err(webp_error)?;
    let (w, h) = decoder.dimensions();
    plan.policy.check_size(w, h)?;
    let len = decoder.output_buffer_size().ok_or("WebP too large")?;
    if decoder.has_alpha() {
        let mut rgba = Vec::new();
        resize_fallibly(&mut rgba, len)?;
        decoder.read_image(&mut rgba).map_err(webp_error)?;
        to_rgb(&rgba, 4, out)?;
    } else {
        resize_fallibly(out, len)?;
        decoder.read_image(out).map_err(webp_error)?;
    }
    Ok(Decoded::whole(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_to_rgb() {
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, 3, 2);
            enc.set_color(png::ColorType::GrayscaleAlpha);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&[0, 255, 100, 255, 200, 0, 1, 1, 2, 2, 3, 3])
                .unwrap();
        }
        let mut out = Vec::new();
        let info = decode_png(&bytes, DecodePlan::FULL, &mut out).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&out[..9], &[0, 0, 0, 100, 100, 100, 200, 200, 200]);
    }
    /// Lossless WebP (with and without alpha) gives back the encoded pixels exactly.
    #[test]
    fn lossless_webp_to_rgb() {
        let (w, h) = (7u32, 5u32);
        let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 53 % 251) as u8).collect();
        let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| p[..3].to_vec()).collect();
        for (pixels, color) in [
            (&rgb, image_webp::ColorType::Rgb8),
            (&rgba, image_webp::ColorType::Rgba8),
        ] {
            let mut bytes = Vec::new();
            image_webp::WebPEncoder::new(&mut bytes)
                .encode(pixels, w, h, color)
                .unwrap();
            let mut out = Vec::new();
            let info = decode_webp(&bytes, DecodePlan::FULL, &mut out).unwrap();
            assert_eq!((info.width, info.height), (w, h));
            assert_eq!(out, rgb);
        }
    }
}
