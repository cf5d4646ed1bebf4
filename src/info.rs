//! `slipstream info` and `slipstream.info()`: what this build holds and what it finds on this
//! machine, the facts a bug report needs. Nothing here fails: what cannot be found is reported
//! with the reason.

use std::path::PathBuf;

use serde::Serialize;

use crate::cache::default_cache_dir;

#[derive(Serialize)]
pub struct Info {
    pub version: &'static str,
    /// The Cargo features compiled in (`cuda`, `s3`, `python`).
    pub features: Vec<&'static str>,
    pub cpu: Cpu,
    pub libjpeg_turbo: &'static str,
    /// The GPU code embedded in the kernels (`sm_80`, `compute_90`, ...); empty when the build
    /// had no nvcc (`device="cuda"` then says so).
    pub kernel_architectures: Vec<&'static str>,
    pub cuda: Cuda,
    pub cache_dir: PathBuf,
}

#[derive(Serialize)]
pub struct Cpu {
    pub arch: &'static str,
    /// The widest vector instructions this CPU has of those libjpeg-turbo uses.
    pub simd: &'static str,
    pub cores: usize,
}

#[derive(Serialize, Default)]
pub struct Cuda {
    /// The CUDA version the driver supports, `"13.0"`.
    pub driver: Option<String>,
    pub gpus: Vec<Gpu>,
    /// Where libnvjpeg was loaded from.
    pub nvjpeg: Option<PathBuf>,
    /// Why the driver, a GPU or nvJPEG could not be used.
    pub problems: Vec<String>,
}

#[derive(Serialize)]
pub struct Gpu {
    pub ordinal: usize,
    pub name: String,
    /// `"9.0"`.
    pub compute_capability: String,
    pub memory_bytes: u64,
    /// Hardware JPEG engines and cores per engine; (0, 0) for none.
    pub jpeg_engines: (u32, u32),
}

impl Info {
    /// Look: loads the CUDA driver and nvJPEG when the build has the `cuda` feature.
    pub fn gather() -> Info {
        let kernels = option_env!("SLIPSTREAM_KERNEL_ARCHES").unwrap_or("");
        Info {
            version: env!("CARGO_PKG_VERSION"),
            features: [
                ("cuda", cfg!(feature = "cuda")),
                ("s3", cfg!(feature = "s3")),
                ("python", cfg!(feature = "python")),
            ]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect(),
            cpu: Cpu {
                arch: std::env::consts::ARCH,
                simd: simd(),
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            libjpeg_turbo: env!("SLIPSTREAM_LIBJPEG_TURBO_VERSION"),
            kernel_architectures: kernels.split(',').filter(|a| !a.is_empty()).collect(),
            cuda: cuda(),
            cache_dir: default_cache_dir(),
        }
    }

    /// As JSON (what `slipstream.info()` returns as a dict).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serializes")
    }
}

impl std::fmt::Display for Info {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let none = |v: &[&str]| {
            if v.is_empty() {
                "none".into()
            } else {
                v.join(", ")
            }
        };
        writeln!(f, "slipstream      {}", self.version)?;
        writeln!(f, "features        {}", none(&self.features))?;
        let cpu = &self.cpu;
        writeln!(
            f,
            "cpu             {} {}, {} cores",
            cpu.arch, cpu.simd, cpu.cores
        )?;
        writeln!(f, "libjpeg-turbo   {}", self.libjpeg_turbo)?;
        writeln!(f, "kernels         {}", none(&self.kernel_architectures))?;
        let cuda = &self.cuda;
        writeln!(
            f,
            "cuda driver     {}",
            cuda.driver.as_deref().unwrap_or("none")
        )?;
        for gpu in &cuda.gpus {
            let (engines, cores) = gpu.jpeg_engines;
            writeln!(
                f,
                "gpu {:<11} {}, compute capability {}, {:.1} GB, JPEG engine: {}",
                gpu.ordinal,
                gpu.name,
                gpu.compute_capability,
                gpu.memory_bytes as f64 / 1e9,
                if engines == 0 {
                    "none".to_string()
                } else {
                    format!("{engines} x {cores} cores")
                }
            )?;
        }
        let nvjpeg = cuda.nvjpeg.as_ref().map(|p| p.display().to_string());
        writeln!(
            f,
            "nvjpeg          {}",
            nvjpeg.as_deref().unwrap_or("not loaded")
        )?;
        for problem in &cuda.problems {
            writeln!(f, "  {problem}")?;
        }
        write!(f, "cache dir       {}", self.cache_dir.display())
    }
}

