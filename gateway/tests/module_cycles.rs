//! The gateway's top-level modules form no dependency cycle (issue 18, "No cycles").
//!
//! A top-level module is a file or directory directly under `gateway/src` (`engine`, `store`,
//! `auth`, ...). This test reads every `.rs` file there with `std::fs`, collects the
//! `crate::<module>` paths each top-level module names (in `use crate::...` lines, grouped
//! `use crate::{a, b::c}` imports and paths written inline such as `crate::clock::now_ms()`),
//! builds the graph "module A uses module B" and fails listing every cycle, with the file and
//! line of each reference on the cycle, so the message says what to move.
//!
//! What it ignores, on purpose:
//! - comments and doc comments (a doc link to another module is not a dependency);
//! - items under `#[cfg(test)]` (unit-test modules may assemble the whole application: a
//!   store's tests may build an engine, and that is no layering problem for the product code);
//! - `super::` paths: inside one top-level module they never leave it, and nothing in
//!   `gateway/src` reaches a sibling top-level module through `super::super::`.
//!
//! The layering this keeps is described in ARCHITECTURE.md, "Module dependencies".

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One reference from a top-level module to another: where it is written.
#[derive(Debug, Clone)]
struct Reference {
    file: String,
    line: usize,
}

/// `from -> to -> where`.
type Graph = BTreeMap<String, BTreeMap<String, Vec<Reference>>>;

#[test]
fn gateway_top_level_modules_have_no_dependency_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = read_graph(&src);
    assert!(
        graph.len() > 10,
        "the scan found too few modules under {}: {:?}",
        src.display(),
        graph.keys().collect::<Vec<_>>()
    );
    let cycles = find_cycles(&graph);
    if !cycles.is_empty() {
        panic!(
            "{} dependency cycle(s) between top-level modules of gateway/src \
             (see ARCHITECTURE.md, \"Module dependencies\"):\n{}",
            cycles.len(),
            describe(&graph, &cycles)
        );
    }
}

#[test]
fn the_cycle_finder_reports_every_cycle_of_a_small_graph_and_nothing_else() {
    // a -> b -> a, and b -> c -> d -> b (two cycles through b); e -> a is no cycle; f -> f is a
    // module using itself, which is no cycle either.
    let graph = synthetic(&[
        ("a", "b"),
        ("b", "a"),
        ("b", "c"),
        ("c", "d"),
        ("d", "b"),
        ("e", "a"),
        ("f", "f"),
    ]);
    let cycles = find_cycles(&graph);
    assert_eq!(
        cycles,
        vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["b".to_string(), "c".to_string(), "d".to_string()],
        ]
    );
    let acyclic = synthetic(&[("a", "b"), ("b", "c"), ("a", "c"), ("d", "a")]);
    assert!(find_cycles(&acyclic).is_empty());
}

