//! Import addresses come from the catalog: a mirror that followed every change and one
//! that starts from a snapshot (a restarted gateway, or a replica that joined later)
//! answer every name with the same address, as seen through DNS.

use std::collections::BTreeMap;
use std::net::{IpAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use causeway_mirror::dns::{DnsConfig, DnsServer, Metrics};
use causeway_mirror::import::NoSink;
use causeway_mirror::{AddressConfig, Mirror, MirrorConfig};
use causeway_registry::{
    Catalog, CatalogEvent, ClusterRecord, Command, Export, Limits, Protocol, ServicePort,
};
use causeway_trust::{SpiffeId, TrustDomain};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

fn register(catalog: &mut Catalog, name: &str) -> Result<CatalogEvent> {
    let change = catalog.apply(&Command::RegisterCluster(ClusterRecord {
        name: name.parse()?,
        gateway_addrs: vec!["127.0.0.1:15443".into()],
        registry_addr: "127.0.0.1:15444".into(),
        identity: SpiffeId::gateway(TrustDomain::default(), name.parse()?),
        joined_at_unix_ms: 0,
        trust_bundle: Vec::new(),
        issuer_fingerprint: None,
        replicas: Vec::new(),
        import_pools: Vec::new(),
        runtime_exports: None,
    }))?;
    Ok(CatalogEvent::Change(change))
}

fn put(catalog: &mut Catalog, cluster: &str, service: &str) -> Result<CatalogEvent> {
    let change = catalog.apply(&Command::PutExport(Export {
        cluster: cluster.parse()?,
        service: service.parse()?,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Http,
            port: 80,
        }],
        endpoints: 1,
        labels: BTreeMap::new(),
        weight: 1,
        slots: None,
    }))?;
    Ok(CatalogEvent::Change(change))
}

fn resolve(server: std::net::SocketAddr, name: &str) -> Result<IpAddr> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut query = Message::query();
    query.metadata.id = 7;
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 1500];
    loop {
        socket.send(&query.to_vec()?)?;
        if let Ok(n) = socket.recv(&mut buf) {
            let answer = Message::from_vec(&buf[..n])?;
            if answer.metadata.response_code != ResponseCode::NoError {
                bail!("{name}: {}", answer.metadata.response_code);
            }
            return match answer.answers.first().map(|r| &r.data) {
                Some(RData::A(a)) => Ok(IpAddr::V4(a.0)),
                other => bail!("{name}: no A record: {other:?}"),
            };
        }
        if Instant::now() > deadline {
            bail!("no answer for {name}");
        }
    }
}

fn names() -> Vec<String> {
    let mut names = Vec::new();
    for s in 0..4 {
        names.push(format!("s{s}.shop.svc.clusterset.local."));
        for c in ["west", "north"] {
            names.push(format!("{c}.s{s}.shop.svc.clusterset.local."));
        }
    }
    names
}

async fn serve_and_resolve(mirror: &Mirror, config: &MirrorConfig) -> Result<Vec<IpAddr>> {
    let server = DnsServer::start(&config.dns, mirror.zone().clone()).await?;
    let addr = server.local_addr();
    let addresses = tokio::task::spawn_blocking(move || {
        names()
            .iter()
            .map(|n| resolve(addr, n))
            .collect::<Result<Vec<_>>>()
    })
    .await??;
    server.shutdown().await;
    Ok(addresses)
}

#[tokio::test]
async fn replicas_and_restarts_answer_with_the_same_addresses() -> Result<()> {
    let config = MirrorConfig {
        dns: DnsConfig {
            listen: "127.0.0.1:0".parse()?,
            udp_workers: 1,
            ..DnsConfig::default()
        },
        // 14 usable addresses for 12 names plus the two freed ones below.
        addresses: AddressConfig {
            pools: vec!["127.77.0.0/28".parse()?],
        },
        allocate_addresses: true,
    };

    let mut catalog = Catalog::new(Limits::default());
    let mut first = Mirror::new("east".parse()?, &config, Metrics::default())?;
    let mut events = vec![
        register(&mut catalog, "west")?,
        register(&mut catalog, "north")?,
    ];
    // Arrival order: north's exports first, services in reverse; then one service
    // comes and goes, so that slots are freed and handed out again.
    events.push(put(&mut catalog, "west", "shop/gone")?);
    for s in (0..4).rev() {
        events.push(put(&mut catalog, "north", &format!("shop/s{s}"))?);
    }
    let change = catalog.apply(&Command::DeleteExport {
        cluster: "west".parse()?,
        service: "shop/gone".parse()?,
    })?;
    events.push(CatalogEvent::Change(change));
    for s in 0..4 {
        events.push(put(&mut catalog, "west", &format!("shop/s{s}"))?);
    }
    for event in &events {
        first.apply(event, &mut NoSink)?;
    }
    first.publish();
    let before = serve_and_resolve(&first, &config)
        .await
        .context("the mirror that followed every change")?;
    let distinct: std::collections::BTreeSet<_> = before.iter().collect();
    assert_eq!(
        distinct.len(),
        before.len(),
        "every name has its own address"
    );
    drop(first);

    // A mirror that learns everything from one snapshot, in sorted order.
    let mut second = Mirror::new("east".parse()?, &config, Metrics::default())?;
    second.apply(&CatalogEvent::Snapshot(catalog.snapshot()), &mut NoSink)?;
    second.publish();
    let after = serve_and_resolve(&second, &config)
        .await
        .context("the mirror started from a snapshot")?;
    assert_eq!(before, after);
    Ok(())
}
