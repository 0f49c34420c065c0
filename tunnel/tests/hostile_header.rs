//! The tunnel's stream header codec as a fuzz target, run as a bounded test: the
//! committed seed corpus (`tests/corpus/header/*.bin`) is replayed first, then
//! proptest mutates the seeds. Every input decodes to a validated request, asks for
//! more bytes, or is refused with a status; feeding it byte by byte reaches the same
//! verdict as feeding it whole (a slow sender cannot change the outcome); nothing
//! panics. (Unit tests in `src/tunnel/codec/tests.rs` cover random bytes.)
//!
//! `CAUSEWAY_FUZZ_CASES` raises the case count; `CAUSEWAY_WRITE_CORPUS=1` rewrites
//! the seed corpus.

use std::path::PathBuf;

use causeway_tunnel::codec::{self, ControlMessage};
use causeway_tunnel::{Answer, Request, ServiceTarget, Status, TraceContext};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/header")
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let frame = |r: Request| {
        let mut out = Vec::new();
        r.encode(&mut out).expect("encodes");
        out
    };
    let data = frame(Request::Data {
        target: ServiceTarget::new("shop", "web", 8080),
        trace: Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: "congo=t61rcWkgMzE".into(),
        }),
    });
    let mut answer = Vec::new();
    Answer::new(Status::Denied, "no policy allows west")
        .encode(&mut answer)
        .expect("encodes");
    let mut probe = Vec::new();
    ControlMessage::Probe(7).encode(&mut probe);
    let mut wrong_version = data.clone();
    wrong_version[0] = 2;
    let mut oversized = data.clone();
    oversized[1..3].copy_from_slice(&u16::MAX.to_be_bytes());
    let mut upper_service = Vec::new();
    // A body with a namespace that is not a DNS label (hand-encoded protobuf:
    // field 2 "SHOP", field 3 "web", field 4 port 80).
    let body = [
        0x12, 4, b'S', b'H', b'O', b'P', 0x1a, 3, b'w', b'e', b'b', 0x20, 80,
    ];
    upper_service.push(codec::FRAME_VERSION);
    upper_service.extend_from_slice(&(body.len() as u16).to_be_bytes());
    upper_service.extend_from_slice(&body);
    vec![
        ("valid-data", data.clone()),
        ("valid-control", frame(Request::Control)),
        ("valid-answer", answer),
        ("valid-probe", probe),
        ("hostile-empty", vec![]),
        ("hostile-wrong-version", wrong_version),
        ("hostile-oversized", oversized),
        ("hostile-truncated", data[..data.len() / 2].to_vec()),
        ("hostile-uppercase-namespace", upper_service),
        ("hostile-zero-length", vec![codec::FRAME_VERSION, 0, 0]),
        ("hostile-garbage-body", {
            let mut v = vec![codec::FRAME_VERSION, 0, 8];
            v.extend_from_slice(&[0xff; 8]);
            v
        }),
    ]
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("the seed corpus is committed")
        .map(|e| {
            let path = e.expect("readable corpus dir").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("readable seed"))
        })
        .collect();
    files.sort();
    files
}

/// What the acceptor decides about `bytes`: a request (and bytes used), "more",
/// or the status it answers with.
#[derive(Debug, PartialEq)]
enum Verdict {
    Request(Request, usize),
    More,
    Refused(Status),
}

fn verdict(bytes: &[u8]) -> Verdict {
    match Request::decode(bytes) {
        Ok(Some((r, used))) => Verdict::Request(r, used),
        Ok(None) => Verdict::More,
        Err(e) => Verdict::Refused(e.status()),
    }
}

/// Feeds `bytes` one at a time, as a slow sender would, stopping at the first
/// final verdict.
fn verdict_byte_by_byte(bytes: &[u8]) -> Verdict {
    for end in 0..=bytes.len() {
        match verdict(&bytes[..end]) {
            Verdict::More => continue,
            other => return other,
        }
    }
    Verdict::More
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let whole = verdict(bytes);
    match &whole {
        Verdict::Request(Request::Data { target, .. }, used) => {
            prop_assert!(target.validate().is_ok(), "unvalidated target {target:?}");
            prop_assert!(*used <= bytes.len() && *used <= codec::MAX_FRAME_LEN);
        }
        Verdict::Request(Request::Control, used) => prop_assert!(*used <= codec::MAX_FRAME_LEN),
        Verdict::More => prop_assert!(bytes.len() < codec::MAX_FRAME_LEN),
        Verdict::Refused(status) => prop_assert!(matches!(
            status,
            Status::Malformed | Status::UnsupportedVersion
        )),
    }
    prop_assert_eq!(verdict_byte_by_byte(bytes), whole);
    let _ = Answer::decode(bytes);
    let _ = ControlMessage::decode(bytes);
    Ok(())
}

#[test]
fn write_corpus_when_asked() {
    if std::env::var_os("CAUSEWAY_WRITE_CORPUS").is_none() {
        return;
    }
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(corpus_dir().join(format!("{name}.bin")), bytes).unwrap();
    }
}

#[test]
fn the_seed_corpus_replays_with_the_expected_verdicts() {
    let corpus = corpus();
    assert!(corpus.len() >= 10, "the seed corpus is missing");
    for (name, bytes) in &corpus {
        check(bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        let v = verdict(bytes);
        match name.as_str() {
            "valid-data.bin" | "valid-control.bin" => {
                assert!(matches!(v, Verdict::Request(..)), "{name}: {v:?}")
            }
            "hostile-wrong-version.bin" => {
                assert_eq!(v, Verdict::Refused(Status::UnsupportedVersion), "{name}")
            }
            n if n.starts_with("hostile-")
                && n != "hostile-empty.bin"
                && n != "hostile-truncated.bin" =>
            {
                assert!(matches!(v, Verdict::Refused(_)), "{name}: {v:?}")
            }
            _ => {}
        }
    }
}

#[test]
fn mutated_seeds_reach_one_verdict_however_they_arrive() {
    let cases = std::env::var("CAUSEWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seeds: Vec<Vec<u8>> = corpus().into_iter().map(|(_, b)| b).collect();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8),
    )
        .prop_map(move |(i, ops)| {
            let mut bytes = seeds[i].clone();
            for (op, at, value) in ops {
                let len = bytes.len();
                match op % 4 {
                    0 if len > 0 => bytes[at % len] = value,
                    1 if len > 0 => bytes[at % len] ^= 1 << (value % 8),
                    2 => bytes.insert(at % (len + 1), value),
                    _ if len > 0 => bytes.truncate(at % len),
                    _ => {}
                }
            }
            bytes
        });
    runner.run(&strategy, |bytes| check(&bytes)).unwrap();
}
