//! Finding and loading the nvJPEG that suits the driver, and saying where it came from.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::sys::{Nvjpeg, libraryPropertyType_t, nvjpegStatus_t};
use crate::error::{Error, Result};

/// The nvJPEG for this driver, loaded once per process: `$SLIPSTREAM_NVJPEG` if set, else the
/// copies of the `nvidia-nvjpeg` (13) and `nvidia-nvjpeg-cu12` wheels that the Python package
/// finds (`$SLIPSTREAM_NVJPEG_WHEELS`), else the loader's search path; nvJPEG 13 first where
/// the driver supports CUDA 13 (cuDriverGetVersion), only nvJPEG 12 where it supports CUDA 12.
/// The bindings fit both: nvjpeg.h of 13.0 only drops an encoder function of 12.x.
pub fn library() -> Result<&'static Nvjpeg> {
    static LIBRARY: OnceLock<std::result::Result<Nvjpeg, String>> = OnceLock::new();
    LIBRARY
        .get_or_init(|| {
            let driver = crate::cuda::driver_version().map_err(|e| e.to_string())?;
            let explicit = std::env::var("SLIPSTREAM_NVJPEG").ok();
            let wheels = std::env::var("SLIPSTREAM_NVJPEG_WHEELS").unwrap_or_default();
            let candidates = library_candidates(driver.0, explicit.as_deref(), &wheels);
            let mut tried = Vec::new();
            for name in &candidates {
                // SAFETY: loading libnvjpeg runs its initialisers, which only set up the
                // library; every symbol the bindings declare is resolved and type-checked
                // against the 13.0 header they were generated from, which 12.x matches.
                match unsafe { Nvjpeg::new(name) } {
                    Ok(lib) => match major_version(&lib) {
                        Some(major) if major <= driver.0 => return Ok(lib),
                        found => tried.push(format!(
                            "{name}: nvJPEG {} needs a CUDA {0} driver",
                            found.map_or("of unknown version".into(), |m| m.to_string())
                        )),
                    },
                    Err(e) => tried.push(format!("{name}: {e}")),
                }
            }
            let (extra, package, file) = if driver.0 >= 13 {
                ("cuda13", "nvidia-nvjpeg~=13.0", "libnvjpeg.so.13")
            } else {
                ("cuda12", "nvidia-nvjpeg-cu12~=12.4", "libnvjpeg.so.12")
            };
            Err(format!(
                "no nvJPEG for this CUDA {}.{} driver could be loaded ({}); install it with \
                 `pip install \"slipstream[{extra}]\"` (or `pip install {package}`), or set \
                 SLIPSTREAM_NVJPEG to a {file}",
                driver.0,
                driver.1,
                tried.join("; ")
            ))
        })
        .as_ref()
        .map_err(|e| Error::Cuda(e.clone()))
}

/// The files to try, in order, for a driver of CUDA version `driver_major`: the explicit one,
/// then the wheels' (`:`-separated paths), then the system's, newest nvJPEG the driver runs first.
fn library_candidates(driver_major: i32, explicit: Option<&str>, wheels: &str) -> Vec<String> {
    let majors: &[&str] = if driver_major >= 13 {
        &["13", "12"]
    } else {
        &["12"]
    };
    let mut candidates: Vec<String> = explicit.map(String::from).into_iter().collect();
    for major in majors {
        let file = format!("libnvjpeg.so.{major}");
        let wheel = wheels
            .split(':')
            .filter(|p| p.ends_with(&format!("/{file}")));
        candidates.extend(wheel.map(String::from));
        candidates.push(file);
    }
    candidates
}

/// nvJPEG's major version (nvjpegGetProperty), or `None` if it does not say.
fn major_version(lib: &Nvjpeg) -> Option<i32> {
    let mut major = 0;
    // SAFETY: a plain query into a live out pointer.
    let status = unsafe { lib.nvjpegGetProperty(libraryPropertyType_t::MAJOR_VERSION, &mut major) };
    (status == nvjpegStatus_t::NVJPEG_STATUS_SUCCESS).then_some(major)
}

/// The file the loaded libnvjpeg was mapped from (for `slipstream info`), if it is loaded.
pub fn library_path() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            Path::new(path)
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("libnvjpeg"))
        })
        .map(Into::into)
}

#[cfg(test)]
mod tests {
    use super::library_candidates;

    #[test]
    fn the_driver_decides_which_nvjpeg_is_tried() {
        let wheels = "/v/nvidia/cu13/lib/libnvjpeg.so.13:/v/nvidia/nvjpeg/lib/libnvjpeg.so.12";
        assert_eq!(
            library_candidates(13, None, wheels),
            [
                "/v/nvidia/cu13/lib/libnvjpeg.so.13",
                "libnvjpeg.so.13",
                "/v/nvidia/nvjpeg/lib/libnvjpeg.so.12",
                "libnvjpeg.so.12"
            ]
        );
        // A CUDA 12 driver cannot run nvJPEG 13: it is not even tried.
        assert_eq!(
            library_candidates(12, None, wheels),
            ["/v/nvidia/nvjpeg/lib/libnvjpeg.so.12", "libnvjpeg.so.12"]
        );
        // The user's own choice comes first (and is checked against the driver once loaded).
        assert_eq!(
            library_candidates(12, Some("/opt/libnvjpeg.so"), ""),
            ["/opt/libnvjpeg.so", "libnvjpeg.so.12"]
        );
    }
}
