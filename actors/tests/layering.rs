//! The crate's layering, checked on its source: no import cycle among the
//! top-level modules of `actors/src`, none among the files of one directory
//! module, and the "X never imports Y" rules of docs/architecture.md.
//!
//! An import is any path starting with `crate::` or `super::`, in a `use`
//! (groups expanded) or inline. A directory module (`store/`, `consensus/`,
//! …) counts as one module at the top level; inside it, `super::Name`
//! resolves to the file that `mod.rs` re-exports `Name` from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that only describe data or plumbing: they never reach up into
/// storage, consensus, the runtime or any actor.
const FOUNDATION: &[&str] =
    &["ids", "limits", "error", "clock", "version", "backoff", "domain", "command", "report", "disk", "mcp"];
/// Actor modules and the node that assembles them.
const ACTORS: &[&str] = &[
    "breaker",
    "executor",
    "health",
    "memory",
    "notify",
    "orchestrator",
    "pipeline",
    "policy",
    "registry",
    "sessions",
    "slo",
    "timeline",
    "supervisor",
    "node",
];

/// Rules from docs/architecture.md: `(module, what it never imports)`.
fn never_imports() -> Vec<(&'static str, Vec<&'static str>)> {
    let above_foundation: Vec<&str> = ["store", "consensus", "ledger", "runtime", "directory", "config"]
        .into_iter()
        .chain(ACTORS.iter().copied())
        .collect();
    let mut rules: Vec<(&str, Vec<&str>)> = FOUNDATION.iter().map(|m| (*m, above_foundation.clone())).collect();
    // The policy engines decide from their input alone: no storage, no actors.
    rules.push(("authz", above_foundation.clone()));
    let mut above_store = vec!["consensus", "ledger", "runtime", "directory", "config"];
    above_store.extend(ACTORS);
    rules.push(("store", above_store));
    let mut above_consensus = vec!["ledger", "runtime", "config"];
    above_consensus.extend(ACTORS);
    rules.push(("consensus", above_consensus));
    let all: Vec<&str> = FOUNDATION
        .iter()
        .chain(ACTORS)
        .copied()
        .chain(["authz", "store", "consensus", "ledger", "runtime", "directory", "config"])
        .collect();
    for m in all.into_iter().filter(|m| *m != "node") {
        rules.push((m, vec!["node"]));
    }
    rules
}

struct SourceFile {
    /// Module path within the crate, e.g. `["consensus", "network"]`; `mod.rs` is its directory's path.
    module: Vec<String>,
    text: String,
}

fn read_sources(dir: &Path, prefix: &[String], out: &mut Vec<SourceFile>) {
    for entry in std::fs::read_dir(dir).expect("read actors/src") {
        let path: PathBuf = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            read_sources(&path, &[prefix, &[name]].concat(), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match name.as_str() {
                "lib" | "mod" => prefix.to_vec(),
                _ => [prefix, &[name]].concat(),
            };
            let text = std::fs::read_to_string(&path).unwrap();
            out.push(SourceFile { module, text: strip_comments_and_tests(&text) });
        }
    }
}

/// Drops comments and `#[cfg(test)]` modules: tests may reach anywhere.
fn strip_comments_and_tests(text: &str) -> String {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    match code.find("#[cfg(test)]") {
        Some(i) => code[..i].to_owned(),
        None => code,
    }
}

/// Expands a use tree such as `crate::a::{b, c::{d, e}}` into full paths.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.to_owned()] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').expect("balanced use tree")];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).flat_map(|p| expand(&format!("{prefix}{}", p.trim()))).collect()
}

/// Every `crate::…` / `super::…` path a file names, as segment lists.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use ") {
        let stmt_end = rest[i..].find(';').map_or(rest.len(), |e| i + e);
        let stmt = &rest[i + 4..stmt_end];
        let at_word_start = i == 0 || !rest[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        if at_word_start && (stmt.trim_start().starts_with("crate::") || stmt.trim_start().starts_with("super::")) {
            found.extend(expand(stmt).into_iter().map(|p| p.split(" as ").next().unwrap_or_default().to_owned()));
        }
        rest = &rest[stmt_end.min(rest.len())..];
        if rest.is_empty() {
            break;
        }
        rest = &rest[1.min(rest.len())..];
    }
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(root) {
            let start = from + i;
            let end = text[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(text.len(), |e| start + e);
            found.push(text[start..end].to_owned());
            from = end;
        }
    }
    found.into_iter().map(|p| p.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect()).collect()
}

