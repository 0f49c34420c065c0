//! The mirror's event loop: catalog events in, gateway calls and DNS answers out.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use causeway_mirror::dns::{DnsConfig, DnsServer, Metrics};
use causeway_mirror::{Import, ImportSink, Mirror, MirrorConfig, MirrorError};
use causeway_registry::{
    Catalog, CatalogChange, CatalogEvent, ClusterRecord, Command, Export, Limits, Protocol,
    Revision, ServicePort,
};
use causeway_trust::{SpiffeId, TrustDomain};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

/// What a gateway would do with the calls: a log of listener starts and stops.
#[derive(Clone, Default)]
struct Listeners(Arc<Mutex<Vec<String>>>);

impl ImportSink for Listeners {
    fn on_import_added(&mut self, import: &Import) {
        let log = format!("start {} on {:?}", import.service, import.addresses);
        self.0.lock().expect("not poisoned").push(log);
    }
    fn on_import_updated(&mut self, _: &Import, import: &Import) {
        self.0
            .lock()
            .expect("not poisoned")
            .push(format!("update {}", import.service));
    }
    fn on_import_removed(&mut self, import: &Import) {
        self.0
            .lock()
            .expect("not poisoned")
            .push(format!("stop {}", import.service));
    }
}

fn rcode(server: SocketAddr, name: &str) -> Result<ResponseCode> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(server)?;
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut query = Message::query();
    query.metadata.id = 99;
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    socket.send(&query.to_vec()?)?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf)?;
    Ok(Message::from_vec(&buf[..n])?.metadata.response_code)
}

async fn wait_for(server: SocketAddr, name: &'static str, want: ResponseCode) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = tokio::task::spawn_blocking(move || rcode(server, name)).await??;
        if got == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name} still answers {got}, not {want}");
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn catalog_events_reach_dns_and_the_gateway() -> Result<()> {
    let config = MirrorConfig {
        dns: DnsConfig {
            listen: "127.0.0.1:0".parse()?,
            udp_workers: 1,
            ..DnsConfig::default()
        },
        ..MirrorConfig::default()
    };
    let mut mirror = Mirror::new("east".parse()?, &config, Metrics::default())?;
    let server = DnsServer::start(&config.dns, mirror.zone().clone()).await?;
    let addr = server.local_addr();
    let listeners = Listeners::default();
    let (events, mut rx) = tokio::sync::mpsc::channel(16);
    let mut sink = listeners.clone();
    let driver = tokio::spawn(async move {
        let result = mirror.run(&mut rx, &mut sink).await;
        (mirror, result)
    });

    let mut catalog = Catalog::new(Limits::default());
    let change = catalog.apply(&Command::RegisterCluster(ClusterRecord {
        name: "west".parse()?,
        gateway_addrs: vec!["127.0.0.1:15443".into()],
        registry_addr: "127.0.0.1:15444".into(),
        identity: SpiffeId::gateway(TrustDomain::default(), "west".parse()?),
        joined_at_unix_ms: 0,
        trust_bundle: Vec::new(),
        issuer_fingerprint: None,
        replicas: Vec::new(),
        import_pools: Vec::new(),
        runtime_exports: None,
    }))?;
    events.send(CatalogEvent::Change(change)).await?;
    let change = catalog.apply(&Command::PutExport(Export {
        cluster: "west".parse()?,
        service: "shop/web".parse()?,
        ports: vec![ServicePort {
            name: "http".into(),
            protocol: Protocol::Http,
            port: 80,
        }],
        endpoints: 2,
        labels: BTreeMap::new(),
        weight: 1,
        slots: None,
    }))?;
    events.send(CatalogEvent::Change(change)).await?;
    wait_for(
        addr,
        "web.shop.svc.clusterset.local.",
        ResponseCode::NoError,
    )
    .await?;
    wait_for(
        addr,
        "west.web.shop.svc.clusterset.local.",
        ResponseCode::NoError,
    )
    .await?;

    let change = catalog.apply(&Command::DeleteExport {
        cluster: "west".parse()?,
        service: "shop/web".parse()?,
    })?;
    events.send(CatalogEvent::Change(change)).await?;
    wait_for(
        addr,
        "web.shop.svc.clusterset.local.",
        ResponseCode::NXDomain,
    )
    .await?;
    {
        let log = listeners.0.lock().expect("not poisoned");
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(log[0].starts_with("start shop/web on [127.77."), "{log:?}");
        assert_eq!(log[1], "stop shop/web");
    }

    // A skipped revision stops the loop so that the caller can watch again.
    let future = catalog.revision().next().next();
    events
        .send(CatalogEvent::Change(CatalogChange {
            revision: Revision(future.get()),
            changes: Vec::new(),
        }))
        .await?;
    let (_, result) = driver.await?;
    assert!(matches!(result, Err(MirrorError::Import(_))), "{result:?}");
    server.shutdown().await;
    Ok(())
}
