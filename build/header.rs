//! Assembles `include/voicebackend.h` from cbindgen's output so that it reads top to bottom.
//!
//! cbindgen writes every type before every function. This module takes its output item by item
//! (`items.rs` reads the items and writes each one as compact C), gives each item a section by
//! the Rust file that declares it, and writes the sections in order into the hand-written
//! template (`build/voicebackend.h.in`: the overview and the usage sketch). Within a section a
//! type comes just before the first function that uses it (or earlier, where another section
//! needs it first); the types no function of their section uses open the section.
//!
//! Nothing is dropped: an item whose file has no section, an output line that cannot be read or
//! a comment that would end early (`*/`) is an error that names it, and the header is checked to
//! declare exactly the names cbindgen declared.
//!
//! Pure text in, text out (no cbindgen types), so that `tests/build_header.rs` runs the tests of
//! this module and of `items.rs`.

use std::collections::{BTreeMap, BTreeSet};

#[path = "items.rs"]
mod items;

use items::{Item, Kind, WIDTH, identifiers, parse, render_item, wrap_for_comment};

/// The placeholder in the template that the sections replace.
pub const SECTIONS_MARK: &str = "@SECTIONS@";

/// A part of the header: a banner with a title and an introduction, then its items.
pub struct Section {
    /// Short name, used by [`Place`].
    pub id: &'static str,
    /// The banner's title.
    pub title: &'static str,
    /// One or two sentences under the title.
    pub intro: &'static str,
}

/// Which section an item goes to: the items declared in a file whose path (relative to the
/// crate) starts with `file` and whose name starts with `prefix` ("" for any). The first
/// matching place wins.
pub struct Place {
    /// The start of the declaring file's path: "src/ffi/session" takes `src/ffi/session.rs` and
    /// `src/ffi/session_opus.rs`.
    pub file: &'static str,
    /// A name prefix, or "" for every item of the file.
    pub prefix: &'static str,
    /// The [`Section::id`].
    pub section: &'static str,
}

/// What the header is made of: the template, the sections in order and where items go.
pub struct Layout<'a> {
    /// The hand-written header with [`SECTIONS_MARK`] where the sections go.
    pub template: &'a str,
    /// The sections, in reading order.
    pub sections: &'a [Section],
    /// Where items go (first match wins).
    pub places: &'a [Place],
}

/// The banner that opens a section.
fn banner(section: &Section) -> Vec<String> {
    let title = format!("/* ==== {} ", section.title);
    let rule = "=".repeat(WIDTH.saturating_sub(title.chars().count()));
    let mut out = vec![format!("{title}{rule}")];
    let intro = wrap_for_comment(&[section.intro.to_owned()], WIDTH - 3);
    for (i, line) in intro.iter().enumerate() {
        let close = if i + 1 == intro.len() { " */" } else { "" };
        out.push(format!(" * {line}{close}"));
    }
    out
}

/// The files that declare each top-level public name (`pub fn`, `pub struct`, `pub const` …
/// at the start of a line) of the C surface. `sources` holds (path relative to the crate, file
/// text).
pub fn declaring_files(sources: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    const KEYWORDS: [&str; 7] = ["fn", "struct", "enum", "union", "type", "const", "static"];
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, text) in sources {
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("pub ") else {
                continue;
            };
            // `pub unsafe extern "C" fn name`, `pub struct Name`, `pub const NAME: …`.
            let words = identifiers(rest);
            let Some(at) = words.iter().position(|w| KEYWORDS.contains(w)) else {
                continue;
            };
            let qualifiers = ["unsafe", "extern", "C", "mut"];
            if !words[..at].iter().all(|w| qualifiers.contains(w)) {
                continue;
            }
            if let Some(name) = words.get(at + 1) {
                let paths = files.entry(name.to_string()).or_default();
                if !paths.contains(path) {
                    paths.push(path.clone());
                }
            }
        }
    }
    files
}

