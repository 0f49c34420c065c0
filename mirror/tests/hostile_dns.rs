//! The DNS request path as a fuzz target, run as a bounded test against a real UDP
//! server: a committed seed corpus (`tests/corpus/dns/*.bin`) is replayed first, then
//! proptest sends random and mutated datagrams. After every datagram the server must
//! still answer a valid query, and whatever it answered to the datagram must be a
//! well-formed response with the query's ID, a non-failure rcode and a bounded size.
//! A second test shows the response size limit firing (TC) with and without EDNS.
//!
//! Case counts are fixed so CI time is bounded; `CAUSEWAY_FUZZ_CASES` raises them.
//! `CAUSEWAY_WRITE_CORPUS=1` rewrites the seed corpus.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use causeway_mirror::dns::{
    ClusterRecords, DnsConfig, DnsServer, Metrics, NamedPort, PortProtocol, ServiceRecords,
    ZoneBuilder, ZoneHandle,
};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const MAX_UDP_PAYLOAD: usize = 1232;
/// The DNS rcodes the authority may answer with (RFC 1035, 6895): NOERROR, FORMERR,
/// NXDOMAIN, NOTIMP, REFUSED. SERVFAIL would mean the server itself failed.
const ALLOWED_RCODES: [u8; 5] = [0, 1, 3, 4, 5];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/dns")
}

fn service(name: &str, clusters: usize) -> ServiceRecords {
    ServiceRecords {
        namespace: "shop".into(),
        name: name.into(),
        addresses: vec![IpAddr::V4(Ipv4Addr::new(127, 77, 0, 10))],
        clusters: (0..clusters)
            .map(|i| ClusterRecords {
                cluster: format!("c{i}").parse().expect("a valid label"),
                addresses: vec![IpAddr::V4(Ipv4Addr::new(127, 77, 1, i as u8 + 1))],
                weight: 100,
                ports: vec![NamedPort {
                    name: "http".into(),
                    protocol: PortProtocol::Tcp,
                    port: 8080,
                }],
            })
            .collect(),
    }
}

/// A server on its own runtime (proptest's runner is synchronous).
struct Server {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
    _server: DnsServer,
}

fn start() -> Result<Server> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let config = DnsConfig {
        listen: "127.0.0.1:0".parse()?,
        // One socket: answers come back in the order datagrams were sent.
        udp_workers: 1,
        ..DnsConfig::default()
    };
    let mut builder = ZoneBuilder::new(&config)?;
    builder.upsert(&service("web", 2))?;
    builder.upsert(&service("big", 40))?;
    let zone = ZoneHandle::new(builder.build(), Metrics::default());
    let server = runtime.block_on(DnsServer::start(&config, zone))?;
    Ok(Server {
        addr: server.local_addr(),
        _runtime: runtime,
        _server: server,
    })
}

fn query(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(
        Name::from_ascii(name).expect("valid name"),
        rtype,
    ));
    message.to_vec().expect("a query encodes")
}

/// Adds an EDNS OPT record advertising `udp_size` to an encoded query.
fn with_edns(mut packet: Vec<u8>, udp_size: u16) -> Vec<u8> {
    let arcount = u16::from_be_bytes([packet[10], packet[11]]) + 1;
    packet[10..12].copy_from_slice(&arcount.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 41]);
    packet.extend_from_slice(&udp_size.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    packet
}

/// Valid queries and hand-made hostile datagrams.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let web = "web.shop.svc.clusterset.local.";
    let mut seeds = vec![
        ("valid-a".to_owned(), query(web, RecordType::A, 1)),
        ("valid-aaaa".to_owned(), query(web, RecordType::AAAA, 2)),
        (
            "valid-srv".to_owned(),
            query(
                "_http._tcp.web.shop.svc.clusterset.local.",
                RecordType::SRV,
                3,
            ),
        ),
        (
            "valid-edns-big-srv".to_owned(),
            with_edns(
                query(
                    "_http._tcp.big.shop.svc.clusterset.local.",
                    RecordType::SRV,
                    4,
                ),
                4096,
            ),
        ),
        (
            "valid-outside-zone".to_owned(),
            query("example.com.", RecordType::A, 5),
        ),
        (
            "valid-unknown-name".to_owned(),
            query("nope.shop.svc.clusterset.local.", RecordType::A, 6),
        ),
        (
            "valid-soa".to_owned(),
            query("clusterset.local.", RecordType::SOA, 7),
        ),
    ];
    let a = query(web, RecordType::A, 8);
    let header_only = a[..12].to_vec();
    let mut pointer_loop = a[..12].to_vec();
    // A question whose name is a compression pointer to itself.
    pointer_loop.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut two_questions = a.clone();
    two_questions[5] = 2;
    let mut response_bit = a.clone();
    response_bit[2] |= 0x80;
    let mut update_opcode = a.clone();
    update_opcode[2] = (update_opcode[2] & 0x87) | (5 << 3);
    let mut long_label = a[..12].to_vec();
    long_label.push(64);
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut bad_edns = with_edns(a.clone(), 0);
    let last = bad_edns.len() - 1;
    bad_edns[last] = 9; // rdlength 9 with no data
    for (name, bytes) in [
        ("hostile-empty", vec![]),
        ("hostile-one-byte", vec![0x42]),
        ("hostile-header-only", header_only),
        ("hostile-pointer-loop", pointer_loop),
        ("hostile-two-questions", two_questions),
        ("hostile-response-bit", response_bit),
        ("hostile-update-opcode", update_opcode),
        ("hostile-label-64", long_label),
        ("hostile-truncated", a[..a.len() - 3].to_vec()),
        ("hostile-bad-edns-rdlength", bad_edns),
        ("hostile-max-size", vec![0xff; 1500]),
    ] {
        seeds.push((name.to_owned(), bytes));
    }
    seeds
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

