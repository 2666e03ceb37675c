//! The tests of `build/header.rs` and `build/items.rs`, the modules with which build.rs lays out
//! the C header (the tests of a build script's own modules do not run under `cargo test`).

#[allow(dead_code)]
#[path = "../build/header.rs"]
mod header;
