//! Every function of the C ABI runs its body through the one panic guard of `src/ffi/mod.rs`
//! (`guard` for the functions that return a status, `guard_realtime` for the realtime-safe audio
//! calls, `guard_value` for those that return a value or nothing; all three catch panics in
//! `catch_panic`, the only `catch_unwind` of the C boundary), so that no panic crosses it.
//!
//! Read from the source: each `#[unsafe(no_mangle)]` function of `src/ffi/*.rs` must have a body
//! that is one call of a guard, with the whole body inside it; no function is exported anywhere
//! else; and the exported functions are exactly those the header declares.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

const GUARDS: [&str; 3] = ["guard", "guard_realtime", "guard_value"];

/// `source` with comments, string literals and char literals blanked out (same length, so that
/// positions still match); lifetimes are left alone.
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    while i < bytes.len() {
        let rest = &bytes[i..];
        if rest.starts_with(b"//") {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(bytes.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let end = source[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |n| i + 2 + n + 2);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|&&b| b == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = i + 2 + hashes;
            let end = source[body..]
                .find(&close)
                .map_or(bytes.len(), |n| body + n + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if rest[0] == b'\'' && rest.len() > 2 && (rest[2] == b'\'' || rest[1] == b'\\') {
            // A char literal ('{', '\n', '\''); a lifetime ('a) has no closing quote here.
            let end = rest[2..]
                .iter()
                .position(|&b| b == b'\'')
                .map_or(bytes.len(), |n| i + 3 + n);
            blank(&mut out, i, end);
            i = end;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII is replaced)")
}

/// The index just past the bracket that closes the one at `open`.
fn matching(code: &str, open: usize) -> usize {
    let (left, right) = match code.as_bytes()[open] {
        b'{' => (b'{', b'}'),
        b'(' => (b'(', b')'),
        other => panic!("no bracket at {open}: {}", other as char),
    };
    let mut depth = 0usize;
    for (k, &b) in code.as_bytes()[open..].iter().enumerate() {
        if b == left {
            depth += 1;
        } else if b == right {
            depth -= 1;
            if depth == 0 {
                return open + k + 1;
            }
        }
    }
    panic!("unbalanced bracket at {open}");
}

struct Exported {
    file: String,
    name: String,
    /// The body between its braces, comments and literals blanked.
    body: String,
}

/// The `#[unsafe(no_mangle)]` functions of one file.
fn exported_functions(file: &str, source: &str) -> Vec<Exported> {
    let code = code_only(source);
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("no_mangle") {
        let attr = from + at;
        let fn_at = attr
            + code[attr..]
                .find("fn ")
                .unwrap_or_else(|| panic!("{file}: no fn after no_mangle"));
        let name: String = code[fn_at + 3..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // The parameter list, then the return type (no braces in either), then the body.
        let params = fn_at + code[fn_at..].find('(').expect("parameter list");
        let after_params = matching(&code, params);
        let open = after_params + code[after_params..].find('{').expect("body");
        let close = matching(&code, open);
        found.push(Exported {
            file: file.to_owned(),
            name,
            body: code[open + 1..close - 1].to_owned(),
        });
        from = close;
    }
    found
}

/// Whether `body` is one guard call and nothing else: `guard…(…)` with the whole body inside.
fn is_one_guard_call(body: &str) -> Result<(), String> {
    let trimmed = body.trim();
    let start = body.len() - body.trim_start().len();
    let callee: String = trimmed
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if !GUARDS.contains(&callee.as_str()) {
        return Err(format!("starts with `{callee}`, not with a guard"));
    }
    let open = start + callee.len();
    if body.as_bytes().get(open) != Some(&b'(') {
        return Err(format!("`{callee}` is not called"));
    }
    let close = matching(body, open);
    let tail = body[close..].trim();
    if !tail.is_empty() {
        return Err(format!("code after the guard call: `{tail}`"));
    }
    Ok(())
}

fn ffi_sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ffi");
    let mut files: Vec<(String, String)> = fs::read_dir(&dir)
        .expect("src/ffi")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            let name = format!("src/ffi/{}", path.file_name().unwrap().to_string_lossy());
            (name, fs::read_to_string(&path).expect("read source"))
        })
        .collect();
    files.sort();
    files
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Names of the functions the header declares (`vb_name(` outside comments).
fn header_functions() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/voicebackend.h");
    let header = code_only(&fs::read_to_string(path).expect("header"));
    let mut names = BTreeSet::new();
    let mut rest = header.as_str();
    while let Some(at) = rest.find("vb_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let preceded_by_ident = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded_by_ident && tail[len..].trim_start().starts_with('(') {
            names.insert(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    names
}

#[test]
fn every_exported_function_runs_its_body_through_the_panic_guard() {
    let mut exported = Vec::new();
    for (file, source) in ffi_sources() {
        exported.extend(exported_functions(&file, &source));
    }
    let names: BTreeSet<String> = exported.iter().map(|f| f.name.clone()).collect();
    println!("{} exported functions", names.len());
    assert_eq!(names.len(), exported.len(), "a name is exported twice");
    assert!(exported.len() >= 30, "found too few: {names:?}");

    let unguarded: Vec<String> = exported
        .iter()
        .filter_map(|f| {
            is_one_guard_call(&f.body)
                .err()
                .map(|why| format!("{} in {}: {why}", f.name, f.file))
        })
        .collect();
    assert!(
        unguarded.is_empty(),
        "exported functions whose body is not one call of guard / guard_realtime / \
         guard_value (src/ffi/mod.rs):\n{}",
        unguarded.join("\n")
    );

    let declared = header_functions();
    assert_eq!(
        names, declared,
        "the functions exported from src/ffi and those include/voicebackend.h declares differ"
    );
}

#[test]
fn panics_are_caught_in_one_place() {
    for (file, source) in ffi_sources() {
        let code = code_only(&source);
        let catches = code.matches("catch_unwind(").count();
        let expected = usize::from(file == "src/ffi/mod.rs");
        assert_eq!(
            catches, expected,
            "{file}: {catches} catch_unwind calls; the C boundary catches panics only in \
             `catch_panic` (src/ffi/mod.rs)"
        );
    }
}

#[test]
fn nothing_outside_src_ffi_is_exported() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let outside: Vec<String> = files
        .iter()
        .filter(|path| !path.starts_with(root.join("src/ffi")))
        .filter(|path| {
            let code = code_only(&fs::read_to_string(path).expect("read source"));
            code.contains("no_mangle") || code.contains("export_name")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "exported symbols outside src/ffi: {outside:?}"
    );
}

#[test]
fn the_parser_sees_what_it_should() {
    let source = r#"
/// Doc { with a brace
#[unsafe(no_mangle)]
pub unsafe extern "C" fn vb_a(cb: Option<unsafe extern "C" fn(x: i32) -> i32>) -> i32 {
    guard_value(0, || { let s = "}"; s.len() as i32 })
}
#[unsafe(no_mangle)]
pub extern "C" fn vb_b() -> i32 {
    let x = 1; // guard(
    guard_value(0, || x)
}
#[unsafe(no_mangle)]
pub extern "C" fn vb_c() -> i32 {
    guard_value(0, || 1) + 1
}
"#;
    let found = exported_functions("test.rs", source);
    let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["vb_a", "vb_b", "vb_c"]);
    assert_eq!(is_one_guard_call(&found[0].body), Ok(()));
    assert!(is_one_guard_call(&found[1].body).is_err());
    assert!(is_one_guard_call(&found[2].body).is_err());
}
