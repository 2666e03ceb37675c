//! cbindgen's output read item by item, and each item written as compact C.
//!
//! cbindgen runs with `documentation_style = "c99"`, so each doc line is a `//` line and every
//! line of code is code. An item is a run of lines between blank lines: its doc, then a
//! `#define`, a typedef (with its members) or a function. Its C text drops backticks, turns
//! `# Safety` into "Safety:", wraps paragraphs to [`WIDTH`] as `/* … */` blocks with no bare
//! opening or closing line, puts a short member's comment beside it, fills long argument lists
//! and leaves out the comma after the last enumerator (C89 has none). The code stays as cbindgen
//! spells it (`enum VbStatus`, `struct VbBackend *`): cgo tells `C.enum_VbStatus` from
//! `C.VbStatus`, so the Go binding depends on that spelling.

use std::collections::BTreeSet;

/// The line length of the header.
pub const WIDTH: usize = 100;

/// What an item declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `#define`.
    Constant,
    /// An enum, a struct, an opaque struct or a typedef.
    Type,
    /// A function.
    Function,
}

/// One member of an enum or a struct: its doc lines and its declaration on one line.
#[derive(Debug)]
struct Member {
    doc: Vec<String>,
    decl: String,
}

#[derive(Debug)]
enum Body {
    /// A declaration on one logical line (`#define`, a function, a typedef).
    Line(String),
    /// `typedef struct X {`, the members, `} X;`.
    Members {
        open: String,
        members: Vec<Member>,
        close: String,
    },
}

/// One top-level item of cbindgen's output.
#[derive(Debug)]
pub struct Item {
    /// The name it declares.
    pub name: String,
    /// What it declares.
    pub kind: Kind,
    doc: Vec<String>,
    body: Body,
}

impl Item {
    /// The words of the item's own doc comment.
    pub fn doc_words(&self) -> Vec<&str> {
        self.doc.iter().flat_map(|line| identifiers(line)).collect()
    }

    /// The code of the item without comments.
    pub fn code(&self) -> String {
        match &self.body {
            Body::Line(line) => line.clone(),
            Body::Members {
                open,
                members,
                close,
            } => {
                let mut code = open.clone();
                for member in members {
                    code.push(' ');
                    code.push_str(&member.decl);
                }
                code.push(' ');
                code.push_str(close);
                code
            }
        }
    }
}

/// The identifiers of a piece of C code, in order.
pub fn identifiers(code: &str) -> Vec<&str> {
    code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        .collect()
}

/// Reads cbindgen's output (C, `documentation_style = "c99"`, no include guard, includes or
/// `extern "C"` block) into items.
pub fn parse(generated: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut chunk: Vec<&str> = Vec::new();
    for line in generated.lines().chain([""]) {
        if !line.trim().is_empty() {
            chunk.push(line);
            continue;
        }
        if !chunk.is_empty() {
            items.push(parse_item(&chunk).map_err(|e| {
                format!(
                    "{e}\nin this part of cbindgen's output:\n{}",
                    chunk.join("\n")
                )
            })?);
            chunk.clear();
        }
    }
    let mut seen = BTreeSet::new();
    for item in &items {
        if !seen.insert(item.name.as_str()) {
            return Err(format!("cbindgen declared {} twice", item.name));
        }
    }
    Ok(items)
}

/// The doc text of a `//` line ("" for a bare `//`).
fn doc_text(line: &str) -> String {
    let text = line.trim_start().trim_start_matches("//");
    text.strip_prefix(' ').unwrap_or(text).trim_end().to_owned()
}