/// The header: `generated` (cbindgen's output) laid out in `layout`, with `files` (from
/// [`declaring_files`]) saying where each item was declared.
pub fn assemble(
    generated: &str,
    files: &BTreeMap<String, Vec<String>>,
    layout: &Layout,
) -> Result<String, String> {
    let items = parse(generated)?;
    let deps = needs(&items);
    let home = homes(&items, files, layout)?;
    let mut placed = vec![false; items.len()];
    let mut body: Vec<String> = Vec::new();
    for (s, section) in layout.sections.iter().enumerate() {
        let members: Vec<usize> = (0..items.len()).filter(|&i| home[i] == s).collect();
        if members.iter().all(|&i| placed[i]) {
            continue;
        }
        body.push(String::new());
        body.extend(banner(section));
        for i in section_order(&members, &items, &deps, &mut placed) {
            body.push(String::new());
            body.extend(render_item(&items[i]).map_err(|e| format!("{}: {e}", items[i].name))?);
        }
    }
    if let Some(i) = placed.iter().position(|p| !p) {
        return Err(format!("{} was not placed", items[i].name));
    }
    let body = body.join("\n");
    let mut parts = layout.template.split(SECTIONS_MARK);
    let (Some(top), Some(bottom), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "the template must hold {SECTIONS_MARK} exactly once"
        ));
    };
    let header = format!(
        "{}\n{body}{}\n",
        top.trim_end(),
        bottom.trim_end_matches('\n')
    );

    // Every declaration of cbindgen's output is in the header, once.
    let want: BTreeSet<&str> = items.iter().map(|i| i.name.as_str()).collect();
    let got = declared_names(&header);
    if got.len() != want.len() || !want.iter().all(|name| got.iter().any(|g| g == name)) {
        return Err(format!(
            "the header declares {got:?}, cbindgen declared {want:?}"
        ));
    }
    Ok(header)
}

/// What each item's code names, which C needs declared before it.
fn needs(items: &[Item]) -> Vec<Vec<usize>> {
    let index: BTreeMap<&str, usize> = items
        .iter()
        .enumerate()
        .map(|(i, item)| (item.name.as_str(), i))
        .collect();
    items
        .iter()
        .map(|item| {
            let mut deps = Vec::new();
            for word in identifiers(&item.code()) {
                if let Some(&i) = index.get(word) {
                    if items[i].name != item.name && !deps.contains(&i) {
                        deps.push(i);
                    }
                }
            }
            deps
        })
        .collect()
}

/// The section of each item (an index into `layout.sections`), from the file that declares it.
fn homes(
    items: &[Item],
    files: &BTreeMap<String, Vec<String>>,
    layout: &Layout,
) -> Result<Vec<usize>, String> {
    let mut homes = Vec::new();
    for item in items {
        let file = match files.get(&item.name).map(Vec::as_slice) {
            Some([file]) => file,
            Some(many) if many.len() > 1 => {
                return Err(format!(
                    "cannot place {} in the header: it is declared in {}",
                    item.name,
                    many.join(" and ")
                ));
            }
            _ => {
                return Err(format!(
                    "cannot place {} in the header: no C surface file declares it with `pub` \
                     at the start of a line (build.rs lists the files)",
                    item.name
                ));
            }
        };
        let place = layout
            .places
            .iter()
            .find(|p| file.starts_with(p.file) && item.name.starts_with(p.prefix))
            .ok_or_else(|| {
                format!(
                    "cannot place {} (declared in {file}) in the header: no section takes \
                     {file}; add it to PLACES in build.rs",
                    item.name
                )
            })?;
        let section = layout
            .sections
            .iter()
            .position(|s| s.id == place.section)
            .ok_or_else(|| format!("PLACES names an unknown section {:?}", place.section))?;
        homes.push(section);
    }
    Ok(homes)
}

/// The order of a section's `members` and of what they need that is not placed yet: each
/// function after what its signature needs. A type or constant no signature of the section
/// needs comes just before the first function whose doc names it (`VB_ABI_VERSION` before
/// `vb_abi_version`, after what that function needs), else at the start of the section.
fn section_order(
    members: &[usize],
    items: &[Item],
    deps: &[Vec<usize>],
    placed: &mut [bool],
) -> Vec<usize> {
    let functions: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| items[i].kind == Kind::Function)
        .collect();
    let mut used = vec![false; items.len()];
    for &f in &functions {
        mark_needs(f, deps, &mut used);
    }
    let lead: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| items[i].kind != Kind::Function && !used[i])
        .collect();
    let named_by = |i: usize| {
        functions
            .iter()
            .copied()
            .find(|&f| items[f].doc_words().contains(&items[i].name.as_str()))
    };
    let mut order = Vec::new();
    let mut visiting = vec![false; items.len()];
    for &i in lead.iter().filter(|&&i| named_by(i).is_none()) {
        place(i, deps, placed, &mut visiting, &mut order);
    }
    for &f in &functions {
        for &d in &deps[f] {
            place(d, deps, placed, &mut visiting, &mut order);
        }
        for &i in lead.iter().filter(|&&i| named_by(i) == Some(f)) {
            place(i, deps, placed, &mut visiting, &mut order);
        }
        place(f, deps, placed, &mut visiting, &mut order);
    }
    order
}

/// Marks everything `i` needs, transitively.
fn mark_needs(i: usize, deps: &[Vec<usize>], used: &mut [bool]) {
    for &d in &deps[i] {
        if !used[d] {
            used[d] = true;
            mark_needs(d, deps, used);
        }
    }
}

