//! The code's shape, checked on every `make test` (docs/architecture.md):
//! - no source file under `crates/*/src` over 600 lines (test modules aside);
//! - no module cycle inside a crate: module A reaching B through `use`, `crate::` or `super::`
//!   paths while B reaches A (test modules aside);
//! - the crate graph points one way: api <- operator-kit <- {petset-controller, provisioner,
//!   ops-manager}, pgpool-config (pure, no dependency of ours) <- {provisioner, ops-manager},
//!   and testkit, bench, e2e and local-node are used by tests and tools only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `crates/<name>` folders.
fn crate_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("crates"))
        .expect("crates/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    out.sort();
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Code without `//` comments (strings are left alone: a `//` inside one is rare in paths).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names of the child modules a file declares under `#[cfg(test)]`, and the file's code up to
/// an inline `#[cfg(test)] mod x {` (its tests have their own scope).
fn split_tests(code: &str) -> (BTreeSet<String>, String) {
    let mut test_children = BTreeSet::new();
    let mut body = code.to_string();
    let mut from = 0;
    while let Some(i) = code[from..].find("#[cfg(test)]") {
        let at = from + i;
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        let rest = rest
            .strip_prefix("pub(crate) ")
            .or_else(|| rest.strip_prefix("pub(super) "))
            .or_else(|| rest.strip_prefix("pub "))
            .unwrap_or(rest);
        if let Some(decl) = rest.strip_prefix("mod ") {
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let after = decl[name.len()..].trim_start();
            if after.starts_with(';') {
                test_children.insert(name);
            } else if after.starts_with('{') && body.len() == code.len() {
                body = code[..at].to_string();
            }
        }
        from = at + 1;
    }
    (test_children, body)
}

/// Every `crate::a::b` / `super::a` / `self::a` path in `code`, with `use` trees expanded.
fn paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    // use declarations, braces expanded
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().last();
        let tail = &rest[i + 4..];
        rest = tail;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = tail.find(';') else { break };
        // drop `as name` renames, then the whitespace
        let mut tokens = tail[..end].split_whitespace().peekable();
        let mut tree = String::new();
        while let Some(t) = tokens.next() {
            if t == "as" {
                let renamed = tokens.next().unwrap_or("");
                // keep what follows the new name (`,` or `}`)
                tree.push_str(
                    renamed.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_'),
                );
            } else {
                tree.push_str(t);
            }
        }
        expand(&tree, "", &mut out);
    }
    // paths in code
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = code[from..].find(start) {
            let at = from + i;
            from = at + start.len();
            if code[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
            {
                continue;
            }
            let p: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(p.trim_end_matches(':').to_string());
        }
    }
    out
}

fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    match tree.find('{') {
        None => out.push(
            format!("{prefix}{tree}")
                .trim_end_matches("::self")
                .to_string(),
        ),
        Some(open) => {
            let head = &tree[..open];
            let inner = tree[open + 1..]
                .strip_suffix('}')
                .unwrap_or(&tree[open + 1..]);
            let mut depth = 0;
            let mut item = String::new();
            let mut items = Vec::new();
            for ch in inner.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if ch == ',' && depth == 0 {
                    items.push(std::mem::take(&mut item));
                } else {
                    item.push(ch);
                }
            }
            items.push(item);
            let new_prefix = format!("{prefix}{head}");
            for i in items.iter().filter(|i| !i.is_empty()) {
                if i == "self" {
                    out.push(new_prefix.trim_end_matches("::").to_string());
                } else {
                    expand(i, &new_prefix, out);
                }
            }
        }
    }
}

type Module = Vec<String>;

struct CrateModules {
    files: BTreeMap<Module, PathBuf>,
    tests: BTreeSet<Module>,
}

fn modules(src: &Path) -> CrateModules {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let has_lib = src.join("lib.rs").is_file();
    let mut map = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Module = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts[0] == "bin" || (has_lib && parts == ["main"]) {
            continue; // other crate roots
        }
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        map.insert(parts, f);
    }
    // test-only modules: declared under #[cfg(test)], and everything below them
    let mut tests = BTreeSet::new();
    for (m, f) in &map {
        let code = strip_comments(&std::fs::read_to_string(f).unwrap());
        for child in split_tests(&code).0 {
            let mut c = m.clone();
            c.push(child);
            tests.insert(c);
        }
    }
    let below: Vec<Module> = map
        .keys()
        .filter(|m| tests.iter().any(|t| m.starts_with(t)))
        .cloned()
        .collect();
    tests.extend(below);
    CrateModules { files: map, tests }
}