fn parse_item(lines: &[&str]) -> Result<Item, String> {
    let mut rest = lines;
    let mut doc = Vec::new();
    while let Some((first, tail)) = rest.split_first() {
        if !first.starts_with("//") {
            break;
        }
        doc.push(doc_text(first));
        rest = tail;
    }
    let Some((first, tail)) = rest.split_first() else {
        return Err("a comment without a declaration".to_owned());
    };
    if let Some(open) = first.strip_suffix('{') {
        let Some((close, body)) = tail.split_last() else {
            return Err("an unterminated body".to_owned());
        };
        if !close.starts_with('}') || !close.ends_with(';') {
            return Err(format!("expected the end of a body, found {close:?}"));
        }
        if !open.starts_with("typedef ") {
            return Err(format!("expected a typedef, found {first:?}"));
        }
        let name = identifiers(close)
            .last()
            .ok_or_else(|| format!("no name in {close:?}"))?
            .to_string();
        return Ok(Item {
            name,
            kind: Kind::Type,
            doc,
            body: Body::Members {
                open: first.trim_end().to_owned(),
                members: parse_members(body)?,
                close: close.trim_end().to_owned(),
            },
        });
    }
    let decl = join(rest)?;
    if let Some(define) = decl.strip_prefix("#define ") {
        let name = identifiers(define)
            .first()
            .ok_or_else(|| format!("no name in {decl:?}"))?
            .to_string();
        return Ok(Item {
            name,
            kind: Kind::Constant,
            doc,
            body: Body::Line(decl),
        });
    }
    if decl.starts_with('#') || !decl.ends_with(';') {
        return Err(format!("cannot read the declaration {decl:?}"));
    }
    let (name, kind) = if decl.starts_with("typedef ") {
        // `typedef R (*Name)(…);` or `typedef T Name;` (an opaque `typedef struct X X;` too).
        let name = match decl.split_once("(*") {
            Some((_, after)) => identifiers(after).first().copied(),
            None => identifiers(&decl).last().copied(),
        };
        (name, Kind::Type)
    } else {
        // `R name(…);`: the identifier just before the first parenthesis.
        let name = decl
            .split_once('(')
            .and_then(|(before, _)| identifiers(before).last().copied());
        (name, Kind::Function)
    };
    let name = name.ok_or_else(|| format!("no name in {decl:?}"))?;
    Ok(Item {
        name: name.to_owned(),
        kind,
        doc,
        body: Body::Line(decl),
    })
}

/// The lines of one declaration joined into one line (cbindgen breaks long argument lists).
fn join(lines: &[&str]) -> Result<String, String> {
    if let Some(comment) = lines.iter().find(|l| l.trim_start().starts_with("//")) {
        return Err(format!("a comment inside a declaration: {comment:?}"));
    }
    let parts: Vec<&str> = lines.iter().map(|l| l.trim()).collect();
    Ok(parts.join(" ").replace("( ", "(").replace(" )", ")"))
}

/// The members of an enum or a struct body: doc lines, then a declaration that may span lines
/// (a function pointer), ended by `,` or `;` outside parentheses.
fn parse_members(lines: &[&str]) -> Result<Vec<Member>, String> {
    let mut members = Vec::new();
    let mut doc = Vec::new();
    let mut decl: Vec<&str> = Vec::new();
    for line in lines {
        let trimmed = line.trim();
        if decl.is_empty() && trimmed.starts_with("//") {
            doc.push(doc_text(trimmed));
            continue;
        }
        decl.push(trimmed);
        let joined = join(&decl)?;
        let depth = joined.matches('(').count() as isize - joined.matches(')').count() as isize;
        if depth == 0 && (joined.ends_with(',') || joined.ends_with(';')) {
            members.push(Member {
                doc: std::mem::take(&mut doc),
                decl: joined,
            });
            decl.clear();
        }
    }
    if !decl.is_empty() || !doc.is_empty() {
        return Err(format!("an unfinished member: {:?}", decl.join(" ")));
    }
    Ok(members)
}

