//! Image dimensions from JPEG, PNG and WebP headers, without decoding pixels.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    WebP,
}

/// Full-resolution width and height of a JPEG, PNG or WebP, from its header.
pub fn image_size(bytes: &[u8]) -> Result<(u32, u32), String> {
    match probe(bytes) {
        Some((_, h, w)) => Ok((w, h)),
        None => Err(not_an_image(bytes)),
    }
}

pub(super) fn not_an_image(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xff, 0xd8])
        || bytes.starts_with(b"\x89PNG")
        || (bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP"))
    {
        "the image header is damaged or truncated".into()
    } else {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "not a JPEG, PNG or WebP image (starts with {}; {} bytes)",
            head.join(" "),
            bytes.len()
        )
    }
}

/// `(format, height, width)` of an encoded JPEG, PNG or WebP, or `None` when the bytes are none
/// of these or the header is damaged.
pub fn probe(bytes: &[u8]) -> Option<(ImageFormat, u32, u32)> {
    if bytes.starts_with(&[0xff, 0xd8]) {
        jpeg_size(bytes).map(|(h, w)| (ImageFormat::Jpeg, h, w))
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR") {
        let w = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
        let h = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
        (w > 0 && h > 0).then_some((ImageFormat::Png, h, w))
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        webp_size(bytes).map(|(h, w)| (ImageFormat::WebP, h, w))
    } else {
        None
    }
}

/// The size in the first chunk of a WebP file (RFC 9649): a lossy frame header (`VP8 `), a
/// lossless one (`VP8L`), or the extended format's canvas (`VP8X`).
fn webp_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let le = |at: usize, n: usize| -> Option<u32> {
        Some(
            bytes
                .get(at..at + n)?
                .iter()
                .rev()
                .fold(0, |v, &b| v << 8 | b as u32),
        )
    };
    let (w, h) = match bytes.get(12..16)? {
        // A key frame's start code, then 14-bit sizes (the top 2 bits are scaling hints).
        b"VP8 " if bytes.get(23..26)? == [0x9d, 0x01, 0x2a] => {
            (le(26, 2)? & 0x3fff, le(28, 2)? & 0x3fff)
        }
        // The signature byte, then width - 1 and height - 1 in 14 bits each.
        b"VP8L" if bytes.get(20)? == &0x2f => {
            let bits = le(21, 4)?;
            ((bits & 0x3fff) + 1, (bits >> 14 & 0x3fff) + 1)
        }
        // Flags, then canvas width - 1 and height - 1 in 24 bits each.
        b"VP8X" => (le(24, 3)? + 1, le(27, 3)? + 1),
        _ => return None,
    };
    (w > 0 && h > 0).then_some((h, w))
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

    #[test]
    fn webp_headers() {
        let mut lossless = Vec::new();
        image_webp::WebPEncoder::new(&mut lossless)
            .encode(&[9; 300 * 2 * 3], 300, 2, image_webp::ColorType::Rgb8)
            .unwrap();
        assert_eq!(probe(&lossless), Some((ImageFormat::WebP, 2, 300)));
        // An extended file's canvas: 5000 x 70000 would be 24-bit sizes minus one.
        let mut extended = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\x10\0\0\0".to_vec();
        extended.extend_from_slice(&[0x87, 0x13, 0x00, 0x6f, 0x11, 0x01]);
        assert_eq!(probe(&extended), Some((ImageFormat::WebP, 70000, 5000)));
        // A lossy key frame: tag, start code, 14-bit sizes (scale bits set, ignored).
        let mut lossy = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0\0\0\0".to_vec();
        lossy.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x40, 0x41, 0x40, 0xc0]);
        assert_eq!(probe(&lossy), Some((ImageFormat::WebP, 0x40, 0x140)));
        assert_eq!(probe(&lossy[..27]), None);
        assert_eq!(
            image_size(&lossy[..27]).unwrap_err(),
            "the image header is damaged or truncated"
        );
    }
}
