//! What `slipstream inspect` prints about a cache: its fields, sizes and image sizes.

use std::collections::BTreeMap;

use crate::cache::CacheReader;
use crate::cache::format::FieldKind;
use crate::error::Result;

/// `1.2 MB`, `340 B`: decimal units, as storage is sold.
pub(super) fn human_bytes(bytes: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// The human-readable summary `slipstream inspect` prints.
pub fn describe(reader: &CacheReader) -> Result<String> {
    use std::fmt::Write;
    let h = reader.header();
    let n = h.num_samples;
    let file_len = std::fs::metadata(reader.path()).map_or(0, |m| m.len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cache     {} ({}, format v{})",
        reader.path().display(),
        human_bytes(file_len as f64),
        h.version
    );
    let _ = writeln!(out, "source    {} ({})", h.source.path, h.source.kind);
    let layout = format!("{:?}", h.layout).to_lowercase();
    let _ = writeln!(out, "samples   {n} ({layout} samples)");
    let _ = writeln!(out, "fields");
    let mut histogram: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    for (i, f) in h.fields.iter().enumerate() {
        let what = match f.kind {
            FieldKind::Int | FieldKind::Float | FieldKind::Bool => {
                let values: Vec<f64> = (0..n)
                    .map(|s| match f.kind {
                        FieldKind::Int => reader.int(i, s) as f64,
                        FieldKind::Float => reader.float(i, s),
                        _ => reader.bool(i, s) as u8 as f64,
                    })
                    .collect();
                let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
                let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let mut distinct: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
                distinct.sort_unstable();
                distinct.dedup();
                format!("min {min}, max {max}, {} distinct", distinct.len())
            }
            _ => {
                let sizes: Vec<u32> = (0..n).map(|s| reader.record(i, s).size).collect();
                let min = sizes.iter().min().copied().unwrap_or(0);
                let max = sizes.iter().max().copied().unwrap_or(0);
                let mut s = format!(
                    "{} in all, {} mean, {} to {}",
                    human_bytes(f.total_bytes as f64),
                    human_bytes(f.total_bytes as f64 / n.max(1) as f64),
                    human_bytes(min as f64),
                    human_bytes(max as f64)
                );
                if f.images && histogram.is_empty() {
                    for sample in 0..n {
                        let r = reader.record(i, sample);
                        *histogram.entry((r.height, r.width)).or_default() += 1;
                    }
                    s.push_str(", images");
                }
                if let (Some(dtype), Some(shape)) = (f.dtype, &f.fixed_shape) {
                    let _ = write!(s, ", {} {shape:?}", dtype.name());
                } else if let Some(dtype) = f.dtype {
                    let _ = write!(s, ", {} of varying shape", dtype.name());
                }
                if let Some(modes) = &f.mode_names {
                    let _ = write!(s, ", modes {modes:?}");
                }
                s
            }
        };
        let kind = format!("{:?}", f.kind).to_lowercase();
        let _ = writeln!(
            out,
            "  {:<12} {:<6} {:<22} {what}",
            f.name,
            kind,
            format!("(litdata {})", f.litdata_format)
        );
    }
    if !histogram.is_empty() {
        let _ = writeln!(out, "image sizes (height x width), most common first");
        let mut common: Vec<_> = histogram.iter().collect();
        common.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top = *common[0].1;
        for ((height, width), count) in common.iter().take(8) {
            let bar = "#".repeat(((**count as f64 / top as f64) * 40.0).ceil() as usize);
            let _ = writeln!(out, "  {:>5} x {:<5} {:>8}  {bar}", height, width, count);
        }
        if common.len() > 8 {
            let _ = writeln!(out, "  ... {} other sizes", common.len() - 8);
        }
        let _ = writeln!(out, "shorter side");
        let mut buckets: BTreeMap<u32, u64> = BTreeMap::new();
        for ((height, width), count) in &histogram {
            *buckets
                .entry((*height).min(*width) / 100 * 100)
                .or_default() += count;
        }
        for (low, count) in buckets {
            let _ = writeln!(out, "  {:>5}-{:<5} {:>8}", low, low + 99, count);
        }
    }
    Ok(out)
}
