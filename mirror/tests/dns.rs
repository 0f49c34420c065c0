//! The DNS authority over real sockets, asked by hickory's resolver and by `dig`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use causeway_mirror::dns::{
    ClusterRecords, DnsConfig, DnsServer, Metrics, NamedPort, PortProtocol, QueryLabels,
    RcodeLabel, ServiceRecords, TransportLabel, ZoneBuilder, ZoneHandle,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as ResolverDnsError, NetError};
use hickory_resolver::{Resolver, TokioResolver};
use rand::Rng;

fn service(ns: &str, name: &str, clusters: usize) -> ServiceRecords {
    ServiceRecords {
        namespace: ns.into(),
        name: name.into(),
        addresses: vec![
            IpAddr::V4(Ipv4Addr::new(127, 77, 0, 10)),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0x77, 0, 0, 0, 0, 0, 10)),
        ],
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

struct Running {
    server: DnsServer,
    zone: ZoneHandle,
    builder: ZoneBuilder,
}

async fn start() -> Result<Running> {
    let config = DnsConfig {
        listen: "127.0.0.1:0".parse()?,
        udp_workers: 2,
        ..DnsConfig::default()
    };
    let mut builder = ZoneBuilder::new(&config)?;
    builder.upsert(&service("shop", "web", 2))?;
    builder.upsert(&service("shop", "big", 40))?;
    let zone = ZoneHandle::new(builder.build(), Metrics::default());
    let server = DnsServer::start(&config, zone.clone()).await?;
    Ok(Running {
        server,
        zone,
        builder,
    })
}

fn resolver(addr: SocketAddr) -> Result<TokioResolver> {
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut ns.connections {
        connection.port = addr.port();
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 2;
    opts.timeout = Duration::from_secs(2);
    opts.ndots = 0;
    Ok(Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()?)
}

fn response_code(error: &NetError) -> Option<ResponseCode> {
    match error {
        NetError::Dns(ResolverDnsError::ResponseCode(code)) => Some(*code),
        NetError::Dns(ResolverDnsError::NoRecordsFound(no)) => Some(no.response_code),
        _ => None,
    }
}

#[tokio::test]
async fn hickory_resolver_sees_every_kind_of_answer() -> Result<()> {
    let running = start().await?;
    let resolver = resolver(running.server.local_addr())?;

    let a = resolver
        .lookup("web.shop.svc.clusterset.local.", RecordType::A)
        .await?;
    assert_eq!(
        a.answers()[0].data,
        RData::A(Ipv4Addr::new(127, 77, 0, 10).into())
    );
    let aaaa = resolver
        .lookup("web.shop.svc.clusterset.local.", RecordType::AAAA)
        .await?;
    assert!(matches!(aaaa.answers()[0].data, RData::AAAA(_)));
    let pinned = resolver
        .lookup("c1.web.shop.svc.clusterset.local.", RecordType::A)
        .await?;
    assert_eq!(
        pinned.answers()[0].data,
        RData::A(Ipv4Addr::new(127, 77, 1, 2).into())
    );
    let srv = resolver
        .lookup("_http._tcp.web.shop.svc.clusterset.local.", RecordType::SRV)
        .await?;
    assert_eq!(srv.answers().len(), 2);
    let soa = resolver
        .lookup("clusterset.local.", RecordType::SOA)
        .await?;
    assert!(matches!(soa.answers()[0].data, RData::SOA(_)));

    let nx = resolver
        .lookup("missing.shop.svc.clusterset.local.", RecordType::A)
        .await
        .expect_err("an unknown name does not resolve");
    assert!(nx.is_nx_domain(), "{nx:?}");
    let nodata = resolver
        .lookup("web.shop.svc.clusterset.local.", RecordType::TXT)
        .await
        .expect_err("no TXT records");
    assert!(
        nodata.is_no_records_found() && !nodata.is_nx_domain(),
        "{nodata:?}"
    );
    let refused = resolver
        .lookup("example.com.", RecordType::A)
        .await
        .expect_err("outside the zone");
    assert_eq!(
        response_code(&refused),
        Some(ResponseCode::Refused),
        "{refused:?}"
    );

    // 40 SRV records do not fit in a UDP answer: the resolver gets TC and asks over TCP.
    let big = resolver
        .lookup("_http._tcp.big.shop.svc.clusterset.local.", RecordType::SRV)
        .await?;
    assert_eq!(big.answers().len(), 40);
    let metrics = running.zone.metrics();
    assert!(metrics.truncated.get() >= 1);
    let tcp_ok = metrics
        .queries
        .get_or_create(&QueryLabels {
            transport: TransportLabel::Tcp,
            rcode: RcodeLabel::Noerror,
        })
        .get();
    assert!(tcp_ok >= 1);
    running.server.shutdown().await;
    Ok(())
}

/// Runs `dig`; `None` (after saying why) when it is missing outside CI.
fn dig(addr: SocketAddr, args: &[&str]) -> Option<String> {
    let port = addr.port().to_string();
    let server = format!("@{}", addr.ip());
    let mut all = vec![server.as_str(), "-p", port.as_str(), "+time=2", "+tries=2"];
    all.extend_from_slice(args);
    match Command::new("dig").args(&all).output() {
        Ok(output) => Some(String::from_utf8_lossy(&output.stdout).into_owned()),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("dig is required in CI (Debian package bind9-dnsutils): {e}")
        }
        Err(e) => {
            eprintln!("skipping: dig is not installed (apt-get install bind9-dnsutils): {e}");
            None
        }
    }
}