/// Appends `i` to `order` after what it needs. A cycle (two structs pointing at each other, which
/// C allows through `struct X *`) is cut where it closes.
fn place(
    i: usize,
    deps: &[Vec<usize>],
    placed: &mut [bool],
    visiting: &mut [bool],
    order: &mut Vec<usize>,
) {
    if placed[i] || visiting[i] {
        return;
    }
    visiting[i] = true;
    for &d in &deps[i] {
        place(d, deps, placed, visiting, order);
    }
    visiting[i] = false;
    placed[i] = true;
    order.push(i);
}

/// The names a header declares at top level: `#define`s with a value, typedefs and functions,
/// outside comments and `#ifdef __cplusplus` blocks. Used to check the assembled header
/// against cbindgen's output.
fn declared_names(header: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut statement = String::new();
    let mut in_cplusplus = false;
    for line in strip_comments(header).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("#ifdef __cplusplus") {
            in_cplusplus = true;
        }
        if in_cplusplus {
            in_cplusplus = !trimmed.starts_with("#endif");
            continue;
        }
        if let Some(define) = trimmed.strip_prefix("#define ") {
            if define.trim().contains(' ') {
                names.extend(identifiers(define).first().map(|s| s.to_string()));
            }
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        depth += trimmed.matches('{').count();
        depth = depth.saturating_sub(trimmed.matches('}').count());
        statement.push(' ');
        statement.push_str(trimmed);
        if depth > 0 || !trimmed.ends_with(';') {
            continue;
        }
        let decl = statement.trim();
        let name = if decl.contains('{') || (decl.starts_with("typedef ") && !decl.contains("(*")) {
            identifiers(decl).last().copied()
        } else if let Some((_, after)) = decl.split_once("(*") {
            identifiers(after).first().copied()
        } else {
            decl.split_once('(')
                .and_then(|(before, _)| identifiers(before).last().copied())
        };
        names.extend(name.map(str::to_owned));
        statement.clear();
    }
    names
}

/// `text` with its `/* … */` comments removed (kept as spaces, line breaks kept).
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start + 2..]
            .find("*/")
            .map(|e| start + 2 + e + 2)
            .unwrap_or(rest.len());
        out.extend(rest[start..end].chars().filter(|&c| c == '\n'));
        out.push(' ');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTIONS: &[Section] = &[
        Section {
            id: "basics",
            title: "Basics",
            intro: "Status codes.",
        },
        Section {
            id: "things",
            title: "Things",
            intro: "Things and what they do.",
        },
    ];
    const PLACES: &[Place] = &[
        Place {
            file: "src/error.rs",
            prefix: "",
            section: "basics",
        },
        Place {
            file: "src/thing",
            prefix: "",
            section: "things",
        },
    ];
    const TEMPLATE: &str = "/* top */\n#ifndef T_H\n#define T_H\n@SECTIONS@\n\n#endif\n";

    /// cbindgen's order: constants, types, then functions.
    const GENERATED: &str = "\
// The answer.
#define VB_ANSWER 42

// The most things.
#define VB_THING_MAX 3

// Status codes.
//
// # Safety
// None needed.
typedef enum VbStatus {
  // Fine.
  VB_OK = 0,
  VB_ERR = 1,
} VbStatus;

// A thing (opaque).
typedef struct VbThing VbThing;

// What a `thing` reports.
typedef struct VbReport {
  // The status.
  enum VbStatus status;
  // Called back with a long argument list that will need wrapping when it is written on a
  // single line.
  void (*callback)(void *user_data,
                   struct VbThing *thing,
                   const char *some_rather_long_name,
                   size_t another_long_name);
} VbReport;

// Creates a `thing`.
//
// # Safety
// `out` is valid for one write.
enum VbStatus vb_thing_create(struct VbThing **out);