/// Which child file of a directory module re-exports each name (`pub use child::{Name, …}`).
fn reexports(files: &[SourceFile]) -> BTreeMap<(Vec<String>, String), String> {
    let mut map = BTreeMap::new();
    for f in files {
        for line in f.text.split(';') {
            let line = line.trim();
            let Some(tree) = line.strip_prefix("pub use ").or_else(|| line.strip_prefix("pub(crate) use ")) else {
                continue;
            };
            for path in expand(tree) {
                let (path, alias) = match path.split_once(" as ") {
                    Some((path, alias)) => (path.trim().to_owned(), Some(alias.trim().to_owned())),
                    None => (path, None),
                };
                let segs: Vec<&str> = path.split("::").collect();
                if segs.len() == 2 && !["crate", "super", "self"].contains(&segs[0]) {
                    let name = alias.unwrap_or_else(|| segs[1].to_owned());
                    map.insert((f.module.clone(), name), segs[0].to_owned());
                }
            }
        }
    }
    map
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            return Some(stack[i..].iter().cloned().chain([n.to_owned()]).collect());
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_owned());
        for m in g.get(n).into_iter().flatten() {
            if let Some(cycle) = visit(m, g, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(n.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

struct Graphs {
    top: BTreeMap<String, BTreeSet<String>>,
    /// Per directory module: edges between its child files.
    within: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

fn graphs() -> Graphs {
    let mut files = Vec::new();
    read_sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut files);
    assert!(files.len() > 20, "read {} files: is this the actors crate?", files.len());
    let names = reexports(&files);
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut within: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in files.iter().filter(|f| !f.module.is_empty()) {
        let me = &f.module[0];
        top.entry(me.clone()).or_default();
        for path in paths(&f.text) {
            match path.first().map(String::as_str) {
                Some("crate") if path.len() > 1 && path[1] != *me => {
                    top.entry(me.clone()).or_default().insert(path[1].clone());
                }
                Some("super") if f.module.len() == 2 && path.len() > 1 => {
                    let dir = f.module[..1].to_vec();
                    let is_child = files.iter().any(|o| o.module == [dir[0].clone(), path[1].clone()]);
                    let target =
                        if is_child { Some(path[1].clone()) } else { names.get(&(dir, path[1].clone())).cloned() };
                    if let Some(target) = target.filter(|t| *t != f.module[1]) {
                        let g = within.entry(me.clone()).or_default();
                        g.entry(f.module[1].clone()).or_default().insert(target);
                    }
                }
                _ => {}
            }
        }
    }
    Graphs { top, within }
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let g = graphs();
    assert!(g.top.contains_key("store") && g.top.contains_key("consensus"), "{:?}", g.top.keys());
    if let Some(cycle) = find_cycle(&g.top) {
        panic!("import cycle among actors/src modules: {}", cycle.join(" → "));
    }
}

#[test]
fn files_of_one_directory_module_import_each_other_without_cycles() {
    let g = graphs();
    assert!(g.within.contains_key("consensus"), "consensus's files were not read");
    for (dir, graph) in &g.within {
        if let Some(cycle) = find_cycle(graph) {
            panic!("import cycle among the files of {dir}/: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn layers_never_import_what_sits_above_them() {
    let g = graphs();
    let mut broken = Vec::new();
    for (module, forbidden) in never_imports() {
        let imports = g.top.get(module).unwrap_or_else(|| panic!("no module {module}"));
        for f in forbidden.iter().filter(|f| imports.contains(**f)) {
            broken.push(format!("{module} imports {f}"));
        }
    }
    assert!(broken.is_empty(), "layering rules broken: {broken:?}");
}

#[test]
fn the_checker_sees_cycles_and_expands_use_trees() {
    let cyclic: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), BTreeSet::from([v.to_owned()])))
        .collect();
    assert_eq!(find_cycle(&cyclic).unwrap().len(), 4);
    let paths = paths("use crate::{store::{Store, Tables}, ids::*};\nfn f() { crate::clock::wall_ms(); }");
    let tops: BTreeSet<&str> = paths.iter().filter(|p| p.len() > 1).map(|p| p[1].as_str()).collect();
    assert_eq!(tops, BTreeSet::from(["store", "ids", "clock"]));
}
