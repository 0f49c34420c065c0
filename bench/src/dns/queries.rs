//! Queries: single UDP questions to a server, and dnsperf runs whose output gives
//! throughput and latency percentiles.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{Latency, START_TIMEOUT, Throughput};

/// Asks `server` for `name` A once; the first address, `None` for an empty answer.
pub(super) fn ask(
    socket: &UdpSocket,
    name: &str,
    id: u16,
) -> Result<Option<(ResponseCode, Option<IpAddr>)>> {
    let mut query = Message::query();
    query.metadata.id = id;
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    socket.send(&query.to_vec()?)?;
    let mut buf = [0u8; 1500];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let Ok(answer) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if answer.metadata.id != id {
                    continue;
                }
                let address = answer.answers.iter().find_map(|r| match &r.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                });
                return Ok(Some((answer.metadata.response_code, address)));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Asks until `server` answers `name` (it must answer `expected`), for at most
/// `START_TIMEOUT`.
pub(super) fn wait_for_answer(server: SocketAddr, name: &str, expected: IpAddr) -> Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_millis(200)))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let mut id = 1;
    loop {
        id += 1;
        if let Some((code, address)) = ask(&socket, name, id)? {
            ensure!(
                code == ResponseCode::NoError && address == Some(expected),
                "{server} answered {name} with {code} {address:?}, expected {expected}"
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{server} did not answer within {START_TIMEOUT:?}");
        }
    }
}

fn field<'a>(output: &'a str, label: &str) -> Result<&'a str> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(str::trim)
        .with_context(|| format!("dnsperf printed no {label:?}:\n{output}"))
}

fn first_number<T: std::str::FromStr>(text: &str) -> Result<T> {
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no number in {text:?}"))
}

/// dnsperf asking `server` the names in `queries` for `seconds`.
fn dnsperf(server: SocketAddr, queries: &Path, seconds: u64) -> Command {
    let mut command = Command::new("dnsperf");
    command
        .args([
            "-s",
            &server.ip().to_string(),
            "-p",
            &server.port().to_string(),
        ])
        .args([
            "-d",
            &queries.display().to_string(),
            "-l",
            &seconds.to_string(),
        ]);
    command
}

/// An unlimited run: what dnsperf reports of throughput and average latency.
pub(super) fn dnsperf_throughput(
    server: SocketAddr,
    queries: &Path,
    seconds: u64,
    clients: u32,
) -> Result<Throughput> {
    let output = dnsperf(server, queries, seconds)
        .args(["-c", &clients.to_string(), "-q", "200", "-t", "2"])
        .output()
        .context("running dnsperf")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "dnsperf failed:\n{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Throughput {
        qps: first_number(field(&text, "Queries per second:")?)?,
        avg_latency: Duration::from_secs_f64(first_number(field(&text, "Average Latency (s):")?)?),
        completed: first_number(field(&text, "Queries completed:")?)?,
        lost: first_number(field(&text, "Queries lost:")?)?,
        run_time: first_number(field(&text, "Run time (s):")?)?,
        cpu_seconds: 0.0,
        rcodes: field(&text, "Response codes:")?.to_owned(),
    })
}

/// A rate-limited run with per-query output; its latencies give percentiles.
pub(super) fn dnsperf_latency(
    server: SocketAddr,
    queries: &Path,
    seconds: u64,
    qps: u32,
) -> Result<Latency> {
    let output = dnsperf(server, queries, seconds)
        .args(["-c", "10", "-Q", &qps.to_string(), "-t", "2", "-v"])
        .output()
        .context("running dnsperf -v")?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "dnsperf -v failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Lines look like `> NOERROR svc-1.bench.svc.clusterset.local A 0.000123`.
    let mut samples: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    ensure!(
        !samples.is_empty(),
        "dnsperf -v printed no per-query latencies"
    );
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        Duration::from_secs_f64(samples[((samples.len() - 1) as f64 * q).round() as usize])
    };
    Ok(Latency {
        p50: at(0.50),
        p99: at(0.99),
        samples: samples.len(),
    })
}
