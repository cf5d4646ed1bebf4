//! What a libjpeg warning means for the pixels. libjpeg-turbo finishes decoding after a
//! warning, filling what it could not read with grey, and TurboJPEG reports the first warning's
//! text; this is the list of every warning libjpeg-turbo 3 can emit (`JWRN_*` in its
//! `jerror.h`), each with what it means for the image, and [`all_warnings`], which finds the
//! warnings after the first (`csrc/jpeg_warnings.c`).

use std::ffi::{CStr, c_char, c_int, c_uchar, c_ulong};

unsafe extern "C" {
    /// `csrc/jpeg_warnings.c`.
    fn slipstream_jpeg_warnings(
        data: *const c_uchar,
        len: c_ulong,
        texts: *mut c_char,
        max: c_int,
        slot: c_int,
    ) -> c_int;
}

/// Warnings kept by [`all_warnings`], and the bytes of each one's text.
const MAX_WARNINGS: usize = 16;
const SLOT: usize = 200;

/// The texts of the warnings decoding `jpeg` to its end raises (the first 16), or `None` when
/// decoding it fails outright. Costs a full decode.
pub fn all_warnings(jpeg: &[u8]) -> Option<Vec<String>> {
    let mut texts = vec![0 as c_char; MAX_WARNINGS * SLOT];
    // SAFETY: `jpeg` is a live slice of `len` bytes the C code only reads; `texts` holds
    // `MAX_WARNINGS` slots of `SLOT` bytes, and the C code writes NUL-terminated texts of at
    // most JMSG_LENGTH_MAX (200) bytes into the first `count` slots only.
    let count = unsafe {
        slipstream_jpeg_warnings(
            jpeg.as_ptr(),
            jpeg.len() as c_ulong,
            texts.as_mut_ptr(),
            MAX_WARNINGS as c_int,
            SLOT as c_int,
        )
    };
    let count = usize::try_from(count).ok()?.min(MAX_WARNINGS);
    Some(
        texts
            .chunks_exact(SLOT)
            .take(count)
            .map(|slot| {
                // SAFETY: each written slot is NUL-terminated within its SLOT bytes (the
                // buffer was zeroed, so an unwritten tail is NULs too).
                unsafe { CStr::from_ptr(slot.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
    )
}

/// What a warning says about the decoded pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// The data ends early: the rest of the image is grey.
    Truncated,
    /// Coefficients were lost or are wrong somewhere in the image.
    Corrupt,
    /// About metadata or stray bytes between segments; every pixel decoded.
    Harmless,
}

/// libjpeg-turbo 3.1's warning messages (`%` conversions stand for numbers).
const WARNINGS: &[(&str, &str, Warning)] = &[
    (
        "JWRN_ADOBE_XFORM",
        "Unknown Adobe color transform code %d",
        Warning::Harmless,
    ),
    (
        "JWRN_ARITH_BAD_CODE",
        "Corrupt JPEG data: bad arithmetic code",
        Warning::Corrupt,
    ),
    (
        "JWRN_BOGUS_PROGRESSION",
        "Inconsistent progression sequence for component %d coefficient %d",
        Warning::Corrupt,
    ),
    (
        "JWRN_EXTRANEOUS_DATA",
        "Corrupt JPEG data: %u extraneous bytes before marker 0x%02x",
        Warning::Harmless,
    ),
    (
        "JWRN_HIT_MARKER",
        "Corrupt JPEG data: premature end of data segment",
        Warning::Truncated,
    ),
    (
        "JWRN_HUFF_BAD_CODE",
        "Corrupt JPEG data: bad Huffman code",
        Warning::Corrupt,
    ),
    (
        "JWRN_JFIF_MAJOR",
        "Warning: unknown JFIF revision number %d.%02d",
        Warning::Harmless,
    ),
    (
        "JWRN_JPEG_EOF",
        "Premature end of JPEG file",
        Warning::Truncated,
    ),
    (
        "JWRN_MUST_RESYNC",
        "Corrupt JPEG data: found marker 0x%02x instead of RST%d",
        Warning::Corrupt,
    ),
    (
        "JWRN_NOT_SEQUENTIAL",
        "Invalid SOS parameters for sequential JPEG",
        Warning::Harmless,
    ),
    (
        "JWRN_TOO_MUCH_DATA",
        "Application transferred too many scanlines",
        Warning::Corrupt,
    ),
    (
        "JWRN_BOGUS_ICC",
        "Corrupt JPEG data: bad ICC marker",
        Warning::Harmless,
    ),
];

/// What the warning `message` means; a message not in libjpeg's list counts as corrupt.
pub fn classify(message: &str) -> Warning {
    WARNINGS
        .iter()
        .find(|(_, template, _)| matches_template(message, template))
        .map_or(Warning::Corrupt, |&(_, _, meaning)| meaning)
}

/// Whether `message` is `template` with each `%` conversion replaced by a number (decimal, or
/// hexadecimal after `0x`).
fn matches_template(message: &str, template: &str) -> bool {
    let mut rest = message;
    let mut pieces = template.split('%');
    let first = pieces.next().unwrap_or("");
    let Some(after) = rest.strip_prefix(first) else {
        return false;
    };
    rest = after;
    for piece in pieces {
        // The conversion's flags, width and letter, then the literal text after it.
        let literal = piece.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
        let digits = rest
            .find(|c: char| !c.is_ascii_hexdigit() && c != '-')
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        let Some(after) = rest[digits..].strip_prefix(literal) else {
            return false;
        };
        rest = after;
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libjpeg_messages_are_classified_by_their_text() {
        let cases = [
            (
                "Corrupt JPEG data: premature end of data segment",
                Warning::Truncated,
            ),
            ("Premature end of JPEG file", Warning::Truncated),
            (
                "Corrupt JPEG data: 3 extraneous bytes before marker 0xd9",
                Warning::Harmless,
            ),
            ("Corrupt JPEG data: bad Huffman code", Warning::Corrupt),
            (
                "Corrupt JPEG data: found marker 0xd9 instead of RST3",
                Warning::Corrupt,
            ),
            (
                "Warning: unknown JFIF revision number 3.01",
                Warning::Harmless,
            ),
            (
                "Inconsistent progression sequence for component 0 coefficient 1",
                Warning::Corrupt,
            ),
            ("Unknown Adobe color transform code 7", Warning::Harmless),
            // Not libjpeg's text: a near miss is not a match.
            (
                "Corrupt JPEG data: premature end of data segments",
                Warning::Corrupt,
            ),
            (
                "Corrupt JPEG data: x extraneous bytes before marker 0xd9",
                Warning::Corrupt,
            ),
            ("something else entirely", Warning::Corrupt),
        ];
        for (message, meaning) in cases {
            assert_eq!(classify(message), meaning, "{message}");
        }
    }
}
