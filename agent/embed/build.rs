//! Links OpenBLAS (Debian's `libopenblas-dev`, installed by `scripts/setup`) when it is there:
//! its single-precision matrix product runs the model about twice as fast as the portable
//! kernels on this kind of machine. Without it the crate still builds, on those kernels, and
//! says so once.

use std::path::Path;

const SEARCHED: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

fn main() {
    println!("cargo::rustc-check-cfg=cfg(valor_blas)");
    println!("cargo::rerun-if-env-changed=VALOR_OPENBLAS_DIR");
    println!("cargo::rerun-if-env-changed=VALOR_NO_BLAS");
    if std::env::var_os("VALOR_NO_BLAS").is_some() {
        return;
    }
    let custom = std::env::var("VALOR_OPENBLAS_DIR").ok();
    let found = custom
        .iter()
        .map(String::as_str)
        .chain(SEARCHED.iter().copied())
        .find(|dir| Path::new(dir).join("libopenblas.so").exists());
    match found {
        Some(dir) => {
            println!("cargo::rerun-if-changed={dir}/libopenblas.so");
            println!("cargo::rustc-link-search=native={dir}");
            println!("cargo::rustc-link-lib=dylib=openblas");
            println!("cargo::rustc-cfg=valor_blas");
        }
        None => {
            // Installing the library later (scripts/setup) must bring this script back.
            for dir in SEARCHED.iter().filter(|d| Path::new(d).is_dir()) {
                println!("cargo::rerun-if-changed={dir}");
            }
            println!(
                "cargo::warning=libopenblas not found: embeddings use the slower built-in matrix \
                 kernels (scripts/setup installs libopenblas-dev; VALOR_OPENBLAS_DIR points elsewhere)"
            );
        }
    }
}
