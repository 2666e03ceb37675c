//! Generates the C header with cbindgen and hides every exported symbol but `vb_*`.
//!
//! The fresh header goes to `$OUT_DIR/voicebackend.h`; the committed `include/voicebackend.h` is
//! rewritten only with `VB_REGENERATE_HEADER=1`, and a test fails when the two differ.

use std::path::PathBuf;

/// The files that make up the C ABI (cbindgen follows `mod` items, so `src/ffi/mod.rs` brings
/// the FFI submodules).
const C_SURFACE: [&str; 4] = [
    "src/error.rs",
    "src/backend/health.rs",
    "src/event.rs",
    "src/ffi/mod.rs",
];

/// The shared library's SONAME: the ABI's major version (0 while the crate is 0.x).
const SONAME: &str = "libvoicebackend.so.0";

/// Programs linked against `target/<profile>/libvoicebackend.so` (the tests, the bindings'
/// tests, the examples) need `libvoicebackend.so.0` beside it at run time: a link in the profile
/// directory (the parent of cargo's `build/` directory), made once.
fn link_soname_in_target_dir(out_dir: &std::path::Path) {
    let Some(profile_dir) = out_dir.ancestors().nth(3) else {
        return;
    };
    let link = profile_dir.join(SONAME);
    if std::fs::symlink_metadata(&link).is_err() {
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink("libvoicebackend.so", &link);
    }
}

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for source in C_SURFACE {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=VB_REGENERATE_HEADER");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    // The header is the C surface only: the FFI module and the C types it uses.
    let mut builder = cbindgen::Builder::new().with_config(config);
    for source in C_SURFACE {
        builder = builder.with_src(crate_dir.join(source));
    }
    let bindings = builder
        .generate()
        .expect("cbindgen could not generate the header");
    bindings.write_to_file(out_dir.join("voicebackend.h"));
    if std::env::var_os("VB_REGENERATE_HEADER").is_some_and(|v| v == "1") {
        bindings.write_to_file(crate_dir.join("include/voicebackend.h"));
    }

    let map = crate_dir.join("src/ffi/exports.map");
    println!("cargo:rerun-if-changed={}", map.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            map.display()
        );
        // A system library's name: programs record libvoicebackend.so.0 and keep working when a
        // compatible 0.x replaces the library (scripts/install.sh installs .so.<version> with the
        // .so.0 and .so links).
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{SONAME}");
        link_soname_in_target_dir(&out_dir);
    }
}