fn simd() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
        if std::arch::is_x86_feature_detected!("sse4.1") {
            return "sse4.1";
        }
        "sse2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "none"
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Cuda {
    Cuda {
        problems: vec!["built without the `cuda` feature".into()],
        ..Cuda::default()
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Cuda {
    use crate::decode::nvjpeg;

    let mut cuda = Cuda::default();
    let found = crate::cuda::driver_version()
        .map(|(major, minor)| cuda.driver = Some(format!("{major}.{minor}")))
        .and_then(|()| crate::cuda::device_count());
    let count = match found {
        Ok(count) => count,
        Err(e) => {
            cuda.problems.push(e.to_string());
            return cuda;
        }
    };
    if let Err(e) = nvjpeg::library() {
        cuda.problems.push(e.to_string());
    }
    cuda.nvjpeg = nvjpeg::library_path();
    for ordinal in 0..count {
        match gpu(ordinal) {
            Ok(gpu) => cuda.gpus.push(gpu),
            Err(e) => cuda.problems.push(format!("cuda:{ordinal}: {e}")),
        }
    }
    cuda
}

#[cfg(feature = "cuda")]
fn gpu(ordinal: usize) -> crate::Result<Gpu> {
    use crate::cuda::{Gpu as Device, cuda_error};
    use crate::decode::nvjpeg;

    let device = Device::open(ordinal)?;
    let (major, minor) = device.compute_capability();
    let memory = device
        .context()
        .total_mem()
        .map_err(cuda_error("reading the memory size"))?;
    device.bind()?;
    let jpeg_engines = match nvjpeg::open(true) {
        Ok((_, decoder)) => decoder.hardware_engines(),
        // Said once for all GPUs (above).
        Err(_) if nvjpeg::library().is_err() => (0, 0),
        Err(e) => return Err(e),
    };
    Ok(Gpu {
        ordinal,
        name: device.name().to_string(),
        compute_capability: format!("{major}.{minor}"),
        memory_bytes: memory as u64,
        jpeg_engines,
    })
}

#[cfg(test)]
mod tests {
    use super::Info;

    #[test]
    fn reports_this_build() {
        let info = Info::gather();
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        // The version turbojpeg-sys's jconfig.h states: digits and dots.
        let parts: Vec<&str> = info.libjpeg_turbo.split('.').collect();
        assert_eq!(parts.len(), 3, "{}", info.libjpeg_turbo);
        assert!(parts.iter().all(|p| p.parse::<u32>().is_ok()));
        assert!(info.cpu.cores >= 1);
        assert_eq!(
            info.kernel_architectures.is_empty(),
            !cfg!(slipstream_kernels)
        );
        for arch in &info.kernel_architectures {
            let number = arch
                .trim_start_matches("sm_")
                .trim_start_matches("compute_");
            assert!(
                number.len() < arch.len() && number.parse::<u32>().is_ok(),
                "{arch}"
            );
        }
        assert_eq!(info.features.contains(&"cuda"), cfg!(feature = "cuda"));
        let text = info.to_string();
        assert!(
            text.contains(info.libjpeg_turbo) && text.contains("cache dir"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&info.to_json()).unwrap();
        assert_eq!(json["version"], info.version);
    }
}