fn status(output: &str) -> Result<&str> {
    output
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .with_context(|| format!("no status in dig output:\n{output}"))
}

fn answer_lines(output: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut in_answer = false;
    for line in output.lines() {
        if line.starts_with(";; ANSWER SECTION") {
            in_answer = true;
        } else if line.trim().is_empty() || line.starts_with(";;") {
            in_answer = false;
        } else if in_answer {
            lines.push(line);
        }
    }
    lines
}

#[tokio::test]
async fn dig_sees_every_kind_of_answer() -> Result<()> {
    let running = start().await?;
    let addr = running.server.local_addr();
    let blocking = tokio::task::spawn_blocking(move || -> Result<()> {
        let Some(out) = dig(addr, &["web.shop.svc.clusterset.local", "A"]) else {
            return Ok(());
        };
        assert_eq!(status(&out)?, "NOERROR");
        assert!(out.contains(" aa "), "authoritative:\n{out}");
        let answers = answer_lines(&out);
        assert!(
            answers.len() == 1 && answers[0].ends_with("127.77.0.10"),
            "{out}"
        );
        let fields: Vec<&str> = answers[0].split_whitespace().collect();
        assert_eq!(fields[1..4], ["5", "IN", "A"], "TTL 5:\n{out}");

        let out = dig(addr, &["web.shop.svc.clusterset.local", "AAAA"]).unwrap_or_default();
        assert!(answer_lines(&out)[0].ends_with("fd00:77::a"), "{out}");

        let out =
            dig(addr, &["_http._tcp.web.shop.svc.clusterset.local", "SRV"]).unwrap_or_default();
        let srv = answer_lines(&out);
        assert_eq!(srv.len(), 2, "{out}");
        assert!(
            srv.iter()
                .any(|l| l.ends_with("0 100 8080 c1.web.shop.svc.clusterset.local.")),
            "{out}"
        );

        let out = dig(addr, &["clusterset.local", "SOA"]).unwrap_or_default();
        let soa: Vec<&str> = answer_lines(&out)[0].split_whitespace().collect();
        assert_eq!(
            soa[3..6],
            [
                "SOA",
                "ns.clusterset.local.",
                "hostmaster.clusterset.local."
            ],
            "{out}"
        );

        let out = dig(addr, &["nothing.svc.clusterset.local", "A"]).unwrap_or_default();
        assert_eq!(status(&out)?, "NXDOMAIN");
        assert!(
            out.contains("AUTHORITY: 1"),
            "SOA for negative caching:\n{out}"
        );

        let out = dig(addr, &["example.org", "A"]).unwrap_or_default();
        assert_eq!(status(&out)?, "REFUSED");

        // Without EDNS the limit is 512 bytes: dig gets TC and retries over TCP.
        let out = dig(
            addr,
            &["+noedns", "_http._tcp.big.shop.svc.clusterset.local", "SRV"],
        )
        .unwrap_or_default();
        assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
        assert_eq!(status(&out)?, "NOERROR");
        assert_eq!(answer_lines(&out).len(), 40, "{out}");
        // And dig over TCP from the start.
        let out = dig(addr, &["+tcp", "web.shop.svc.clusterset.local", "A"]).unwrap_or_default();
        assert_eq!(answer_lines(&out).len(), 1, "{out}");
        Ok(())
    });
    blocking.await??;
    running.server.shutdown().await;
    Ok(())
}

