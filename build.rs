//! Generates the C header with cbindgen and hides every exported symbol but `vb_*`.
//!
//! cbindgen reads the C surface; `build/header.rs` lays its output out in the sections below,
//! inside the hand-written `build/voicebackend.h.in` (the overview and a usage sketch). The
//! fresh header goes to `$OUT_DIR/voicebackend.h` (cbindgen's own output beside it, as
//! `voicebackend.cbindgen.h`); the committed `include/voicebackend.h` is rewritten only with
//! `VB_REGENERATE_HEADER=1`, and a test fails when the two differ.

use std::path::{Path, PathBuf};

#[path = "build/header.rs"]
mod header;

use header::{Layout, Place, Section};

/// The files that make up the C ABI (cbindgen follows `mod` items, so `src/ffi/mod.rs` brings
/// the FFI submodules).
const C_SURFACE: [&str; 4] = [
    "src/error.rs",
    "src/backend/health.rs",
    "src/event.rs",
    "src/ffi/mod.rs",
];

/// The header's sections, in reading order.
const SECTIONS: &[Section] = &[
    Section {
        id: "basics",
        title: "Status codes, errors and versions",
        intro: "Every fallible call returns a VbStatus (VB_OK is 0); vb_last_error_message() says \
                why the last call on this thread failed.",
    },
    Section {
        id: "backend",
        title: "Backends",
        intro: "A backend is one configured engine: a provider from the registry (\"local\" is \
                the embedded one), its pipeline and its limits. Create it from JSON, add hooks, \
                start it, then open sessions on it.",
    },
    Section {
        id: "session",
        title: "Sessions",
        intro: "One conversation on a running backend: create (or resume) it with callbacks, \
                start it, push the microphone's audio and pull the agent's, read its events, \
                stop and free it.",
    },
    Section {
        id: "reply",
        title: "Replies",
        intro: "The agent's side: on_transcript gets a VbReply for each finished user turn and \
                streams the answer's text into it.",
    },
    Section {
        id: "tools",
        title: "Tools of the built-in agent",
        intro: "A backend whose agent section configures the built-in LLM agent answers sessions \
                that have no on_transcript of their own; the host's tools are offered to its \
                model, which may call them while it answers.",
    },
    Section {
        id: "incoming",
        title: "Sessions that arrive by themselves",
        intro: "A backend that accepts calls itself (a LiveKit worker's dispatched jobs) hands \
                each new session to the host.",
    },
    Section {
        id: "rooms",
        title: "LiveKit room service",
        intro: "Rooms, participants and dispatches of a livekit backend's server.",
    },
    Section {
        id: "logging",
        title: "Logging",
        intro: "The library's log records, handed to the host's own logger.",
    },
];

/// Where the items go, by the start of the path of the Rust file that declares them (first match
/// wins): "src/ffi/session" takes `session.rs` and `session_opus.rs`, and its `vb_reply_*` go to
/// the replies. A new item in one of these files finds its section by itself; an item of another
/// file fails the build until it has a place here.
const PLACES: &[Place] = &[
    Place {
        file: "src/error",
        prefix: "",
        section: "basics",
    },
    Place {
        file: "src/ffi/version",
        prefix: "",
        section: "basics",
    },
    Place {
        file: "src/ffi/backend",
        prefix: "",
        section: "backend",
    },
    Place {
        file: "src/backend/health",
        prefix: "",
        section: "backend",
    },
    Place {
        file: "src/ffi/session",
        prefix: "vb_reply_",
        section: "reply",
    },
    Place {
        file: "src/ffi/session",
        prefix: "VbReply",
        section: "reply",
    },
    Place {
        file: "src/ffi/session",
        prefix: "",
        section: "session",
    },
    Place {
        file: "src/event",
        prefix: "",
        section: "session",
    },
    Place {
        file: "src/ffi/tool",
        prefix: "",
        section: "tools",
    },
    Place {
        file: "src/ffi/incoming",
        prefix: "",
        section: "incoming",
    },
    Place {
        file: "src/ffi/rooms",
        prefix: "",
        section: "rooms",
    },
    Place {
        file: "src/ffi/log",
        prefix: "",
        section: "logging",
    },
];

/// The hand-written part of the header.
const TEMPLATE: &str = "build/voicebackend.h.in";

/// Writes `text` to `path` unless it holds it already (keeps the file's time for `make`-like
/// tools).
fn write_if_changed(path: &Path, text: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return;
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The shared library's SONAME: the ABI's major version (0 while the crate is 0.x).
const SONAME: &str = "libvoicebackend.so.0";

/// Programs linked against `target/<profile>/libvoicebackend.so` (the tests, the bindings'
/// tests, the examples) need `libvoicebackend.so.0` beside it at run time: a link in the profile
/// directory (the parent of cargo's `build/` directory), made once.
fn link_soname_in_target_dir(out_dir: &Path) {
    let Some(profile_dir) = out_dir.ancestors().nth(3) else {
        return;
    };
    let link = profile_dir.join(SONAME);
    if std::fs::symlink_metadata(&link).is_err() {
        #[cfg(unix)]
        let _ = std::os::unix::fs::symlink("libvoicebackend.so", &link);
    }
}

/// The Rust files of the C surface (relative to the crate, text): `C_SURFACE` and every file
/// under `src/ffi`.
fn surface_sources(crate_dir: &Path) -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = C_SURFACE.iter().map(|p| crate_dir.join(p)).collect();
    let mut dirs = vec![crate_dir.join("src/ffi")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let relative = path.strip_prefix(crate_dir).expect("under the crate");
            (relative.to_string_lossy().replace('\\', "/"), text)
        })
        .collect()
}

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    for source in C_SURFACE {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed={TEMPLATE}");
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
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("cbindgen writes UTF-8");
    std::fs::write(out_dir.join("voicebackend.cbindgen.h"), &generated)
        .expect("write voicebackend.cbindgen.h");

    let template = std::fs::read_to_string(crate_dir.join(TEMPLATE))
        .unwrap_or_else(|e| panic!("{TEMPLATE}: {e}"));
    let layout = Layout {
        template: &template,
        sections: SECTIONS,
        places: PLACES,
    };
    let files = header::declaring_files(&surface_sources(&crate_dir));
    let header = header::assemble(&generated, &files, &layout)
        .unwrap_or_else(|e| panic!("include/voicebackend.h: {e}"));
    write_if_changed(&out_dir.join("voicebackend.h"), &header);
    if std::env::var_os("VB_REGENERATE_HEADER").is_some_and(|v| v == "1") {
        write_if_changed(&crate_dir.join("include/voicebackend.h"), &header);
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