// Reports on one of at most `VB_THING_MAX` things.
enum VbStatus vb_thing_report(const struct VbThing *thing, struct VbReport *out);
";

    fn files() -> BTreeMap<String, Vec<String>> {
        declaring_files(&[
            (
                "src/error.rs".to_owned(),
                "pub enum VbStatus {\npub const VB_ANSWER: u32 = 42;".to_owned(),
            ),
            (
                "src/thing.rs".to_owned(),
                "pub struct VbThing;\npub struct VbReport {\n\
                 pub unsafe extern \"C\" fn vb_thing_create(\n"
                    .to_owned(),
            ),
            (
                "src/thing_report.rs".to_owned(),
                "pub const VB_THING_MAX: usize = 3;\npub extern \"C\" fn vb_thing_report(\n"
                    .to_owned(),
            ),
        ])
    }

    fn layout() -> Layout<'static> {
        Layout {
            template: TEMPLATE,
            sections: SECTIONS,
            places: PLACES,
        }
    }

    #[test]
    fn types_come_just_before_the_first_function_that_uses_them() {
        let header = assemble(GENERATED, &files(), &layout()).expect("assembles");
        let at = |what: &str| {
            header
                .find(what)
                .unwrap_or_else(|| panic!("{what} missing:\n{header}"))
        };
        assert!(at("==== Basics") < at("#define VB_ANSWER"));
        assert!(at("#define VB_ANSWER") < at("typedef enum VbStatus"));
        assert!(at("typedef enum VbStatus") < at("==== Things"));
        assert!(at("==== Things") < at("typedef struct VbThing VbThing;"));
        assert!(at("typedef struct VbThing VbThing;") < at("VbStatus vb_thing_create("));
        assert!(at("VbStatus vb_thing_create(") < at("typedef struct VbReport {"));
        assert!(at("typedef struct VbReport {") < at("#define VB_THING_MAX"));
        assert!(at("#define VB_THING_MAX") < at("VbStatus vb_thing_report("));
        assert!(header.starts_with("/* top */\n#ifndef T_H\n#define T_H\n\n/* ==== Basics "));
        assert!(header.ends_with("VbReport *out);\n\n#endif\n"), "{header}");
    }

    #[test]
    fn comments_are_compact_c() {
        let header = assemble(GENERATED, &files(), &layout()).expect("assembles");
        assert!(!header.contains('`'), "{header}");
        assert!(!header.contains("# Safety"), "{header}");
        assert!(!header.contains("/**"), "{header}");
        assert!(
            header.contains("/* Status codes.\n * Safety: None needed. */\n"),
            "{header}"
        );
        assert!(
            header.contains("/* Creates a thing.\n * Safety: out is valid for one write. */\n"),
            "{header}"
        );
        assert!(header.contains("/* The answer. */\n#define VB_ANSWER 42\n"));
        // Short member comments beside their members; no comma after the last enumerator.
        assert!(
            header.contains("  VB_OK = 0, /* Fine. */\n  VB_ERR = 1\n} VbStatus;"),
            "{header}"
        );
        // Code as cbindgen spells it; long argument lists filled.
        assert!(
            header.contains("  enum VbStatus status; /* The status. */\n"),
            "{header}"
        );
        assert!(
            header.contains(
                "  /* Called back with a long argument list that will need wrapping when it is \
                 written on a single\n   * line. */\n  void (*callback)(void *user_data, \
                 struct VbThing *thing, const char *some_rather_long_name,\n                   \
                 size_t another_long_name);\n"
            ),
            "{header}"
        );
        for line in header.lines() {
            assert!(line.chars().count() <= WIDTH, "too long: {line:?}");
            assert!(
                !matches!(line.trim(), "/*" | "*/" | "*"),
                "bare: {line:?}\n{header}"
            );
        }
    }

    #[test]
    fn an_item_without_a_section_fails_with_its_name() {
        let mut files = files();
        files.insert(
            "vb_thing_report".to_owned(),
            vec!["src/ffi/new.rs".to_owned()],
        );
        let error = assemble(GENERATED, &files, &layout()).expect_err("cannot place it");
        assert!(error.contains("vb_thing_report"), "{error}");
        assert!(error.contains("src/ffi/new.rs"), "{error}");
        let mut files = self::files();
        files.remove("VbThing");
        let error = assemble(GENERATED, &files, &layout()).expect_err("cannot place it");
        assert!(error.contains("VbThing"), "{error}");
    }

    #[test]
    fn unreadable_output_and_comment_ends_fail() {
        let error = assemble(
            "#if defined(X)\nvoid vb_x(void);\n#endif\n",
            &files(),
            &layout(),
        )
        .expect_err("unreadable");
        assert!(error.contains("#if defined(X)"), "{error}");
        let error = assemble(
            "// Ends */ early.\nvoid vb_thing_create(void);\n",
            &files(),
            &layout(),
        )
        .expect_err("comment end");
        assert!(error.contains("*/"), "{error}");
    }

    #[test]
    fn a_name_declared_in_two_files_is_an_error() {
        let mut files = files();
        files.insert(
            "VbThing".to_owned(),
            vec!["src/thing.rs".to_owned(), "src/other.rs".to_owned()],
        );
        let error = assemble(GENERATED, &files, &layout()).expect_err("ambiguous");
        assert!(error.contains("src/thing.rs and src/other.rs"), "{error}");
        // Only top-level declarations count: methods and fields are not the C surface.
        let files = declaring_files(&[(
            "a.rs".to_owned(),
            "pub fn vb_x() {}\nimpl A {\n    pub fn vb_y() {}\n}\npub(crate) fn vb_z() {}"
                .to_owned(),
        )]);
        assert_eq!(files.keys().collect::<Vec<_>>(), ["vb_x"]);
    }
}