fn resolve(files: &BTreeMap<Module, PathBuf>, cur: &Module, path: &str) -> Option<Module> {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let mut base: Module = match parts.first().copied() {
        Some("crate") => {
            parts.remove(0);
            Vec::new()
        }
        Some("super") => {
            let mut b = cur.clone();
            while parts.first() == Some(&"super") {
                b.pop();
                parts.remove(0);
            }
            b
        }
        Some("self") => {
            parts.remove(0);
            cur.clone()
        }
        Some(first) => {
            let mut c = cur.clone();
            c.push(first.to_string());
            if !files.contains_key(&c) {
                return None;
            }
            cur.clone()
        }
        None => return None,
    };
    for p in parts {
        base.push(p.to_string());
        if !files.contains_key(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct T<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on: BTreeSet<Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit(t: &mut T, v: &Module) {
        let n = t.index.len();
        t.index.insert(v.clone(), n);
        t.low.insert(v.clone(), n);
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        for w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    let nodes: Vec<Module> = edges.keys().cloned().collect();
    for v in &nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// The module graph of one crate, test modules left out. Every edge counts, parent to child and
/// child to parent too; the crate root is left out (it declares and re-exports).
fn module_edges(m: &CrateModules) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &m.files {
        if m.tests.contains(module) || module.is_empty() {
            continue;
        }
        let code = strip_comments(&std::fs::read_to_string(file).unwrap());
        let (_, body) = split_tests(&code);
        let entry = edges.entry(module.clone()).or_default();
        for p in paths(&body) {
            if let Some(t) = resolve(&m.files, module, &p)
                && &t != module
                && !t.is_empty()
                && !m.tests.contains(&t)
            {
                entry.insert(t);
            }
        }
    }
    edges
}

#[test]
fn no_source_file_is_over_600_lines() {
    let mut long = Vec::new();
    for dir in crate_dirs() {
        let m = modules(&dir.join("src"));
        for (module, file) in &m.files {
            if m.tests.contains(module) {
                continue;
            }
            let lines = std::fs::read_to_string(file).unwrap().lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}

#[test]
fn no_crate_has_a_module_cycle() {
    let mut found = Vec::new();
    for dir in crate_dirs() {
        let m = modules(&dir.join("src"));
        for c in cycles(&module_edges(&m)) {
            let names: Vec<String> = c
                .iter()
                .map(|m| format!("crate::{}", m.join("::")))
                .collect();
            found.push(format!("{}: {}", dir.display(), names.join(" <-> ")));
        }
    }
    assert!(found.is_empty(), "module cycles: {found:#?}");
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(src.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub struct B;\nfn f(a: super::a::A) -> super::a::A { a }\n",
    )
    .unwrap();
    let found = cycles(&module_edges(&modules(src)));
    assert_eq!(found.len(), 1, "{found:?}");
    // a test module may use anything
    std::fs::write(
        src.join("b.rs"),
        "pub struct B;\n#[cfg(test)]\nmod tests {\n    use crate::a::A;\n}\n",
    )
    .unwrap();
    assert!(cycles(&module_edges(&modules(src))).is_empty());
}

/// Workspace crates a crate's `[dependencies]` (not dev-dependencies) name.
fn runtime_deps(manifest: &Path, workspace: &BTreeSet<String>) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
            continue;
        }
        if section == "dependencies" || section.starts_with("target.") {
            let name = line.split(['=', ' ', '.']).next().unwrap_or("");
            if workspace.contains(name) {
                out.insert(name.to_string());
            }
        }
    }
    out
}

fn package_name(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("name")
                .and_then(|r| r.trim().strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .unwrap()
}

#[test]
fn the_crate_graph_points_one_way() {
    let manifests: Vec<PathBuf> = crate_dirs()
        .into_iter()
        .map(|d| d.join("Cargo.toml"))
        .chain([repo().join("e2e/Cargo.toml")])
        .collect();
    let names: BTreeSet<String> = manifests.iter().map(|m| package_name(m)).collect();
    // what each runtime crate may depend on at run time
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("pgpool-api", &[][..]),
        ("pgpool-config", &[][..]),
        ("operator-kit", &["pgpool-api"][..]),
        ("petset-controller", &["pgpool-api", "operator-kit"][..]),
        (
            "pgpool-provisioner",
            &[
                "pgpool-api",
                "pgpool-config",
                "operator-kit",
                "petset-controller",
            ][..],
        ),
        (
            "pgpool-ops-manager",
            &["pgpool-api", "pgpool-config", "operator-kit"][..],
        ),
    ]);
    let tools = ["testkit", "local-node", "bench", "e2e"];
    let mut wrong = Vec::new();
    for m in &manifests {
        let name = package_name(m);
        let deps = runtime_deps(m, &names);
        match allowed.get(name.as_str()) {
            Some(ok) => {
                for d in deps.iter().filter(|d| !ok.contains(&d.as_str())) {
                    wrong.push(format!("{name} depends on {d}"));
                }
            }
            None => assert!(tools.contains(&name.as_str()), "unknown crate {name}"),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
