//! The gateway's TOML parser as a fuzz target, run as a bounded test: the seed
//! corpus (`tests/corpus/config/*.toml`) is replayed first, then proptest feeds
//! mutated seeds (lines dropped, duplicated, values replaced with hostile ones) and
//! random text. Parsing must never panic, and every refusal must list problems that
//! each carry a key path (or `(syntax)` for text that is not TOML) and a message of
//! bounded size.
//!
//! `CAUSEWAY_FUZZ_CASES` raises the case count for a longer local run.

use std::path::PathBuf;

use causeway_gateway::config::GatewayConfig;
use causeway_policy::Problem;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/config");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("the seed corpus is committed")
        .map(|e| {
            let path = e.expect("readable corpus dir").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).expect("readable seed")).into_owned();
            (name, text)
        })
        .collect();
    files.sort();
    files
}

fn parse(text: &str) -> Result<GatewayConfig, Vec<Problem>> {
    GatewayConfig::parse(text, std::iter::empty())
}

/// Every problem names where and what; messages stay small however big the input.
fn check_problems(text: &str, problems: &[Problem]) -> Result<(), TestCaseError> {
    prop_assert!(!problems.is_empty(), "refused with no problem listed");
    for p in problems {
        prop_assert!(!p.path.is_empty(), "problem without a key path: {p}");
        prop_assert!(!p.message.is_empty(), "problem without a message: {p}");
        prop_assert!(
            p.message.len() <= 4096 + text.len().min(512),
            "a {}-byte message",
            p.message.len()
        );
    }
    Ok(())
}

#[test]
fn the_seed_corpus_parses_or_is_refused_by_key_path() {
    let corpus = corpus();
    assert!(corpus.len() >= 10, "the seed corpus is missing");
    for (name, text) in &corpus {
        match parse(text) {
            Ok(_) => assert!(
                !name.starts_with("hostile-"),
                "hostile seed {name} was accepted"
            ),
            Err(problems) => {
                eprintln!("{name}:");
                for p in &problems {
                    eprintln!("  {p}");
                }
                check_problems(text, &problems).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(
                    name != "valid-minimal.toml",
                    "the minimal configuration was refused: {problems:?}"
                );
            }
        }
    }
}

/// Values an attacker or a typo puts where a key's value should be.
const HOSTILE_VALUES: &[&str] = &[
    "\"\"",
    "-1",
    "0",
    "18446744073709551616",
    "1e309",
    "nan",
    "true",
    "[]",
    "{}",
    "\"0.0.0.0:0\"",
    "\"[::1]:99999\"",
    "\"../../../../etc/passwd\"",
    "\"\\u0000\"",
    "\"UPPER\"",
    "\"-leading-dash\"",
    "\"1h1h1h\"",
    "\"999999999999999999d\"",
    "[\"a\", 1]",
    "{ a = { b = { c = 1 } } }",
];

fn mutate(text: &str, ops: &[(u8, usize, usize)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for (op, at, pick) in ops {
        if lines.is_empty() {
            lines.push(HOSTILE_VALUES[pick % HOSTILE_VALUES.len()].to_owned());
            continue;
        }
        let i = at % lines.len();
        match op % 5 {
            // Replace a key's value.
            0 | 1 => {
                if let Some((key, _)) = lines[i].split_once(" = ") {
                    lines[i] = format!("{key} = {}", HOSTILE_VALUES[pick % HOSTILE_VALUES.len()]);
                }
            }
            2 => {
                lines.remove(i);
            }
            3 => {
                let line = lines[i].clone();
                lines.insert(i, line);
            }
            _ => {
                let line = &mut lines[i];
                let cut = pick % (line.len() + 1);
                let cut = (0..=cut)
                    .rev()
                    .find(|c| line.is_char_boundary(*c))
                    .unwrap_or(0);
                line.truncate(cut);
            }
        }
    }
    lines.join("\n")
}

#[test]
fn mutated_and_random_configs_never_panic_and_name_key_paths() {
    let cases = std::env::var("CAUSEWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let seeds: Vec<String> = corpus()
        .into_iter()
        .filter(|(name, _)| name.starts_with("valid-"))
        .map(|(_, text)| text)
        .collect();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop_oneof![
        4 => (
            0..seeds.len(),
            proptest::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..6)
        )
            .prop_map(move |(i, ops)| mutate(&seeds[i], &ops)),
        1 => "(\\PC|\n|=|\\[|\\]|\"){0,400}",
    ];
    runner
        .run(&strategy, |text| {
            match parse(&text) {
                Ok(config) => {
                    // Whatever is accepted passes its own validation.
                    prop_assert!(config.validate().is_empty());
                }
                Err(problems) => check_problems(&text, &problems)?,
            }
            Ok(())
        })
        .unwrap();
}