#[test]
fn references_are_read_from_code_but_not_from_comments_or_test_modules() {
    let source = r#"
//! Uses [`crate::docs_only`] in its doc.
use crate::store::{Store, StoreError};
use crate::{engine::Engine, protocol};
use crate::{
    auth::{self, Sessions},
    ws,
};
// use crate::commented_out;
/* crate::block_comment */
pub(crate) fn f() -> u64 { crate::clock::now_ms() + $crate::not_a_path }
const URL: &str = "https://example.com/crate::in_a_string";
#[cfg(test)]
mod tests {
    use crate::test_only;
}
fn g() { let _ = crate::after_tests::X; }
"#;
    let found: BTreeSet<String> = references(source).into_iter().map(|(m, _)| m).collect();
    let expected: BTreeSet<String> = [
        "store",
        "engine",
        "protocol",
        "auth",
        "ws",
        "clock",
        "after_tests",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(found, expected);
}

fn synthetic(edges: &[(&str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges {
        graph.entry(to.to_string()).or_default();
        let refs = graph
            .entry(from.to_string())
            .or_default()
            .entry(to.to_string())
            .or_default();
        refs.push(Reference {
            file: format!("{from}.rs"),
            line: 1,
        });
    }
    graph
}

/// Every top-level module under `src` with the modules it names.
fn read_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(src)
        .unwrap_or_else(|e| panic!("reading {}: {e}", src.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let module = if path.is_dir() {
            name.clone()
        } else if let Some(stem) = name.strip_suffix(".rs") {
            stem.to_string()
        } else {
            continue;
        };
        // `lib.rs` only declares the modules and `main.rs` is the binary (it names the library
        // as `gateway::`); neither is a module another module could depend on.
        if module == "lib" || module == "main" {
            continue;
        }
        let edges = graph.entry(module.clone()).or_default();
        let mut files = Vec::new();
        rust_files(&path, &mut files);
        let test_only = test_only_files(&files);
        for file in files.iter().filter(|f| !test_only.contains(*f)) {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            let shown = file
                .strip_prefix(src.parent().unwrap())
                .unwrap_or(file)
                .display()
                .to_string();
            for (target, line) in references(&text) {
                if target != module {
                    edges.entry(target).or_default().push(Reference {
                        file: shown.clone(),
                        line,
                    });
                }
            }
        }
    }
    // Only edges to modules that exist (`crate::Application`, a re-export in lib.rs, is none).
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|to, _| known.contains(to));
    }
    graph
}

/// Files declared as `#[cfg(test)] mod name;` (a test module in a file of its own), and
/// everything below them.
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut test_only = BTreeSet::new();
    for file in files {
        let code = strip_comments_and_strings(&std::fs::read_to_string(file).unwrap());
        let mut rest = code.as_str();
        while let Some(offset) = rest.find("#[cfg(test)]") {
            rest = &rest[offset + "#[cfg(test)]".len()..];
            let words: Vec<&str> = rest
                .split(|c: char| c.is_whitespace() || c == ';' || c == '{')
                .filter(|w| !w.is_empty())
                .take(3)
                .collect();
            let (name, declared_only) = match words.as_slice() {
                ["mod", name, ..] => (
                    *name,
                    rest.trim_start()[4..].trim_start()[name.len()..]
                        .trim_start()
                        .starts_with(';'),
                ),
                ["pub" | "pub(crate)", "mod", name] => (*name, true),
                _ => continue,
            };
            if !declared_only {
                continue;
            }
            let stem = file.file_stem().unwrap().to_string_lossy();
            let dir = if stem == "mod" || stem == "lib" {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            for candidate in [dir.join(format!("{name}.rs")), dir.join(name)] {
                for f in files.iter().filter(|f| f.starts_with(&candidate)) {
                    test_only.insert(f.clone());
                }
            }
        }
    }
    test_only
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for entry in entries {
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The top-level modules a source file names as `crate::<module>`, with their 1-based line.
fn references(source: &str) -> Vec<(String, usize)> {
    let code = strip_tests(&strip_comments_and_strings(source));
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = code[at..].find("crate::") {
        let start = at + offset;
        at = start + "crate::".len();
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| is_ident(b) || b == b'$') {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        let rest = &code[at..];
        let rest_trimmed = rest.trim_start();
        if let Some(group) = rest_trimmed.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0usize;
            let mut item_start = true;
            let mut ident = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !ident.is_empty() {
                            found.push((std::mem::take(&mut ident), line));
                        }
                        item_start = true;
                    }
                    c if item_start && (c.is_alphanumeric() || c == '_') => ident.push(c),
                    _ if item_start && !ident.is_empty() => {
                        found.push((std::mem::take(&mut ident), line));
                        item_start = false;
                    }
                    _ => {}
                }
            }
            if !ident.is_empty() {
                found.push((ident, line));
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                found.push((ident, line));
            }
        }
    }
    found.retain(|(m, _)| m != "self");
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The source with comments and the contents of string literals blanked (newlines kept, so
/// line numbers stay right). Raw strings `r"..."`/`r#"..."#` and char literals are handled;
/// lifetimes (`'a`) are left alone.
fn strip_comments_and_strings(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !(i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
        {
            // Raw string: r"..." or r#"..."# (any number of #).
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            out.push('"');
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                out.push(blank(chars[j]));
                j += 1;
            }
            out.push('"');
            i = j;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\''
            && (chars.get(i + 2) == Some(&'\'')
                || (next == Some('\\') && chars[i + 1..].iter().take(12).any(|&c| c == '\'')))
        {
            // A char literal ('x' or '\n', '\u{..}'); a lifetime has no closing quote nearby.
            out.push('\'');
            i += 1;
            if chars.get(i) == Some(&'\\') {
                i += 1;
            }
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The (comment-free) source with every item under `#[cfg(test)]` blanked: the attribute up to
/// the end of the item, a brace-matched block or a `;`. Newlines are kept.
fn strip_tests(code: &str) -> String {
    let mut out: Vec<char> = code.chars().collect();
    let text: String = out.iter().collect();
    let mut search = 0;
    while let Some(offset) = text[search..].find("#[cfg(test)]") {
        let start = search + offset;
        let start_char = text[..start].chars().count();
        let mut i = start_char + "#[cfg(test)]".len();
        // Up to the item's opening brace or a terminating `;`, whichever comes first.
        while i < out.len() && out[i] != '{' && out[i] != ';' {
            i += 1;
        }
        if i < out.len() && out[i] == '{' {
            let mut depth = 0;
            while i < out.len() {
                match out[i] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        let end = (i + 1).min(out.len());
        for c in &mut out[start_char..end] {
            if *c != '\n' {
                *c = ' ';
            }
        }
        search = start + "#[cfg(test)]".len();
    }
    out.into_iter().collect()
}

/// Every elementary cycle, each listed once, starting from its smallest module name and in the
/// direction of the edges; sorted.
fn find_cycles(graph: &Graph) -> Vec<Vec<String>> {
    let names: Vec<&String> = graph.keys().collect();
    let mut cycles = Vec::new();
    for (start_index, start) in names.iter().enumerate() {
        // Only cycles whose smallest node is `start`, so each is found once.
        let allowed = |n: &String| names.iter().position(|m| *m == n).unwrap() >= start_index;
        let mut path = vec![(*start).clone()];
        walk(graph, start, &allowed, &mut path, &mut cycles);
    }
    cycles.sort();
    cycles
}

fn walk(
    graph: &Graph,
    start: &String,
    allowed: &dyn Fn(&String) -> bool,
    path: &mut Vec<String>,
    cycles: &mut Vec<Vec<String>>,
) {
    let here = path.last().unwrap().clone();
    for next in graph.get(&here).map(|e| e.keys()).into_iter().flatten() {
        if next == start && path.len() > 1 {
            cycles.push(path.clone());
        } else if next != start && allowed(next) && !path.contains(next) {
            path.push(next.clone());
            walk(graph, start, allowed, path, cycles);
            path.pop();
        }
    }
}

fn describe(graph: &Graph, cycles: &[Vec<String>]) -> String {
    let mut out = String::new();
    for cycle in cycles {
        out.push_str(&format!("  {} -> {}\n", cycle.join(" -> "), cycle[0]));
        for (i, from) in cycle.iter().enumerate() {
            let to = &cycle[(i + 1) % cycle.len()];
            let refs = &graph[from][to];
            let places: Vec<String> = refs
                .iter()
                .map(|r| format!("{}:{}", r.file, r.line))
                .collect();
            out.push_str(&format!("      {from} -> {to}: {}\n", places.join(", ")));
        }
    }
    out
}
