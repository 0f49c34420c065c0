//! Finding the line of a key path in TOML text, and applying environment overrides.

use toml::de::{DeTable, DeValue};

use causeway_policy::Problem;

use super::ENV_PREFIX;

/// A syntax or type error from the TOML parser, with its line.
pub(super) fn parse_problem(text: &str, e: &toml::de::Error) -> Problem {
    if let Some(problem) = missing_field(text, e) {
        return problem;
    }
    let offset = e.span().map(|s| s.start);
    let path = offset
        .and_then(|o| {
            DeTable::parse(text)
                .ok()
                .and_then(|t| path_at(t.get_ref(), o, ""))
        })
        .unwrap_or_else(|| "(syntax)".into());
    Problem {
        path,
        line: offset.map(|o| line_of(text, o)),
        message: e.message().trim_end().to_owned(),
    }
}

/// A missing required key, named by its own path: the parser's span covers the
/// table that lacks it (the whole file for a top-level key, which has no line).
fn missing_field(text: &str, e: &toml::de::Error) -> Option<Problem> {
    let field = e
        .message()
        .strip_prefix("missing field `")?
        .split('`')
        .next()?;
    let span = e.span()?;
    let whole_file = span.start == 0 && (span.is_empty() || span.end >= text.trim_end().len());
    let table = if whole_file {
        None
    } else {
        DeTable::parse(text)
            .ok()
            .and_then(|t| path_at(t.get_ref(), span.start, ""))
    };
    Some(Problem {
        path: table.map_or_else(|| field.to_owned(), |t| format!("{t}.{field}")),
        line: (!whole_file).then(|| line_of(text, span.start)),
        message: e.message().trim_end().to_owned(),
    })
}

/// The key path (`export[2].ports[0].port`) whose key or value covers `offset`.
/// Tables are searched even when their own span does not cover it: a table made by
/// a `[header]` spans only the header.
fn path_at(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    let covers = |s: std::ops::Range<usize>| s.start <= offset && offset < s.end.max(s.start + 1);
    for (k, v) in table.iter() {
        let here = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if covers(k.span()) {
            return Some(here);
        }
        if let Some(found) = descend(v.get_ref(), offset, &here) {
            return Some(found);
        }
        if covers(v.span()) {
            return Some(here);
        }
    }
    None
}

fn descend(value: &DeValue<'_>, offset: usize, here: &str) -> Option<String> {
    match value {
        DeValue::Table(t) => path_at(t, offset, here),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let at = format!("{here}[{i}]");
            descend(item.get_ref(), offset, &at)
                .or_else(|| (item.span().start <= offset && offset < item.span().end).then_some(at))
        }),
        _ => None,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Fills in the line of every problem whose key path is in `text`.
pub(super) fn add_lines(text: &str, problems: &mut [Problem]) {
    let Ok(root) = DeTable::parse(text) else {
        return;
    };
    for p in problems {
        p.line = find(root.get_ref(), &p.path).map(|offset| line_of(text, offset));
    }
}

/// Byte offset of the deepest existing key along `path` (`a.b[2].c`).
fn find(table: &DeTable<'_>, path: &str) -> Option<usize> {
    let mut current: Option<&DeValue<'_>>;
    let mut table = Some(table);
    let mut best = None;
    for segment in path.split('.') {
        let (key, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let Some(t) = table else { return best };
        let Some((k, v)) = t.iter().find(|(k, _)| k.get_ref() == key) else {
            return best;
        };
        best = Some(k.span().start);
        current = Some(v.get_ref());
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            let Ok(i) = index.parse::<usize>() else {
                return best;
            };
            match current? {
                DeValue::Array(items) => {
                    let Some(item) = items.get(i) else {
                        return best;
                    };
                    best = Some(item.span().start);
                    current = Some(item.get_ref());
                }
                _ => return best,
            }
        }
        table = match current? {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    best
}

/// Sets the key named by one `CAUSEWAY__A__B` variable. The value is read as a TOML
/// value when it parses as one (numbers, booleans, arrays), else as a string.
pub(super) fn apply_override(
    table: &mut toml::Table,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let path: Vec<String> = key[ENV_PREFIX.len()..]
        .split("__")
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(format!("{key}: empty key segment"));
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let (last, parents) = path.split_last().expect("at least one segment");
    let mut current = table;
    for segment in parents {
        current = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{key}: {segment} is not a table"))?;
    }
    current.insert(last.clone(), parsed);
    Ok(())
}
