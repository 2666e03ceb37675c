#![cfg(feature = "test-providers")]
//! The C ABI as a C host sees it: the committed header is the generated one and declares all
//! cbindgen generated, it compiles as C99, C11 and C++17 (and so does the usage sketch at its
//! top), the shared library exports only `vb_*`, and the C host programs pass against the library
//! built with the test providers: `tests/c/host_test/` (the runner `host_test.c`, its helpers
//! `host.c`/`host_test.h` and one file of cases per area), `tests/c/log_test.c` and
//! `tests/c/opus_alloc_test.c` (the Opus calls allocate nothing, libopus included), and the host
//! program once more under AddressSanitizer and UndefinedBehaviorSanitizer. The programs
//! link libopus (Debian `libopus-dev`) for their Opus side; the Opus cases run `espeak-ng`.
//!
//! Run with `cargo test --features test-providers --test c_abi -- --nocapture`. Needs `cc`,
//! `c++` and `nm` on the PATH.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join(relative)
}

/// `target/<profile>/deps`: the directory of this test executable, where cargo put the library
/// it built for this very test run (cargo only copies a dependency's cdylib up to
/// `target/<profile>` for `cargo build`, not for `cargo test`).
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("deps directory").to_path_buf()
}

/// `target/<profile>`.
fn profile_dir() -> PathBuf {
    deps_dir()
        .parent()
        .expect("profile directory")
        .to_path_buf()
}