/// Sends `query` and returns the answer's response code, if an answer came.
fn udp_ask(
    socket: &UdpSocket,
    name: &str,
    rtype: RecordType,
) -> Result<Option<hickory_proto::op::Message>> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::Name;
    let mut message = Message::query();
    let id = rand::rng().random::<u16>();
    message.metadata.id = id;
    message.add_query(Query::query(Name::from_ascii(name)?, rtype));
    socket.send(&message.to_vec()?)?;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => {
                let answer = Message::from_vec(&buf[..n])?;
                if answer.metadata.id == id {
                    return Ok(Some(answer));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

#[tokio::test]
async fn garbage_never_stops_the_server() -> Result<()> {
    let running = start().await?;
    let addr = running.server.local_addr();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut rng = rand::rng();
        let good = {
            use hickory_proto::op::{Message, Query};
            use hickory_proto::rr::Name;
            let mut m = Message::query();
            m.add_query(Query::query(
                Name::from_ascii("web.shop.svc.clusterset.local.")?,
                RecordType::A,
            ));
            m.to_vec()?
        };
        for round in 0..2000 {
            let datagram: Vec<u8> = match round % 3 {
                0 => (0..rng.random_range(0..700))
                    .map(|_| rng.random())
                    .collect(),
                1 => good[..rng.random_range(0..good.len())].to_vec(),
                _ => {
                    let mut bad = good.clone();
                    let at = rng.random_range(0..bad.len());
                    bad[at] = rng.random();
                    bad
                }
            };
            socket.send(&datagram)?;
        }
        // Drain whatever answers the garbage got, then check the server still answers.
        let mut buf = [0u8; 4096];
        while socket.recv(&mut buf).is_ok() {}
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(answer) = udp_ask(&socket, "web.shop.svc.clusterset.local.", RecordType::A)?
            {
                assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
                assert_eq!(answer.answers.len(), 1);
                break;
            }
            if Instant::now() > deadline {
                bail!("the server stopped answering after garbage");
            }
        }
        Ok(())
    })
    .await??;

    // Garbage over TCP: a frame of random bytes, a frame cut short, a bare length.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for payload in [vec![0, 5, 1, 2, 3, 4, 5], vec![0, 40, 1, 2, 3], vec![0]] {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(&payload).await?;
        stream.shutdown().await?;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    }
    let resolver = resolver(addr)?;
    let a = resolver
        .lookup("web.shop.svc.clusterset.local.", RecordType::A)
        .await?;
    assert_eq!(a.answers().len(), 1);
    running.server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn updates_become_visible_and_no_query_fails_meanwhile() -> Result<()> {
    let Running {
        server,
        zone,
        mut builder,
    } = start().await?;
    let addr = server.local_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || -> Result<(usize, usize)> {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.connect(addr)?;
            socket.set_read_timeout(Some(Duration::from_secs(2)))?;
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match udp_ask(&socket, "web.shop.svc.clusterset.local.", RecordType::A)? {
                    Some(m)
                        if m.metadata.response_code == ResponseCode::NoError
                            && m.answers.len() == 1 =>
                    {
                        ok += 1
                    }
                    _ => failed += 1,
                }
            }
            Ok((ok, failed))
        })
    };
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    for i in 0..50 {
        let name = format!("new{i}");
        builder.upsert(&service("shop", &name, 1))?;
        zone.publish(builder.build());
        let fqdn = format!("{name}.shop.svc.clusterset.local.");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let answer = udp_ask(&socket, &fqdn, RecordType::A)?;
            if answer.is_some_and(|m| m.metadata.response_code == ResponseCode::NoError) {
                break;
            }
            if Instant::now() > deadline {
                bail!("{fqdn} never resolved after the update");
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = asker.await??;
    assert!(ok > 0);
    assert_eq!(failed, 0, "queries failed while the table changed");
    server.shutdown().await;
    Ok(())
}
