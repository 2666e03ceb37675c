//! Generates the C header with cbindgen and hides every exported symbol but `vb_*`.
//!
//! The fresh header goes to `$OUT_DIR/voicebackend.h`; the committed `include/voicebackend.h` is
//! rewritten only with `VB_REGENERATE_HEADER=1`, and a test fails when the two differ.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=VB_REGENERATE_HEADER");

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
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
    }
}