/// The C text of a doc comment: paragraphs with backticks dropped and Markdown headings such
/// as `# Safety` turned into a lead-in ("Safety: …"). Each paragraph is one line of text; an
/// empty one stands for the blank line between two paragraphs of prose (none before a lead-in).
fn paragraphs(doc: &[String]) -> Result<Vec<String>, String> {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut lead_in: Option<String> = None;
    let mut after_blank = false;
    for line in doc.iter().map(|l| l.trim()).chain([""]) {
        let list_item = line.starts_with("- ") || line.starts_with("* ");
        if line.is_empty() || list_item || line.starts_with("# ") {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            after_blank |= line.is_empty();
        }
        if let Some(heading) = line.strip_prefix("# ") {
            lead_in = Some(format!("{}:", heading.trim()));
            after_blank = false;
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if current.is_empty() {
            if after_blank && lead_in.is_none() && !paragraphs.is_empty() {
                paragraphs.push(String::new());
            }
            after_blank = false;
            if let Some(lead) = lead_in.take() {
                current = lead;
            }
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
    }
    if let Some(lead) = lead_in {
        return Err(format!("a heading without text after it ({lead})"));
    }
    for paragraph in &mut paragraphs {
        *paragraph = paragraph
            .replace("[`", "`")
            .replace("`]", "`")
            .replace('`', "");
        if paragraph.contains("*/") || paragraph.contains("/*") {
            return Err(format!(
                "a doc comment holds \"*/\" or \"/*\", which would break the C comment: {paragraph:?}"
            ));
        }
    }
    Ok(paragraphs)
}

/// Greedy word wrap of one paragraph into lines of at most `width` characters (a longer word
/// gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Wraps paragraphs to `width` so that the last line still has room for " */".
pub fn wrap_for_comment(paragraphs: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = paragraphs
        .iter()
        .flat_map(|p| match p.is_empty() {
            true => vec![String::new()],
            false => wrap(p, width),
        })
        .collect();
    if let Some(last) = lines.pop() {
        if last.chars().count() + 3 > width {
            match last.rsplit_once(' ') {
                Some((head, tail)) => {
                    lines.push(head.to_owned());
                    lines.push(tail.to_owned());
                }
                None => lines.push(last),
            }
        } else {
            lines.push(last);
        }
    }
    lines
}

/// A comment on lines of its own at `indent`: `/* text */`, or `/* text` … ` * text */`.
fn block_comment(paragraphs: &[String], indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    let lines = wrap_for_comment(paragraphs, WIDTH.saturating_sub(indent + 3).max(20));
    lines
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let open = if i == 0 { "/* " } else { " * " };
            let close = if i + 1 == lines.len() { " */" } else { "" };
            format!("{pad}{open}{text}{close}").trim_end().to_owned()
        })
        .collect()
}

/// One declaration at `indent`, on one line when it fits, else with its (last) argument list
/// filled onto lines aligned after its opening parenthesis.
fn wrap_decl(decl: &str, indent: usize) -> Vec<String> {
    let pad = " ".repeat(indent);
    if indent + decl.chars().count() <= WIDTH {
        return vec![format!("{pad}{decl}")];
    }
    // The argument list: the parenthesis that closes last, and the one that opens it.
    let Some(close) = decl.rfind(')') else {
        return vec![format!("{pad}{decl}")];
    };
    let mut depth = 0;
    let mut open = None;
    for (i, c) in decl[..close].char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth == 0 => {
                open = Some(i);
                break;
            }
            '(' => depth -= 1,
            _ => {}
        }
    }
    let Some(open) = open else {
        return vec![format!("{pad}{decl}")];
    };
    let mut args = Vec::new();
    let (mut depth, mut start) = (0, open + 1);
    for (i, c) in decl[open + 1..close].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                args.push(decl[start..open + 1 + i + 1].trim());
                start = open + 1 + i + 1;
            }
            _ => {}
        }
    }
    args.push(decl[start..].trim());
    let column = indent + decl[..open + 1].chars().count();
    let mut lines = vec![format!("{pad}{}", &decl[..open + 1])];
    for arg in args {
        let last = lines.last_mut().expect("a line");
        let fresh = last.ends_with('(');
        if !fresh && last.chars().count() + 1 + arg.chars().count() > WIDTH {
            lines.push(format!("{}{arg}", " ".repeat(column)));
        } else {
            if !fresh {
                last.push(' ');
            }
            last.push_str(arg);
        }
    }
    lines
}

