//! Checks that the code keeps the shape `ARCHITECTURE.md` describes, so that page
//! stays true:
//!
//! - each crate depends (normally) only on the workspace crates its row of the
//!   `may depend on` table lists;
//! - the libraries the `never in its dependency tree` table lists stay out of each
//!   crate's normal dependency tree;
//! - inside a crate, no two source files import each other, directly or round a loop;
//!   files nested in one another (a module and its submodules) count as one unit, and
//!   a name counts where it is defined, not where it is re-exported.
//!
//! The first two read `cargo metadata`; the third reads `src/` with a small text-level
//! parser (comments and string literals stripped, `#[cfg(test)]` items skipped) and is
//! itself tested on in-memory crates at the bottom of this file.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

// === ARCHITECTURE.md ===

/// The workspace root: this crate lives in `testing/`.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    here.canonicalize().unwrap_or(here)
}

fn architecture_md() -> Result<String> {
    let path = workspace_root().join("ARCHITECTURE.md");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// A Markdown table: its header cells and its rows' cells, trimmed.
#[derive(Debug)]
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// Every pipe table in `text`, in order.
fn markdown_tables(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().collect();
    let is_row = |line: &str| line.trim_start().starts_with('|');
    let is_separator = |line: &str| {
        is_row(line)
            && table_cells(line)
                .iter()
                .all(|cell| !cell.is_empty() && cell.chars().all(|c| matches!(c, '-' | ':')))
    };
    let mut tables = Vec::new();
    let mut i = 0;
    while i + 1 < lines.len() {
        if !(is_row(lines[i]) && is_separator(lines[i + 1])) {
            i += 1;
            continue;
        }
        let header = table_cells(lines[i]);
        let mut rows = Vec::new();
        let mut j = i + 2;
        while j < lines.len() && is_row(lines[j]) {
            rows.push(table_cells(lines[j]));
            j += 1;
        }
        tables.push(Table { header, rows });
        i = j;
    }
    tables
}

fn table_cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let line = line.strip_prefix('|').unwrap_or(line);
    let line = line.strip_suffix('|').unwrap_or(line);
    line.split('|').map(|cell| cell.trim().to_owned()).collect()
}

/// A header cell or crate name without Markdown decoration, for comparison.
fn plain(cell: &str) -> String {
    cell.trim_matches(|c: char| c == '`' || c == '*' || c.is_whitespace())
        .to_lowercase()
}

/// The comma-separated names in a cell; `—` (or `-`, or nothing) means none.
fn cell_names(cell: &str) -> BTreeSet<String> {
    if matches!(plain(cell).as_str(), "—" | "–" | "-" | "" | "none") {
        return BTreeSet::new();
    }
    cell.split(',')
        .map(plain)
        .filter(|name| !name.is_empty())
        .collect()
}

/// From the first table with columns `crate` and `column`: each crate's names in `column`.
fn crate_table(text: &str, column: &str) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let tables = markdown_tables(text);
    let (table, key, value) = tables
        .iter()
        .find_map(|table| {
            let find = |name: &str| table.header.iter().position(|cell| plain(cell) == name);
            Some((table, find("crate")?, find(column)?))
        })
        .with_context(|| {
            format!(
                "ARCHITECTURE.md has no table with columns `crate` and `{column}`; \
                 this test reads it, so restore the table (or update this test with it)"
            )
        })?;
    let mut out = BTreeMap::new();
    for row in &table.rows {
        let (Some(name), Some(cell)) = (row.get(key), row.get(value)) else {
            bail!(
                "ARCHITECTURE.md's `{column}` table has a short row: {row:?}; give it every column"
            );
        };
        if out.insert(plain(name), cell_names(cell)).is_some() {
            bail!("ARCHITECTURE.md's `{column}` table lists {name} twice; merge the rows");
        }
    }
    Ok(out)
}

// === cargo metadata ===

/// The workspace as `cargo metadata` sees it.
struct Workspace {
    metadata: Value,
    /// Member name → its package entry.
    members: BTreeMap<String, Value>,
    /// Package id → package name, for every package in the graph.
    names: HashMap<String, String>,
}

