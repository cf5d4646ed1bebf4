//! Image dimensions from JPEG and PNG headers, without decoding pixels.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

/// Full-resolution width and height of a JPEG or PNG, from its header.
pub fn image_size(bytes: &[u8]) -> Result<(u32, u32), String> {
    match probe(bytes) {
        Some((_, h, w)) => Ok((w, h)),
        None => Err(not_an_image(bytes)),
    }
}

pub(super) fn not_an_image(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xff, 0xd8]) || bytes.starts_with(b"\x89PNG") {
        "the image header is damaged or truncated".into()
    } else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "not a JPEG or PNG image (starts with {}; {} bytes)",
            head.join(" "),
            bytes.len()
        )
    }
}

/// `(format, height, width)` of an encoded JPEG or PNG, or `None` when the bytes are neither or
/// the header is damaged.
pub fn probe(bytes: &[u8]) -> Option<(ImageFormat, u32, u32)> {
    if bytes.starts_with(&[0xff, 0xd8]) {
        jpeg_size(bytes).map(|(h, w)| (ImageFormat::Jpeg, h, w))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR") {
        let w = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
        let h = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
        (w > 0 && h > 0).then_some((ImageFormat::Png, h, w))
    } else {
        None
    }
}

/// Walk the marker segments up to the first start-of-frame.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        // Markers may be preceded by any number of 0xff fill bytes.
        if *bytes.get(at)? != 0xff {
            return None;
        }
        while *bytes.get(at)? == 0xff {
            at += 1;
        }
        let marker = *bytes.get(at)?;
        at += 1;
        match marker {
            0x01 | 0xd0..=0xd7 => continue,
            0xd8..=0xda => return None,
            _ => {}
        }
        let len = u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]) as usize;
        if len < 2 {
            return None;
        }
        let is_sof = matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
        if is_sof {
            let h = u16::from_be_bytes([*bytes.get(at + 3)?, *bytes.get(at + 4)?]) as u32;
            let w = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]) as u32;
            return (h > 0 && w > 0).then_some((h, w));
        }
        at += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_from_encoder() {
        let mut out = Vec::new();
        let pixels = vec![128u8; 37 * 21 * 3];
        jpeg_encoder::Encoder::new(&mut out, 90)
            .encode(&pixels, 37, 21, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        assert_eq!(probe(&out), Some((ImageFormat::Jpeg, 21, 37)));
        assert_eq!(probe(&out[..10]), None);
        assert_eq!(probe(b"not an image"), None);
    }

    #[test]
    fn png_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(probe(&png), Some((ImageFormat::Png, 480, 640)));
    }
}