/// Renders the members of an enum or struct. A member on one line gets its comment beside it,
/// at a column common to the members, wrapped under itself; a wider member (a function pointer)
/// gets it above.
fn render_members(members: &[Member]) -> Result<Vec<String>, String> {
    const INDENT: usize = 2;
    /// The least room a comment beside its member gets per line.
    const MIN_TEXT: usize = 40;
    let mut rendered = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let mut decl = member.decl.clone();
        // No comma after the last enumerator (C89 has none).
        if i + 1 == members.len() && decl.ends_with(',') {
            decl.pop();
        }
        let lines = wrap_decl(&decl, INDENT);
        let text: Vec<String> = paragraphs(&member.doc)?;
        let width = lines[0].chars().count();
        let beside = lines.len() == 1 && !text.is_empty() && width + 1 + 6 + MIN_TEXT <= WIDTH;
        rendered.push((text, lines, beside));
    }
    let column = rendered
        .iter()
        .filter(|(_, _, beside)| *beside)
        .map(|(_, lines, _)| lines[0].chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for (text, lines, beside) in rendered {
        if !beside {
            if !text.is_empty() {
                out.extend(block_comment(&text, INDENT));
            }
            out.extend(lines);
            continue;
        }
        let prose: Vec<String> = text.into_iter().filter(|p| !p.is_empty()).collect();
        let comment = wrap_for_comment(&prose, WIDTH - column - 3);
        for (i, part) in comment.iter().enumerate() {
            let close = if i + 1 == comment.len() { " */" } else { "" };
            if i == 0 {
                let gap = column - lines[0].chars().count();
                out.push(format!("{}{}/* {part}{close}", lines[0], " ".repeat(gap)));
            } else {
                out.push(format!("{}{part}{close}", " ".repeat(column + 3)));
            }
        }
    }
    Ok(out)
}

/// Renders one item: its comment, then its code.
pub fn render_item(item: &Item) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let doc = paragraphs(&item.doc)?;
    if !doc.is_empty() {
        out.extend(block_comment(&doc, 0));
    }
    match &item.body {
        Body::Line(line) => out.extend(wrap_decl(line, 0)),
        Body::Members {
            open,
            members,
            close,
        } => {
            out.push(open.clone());
            out.extend(render_members(members)?);
            out.push(close.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn paragraphs_of_prose_stay_apart_and_headings_lead_in() {
        let text = paragraphs(&doc(
            "First `one`,\nstill first.\n\nSecond.\n\n# Safety\n`p` is valid.\n\n# Errors\n\nNone.",
        ))
        .expect("readable");
        assert_eq!(
            text,
            [
                "First one, still first.",
                "",
                "Second.",
                "Safety: p is valid.",
                "Errors: None."
            ]
        );
        let lines = block_comment(&text, 0);
        assert_eq!(
            lines,
            [
                "/* First one, still first.",
                " *",
                " * Second.",
                " * Safety: p is valid.",
                " * Errors: None. */"
            ]
        );
        assert!(paragraphs(&doc("Text.\n\n# Safety")).is_err());
    }

    #[test]
    fn a_long_member_comment_wraps_beside_its_member() {
        let members = [
            Member {
                doc: doc("Short."),
                decl: "int a;".to_owned(),
            },
            Member {
                doc: doc(&"word ".repeat(30)),
                decl: "uint64_t a_longer_name;".to_owned(),
            },
            Member {
                doc: doc("Above its member, which is too wide to have it beside."),
                decl: format!(
                    "void (*f)({});",
                    "int a_long_parameter_name, ".repeat(3) + "int z"
                ),
            },
        ];
        let lines = render_members(&members).expect("renders");
        let column = "  uint64_t a_longer_name; ".len();
        assert_eq!(lines[0], format!("{:column$}/* Short. */", "  int a;"));
        assert!(
            lines[1].starts_with("  uint64_t a_longer_name; /* word word"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with(&format!("{}word", " ".repeat(column + 3))),
            "{lines:?}"
        );
        assert!(lines[3].ends_with(" word */"), "{lines:?}");
        assert_eq!(
            lines[4],
            "  /* Above its member, which is too wide to have it beside. */"
        );
        assert!(
            lines[5].starts_with("  void (*f)(int a_long_parameter_name,"),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 6, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= WIDTH),
            "{lines:?}"
        );
    }

    #[test]
    fn wrapping_keeps_words_and_room_for_the_comment_end() {
        let text = "word ".repeat(60);
        let lines = block_comment(&[text.trim().to_owned()], 0);
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH));
        assert!(lines.last().expect("lines").ends_with(" */"));
        let words: usize = lines
            .iter()
            .map(|l| l.split_whitespace().filter(|w| *w == "word").count())
            .sum();
        assert_eq!(words, 60);
    }
}