impl Workspace {
    fn load() -> Result<Self> {
        let cargo = std::env::var_os("CARGO")
            .or_else(|| option_env!("CARGO").map(Into::into))
            .unwrap_or_else(|| "cargo".into());
        let output = Command::new(&cargo)
            .args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(workspace_root())
            .output()
            .with_context(|| format!("running {cargo:?} metadata"))?;
        if !output.status.success() {
            bail!(
                "cargo metadata failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let metadata: Value =
            serde_json::from_slice(&output.stdout).context("parsing cargo metadata's JSON")?;
        let member_ids: BTreeSet<&str> = metadata["workspace_members"]
            .as_array()
            .context("cargo metadata has no workspace_members")?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut members = BTreeMap::new();
        let mut names = HashMap::new();
        for package in metadata["packages"].as_array().context("no packages")? {
            let id = package["id"].as_str().context("package without id")?;
            let name = package["name"].as_str().context("package without name")?;
            names.insert(id.to_owned(), name.to_owned());
            if member_ids.contains(id) {
                members.insert(name.to_owned(), package.clone());
            }
        }
        Ok(Self {
            metadata,
            members,
            names,
        })
    }

    fn id_of(&self, member: &str) -> Option<&str> {
        self.members.get(member)?["id"].as_str()
    }

    /// Package id → the ids it depends on normally (kind null; dev and build edges
    /// are not followed).
    fn normal_edges(&self) -> Result<HashMap<&str, Vec<&str>>> {
        let nodes = self.metadata["resolve"]["nodes"]
            .as_array()
            .context("cargo metadata has no resolve graph")?;
        let mut edges = HashMap::new();
        for node in nodes {
            let id = node["id"].as_str().context("resolve node without id")?;
            let deps = node["deps"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let normal = deps
                .iter()
                .filter(|dep| {
                    dep["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|kind| kind["kind"].is_null()))
                })
                .filter_map(|dep| dep["pkg"].as_str())
                .collect();
            edges.insert(id, normal);
        }
        Ok(edges)
    }
}

// === crate dependencies ===

#[test]
fn crates_depend_only_on_what_architecture_md_allows() -> Result<()> {
    let allowed = crate_table(&architecture_md()?, "may depend on")?;
    let workspace = Workspace::load()?;
    let mut problems = Vec::new();

    for name in workspace.members.keys() {
        if !allowed.contains_key(name) {
            problems.push(format!(
                "{name} is a workspace member but has no row in ARCHITECTURE.md's crate table: \
                 add one saying what it owns and which crates it may depend on"
            ));
        }
    }
    for (name, deps) in &allowed {
        if !workspace.members.contains_key(name) {
            problems.push(format!(
                "ARCHITECTURE.md's crate table has a row for {name}, which is not a workspace \
                 member: fix the name or remove the row"
            ));
        }
        for dep in deps
            .iter()
            .filter(|dep| !workspace.members.contains_key(*dep))
        {
            problems.push(format!(
                "ARCHITECTURE.md says {name} may depend on {dep}, which is not a workspace \
                 member: fix the name or remove it from the cell"
            ));
        }
    }

    for (name, package) in &workspace.members {
        let Some(may) = allowed.get(name) else {
            continue;
        };
        let deps: BTreeSet<&str> = package["dependencies"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|dep| dep["kind"].is_null())
            .filter_map(|dep| dep["name"].as_str())
            .filter(|dep| workspace.members.contains_key(*dep))
            .collect();
        for dep in deps.into_iter().filter(|dep| !may.contains(*dep)) {
            problems.push(format!(
                "{name} depends on {dep}, which ARCHITECTURE.md does not allow"
            ));
        }
    }

    if !problems.is_empty() {
        bail!(
            "{}\n\nDependencies point one way, down ARCHITECTURE.md's crate table. Move the \
             items the crate uses into a crate it may depend on (or into the crate itself); \
             make it a dev-dependency if only tests use it; or, if the design changed, change \
             the `may depend on` cell and say why in the commit.",
            problems.join("\n")
        );
    }
    Ok(())
}

#[test]
fn forbidden_libraries_stay_out_of_dependency_trees() -> Result<()> {
    let forbidden = crate_table(&architecture_md()?, "never in its dependency tree")?;
    let workspace = Workspace::load()?;
    let edges = workspace.normal_edges()?;
    let mut problems = Vec::new();

    for (name, banned) in &forbidden {
        let Some(start) = workspace.id_of(name) else {
            problems.push(format!(
                "ARCHITECTURE.md's `never in its dependency tree` table has a row for {name}, \
                 which is not a workspace member: fix the name or remove the row"
            ));
            continue;
        };
        // Breadth first, remembering how each package was reached, to show the way in.
        let mut reached_from: HashMap<&str, &str> = HashMap::from([(start, start)]);
        let mut queue = VecDeque::from([start]);
        let mut found = BTreeMap::new();
        while let Some(id) = queue.pop_front() {
            for &dep in edges.get(id).map(Vec::as_slice).unwrap_or_default() {
                if reached_from.contains_key(dep) {
                    continue;
                }
                reached_from.insert(dep, id);
                queue.push_back(dep);
                let dep_name = &workspace.names[dep];
                if banned.contains(dep_name) && !found.contains_key(dep_name) {
                    let mut chain = vec![dep_name.clone()];
                    let mut at = dep;
                    while at != start {
                        at = reached_from[at];
                        chain.push(workspace.names[at].clone());
                    }
                    chain.reverse();
                    found.insert(dep_name.clone(), chain.join(" → "));
                }
            }
        }
        for (lib, chain) in found {
            problems.push(format!("{name} pulls in {lib} (through {chain})"));
        }
    }

    if !problems.is_empty() {
        bail!(
            "{}\n\nA crate's dependencies say what it is. Move the type that needs the library \
             into the crate that owns that concern (see ARCHITECTURE.md), or make the \
             dependency dev-only or optional; `cargo tree -p <crate> -e normal -i <library>` \
             shows every way in.",
            problems.join("\n")
        );
    }
    Ok(())
}

// === import cycles between a crate's files ===

#[test]
fn no_file_imports_another_in_a_cycle() -> Result<()> {
    let workspace = Workspace::load()?;
    let root = workspace_root();
    let mut report = Vec::new();
    for package in workspace.members.values() {
        let manifest = PathBuf::from(package["manifest_path"].as_str().context("no manifest")?);
        let src = manifest
            .parent()
            .context("manifest without folder")?
            .join("src");
        if !src.is_dir() {
            continue;
        }
        let files = read_sources(&src)?;
        let shown = src
            .strip_prefix(&root)
            .unwrap_or(&src)
            .display()
            .to_string();
        let targets = package["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for target in targets {
            let compiled = target["kind"].as_array().is_some_and(|kinds| {
                kinds
                    .iter()
                    .any(|kind| matches!(kind.as_str(), Some("lib" | "bin" | "proc-macro")))
            });
            let Some(src_path) = target["src_path"].as_str() else {
                continue;
            };
            let Ok(crate_root) = Path::new(src_path).strip_prefix(&src) else {
                continue;
            };
            if !compiled {
                continue;
            }
            let graph = ModuleGraph::build(&files, &slashed(crate_root));
            for cycle in graph.cycles() {
                report.push(cycle.describe(&format!("{shown}/")));
            }
        }
    }
    if !report.is_empty() {
        bail!(
            "files that import each other (round a loop):\n\n{}\n\
             Break each loop: move the item both files need into a module both can depend on \
             (a new child of their common parent, or the parent itself when only its children \
             use it), or pass it in. Files nested in one another are one unit and may use each \
             other freely; a name counts where it is defined, not where it is re-exported \
             (ARCHITECTURE.md).",
            report.join("\n")
        );
    }
    Ok(())
}

/// Every `.rs` file under `src`, keyed by its path relative to `src` with `/` separators.
fn read_sources(src: &Path) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries =
            std::fs::read_dir(&folder).with_context(|| format!("listing {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let relative = path.strip_prefix(src).expect("listed under src");
                files.insert(slashed(relative), text);
            }
        }
    }
    Ok(files)
}

fn slashed(path: &Path) -> String {
    path.components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Test-only files by name: `tests.rs`, `*_tests.rs`, anything under a `tests/` folder.
fn is_test_file(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').collect();
    let name = parts.pop().unwrap_or_default();
    name == "tests.rs" || name.ends_with("_tests.rs") || parts.contains(&"tests")
}

/// The files of one crate (one target root) and which file refers to which.
#[derive(Debug)]
struct ModuleGraph {
    /// File (relative to `src/`) → its module path (`[]` for the crate root).
    modules: BTreeMap<String, Vec<String>>,
    /// (from, to) → the first line of `from` that refers to `to`.
    edges: BTreeMap<(String, String), usize>,
}

/// A loop of files that refer to each other.
#[derive(Debug, PartialEq)]
struct Cycle {
    files: Vec<String>,
    /// (from, line, to), sorted.
    edges: Vec<(String, usize, String)>,
}

impl Cycle {
    fn describe(&self, prefix: &str) -> String {
        let mut out = format!(
            "cycle: {}\n",
            self.files
                .iter()
                .map(|file| format!("{prefix}{file}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (from, line, to) in &self.edges {
            out.push_str(&format!("  {prefix}{from}:{line} → {prefix}{to}\n"));
        }
        out
    }
}

/// What the top level of a file holds, to follow a name to where it is defined.
#[derive(Debug, Default)]
struct Exports {
    /// Names it defines (`fn x`, `struct X`, `mod x`, …).
    defined: BTreeSet<String>,
    /// `pub use source as name;` (any `pub(..)` too): name → source.
    named: BTreeMap<String, Vec<String>>,
    /// `pub use source::*;`: the sources.
    globs: Vec<Vec<String>>,
}

impl Exports {
    fn of(tokens: &[Token], references: &[Reference]) -> Self {
        let mut exports = Self {
            defined: defined_names(tokens),
            ..Self::default()
        };
        for reference in references {
            match reference.export.as_deref() {
                Some("*") => exports.globs.push(reference.path.clone()),
                Some(name) => {
                    exports
                        .named
                        .entry(name.to_owned())
                        .or_insert_with(|| reference.path.clone());
                }
                None => {}
            }
        }
        exports
    }
}

/// Resolves crate-local paths to the files that define what they name.
struct Names<'a> {
    /// Module path → its file.
    by_module: BTreeMap<&'a [String], &'a str>,
    exports: BTreeMap<&'a str, Exports>,
}

impl<'a> Names<'a> {
    /// The file `path` leads to: the longest prefix of it that is a file, then on
    /// through that file's re-exports to the file that defines the name after it.
    fn resolve(&self, path: &[String], hops: usize) -> Option<&'a str> {
        let (len, file) = (0..=path.len())
            .rev()
            .find_map(|len| Some((len, *self.by_module.get(&path[..len])?)))?;
        if len == path.len() {
            return Some(file);
        }
        Some(self.find(file, &path[len..], hops).unwrap_or(file))
    }

    /// Where `rest[0]`, an item of `file`'s module, is defined; `None` when `file`
    /// neither defines nor re-exports it. Chains are followed up to a limit.
    fn find(&self, file: &'a str, rest: &[String], hops: usize) -> Option<&'a str> {
        let exports = self.exports.get(file).filter(|_| hops < 16)?;
        if let Some(source) = exports.named.get(&rest[0]) {
            let path: Vec<String> = source.iter().chain(&rest[1..]).cloned().collect();
            return self.resolve(&path, hops + 1);
        }
        if exports.defined.contains(&rest[0]) {
            return Some(file);
        }
        exports.globs.iter().find_map(|glob| {
            let source = self.by_module.get(glob.as_slice())?;
            self.find(source, rest, hops + 1)
        })
    }
}

impl ModuleGraph {
    /// Walks the module tree from `root` (e.g. `lib.rs`) through `mod x;` declarations,
    /// then records, for each file, which other files its paths refer to: the files
    /// that define the names, through any `pub use`, leaving out files nested in one
    /// another.
    fn build(files: &BTreeMap<String, String>, root: &str) -> Self {
        let mut modules = BTreeMap::new();
        let mut parsed = BTreeMap::new();
        let mut queue = VecDeque::from([(root.to_owned(), Vec::<String>::new())]);
        while let Some((file, module)) = queue.pop_front() {
            let Some(text) = files.get(&file) else {
                continue;
            };
            if modules.contains_key(&file) || is_test_file(&file) {
                continue;
            }
            let tokens = tokens(&strip_comments_and_literals(text));
            let tokens = without_test_items(tokens);
            let children = declared_modules(&tokens);
            // `mod x;` in lib.rs, main.rs or mod.rs looks beside it; in foo.rs, in foo/.
            let name = file.rsplit('/').next().unwrap_or_default();
            let folder = if file == root || name == "mod.rs" {
                file.rsplit_once('/')
                    .map(|(folder, _)| format!("{folder}/"))
                    .unwrap_or_default()
            } else {
                format!("{}/", file.trim_end_matches(".rs"))
            };
            for child in &children {
                let mut path = module.clone();
                path.push(child.clone());
                let flat = format!("{folder}{child}.rs");
                let nested = format!("{folder}{child}/mod.rs");
                let found = if files.contains_key(&flat) {
                    flat
                } else {
                    nested
                };
                queue.push_back((found, path));
            }
            modules.insert(file.clone(), module);
            parsed.insert(file, (tokens, children));
        }

        let references: BTreeMap<&str, Vec<Reference>> = parsed
            .iter()
            .map(|(file, (tokens, children))| {
                (file.as_str(), references(tokens, &modules[file], children))
            })
            .collect();
        let names = Names {
            by_module: modules
                .iter()
                .map(|(file, module)| (module.as_slice(), file.as_str()))
                .collect(),
            exports: parsed
                .iter()
                .map(|(file, (tokens, _))| {
                    (
                        file.as_str(),
                        Exports::of(tokens, &references[file.as_str()]),
                    )
                })
                .collect(),
        };
        let mut edges = BTreeMap::new();
        for (file, references) in &references {
            let module = &modules[*file];
            for reference in references {
                let Some(target) = names.resolve(&reference.path, 0) else {
                    continue;
                };
                // A file and the files nested in it are one unit: they share private
                // items by design, so only edges between files not nested in one
                // another count (this also drops a file's edges to itself).
                let target_module = &modules[target];
                if target_module.starts_with(module) || module.starts_with(target_module) {
                    continue;
                }
                let line = edges
                    .entry(((*file).to_owned(), target.to_owned()))
                    .or_insert(reference.line);
                *line = (*line).min(reference.line);
            }
        }
        Self { modules, edges }
    }

    /// Strongly connected components of more than one file (Tarjan).
    fn cycles(&self) -> Vec<Cycle> {
        let files: Vec<&str> = self.modules.keys().map(String::as_str).collect();
        let index_of: HashMap<&str, usize> = files
            .iter()
            .enumerate()
            .map(|(i, file)| (*file, i))
            .collect();
        let mut next = vec![Vec::new(); files.len()];
        for (from, to) in self.edges.keys() {
            next[index_of[from.as_str()]].push(index_of[to.as_str()]);
        }
        let mut tarjan = Tarjan {
            next: &next,
            index: vec![None; files.len()],
            low: vec![0; files.len()],
            on_stack: vec![false; files.len()],
            stack: Vec::new(),
            counter: 0,
            components: Vec::new(),
        };
        for v in 0..files.len() {
            if tarjan.index[v].is_none() {
                tarjan.visit(v);
            }
        }
        let mut cycles: Vec<Cycle> = tarjan
            .components
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let members: BTreeSet<&str> = component.iter().map(|&v| files[v]).collect();
                let edges = self
                    .edges
                    .iter()
                    .filter(|((from, to), _)| {
                        members.contains(from.as_str()) && members.contains(to.as_str())
                    })
                    .map(|((from, to), line)| (from.clone(), *line, to.clone()))
                    .collect();
                Cycle {
                    files: members.into_iter().map(str::to_owned).collect(),
                    edges,
                }
            })
            .collect();
        cycles.sort_by(|a, b| a.files.cmp(&b.files));
        cycles
    }
}

struct Tarjan<'a> {
    next: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    counter: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.counter);
        self.low[v] = self.counter;
        self.counter += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.next[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(index) if self.on_stack[w] => self.low[v] = self.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

// --- the text-level parser ---

/// `src` with comments, string and char literals blanked out (newlines kept, so
/// line numbers still hold).
fn strip_comments_and_literals(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
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
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                out.push('"');
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a), which stays.
            let end = if next == Some('\\') {
                (i + 2..chars.len()).find(|&j| chars[j] == '\'' && j > i + 2)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(end) => {
                    while i <= end {
                        blank(&mut out, chars[i]);
                        i += 1;
                    }
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push_str(&word);
            // Raw strings: r"..", r#".."#, br#".."#, cr"..".
            let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
            if matches!(word.as_str(), "r" | "br" | "cr") && chars.get(i + hashes) == Some(&'"') {
                let closing: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let body = i + hashes + 1;
                let end = (body..chars.len())
                    .find(|&j| chars[j..].starts_with(&closing))
                    .map_or(chars.len(), |j| j + closing.len());
                while i < end {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A word (identifier, keyword, number) or a punctuation mark, with its line.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    line: usize,
}

fn tokens(clean: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for (number, line) in clean.lines().enumerate() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let start = i;
            if c.is_whitespace() {
                i += 1;
                continue;
            } else if c.is_alphanumeric() || c == '_' {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            } else if c == ':' && chars.get(i + 1) == Some(&':') {
                i += 2;
            } else {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Token {
                text,
                line: number + 1,
            });
        }
    }
    out
}

fn is_word(token: &Token) -> bool {
    token
        .text
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// `tokens` without the items `#[cfg(test)]` annotates (a test module, a test-only
/// function or `use`); a file opening with `#![cfg(test)]` is all test code.
fn without_test_items(tokens: Vec<Token>) -> Vec<Token> {
    let text = |i: usize| {
        tokens
            .get(i)
            .map_or("", |token: &Token| token.text.as_str())
    };
    let is_cfg_test = |i: usize, inner: bool| -> bool {
        let at = if inner { i + 1 } else { i };
        text(i) == "#"
            && (!inner || text(i + 1) == "!")
            && ["[", "cfg", "(", "test", ")", "]"]
                .iter()
                .enumerate()
                .all(|(k, expected)| text(at + 1 + k) == *expected)
    };
    if (0..tokens.len()).any(|i| is_cfg_test(i, true)) {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !is_cfg_test(i, false) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        i += 7;
        // Further attributes on the same item.
        while text(i) == "#" && text(i + 1) == "[" {
            let mut depth = 0;
            i += 1;
            while i < tokens.len() {
                match text(i) {
                    "[" => depth += 1,
                    "]" => depth -= 1,
                    _ => {}
                }
                i += 1;
                if depth == 0 {
                    break;
                }
            }
        }
        // The item: up to a `;` outside brackets, or its closing brace.
        let (mut braces, mut others) = (0i32, 0i32);
        while i < tokens.len() {
            let t = text(i);
            i += 1;
            match t {
                "(" | "[" => others += 1,
                ")" | "]" => others -= 1,
                "{" => braces += 1,
                "}" => {
                    braces -= 1;
                    if braces <= 0 && others <= 0 {
                        break;
                    }
                }
                ";" if braces <= 0 && others <= 0 => break,
                _ => {}
            }
        }
    }
    out
}

/// The child modules a file declares with `mod x;` (not inline `mod x { .. }`).
fn declared_modules(tokens: &[Token]) -> Vec<String> {
    let mut depth = 0i32;
    let mut out = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token.text.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            "mod" if depth == 0 => {
                if let (Some(name), Some(end)) = (tokens.get(i + 1), tokens.get(i + 2))
                    && is_word(name)
                    && end.text == ";"
                {
                    out.push(name.text.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// The names the top level of a file defines (`fn x`, `struct X`, `mod x`,
/// `macro_rules! x`, …), not those of inline modules or function bodies.
fn defined_names(tokens: &[Token]) -> BTreeSet<String> {
    let mut depth = 0i32;
    let mut out = BTreeSet::new();
    for (i, token) in tokens.iter().enumerate() {
        let keyword = matches!(
            token.text.as_str(),
            "fn" | "struct" | "enum" | "union" | "trait" | "type" | "const" | "static" | "mod"
        );
        match token.text.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            _ if depth == 0 && (keyword || token.text == "macro_rules") => {
                let skip = if keyword { 1 } else { 2 }; // `macro_rules! x`
                let after_quote = i > 0 && tokens[i - 1].text == "'"; // `'static`
                if let Some(name) = tokens.get(i + skip)
                    && is_word(name)
                    && !after_quote
                    && !matches!(
                        name.text.as_str(),
                        "fn" | "mut" | "unsafe" | "async" | "extern"
                    )
                {
                    out.insert(name.text.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// A path in a file that may name an item of this crate, made absolute
/// (`crate::a::b` → `[a, b]`).
#[derive(Debug)]
struct Reference {
    path: Vec<String>,
    line: usize,
    /// In a `pub use` (any `pub(..)` too) at the top of the file: the name it is
    /// re-exported under (`*` for a glob).
    export: Option<String>,
}

/// Every crate-local path in a file: in `use` declarations and inline in code.
fn references(tokens: &[Token], module: &[String], children: &[String]) -> Vec<Reference> {
    let text = |i: usize| {
        tokens
            .get(i)
            .map_or("", |token: &Token| token.text.as_str())
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Inline modules we are in: (name, brace depth inside them).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let base: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        let local_children: &[String] = if inline.is_empty() { children } else { &[] };
        match text(i) {
            "{" => {
                depth += 1;
                i += 1;
            }
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, inside)| *inside > depth) {
                    inline.pop();
                }
                i += 1;
            }
            "mod" if is_word(&tokens[(i + 1).min(tokens.len() - 1)]) && text(i + 2) == "{" => {
                inline.push((text(i + 1).to_owned(), depth + 1));
                depth += 1;
                i += 3;
            }
            "use" => {
                let public = depth == 0 && is_public(tokens, i);
                let mut paths = Vec::new();
                i += 1;
                use_tree(tokens, &mut i, Vec::new(), &mut paths);
                while i < tokens.len() && text(i) != ";" {
                    i += 1; // whatever the parser did not understand
                }
                for (path, line, name) in paths {
                    if let Some(path) = absolute(&path, &base, local_children) {
                        out.push(Reference {
                            path,
                            line,
                            export: public.then_some(name),
                        });
                    }
                }
            }
            word if is_word(&tokens[i])
                && text(i + 1) == "::"
                && !matches!(text(i.wrapping_sub(1)), "::" | "$")
                && !is_visibility_path(tokens, i)
                && (matches!(word, "crate" | "self" | "super")
                    || local_children.iter().any(|child| child == word)) =>
            {
                let line = tokens[i].line;
                let mut path = vec![word.to_owned()];
                i += 1;
                while text(i) == "::" && tokens.get(i + 1).is_some_and(is_word) {
                    path.push(text(i + 1).to_owned());
                    i += 2;
                }
                if let Some(path) = absolute(&path, &base, local_children) {
                    out.push(Reference {
                        path,
                        line,
                        export: None,
                    });
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether the path at `at` is the `crate::a` of `pub(in crate::a)`: a visibility,
/// not a use of `a`.
fn is_visibility_path(tokens: &[Token], at: usize) -> bool {
    let text = |back: usize| at.checked_sub(back).map_or("", |i| tokens[i].text.as_str());
    text(1) == "in" && text(2) == "(" && text(3) == "pub"
}

/// Whether the `use` at `at` is `pub` or `pub(...)`.
fn is_public(tokens: &[Token], at: usize) -> bool {
    let text = |i: usize| {
        tokens
            .get(i)
            .map_or("", |token: &Token| token.text.as_str())
    };
    match at.checked_sub(1).map(text) {
        Some("pub") => true,
        Some(")") => {
            let mut i = at - 1;
            let mut depth = 0;
            loop {
                match text(i) {
                    ")" => depth += 1,
                    "(" => depth -= 1,
                    _ => {}
                }
                if depth == 0 || i == 0 {
                    break;
                }
                i -= 1;
            }
            i > 0 && text(i - 1) == "pub"
        }
        _ => false,
    }
}

/// Expands one use tree (`a::{b, c::{d, self}}`, `a::*`, `a as b`) into its paths,
/// each with the line of its last segment and the name it brings in (`*` for a glob).
fn use_tree(
    tokens: &[Token],
    i: &mut usize,
    prefix: Vec<String>,
    out: &mut Vec<(Vec<String>, usize, String)>,
) {
    let text = |i: usize| {
        tokens
            .get(i)
            .map_or("", |token: &Token| token.text.as_str())
    };
    let mut path = prefix;
    loop {
        match text(*i) {
            "::" if path.is_empty() => {
                path.push("::".to_owned()); // `::name`: another crate
                *i += 1;
            }
            "{" => {
                *i += 1;
                while *i < tokens.len() && !matches!(text(*i), "}" | ";") {
                    let before = *i;
                    use_tree(tokens, i, path.clone(), out);
                    if text(*i) == "," {
                        *i += 1;
                    }
                    if *i == before {
                        *i += 1; // not understood: move on
                    }
                }
                if text(*i) == "}" {
                    *i += 1;
                }
                return;
            }
            "*" => {
                out.push((path, tokens[*i].line, "*".to_owned()));
                *i += 1;
                return;
            }
            _ if tokens.get(*i).is_some_and(is_word) => {
                let line = tokens[*i].line;
                path.push(text(*i).to_owned());
                *i += 1;
                if text(*i) == "::" {
                    *i += 1;
                    continue;
                }
                // `a::{self}` brings in `a`.
                let named = path.iter().rev().find(|segment| *segment != "self");
                let mut name = named.cloned().unwrap_or_default();
                if text(*i) == "as" {
                    name = text(*i + 1).to_owned();
                    *i += 2;
                }
                out.push((path, line, name));
                return;
            }
            _ => return,
        }
    }
}

/// A path relative to `base` (the module the code is in) made absolute, or `None`
/// when it names another crate (or anything not crate-local).
fn absolute(path: &[String], base: &[String], children: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    let (mut out, rest) = match first.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (base.to_vec(), &path[1..]),
        "super" => {
            let ups = path
                .iter()
                .take_while(|segment| *segment == "super")
                .count();
            let kept = base.len().checked_sub(ups)?;
            (base[..kept].to_vec(), &path[ups..])
        }
        name if children.iter().any(|child| child == name) => (base.to_vec(), path),
        _ => return None,
    };
    // `a::{self, ..}` names `a` itself.
    out.extend(rest.iter().filter(|segment| *segment != "self").cloned());
    Some(out)
}

// --- the detector on small in-memory crates ---

fn fake_crate(files: &[(&str, &str)]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(path, text)| ((*path).to_owned(), (*text).to_owned()))
        .collect()
}

/// Each cycle as its files and its edges as `from:line→to`.
fn cycles_of(files: &[(&str, &str)]) -> Vec<(Vec<String>, Vec<String>)> {
    ModuleGraph::build(&fake_crate(files), "lib.rs")
        .cycles()
        .into_iter()
        .map(|cycle| {
            let edges = cycle
                .edges
                .iter()
                .map(|(from, line, to)| format!("{from}:{line}→{to}"));
            (cycle.files, edges.collect())
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[test]
fn detector_finds_a_two_file_cycle_and_ignores_reexports() {
    let cycles = cycles_of(&[
        (
            "lib.rs",
            "mod a;\nmod b;\n\npub use a::Thing;\npub use b::helper;\n",
        ),
        ("a.rs", "use crate::b::helper;\n\npub struct Thing;\n"),
        (
            "b.rs",
            "pub fn helper() {}\n\npub fn make() -> crate::a::Thing {\n    crate::a::Thing\n}\n",
        ),
    ]);
    assert_eq!(
        cycles,
        vec![(
            strings(&["a.rs", "b.rs"]),
            strings(&["a.rs:1→b.rs", "b.rs:3→a.rs"])
        )],
    );

    // A parent re-exporting its child while the child uses the parent is no cycle.
    let reexport = [
        ("lib.rs", "mod catalog;\npub use catalog::Catalog;\n"),
        (
            "catalog.rs",
            "mod state;\npub use state::Catalog;\npub(crate) use self::state::Limit;\npub const MAX: usize = 3;\n",
        ),
        (
            "catalog/state.rs",
            "use super::MAX;\npub struct Catalog;\npub struct Limit;\n",
        ),
    ];
    assert_eq!(cycles_of(&reexport), vec![]);
}

#[test]
fn detector_reads_grouped_uses_and_inline_paths() {
    // Grouped and nested uses, `self` in a group, the longest module prefix.
    let cycles = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
        (
            "a.rs",
            "use crate::{\n    b::{self, Thing},\n    c::inner::Deep,\n};\n",
        ),
        ("b.rs", "pub struct Thing;\n"),
        ("c.rs", "mod inner;\n"),
        (
            "c/inner/mod.rs",
            "pub struct Deep;\npub fn f() { super::super::a::g() }\n",
        ),
    ]);
    assert_eq!(
        cycles,
        vec![(
            strings(&["a.rs", "c/inner/mod.rs"]),
            strings(&["a.rs:3→c/inner/mod.rs", "c/inner/mod.rs:2→a.rs"]),
        )],
    );

    // `child::Thing` in a parent that declares `mod child;` is a use of the child,
    // here of what it re-exports.
    let cycles = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        (
            "a.rs",
            "mod child;\npub fn run() {\n    child::Thing::new();\n}\n",
        ),
        ("a/child.rs", "pub use crate::b::Thing;\n"),
        ("b.rs", "pub struct Thing;\nfn f() { crate::a::run() }\n"),
    ]);
    assert_eq!(
        cycles,
        vec![(
            strings(&["a.rs", "b.rs"]),
            strings(&["a.rs:3→b.rs", "b.rs:2→a.rs"]),
        )],
    );
}

#[test]
fn detector_treats_nested_files_as_one_unit() {
    // Siblings that use each other: a cycle.
    let cycles = cycles_of(&[
        ("lib.rs", "mod a;\nmod b;\n"),
        ("a.rs", "use crate::b::X;\npub struct Y;\n"),
        ("b.rs", "pub struct X;\nuse crate::a::Y;\n"),
    ]);
    assert_eq!(
        cycles,
        vec![(
            strings(&["a.rs", "b.rs"]),
            strings(&["a.rs:1→b.rs", "b.rs:2→a.rs"]),
        )],
    );

    // A child using its parent (here the crate root) while the parent calls it: none.
    let cycles = cycles_of(&[
        (
            "lib.rs",
            "mod a;\npub struct Z;\npub fn run() {\n    a::f();\n}\n",
        ),
        ("a.rs", "use super::Z;\npub fn f() {}\n"),
    ]);
    assert_eq!(cycles, vec![]);

    // A file and a file nested in it, using each other both ways: none.
    let cycles = cycles_of(&[
        ("lib.rs", "mod a;\n"),
        ("a.rs", "mod c;\nuse c::Inner;\npub struct Outer;\n"),
        ("a/c.rs", "pub struct Inner(super::Outer);\n"),
    ]);
    assert_eq!(cycles, vec![]);
}

#[test]
fn detector_follows_reexports_to_where_a_name_is_defined() {
    // As in causeway-k8s: `resources.rs` re-exports `ClusterLink`, `manifests.rs` uses
    // it, and a function in `cluster_link.rs` uses `manifests.rs`.
    let cycles = cycles_of(&[
        ("lib.rs", "mod manifests;\nmod resources;\n"),
        (
            "manifests.rs",
            "use crate::resources::{ClusterLink, crds};\npub const NAMESPACE: u8 = 0;\n",
        ),
        (
            "resources.rs",
            "mod cluster_link;\npub use cluster_link::{ClusterLink, ClusterLinkSpec};\npub fn crds() {}\n",
        ),
        (
            "resources/cluster_link.rs",
            "pub struct ClusterLink;\npub struct ClusterLinkSpec;\nimpl ClusterLink {\n    fn check(&self) {\n        use crate::manifests::NAMESPACE;\n    }\n}\n",
        ),
    ]);
    assert_eq!(
        cycles,
        vec![(
            strings(&["manifests.rs", "resources/cluster_link.rs"]),
            strings(&[
                "manifests.rs:1→resources/cluster_link.rs",
                "resources/cluster_link.rs:5→manifests.rs"
            ]),
        )],
    );

    // `pub(crate) use`, `as`, chains, globs; a name `m.rs` defines stays there.
    let graph = ModuleGraph::build(
        &fake_crate(&[
            ("lib.rs", "mod a;\nmod m;\n"),
            (
                "m.rs",
                "mod one;\nmod two;\nmod three;\npub(crate) use one::One;\n\
                 pub use self::one::Renamed as Other;\npub use two::Two as Two;\n\
                 pub use three::*;\npub struct Local;\n",
            ),
            ("m/one.rs", "pub struct One;\npub struct Renamed;\n"),
            ("m/two.rs", "mod deep;\npub use deep::Two;\n"),
            ("m/two/deep.rs", "pub struct Two;\n"),
            ("m/three.rs", "pub struct Three;\n"),
            (
                "a.rs",
                "use crate::m::{One, Other};\nuse crate::m::{Three, Two};\nfn f(_: crate::m::Local) {}\n",
            ),
        ]),
        "lib.rs",
    );
    let edges: Vec<_> = graph
        .edges
        .iter()
        .map(|((from, to), line)| format!("{from}:{line}→{to}"))
        .collect();
    assert_eq!(
        edges,
        [
            "a.rs:3→m.rs",
            "a.rs:1→m/one.rs",
            "a.rs:2→m/three.rs",
            "a.rs:2→m/two/deep.rs"
        ]
    );
}

#[test]
fn detector_ignores_tests_comments_strings_and_other_crates() {
    let cycles = cycles_of(&[
        (
            "lib.rs",
            "mod a;\nmod b;\n#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod helpers;\n",
        ),
        (
            "a.rs",
            "// crate::b::x is only mentioned here\n\
             /* and crate::b::y /* nested */ here */\n\
             const S: &str = \"crate::b::z\";\n\
             const R: &str = r#\"crate::b::w\"#;\n\
             const C: char = '\"';\n\
             use other_crate::b::Thing;\n\
             fn f<'a>(x: &'a str) -> &'a str { x }\n\
             #[cfg(test)]\n\
             use crate::b::Test;\n\
             pub fn g() {}\n\
             #[cfg(test)]\n\
             mod tests {\n    use crate::b::x;\n}\n",
        ),
        (
            "b.rs",
            "pub fn x() { crate::a::g() }\nmod inline {\n    use super::x;\n}\n",
        ),
        ("tests.rs", "use crate::a::g;\n"),
        ("helpers.rs", "use crate::a::g;\n"),
        ("b_tests.rs", "use crate::a::g;\n"),
    ]);
    assert_eq!(cycles, vec![]);
    let graph = ModuleGraph::build(
        &fake_crate(&[
            ("lib.rs", "mod a;\nmod b;\n#[cfg(test)]\nmod tests;\n"),
            ("a.rs", "fn f() {}\n"),
            (
                "b.rs",
                "pub fn x() { crate::a::f() }\nmod inline {\n    use super::x;\n}\n",
            ),
            ("tests.rs", ""),
        ]),
        "lib.rs",
    );
    assert_eq!(
        graph.modules.keys().collect::<Vec<_>>(),
        ["a.rs", "b.rs", "lib.rs"]
    );
    assert_eq!(
        graph.edges.keys().collect::<Vec<_>>(),
        [&("b.rs".to_owned(), "a.rs".to_owned())]
    );
}

#[test]
fn detector_ignores_visibility_paths() {
    let graph = ModuleGraph::build(
        &fake_crate(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "mod inner;\n"),
            (
                "a/inner.rs",
                "pub(in crate::a) fn f() {\n    for x in crate::b::all() {}\n}\n",
            ),
            ("b.rs", "pub fn all() -> Vec<u8> { Vec::new() }\n"),
        ]),
        "lib.rs",
    );
    let edges: Vec<_> = graph.edges.iter().collect();
    assert_eq!(edges, [(&("a/inner.rs".to_owned(), "b.rs".to_owned()), &2)]);
}

#[test]
fn tables_are_read_by_their_headers() -> Result<()> {
    let text = "\
| change | files |\n|---|---|\n| x | y |\n\n\
| crate | folder | may depend on |\n|---|---|---|\n\
| causeway-trust | `trust/` | — |\n| causeway-policy | `policy/` | causeway-trust |\n\
| causeway-tunnel | `tunnel/` | causeway-trust, `causeway-policy` |\n";
    let table = crate_table(text, "may depend on")?;
    assert_eq!(table["causeway-trust"], BTreeSet::new());
    assert_eq!(
        table["causeway-tunnel"],
        ["causeway-policy", "causeway-trust"]
            .map(String::from)
            .into()
    );
    assert!(crate_table(text, "never in its dependency tree").is_err());
    Ok(())
}
