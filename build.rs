//! Build script: compile `csrc/jpeg_warnings.c` (see there) and, with the `cuda` feature,
//! compile `kernels/*.cu` with NVRTC (from PyPI: `make nvrtc` installs the pinned packages in
//! `.nvrtc/`) into machine code for each GPU generation from Volta and PTX for newer ones, and
//! write `kernel_images.rs`, which `src/kernel_images.rs` includes. Without NVRTC the library
//! still builds and says at run time that it has no kernels, unless
//! `SLIPSTREAM_REQUIRE_KERNELS=1` (the build of a wheel meant for a GPU machine) turns that into
//! a build failure.

use std::env;
use std::ffi::{CString, c_char, c_int, c_void};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The GPUs the kernels carry machine code (SASS) for: every generation from Volta to
/// Blackwell that NVRTC 12.8 builds for (sm_80 code also runs on the other 8.x cards, but their
/// own is tuned for them). Built by a CUDA 12 compiler, so CUDA 12.x drivers load it too (CUDA's
/// minor-version compatibility); CUDA 13 compilers no longer build for Volta.
const SASS_ARCHES: &[(u32, u32)] = &[
    (7, 0),
    (7, 5),
    (8, 0),
    (8, 6),
    (8, 9),
    (9, 0),
    (10, 0),
    (12, 0),
];
/// PTX for any other GPU, which the driver compiles at load time (CUDA_FORCE_PTX_JIT=1 takes
/// that path on any GPU), from NVRTC 12.0: PTX ISA 8.0, which every CUDA 12.0 or newer driver
/// compiles. Also the oldest GPU the kernels run on.
const PTX_ARCH: (u32, u32) = (7, 0);

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    compile_jpeg_warnings();
    println!("cargo:rerun-if-changed=kernels");
    for var in ["SLIPSTREAM_NVRTC_DIR", "SLIPSTREAM_REQUIRE_KERNELS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo::rustc-check-cfg=cfg(slipstream_kernels)");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let compilers = Nvrtc::find("sass").zip(Nvrtc::find("ptx"));
    let mut table = format!(
        "/// The oldest GPU generation the kernels run on.\n\
         pub const MIN_COMPUTE_CAPABILITY: (i32, i32) = ({}, {});\n",
        PTX_ARCH.0, PTX_ARCH.1
    );
    let Some((sass, ptx)) = compilers else {
        let message = "NVRTC not found ($SLIPSTREAM_NVRTC_DIR or .nvrtc/ from `make nvrtc`): the \
                       `cuda` feature is built without kernels and device=\"cuda\" will say so";
        if env::var("SLIPSTREAM_REQUIRE_KERNELS").is_ok_and(|v| v == "1") {
            panic!("SLIPSTREAM_REQUIRE_KERNELS=1 but {message}");
        }
        println!("cargo:warning={message}");
        table.push_str("pub const RESAMPLE: Images = Images { sass: &[], ptx: &[] };\n");
        std::fs::write(out.join("kernel_images.rs"), table).expect("write kernel_images.rs");
        return;
    };
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("kernels")
        .expect("read kernels/")
        .map(|e| e.expect("read kernels/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    kernels.sort();
    for cu in &kernels {
        let stem = cu.file_stem().unwrap().to_string_lossy().to_string();
        let mut entries = String::new();
        for &(major, minor) in SASS_ARCHES {
            let file = out.join(format!("{stem}.sm_{major}{minor}.cubin"));
            std::fs::write(&file, sass.compile(cu, &format!("sm_{major}{minor}"))).unwrap();
            write!(
                entries,
                "(({major}, {minor}), include_bytes!({:?})), ",
                file.display().to_string()
            )
            .unwrap();
        }
        let (major, minor) = PTX_ARCH;
        let file = out.join(format!("{stem}.compute_{major}{minor}.ptx"));
        std::fs::write(&file, ptx.compile(cu, &format!("compute_{major}{minor}"))).unwrap();
        writeln!(
            table,
            "pub const {}: Images = Images {{ sass: &[{entries}], ptx: include_bytes!({:?}) }};",
            stem.to_uppercase(),
            file.display().to_string()
        )
        .unwrap();
    }
    std::fs::write(out.join("kernel_images.rs"), table).expect("write kernel_images.rs");
    println!("cargo:rustc-cfg=slipstream_kernels");
    let mut arches: Vec<String> = SASS_ARCHES
        .iter()
        .map(|(major, minor)| format!("sm_{major}{minor}"))
        .collect();
    arches.push(format!("compute_{}{}", PTX_ARCH.0, PTX_ARCH.1));
    println!(
        "cargo:rustc-env=SLIPSTREAM_KERNEL_ARCHES={}",
        arches.join(",")
    );
}

/// One of the pinned NVRTC packages `make nvrtc` installs (requirements-nvrtc-*.txt), with the
/// CUDA headers of its own release, under `$SLIPSTREAM_NVRTC_DIR/<which>` (default `.nvrtc/`).
struct Nvrtc {
    library: libloading::Library,
    include: PathBuf,
}

type Program = *mut c_void;

impl Nvrtc {
    fn find(which: &str) -> Option<Nvrtc> {
        let root = env::var_os("SLIPSTREAM_NVRTC_DIR").map_or_else(
            || Path::new(&env::var_os("CARGO_MANIFEST_DIR").unwrap()).join(".nvrtc"),
            PathBuf::from,
        );
        let dir = root.join(which).join("nvidia");
        let path = dir.join("cuda_nvrtc/lib/libnvrtc.so.12");
        println!("cargo:rerun-if-changed={}", path.display());
        // SAFETY: loading libnvrtc runs only its own initialisers.
        let library = unsafe { libloading::Library::new(&path) }.ok()?;
        Some(Nvrtc {
            library,
            include: dir.join("cuda_runtime/include"),
        })
    }

    /// An NVRTC function, declared as `T` (its signature in nvrtc.h).
    ///
    /// # Safety
    /// `T` must be the function's signature.
    unsafe fn function<T>(&self, name: &str) -> libloading::Symbol<'_, T> {
        // SAFETY: the caller gives the symbol's true type.
        unsafe { self.library.get(name.as_bytes()) }.unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// `source` compiled for `arch` ("sm_80": a cubin; "compute_70": PTX ending in a NUL, as
    /// cuModuleLoadData takes it).
    fn compile(&self, source: &Path, arch: &str) -> Vec<u8> {
        let code = CString::new(std::fs::read(source).expect("read kernel source")).unwrap();
        let name = CString::new(source.to_string_lossy().as_bytes()).unwrap();
        let options: Vec<CString> = [
            format!("--gpu-architecture={arch}"),
            "-std=c++17".into(),
            // The CPU twin (src/transform/resample.rs) does not fuse multiply-adds either.
            "--fmad=false".into(),
            format!("-I{}", self.include.display()),
        ]
        .into_iter()
        .map(|o| CString::new(o).unwrap())
        .collect();
        let options: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let (size_name, output_name) = if arch.starts_with("sm_") {
            ("nvrtcGetCUBINSize", "nvrtcGetCUBIN")
        } else {
            ("nvrtcGetPTXSize", "nvrtcGetPTX")
        };
        type Create = unsafe extern "C" fn(
            *mut Program,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char,
        ) -> c_int;
        type Compile = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
        type Size = unsafe extern "C" fn(Program, *mut usize) -> c_int;
        type Copy = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
        type Destroy = unsafe extern "C" fn(*mut Program) -> c_int;
        // SAFETY: every function is declared with its nvrtc.h signature; every pointer passed
        // lives across the call (the CStrings above, `program`, buffers of the size NVRTC
        // reports), and the program is destroyed once, after its last use.
        unsafe {
            let mut program: Program = std::ptr::null_mut();
            let create: libloading::Symbol<Create> = self.function("nvrtcCreateProgram");
            let status = create(
                &mut program,
                code.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            assert_eq!(status, 0, "nvrtcCreateProgram failed ({status})");
            let compile: libloading::Symbol<Compile> = self.function("nvrtcCompileProgram");
            let compiled = compile(program, options.len() as c_int, options.as_ptr());
            let read = |size_name: &str, copy_name: &str| {
                let (size, copy): (libloading::Symbol<Size>, libloading::Symbol<Copy>) =
                    (self.function(size_name), self.function(copy_name));
                let mut n = 0usize;
                assert_eq!(size(program, &mut n), 0, "{size_name} failed");
                let mut bytes = vec![0u8; n];
                assert_eq!(
                    copy(program, bytes.as_mut_ptr().cast()),
                    0,
                    "{copy_name} failed"
                );
                bytes
            };
            let log = read("nvrtcGetProgramLogSize", "nvrtcGetProgramLog");
            let log = String::from_utf8_lossy(&log);
            let log = log.trim_end_matches('\0').trim();
            assert_eq!(
                compiled,
                0,
                "NVRTC failed on {} for {arch}:\n{log}",
                source.display()
            );
            if !log.is_empty() {
                println!(
                    "cargo:warning=NVRTC on {} for {arch}: {log}",
                    source.display()
                );
            }
            let bytes = read(size_name, output_name);
            let destroy: libloading::Symbol<Destroy> = self.function("nvrtcDestroyProgram");
            destroy(&mut program);
            bytes
        }
    }
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