/// Sends `datagram`, then a valid query; returns the answers to the datagram and
/// checks the valid query is answered.
fn exercise(socket: &UdpSocket, datagram: &[u8], sentinel_id: u16) -> Result<Vec<Vec<u8>>> {
    socket.send(datagram)?;
    socket.send(&query(
        "web.shop.svc.clusterset.local.",
        RecordType::A,
        sentinel_id,
    ))?;
    let mut answers = Vec::new();
    let mut buf = [0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if Instant::now() > deadline {
            bail!("the server stopped answering valid queries");
        }
        let Ok(n) = socket.recv(&mut buf) else {
            // Lost? ask again.
            socket.send(&query(
                "web.shop.svc.clusterset.local.",
                RecordType::A,
                sentinel_id,
            ))?;
            continue;
        };
        let answer = &buf[..n];
        if n >= 12
            && u16::from_be_bytes([answer[0], answer[1]]) == sentinel_id
            && answer[3] & 0x0f == 0
            && answer[7] == 1
        {
            return Ok(answers);
        }
        let id = u16::from_be_bytes([answer[0], answer[1]]);
        let from_datagram = datagram.len() >= 2 && answer[..2] == datagram[..2];
        if n >= 2 && id >= 40_000 && !from_datagram {
            // A late answer to an earlier, re-sent valid query.
            continue;
        }
        answers.push(answer.to_vec());
    }
}

/// What every answer to any datagram must be.
fn check_answers(datagram: &[u8], answers: &[Vec<u8>]) -> Result<(), TestCaseError> {
    prop_assert!(
        answers.len() <= 1,
        "{} answers to one datagram",
        answers.len()
    );
    for answer in answers {
        prop_assert!(answer.len() >= 12, "answer shorter than a header");
        prop_assert!(
            answer.len() <= MAX_UDP_PAYLOAD,
            "answer of {} bytes",
            answer.len()
        );
        prop_assert!(answer[2] & 0x80 != 0, "answer without the QR bit");
        let rcode = answer[3] & 0x0f;
        prop_assert!(ALLOWED_RCODES.contains(&rcode), "rcode {rcode}");
        if datagram.len() >= 2 {
            prop_assert_eq!(&answer[..2], &datagram[..2], "answer to another ID");
        }
        if datagram.len() < 12 || datagram[2] & 0x80 != 0 {
            // Too short to be a query, or itself a response: no answer is expected, and
            // an answer may only be an error.
            prop_assert!(rcode != 0 || answer[7] == 0, "a non-query got records");
        }
    }
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
fn hostile_datagrams_never_stop_the_server_and_get_well_formed_answers() -> Result<()> {
    let server = start()?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server.addr)?;
    socket.set_read_timeout(Some(Duration::from_millis(300)))?;
    let corpus = corpus();
    assert!(corpus.len() >= 15, "the seed corpus is missing");
    let mut sentinel = 40_000u16;
    for (name, bytes) in &corpus {
        sentinel += 1;
        let answers = exercise(&socket, bytes, sentinel)?;
        check_answers(bytes, &answers).map_err(|e| anyhow::anyhow!("seed {name}: {e}"))?;
        if name.starts_with("valid-") {
            assert_eq!(answers.len(), 1, "seed {name} got no answer");
        }
    }

    let cases = std::env::var("CAUSEWAY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..700),
        (
            0..seeds.len(),
            proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..8)
        )
            .prop_map(move |(i, ops)| {
                let mut bytes = seeds[i].clone();
                for (op, at, value) in ops {
                    let len = bytes.len();
                    match op % 3 {
                        0 if len > 0 => bytes[at % len] = value,
                        1 => bytes.insert(at % (len + 1), value),
                        _ if len > 0 => bytes.truncate(at % len),
                        _ => {}
                    }
                }
                bytes
            }),
    ];
    let socket_ref = &socket;
    let sentinel = std::cell::Cell::new(50_000u16);
    runner
        .run(&strategy, |datagram| {
            // Never let a mutated datagram carry the sentinel's ID.
            sentinel.set(sentinel.get().wrapping_add(1).max(50_000));
            let mut datagram = datagram;
            if datagram.len() >= 2 && u16::from_be_bytes([datagram[0], datagram[1]]) >= 50_000 {
                datagram[0] = 0;
            }
            let answers = exercise(socket_ref, &datagram, sentinel.get())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_answers(&datagram, &answers)
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[test]
fn the_response_size_limit_sets_tc_with_and_without_edns() -> Result<()> {
    let server = start()?;
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server.addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let big = "_http._tcp.big.shop.svc.clusterset.local.";
    let mut buf = [0u8; 65_536];
    for (packet, limit) in [
        (query(big, RecordType::SRV, 7), 512),
        (
            with_edns(query(big, RecordType::SRV, 8), 4096),
            MAX_UDP_PAYLOAD,
        ),
        (with_edns(query(big, RecordType::SRV, 9), 600), 600),
    ] {
        socket.send(&packet)?;
        let n = socket.recv(&mut buf)?;
        assert!(n <= limit, "a {n}-byte answer exceeds {limit}");
        assert!(
            buf[2] & 0x02 != 0,
            "40 SRV records fit in {n} bytes without TC?"
        );
        assert_eq!(buf[3] & 0x0f, 0, "truncated answers are still NOERROR");
    }
    // A small answer is not truncated.
    socket.send(&query("web.shop.svc.clusterset.local.", RecordType::A, 10))?;
    let n = socket.recv(&mut buf)?;
    assert!(n <= 512);
    assert_eq!(buf[2] & 0x02, 0, "a small answer was truncated");
    Ok(())
}