/// The shared library built along with this test: `deps/` first (fresh for this run), else the
/// copy in `target/<profile>`.
fn shared_library() -> PathBuf {
    let candidates = [
        deps_dir().join("libvoicebackend.so"),
        profile_dir().join("libvoicebackend.so"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("libvoicebackend.so not found; looked at {candidates:?}"))
}

/// A fresh scratch directory under cargo's per-target temp dir.
fn scratch_dir(name: &str) -> PathBuf {
    // Set by cargo when it compiles integration tests (not in the environment at run time).
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("c_abi-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("could not run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_success(what: &str, command: &Command, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{command:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The newest `target/<profile>/build/voicebackend-*/out/voicebackend.h` (build.rs writes the
/// fresh header there; integration tests get no `OUT_DIR` of their own).
fn fresh_header() -> PathBuf {
    let build = profile_dir().join("build");
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(&build).unwrap_or_else(|e| panic!("{}: {e}", build.display())) {
        let dir = entry.expect("dir entry").path();
        let is_ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("voicebackend-"));
        let header = dir.join("out").join("voicebackend.h");
        if !is_ours {
            continue;
        }
        let Ok(modified) = fs::metadata(&header).and_then(|m| m.modified()) else {
            continue;
        };
        if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
            newest = Some((modified, header));
        }
    }
    newest.map(|(_, path)| path).unwrap_or_else(|| {
        panic!(
            "no voicebackend-*/out/voicebackend.h under {}",
            build.display()
        )
    })
}

/// The first differing lines of two texts, with a little context, as a `-`/`+` listing.
fn diff_hint(committed: &str, fresh: &str) -> String {
    let a: Vec<&str> = committed.lines().collect();
    let b: Vec<&str> = fresh.lines().collect();
    let first = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let mut hint = format!(
        "first difference at line {} (committed {} lines, generated {} lines):\n",
        first + 1,
        a.len(),
        b.len()
    );
    let from = first.saturating_sub(3);
    for line in &a[from..first] {
        hint.push_str(&format!("  {line}\n"));
    }
    for line in a.iter().skip(first).take(8) {
        hint.push_str(&format!("- {line}\n"));
    }
    for line in b.iter().skip(first).take(8) {
        hint.push_str(&format!("+ {line}\n"));
    }
    hint
}

#[test]
fn header_is_up_to_date() {
    let committed_path = manifest_path("include/voicebackend.h");
    let fresh_path = fresh_header();
    let committed = fs::read_to_string(&committed_path).expect("read include/voicebackend.h");
    let fresh = fs::read_to_string(&fresh_path).expect("read the generated header");
    assert!(
        committed == fresh,
        "include/voicebackend.h differs from the header build.rs generated ({}).\n{}\n\
         Regenerate the committed header with:\n    VB_REGENERATE_HEADER=1 cargo build",
        fresh_path.display(),
        diff_hint(&committed, &fresh)
    );
}

/// `text` without its comments (`/* … */` and `// …`), line breaks kept.
fn code_of(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        let (start, end) = match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => (
                b,
                rest[b + 2..]
                    .find("*/")
                    .map_or(rest.len(), |e| b + 2 + e + 2),
            ),
            (_, Some(l)) => (l, rest[l..].find('\n').map_or(rest.len(), |e| l + e)),
            _ => break,
        };
        code.push_str(&rest[..start]);
        code.extend(rest[start..end].chars().filter(|&c| c == '\n'));
        code.push(' ');
        rest = &rest[end..];
    }
    code.push_str(rest);
    code
}

/// The C ABI's names a header's code mentions (`vb_*`, `Vb*`, `VB_*`: functions, types, enum
/// values, constants), comments left out.
fn abi_names(header: &str) -> std::collections::BTreeSet<String> {
    code_of(header)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("vb_") || w.starts_with("Vb") || w.starts_with("VB_"))
        .filter(|w| *w != "VOICEBACKEND_H")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_header_declares_everything_cbindgen_generated() {
    // build.rs lays cbindgen's output out in sections; nothing may get lost on the way.
    let plain_path = fresh_header().with_file_name("voicebackend.cbindgen.h");
    let plain =
        fs::read_to_string(&plain_path).unwrap_or_else(|e| panic!("{}: {e}", plain_path.display()));
    let committed = fs::read_to_string(manifest_path("include/voicebackend.h")).expect("header");
    let (want, got) = (abi_names(&plain), abi_names(&committed));
    assert!(want.len() > 60, "read too few names: {want:?}");
    let missing: Vec<&String> = want.difference(&got).collect();
    let extra: Vec<&String> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "include/voicebackend.h lacks {missing:?} and adds {extra:?} compared with cbindgen's \
         output ({})",
        plain_path.display()
    );
}

/// A translation unit that uses the header's types, constants and functions.
const HEADER_USER: &str = r#"#include "voicebackend.h"

static VbStatus on_transcript(void *user_data, VbSession *session, const char *transcript,
                              VbReply *reply) {
  (void)user_data;
  (void)session;
  (void)transcript;
  return vb_reply_end(reply);
}

static void on_event(void *user_data, const VbEvent *event) {
  (void)user_data;
  (void)event;
}

static void process(void *user_data, int16_t *pcm, size_t samples, uint32_t sample_rate) {
  (void)user_data;
  (void)pcm;
  (void)samples;
  (void)sample_rate;
}

int main(void) {
  VbCallbacks callbacks = {0, on_transcript, on_event};
  VbProcessor processor = {0, "p", 0, process};
  VbHealth health;
  VbEvent event;
  VbTurnMetrics metrics;
  VbEventKind kind = VB_EVENT_AUDIO_DROPPED;
  VbSessionState state = VB_STATE_ERROR;
  VbHealthStatus verdict = VB_HEALTH_UNHEALTHY;
  VbStatus status = VB_ERR_INTERNAL;
  (void)callbacks;
  (void)processor;
  (void)health;
  (void)event;
  (void)metrics;
  (void)kind;
  (void)state;
  (void)verdict;
  (void)status;
  return vb_abi_version() == VB_ABI_VERSION ? 0 : 1;
}
"#;

#[test]
fn header_compiles_as_c99_c11_and_cpp17() {
    let dir = scratch_dir("header");
    let c_file = dir.join("uses_header.c");
    let cpp_file = dir.join("uses_header.cpp");
    fs::write(&c_file, HEADER_USER).expect("write C file");
    fs::write(&cpp_file, HEADER_USER).expect("write C++ file");
    let include = manifest_path("include");

    for standard in ["-std=c99", "-std=c11"] {
        let mut c = Command::new("cc");
        c.args([
            standard,
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-fsyntax-only",
        ])
        .arg("-I")
        .arg(&include)
        .arg(&c_file);
        let output = run(&mut c);
        assert_success(
            &format!("compiling the header with {standard}"),
            &c,
            &output,
        );
    }

    let mut cpp = Command::new("c++");
    cpp.args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"])
        .arg("-I")
        .arg(&include)
        .arg(&cpp_file);
    let output = run(&mut cpp);
    assert_success("compiling the header as C++17", &cpp, &output);
    let _ = fs::remove_dir_all(&dir);
}

/// The usage sketch in the header's opening comment: the lines after "A host, in short" that
/// are indented code (` *   …`) or empty (` *`), without that prefix. Its first part, up to the
/// first line that is a lone `}`, is at file scope; the rest is the body of `main`.
fn usage_sketch(header: &str) -> (String, String) {
    let mut lines = header
        .lines()
        .skip_while(|l| !l.contains("A host, in short"))
        .skip(1)
        .take_while(|l| l.starts_with(" *   ") || l.trim_end() == " *")
        .map(|l| l.get(5..).unwrap_or(""));
    let mut file_scope = String::new();
    for line in lines.by_ref() {
        file_scope.push_str(line);
        file_scope.push('\n');
        if line == "}" {
            break;
        }
    }
    let body: Vec<&str> = lines.collect();
    (file_scope, body.join("\n"))
}

#[test]
fn the_usage_sketch_at_the_top_of_the_header_compiles() {
    let header = fs::read_to_string(manifest_path("include/voicebackend.h")).expect("header");
    let (file_scope, body) = usage_sketch(&header);
    assert!(
        file_scope.contains("on_transcript") && body.contains("vb_session_create"),
        "no usage sketch found in the header's opening comment:\n{file_scope}\n{body}"
    );
    let program = format!(
        "#include <stdio.h>\n#include \"voicebackend.h\"\n\n{file_scope}\n\
         int main(void) {{\n  int running = 0;\n  int16_t mic[320] = {{0}}, speaker[320];\n  \
         size_t played;\n{body}\n  return 0;\n}}\n"
    );
    let dir = scratch_dir("sketch");
    let c_file = dir.join("sketch.c");
    fs::write(&c_file, &program).expect("write the sketch");
    let mut c = Command::new("cc");
    c.args([
        "-std=c99",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-Wno-unused-parameter",
    ])
    .args(["-pedantic", "-fsyntax-only", "-I"])
    .arg(manifest_path("include"))
    .arg(&c_file);
    let output = run(&mut c);
    assert_success(
        &format!("compiling the usage sketch\n{program}"),
        &c,
        &output,
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Names of the functions the header declares (`vb_name(`).
fn header_functions() -> Vec<String> {
    let header = fs::read_to_string(manifest_path("include/voicebackend.h")).expect("header");
    let mut names = Vec::new();
    for line in code_of(&header).lines() {
        let mut rest = line;
        while let Some(at) = rest.find("vb_") {
            let tail = &rest[at..];
            let len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let preceded_by_ident = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            if !preceded_by_ident && tail[len..].starts_with('(') {
                names.push(tail[..len].to_owned());
            }
            rest = &tail[len..];
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn the_shared_library_is_named_like_a_system_library() {
    let library = shared_library();
    let mut readelf = Command::new("readelf");
    readelf.arg("-d").arg(&library);
    let output = run(&mut readelf);
    assert_success("readelf -d", &readelf, &output);
    assert!(
        text(&output.stdout).contains("Library soname: [libvoicebackend.so.0]"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn shared_library_exports_only_vb_symbols() {
    let library = shared_library();
    let mut nm = Command::new("nm");
    nm.args(["-D", "--defined-only"]).arg(&library);
    let output = run(&mut nm);
    assert_success("nm", &nm, &output);
    let exported: Vec<String> = text(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect();
    println!("{} exports {} symbols", library.display(), exported.len());
    assert!(!exported.is_empty(), "nm listed no symbols");
    let foreign: Vec<&String> = exported.iter().filter(|s| !s.starts_with("vb_")).collect();
    assert!(
        foreign.is_empty(),
        "{} exports symbols outside the C ABI (src/ffi/exports.map should hide them): {foreign:?}",
        library.display()
    );
    let declared = header_functions();
    assert!(
        declared.len() > 20,
        "parsed too few functions: {declared:?}"
    );
    let missing: Vec<&String> = declared.iter().filter(|f| !exported.contains(f)).collect();
    assert!(
        missing.is_empty(),
        "functions declared in include/voicebackend.h but not exported: {missing:?}"
    );
}

/// The C host test program's sources: every `.c` file in `tests/c/host_test`, in name order.
fn host_test_sources() -> Vec<String> {
    let dir = manifest_path("tests/c/host_test");
    let mut sources: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".c"))
        .map(|name| format!("tests/c/host_test/{name}"))
        .collect();
    sources.sort();
    assert!(
        sources.contains(&"tests/c/host_test/host_test.c".to_owned()),
        "{sources:?}"
    );
    sources
}

/// Compiles the C program made of `sources` (paths in the repository) against the library built
/// with the test providers, in a fresh scratch directory; returns the directory and the program.
fn build_c_program(name: &str, sources: &[String]) -> (PathBuf, PathBuf) {
    build_c_program_with(name, sources, &[])
}

/// `build_c_program` with more compiler flags (a sanitizer).
fn build_c_program_with(name: &str, sources: &[String], flags: &[&str]) -> (PathBuf, PathBuf) {
    let dir = scratch_dir(name);
    // A private copy of the library, so that another cargo invocation rewriting
    // target/<profile> while the program runs cannot swap it underneath.
    let built = shared_library();
    let library_dir = dir.join("lib");
    fs::create_dir_all(&library_dir).expect("create lib dir");
    fs::copy(&built, library_dir.join("libvoicebackend.so")).expect("copy libvoicebackend.so");
    // Programs record the library's SONAME and look for that name at run time.
    let soname = library_dir.join("libvoicebackend.so.0");
    if fs::symlink_metadata(&soname).is_err() {
        std::os::unix::fs::symlink("libvoicebackend.so", &soname).expect("link the SONAME");
    }
    let program = dir.join(name);
    // Cargo names a cdylib without a hash, so a build with other features (a plain `cargo build`
    // running meanwhile) overwrites the very file this test run built; say so plainly.
    let bytes = fs::read(library_dir.join("libvoicebackend.so")).expect("read the library copy");
    assert!(
        bytes
            .windows(b"test-pitch-stt".len())
            .any(|w| w == b"test-pitch-stt"),
        "{} has no test providers: it was built (or overwritten by another cargo run) without \
         --features test-providers. Rebuild it, e.g. `touch src/lib.rs && cargo test --features \
         test-providers --test c_abi`",
        built.display()
    );

    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1"])
        .args(flags)
        .arg("-I")
        .arg(manifest_path("include"))
        .args(sources.iter().map(|source| manifest_path(source)))
        .arg("-o")
        .arg(&program)
        .arg(format!("-L{}", library_dir.display()))
        .arg("-lvoicebackend")
        .arg(format!("-Wl,-rpath,{}", library_dir.display()))
        // libopus (Debian libopus-dev) for the Opus cases' far end.
        .args(["-lopus", "-lpthread", "-lm"]);
    let output = run(&mut cc);
    assert_success(&format!("compiling {}", sources.join(" ")), &cc, &output);

    (dir, program)
}

/// Runs a program built by `build_c_program` with the library next to it.
fn c_command(dir: &Path, program: &Path) -> Command {
    let mut command = Command::new(program);
    // cargo runs tests with LD_LIBRARY_PATH naming target/<profile>[/deps], which outranks the
    // program's rpath (linked as DT_RUNPATH) and may hold a library built with other features.
    command.current_dir(dir).env_remove("LD_LIBRARY_PATH");
    command
}

#[test]
fn c_host_program_passes() {
    let (dir, program) = build_c_program("host_test", &host_test_sources());
    let built = shared_library();
    let output = run(&mut c_command(&dir, &program));
    let stdout = text(&output.stdout);
    println!("{stdout}");
    eprint!("{}", text(&output.stderr));
    assert!(
        output.status.success() && stdout.contains(" passed, 0 failed"),
        "the C host program failed ({}); its output is above. Library: {} (a library built \
         without --features test-providers fails with VB_ERR_PROVIDER_NOT_FOUND for test-*)",
        output.status,
        built.display()
    );
    // Kept on failure for a look (it holds a copy of the library, so not on success).
    let _ = fs::remove_dir_all(&dir);
}

/// The C host program again, its C side under AddressSanitizer and UndefinedBehaviorSanitizer
/// (GCC's, through `cc`; the library is not instrumented, but it allocates through the same
/// malloc, so ASan also sees the bounds of the library's heap blocks the C side touches: event
/// texts, buffers handed to callbacks). Any report fails it, leaks at exit (LeakSanitizer)
/// included; `tests/c/lsan.supp` says what is suppressed and why.
#[test]
fn c_host_program_passes_under_address_and_undefined_behaviour_sanitizers() {
    let (dir, program) = build_c_program_with(
        "host_test_asan",
        &host_test_sources(),
        &[
            "-g",
            "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=undefined",
        ],
    );
    let output = run(c_command(&dir, &program)
        .env("ASAN_OPTIONS", "detect_leaks=1")
        .env(
            "LSAN_OPTIONS",
            format!(
                "suppressions={}",
                manifest_path("tests/c/lsan.supp").display()
            ),
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1"));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    println!("{stdout}");
    eprint!("{stderr}");
    assert!(
        output.status.success() && stdout.contains(" passed, 0 failed"),
        "the C host program failed under the sanitizers ({}); its output is above",
        output.status
    );
    for report in ["AddressSanitizer", "LeakSanitizer", "runtime error:"] {
        assert!(!stderr.contains(report), "a sanitizer reported: {report}");
    }
    let _ = fs::remove_dir_all(&dir);
}

/// The host program's `tools` case with a real OpenAI-compatible server (llama.cpp's, see
/// `tests/llm_agent.rs`): the built-in agent answers a session without `on_transcript` and
/// calls the host's C tool on its way.
#[test]
fn a_c_hosts_tool_is_called_by_the_built_in_agent() {
    let server = common::llama::LlamaServer::start(2048, &[]);
    let (dir, program) = build_c_program("host_test_tools", &host_test_sources());
    let output = run(c_command(&dir, &program)
        .arg("tools")
        .env("VB_TEST_LLM_URL", server.base_url()));
    let stdout = text(&output.stdout);
    println!("{stdout}");
    eprint!("{}", text(&output.stderr));
    assert!(
        output.status.success() && stdout.contains("1 passed, 0 failed"),
        "the C host's tools case failed ({}); its output is above",
        output.status
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_c_host_receives_log_records_through_its_callback() {
    let (dir, program) = build_c_program("log_test", &["tests/c/log_test.c".to_owned()]);
    let output = run(c_command(&dir, &program)
        .env_remove("VB_LOG")
        .env_remove("RUST_LOG"));
    let stdout = text(&output.stdout);
    println!("{stdout}");
    eprint!("{}", text(&output.stderr));
    assert!(
        output.status.success() && stdout.contains(" passed, 0 failed"),
        "the C log program failed ({}); its output is above",
        output.status
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_opus_calls_never_touch_the_heap_not_even_inside_libopus() {
    let (dir, program) =
        build_c_program("opus_alloc_test", &["tests/c/opus_alloc_test.c".to_owned()]);
    let output = run(&mut c_command(&dir, &program));
    let stdout = text(&output.stdout);
    println!("{stdout}");
    eprint!("{}", text(&output.stderr));
    assert!(
        output.status.success() && stdout.contains("heap operations inside the Opus calls: 0"),
        "the Opus allocation test failed ({}); its output is above",
        output.status
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Builds examples/minimal_host.c, feeds it `pcm` (16 kHz) on stdin with `config` as its
/// argument (none: the embedded providers) and returns what it printed.
fn run_minimal_host(name: &str, config: Option<&str>, pcm: &[i16]) -> String {
    use std::io::Write;
    let (dir, program) = build_c_program(name, &["examples/minimal_host.c".to_owned()]);
    let mut host = c_command(&dir, &program);
    host.args(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = host.spawn().expect("start minimal_host");
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&bytes)
        .expect("feed audio");
    let output = child.wait_with_output().expect("minimal_host ran");
    let stdout = text(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let _ = fs::remove_dir_all(&dir);
    stdout
}

#[test]
fn the_minimal_c_host_example_holds_a_conversation() {
    let config =
        r#"{"provider":"local","stt_provider":"test-pitch-stt","tts_provider":"test-tone-tts"}"#;
    let stdout = run_minimal_host(
        "minimal_host",
        Some(config),
        &common::utterance(150.0, 1200, 16000),
    );
    assert!(stdout.contains("user:  pitch 150 hz"), "{stdout}");
    assert!(stdout.contains("agent: You said: pitch 150 hz"), "{stdout}");
    assert!(stdout.contains("voice to voice: "), "{stdout}");
}

#[test]
fn a_full_offline_turn_through_the_c_abi() {
    // eSpeak NG speaks a question; the C host feeds it to a session on the embedded providers
    // (Whisper tiny.en, eSpeak NG) and prints what it heard and answered.
    let mut pcm = common::espeak_speech("What time is it?", "en-gb");
    pcm.extend(common::silence(900, 16000));
    let stdout = run_minimal_host("offline_host", None, &pcm);
    let heard = stdout.to_lowercase();
    assert!(heard.contains("user:  what time is it"), "{stdout}");
    assert!(
        heard.contains("agent: you said: what time is it"),
        "{stdout}"
    );
    assert!(stdout.contains("voice to voice: "), "{stdout}");
}
