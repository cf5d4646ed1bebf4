//! Build script: compile `csrc/jpeg_warnings.c` (see there) and, with the `cuda` feature,
//! compile `kernels/*.cu` with nvcc into one fatbin per file (code for each GPU generation
//! from Turing, see ARCHES), which `src/transform/gpu/launch.rs` embeds. nvcc is looked
//! for in `$NVCC`, `$CUDA_HOME/bin`, `PATH`, then the pinned PyPI packages `make nvcc` installs
//! in `.nvcc/`. Without nvcc the library still builds and says
//! at run time that it has no kernels, unless `SLIPSTREAM_REQUIRE_KERNELS=1` (the build of a
//! wheel meant for a GPU machine) turns that into a build failure.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// SASS for every GPU generation nvcc 13.0 builds for (Turing to Blackwell; sm_80 code also runs
/// on the other 8.x cards, but their own is tuned for them), and PTX for the oldest of them, so
/// a newer GPU compiles it at load time, and CUDA_FORCE_PTX_JIT=1 can test that path on any.
/// Volta (sm_70) needs an older nvcc than PyPI has (nvidia-cuda-nvcc-cu12 ships no nvcc).
/// src/cuda.rs (MIN_COMPUTE_CAPABILITY) refuses GPUs older than the oldest here.
const ARCHES: &[&str] = &[
    "-gencode=arch=compute_75,code=sm_75",
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_86,code=sm_86",
    "-gencode=arch=compute_89,code=sm_89",
    "-gencode=arch=compute_90,code=sm_90",
    "-gencode=arch=compute_100,code=sm_100",
    "-gencode=arch=compute_120,code=sm_120",
    "-gencode=arch=compute_75,code=compute_75",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    compile_jpeg_warnings();
    println!("cargo:rerun-if-changed=kernels");
    for var in ["NVCC", "CUDA_HOME", "SLIPSTREAM_REQUIRE_KERNELS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(slipstream_kernels)");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let required = env::var("SLIPSTREAM_REQUIRE_KERNELS").is_ok_and(|v| v == "1");
    let Some(nvcc) = find_nvcc() else {
        let message = "nvcc not found ($NVCC, $CUDA_HOME/bin, PATH, .nvcc/ from `make nvcc`): \
                       the `cuda` feature is built without kernels and device=\"cuda\" will say so";
        if required {
            panic!("SLIPSTREAM_REQUIRE_KERNELS=1 but {message}");
        }
        println!("cargo:warning={message}");
        return;
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("kernels")
        .expect("read kernels/")
        .map(|e| e.expect("read kernels/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    kernels.sort();
    for cu in &kernels {
        let stem = cu.file_stem().unwrap().to_string_lossy();
        let fatbin = out.join(format!("{stem}.fatbin"));
        let status = Command::new(&nvcc)
            .args(["-fatbin", "-O3", "-std=c++17"])
            // The CPU twin (src/transform/resample.rs) does not fuse multiply-adds either.
            .arg("--fmad=false")
            .args(ARCHES)
            .arg("-o")
            .arg(&fatbin)
            .arg(cu)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
        assert!(status.success(), "nvcc failed on {}", cu.display());
    }
    println!("cargo:rerun-if-changed={}", nvcc.display());
    println!("cargo:rustc-cfg=slipstream_kernels");
    let arches: Vec<&str> = ARCHES
        .iter()
        .filter_map(|a| a.rsplit(",code=").next())
        .collect();
    println!(
        "cargo:rustc-env=SLIPSTREAM_KERNEL_ARCHES={}",
        arches.join(",")
    );
}

/// `csrc/jpeg_warnings.c`, against the libjpeg headers of the libjpeg-turbo that turbojpeg-sys
/// built (its `include` metadata); it links with that same static library.
fn compile_jpeg_warnings() {
    println!("cargo:rerun-if-changed=csrc");
    let include = env::var("DEP_TURBOJPEG_INCLUDE").expect("turbojpeg-sys exports its headers");
    let mut build = cc::Build::new();
    let mut version = None;
    for dir in include.split(',') {
        build.include(dir);
        // For `slipstream info`: the version of the libjpeg-turbo linked in.
        let jconfig = std::fs::read_to_string(Path::new(dir).join("jconfig.h")).unwrap_or_default();
        version = version.or_else(|| {
            jconfig.lines().find_map(|line| {
                let rest = line.strip_prefix("#define LIBJPEG_TURBO_VERSION ")?;
                Some(rest.trim().to_string())
            })
        });
    }
    let version = version.expect("jconfig.h of turbojpeg-sys defines LIBJPEG_TURBO_VERSION");
    println!("cargo:rustc-env=SLIPSTREAM_LIBJPEG_TURBO_VERSION={version}");
    build
        .file("csrc/jpeg_warnings.c")
        .warnings(true)
        .compile("slipstream_jpeg_warnings");
}

fn find_nvcc() -> Option<PathBuf> {
    let is_file = |p: &Path| p.is_file().then(|| p.to_path_buf());
    if let Some(p) = env::var_os("NVCC") {
        return is_file(Path::new(&p));
    }
    if let Some(home) = env::var_os("CUDA_HOME")
        && let Some(p) = is_file(&Path::new(&home).join("bin/nvcc"))
    {
        return Some(p);
    }
    if let Some(path) = env::var_os("PATH")
        && let Some(p) = env::split_paths(&path).find_map(|d| is_file(&d.join("nvcc")))
    {
        return Some(p);
    }
    // `make` installs the pinned nvidia-cuda-nvcc wheel into .nvcc/ (requirements-nvcc.txt).
    let manifest = env::var_os("CARGO_MANIFEST_DIR")?;
    is_file(&Path::new(&manifest).join(".nvcc/nvidia/cu13/bin/nvcc"))
}
