//! Build script. The `cuda` feature will compile `kernels/*.cu` with nvcc here (issue 4); the
//! CPU build needs nothing from it.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!(
            "cargo:warning=the `cuda` feature has no kernels yet: this build runs on the CPU path only"
        );
    }
}
