use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use proptest::prelude::*;

use super::*;

fn v4(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 77, a, b))
}

fn port(name: &str, port: u16) -> NamedPort {
    NamedPort {
        name: name.into(),
        protocol: PortProtocol::Tcp,
        port,
    }
}

fn service(ns: &str, name: &str, clusters: usize) -> ServiceRecords {
    ServiceRecords {
        namespace: ns.into(),
        name: name.into(),
        addresses: vec![
            v4(0, 1),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
        ],
        clusters: (0..clusters)
            .map(|i| ClusterRecords {
                cluster: format!("cluster-{i}").parse().unwrap(),
                addresses: vec![v4(1, i as u8 + 1)],
                weight: 10 + i as u16,
                ports: vec![port("http", 8080), port("grpc", 9000)],
            })
            .collect(),
    }
}

fn table(services: &[ServiceRecords]) -> DnsTable {
    let config = DnsConfig {
        listen: "127.0.0.1:5300".parse().unwrap(),
        ..DnsConfig::default()
    };
    let mut builder = ZoneBuilder::new(&config).unwrap();
    for s in services {
        builder.upsert(s).unwrap();
    }
    builder.build()
}

fn query_bytes(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 4242;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(payload) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        message.set_edns(e);
    }
    message.to_vec().unwrap()
}

fn ask(table: &DnsTable, name: &str, rtype: RecordType) -> (Answered, Message) {
    ask_with(table, &query_bytes(name, rtype, None), Transport::Udp)
}

fn ask_with(table: &DnsTable, query: &[u8], transport: Transport) -> (Answered, Message) {
    let mut out = Vec::new();
    let answered = table
        .respond(query, transport, &mut out)
        .expect("an answer");
    let message = Message::from_vec(&out).expect("the answer parses");
    (answered, message)
}

#[test]
fn service_and_pinned_names_resolve_case_insensitively() {
    let t = table(&[service("shop", "web", 2)]);
    let (answered, m) = ask(&t, "Web.Shop.svc.ClusterSet.local.", RecordType::A);
    assert_eq!(answered.rcode, Rcode::NoError);
    assert_eq!(m.metadata.id, 4242);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.authoritative && m.metadata.recursion_desired);
    assert_eq!(
        m.queries[0].name().to_string(),
        "Web.Shop.svc.ClusterSet.local."
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].data,
        RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(127, 77, 0, 1)))
    );
    assert_eq!(m.answers[0].ttl, DEFAULT_TTL_SECONDS);

    let (_, m) = ask(&t, "web.shop.svc.clusterset.local.", RecordType::AAAA);
    assert!(matches!(m.answers[0].data, RData::AAAA(_)));

    let (_, m) = ask(
        &t,
        "cluster-1.web.shop.svc.clusterset.local.",
        RecordType::A,
    );
    assert_eq!(
        m.answers[0].data,
        RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::new(127, 77, 1, 2)))
    );
    // The pinned name has no AAAA: NODATA, with the SOA for negative caching.
    let (answered, m) = ask(
        &t,
        "cluster-1.web.shop.svc.clusterset.local.",
        RecordType::AAAA,
    );
    assert_eq!(answered.rcode, Rcode::NoData);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
}

#[test]
fn srv_lists_every_exporting_cluster_with_weights_and_glue() {
    let t = table(&[service("shop", "web", 3)]);
    let (_, m) = ask(
        &t,
        "_http._tcp.web.shop.svc.clusterset.local.",
        RecordType::SRV,
    );
    let mut srvs: Vec<(u16, u16, String)> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => (s.weight, s.port, s.target.to_string()),
            other => panic!("not an SRV: {other:?}"),
        })
        .collect();
    srvs.sort();
    assert_eq!(
        srvs,
        (0..3)
            .map(|i| (
                10 + i,
                8080,
                format!("cluster-{i}.web.shop.svc.clusterset.local.")
            ))
            .collect::<Vec<_>>()
    );
    assert_eq!(m.additionals.len(), 3);
    let (_, m) = ask(
        &t,
        "_grpc._tcp.cluster-2.web.shop.svc.clusterset.local.",
        RecordType::SRV,
    );
    assert_eq!(m.answers.len(), 1);
    // `_tcp.web...` exists only because names below it do.
    let (answered, _) = ask(&t, "_tcp.web.shop.svc.clusterset.local.", RecordType::SRV);
    assert_eq!(answered.rcode, Rcode::NoData);
}

#[test]
fn apex_unknown_and_foreign_names() {
    let t = table(&[service("shop", "web", 1)]);
    let (_, m) = ask(&t, "clusterset.local.", RecordType::SOA);
    match &m.answers[0].data {
        RData::SOA(soa) => assert_eq!(soa.serial, t.serial()),
        other => panic!("not an SOA: {other:?}"),
    }
    let (_, m) = ask(&t, "clusterset.local.", RecordType::NS);
    assert_eq!(m.answers[0].record_type(), RecordType::NS);
    assert_eq!(
        m.additionals[0].data,
        RData::A(hickory_proto::rr::rdata::A(Ipv4Addr::LOCALHOST))
    );

    for name in [
        "nope.shop.svc.clusterset.local.",
        "x.web.shop.svc.clusterset.local.",
    ] {
        let (answered, m) = ask(&t, name, RecordType::A);
        assert_eq!(answered.rcode, Rcode::NxDomain, "{name}");
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities[0].name.to_string(), "clusterset.local.");
    }
    for name in ["example.com.", "xclusterset.local.", "local.", "."] {
        let (answered, m) = ask(&t, name, RecordType::A);
        assert_eq!(answered.rcode, Rcode::Refused, "{name}");
        assert!(!m.metadata.authoritative);
    }
    for name in ["svc.clusterset.local.", "shop.svc.clusterset.local."] {
        let (answered, _) = ask(&t, name, RecordType::A);
        assert_eq!(answered.rcode, Rcode::NoData, "{name}");
    }
    let (answered, _) = ask(&t, "web.shop.svc.clusterset.local.", RecordType::AXFR);
    assert_eq!(answered.rcode, Rcode::Refused);
}

#[test]
fn large_answers_truncate_over_udp_and_fit_with_edns_or_tcp() {
    let t = table(&[service("shop", "big", 16)]);
    let name = "_http._tcp.big.shop.svc.clusterset.local.";
    let (answered, m) = ask(&t, name, RecordType::SRV);
    assert!(answered.truncated && m.metadata.truncation);
    assert!(m.answers.is_empty());
    let (answered, m) = ask_with(
        &t,
        &query_bytes(name, RecordType::SRV, None),
        Transport::Tcp,
    );
    assert!(!answered.truncated);
    assert_eq!((m.answers.len(), m.additionals.len()), (16, 16));
    // With EDNS the answer fits in 1232 bytes once the optional glue is left out.
    let mut out = Vec::new();
    let query = query_bytes(name, RecordType::SRV, Some(4096));
    let answered = t.respond(&query, Transport::Udp, &mut out).unwrap();
    assert!(!answered.truncated);
    assert!(out.len() <= usize::from(DEFAULT_MAX_UDP_PAYLOAD));
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.answers.len(), 16);
    assert!(m.additionals.is_empty());
    assert_eq!(
        m.edns.as_ref().map(Edns::max_payload),
        Some(DEFAULT_MAX_UDP_PAYLOAD)
    );
}

#[test]
fn odd_messages_get_formerr_notimp_badvers_or_nothing() {
    let t = table(&[service("shop", "web", 1)]);
    let mut out = Vec::new();
    assert!(t.respond(&[1, 2, 3], Transport::Udp, &mut out).is_none());

    let good = query_bytes("web.shop.svc.clusterset.local.", RecordType::A, None);
    for cut in 12..good.len() {
        let answered = t.respond(&good[..cut], Transport::Udp, &mut out).unwrap();
        assert_eq!(answered.rcode, Rcode::FormErr);
        assert_eq!(
            Message::from_vec(&out).unwrap().metadata.response_code,
            ResponseCode::FormErr
        );
    }
    let mut response = good.clone();
    response[2] |= 0x80;
    assert!(t.respond(&response, Transport::Udp, &mut out).is_none());

    let mut notify = Message::new(1, MessageType::Query, OpCode::Notify);
    notify.add_query(Query::query(
        Name::from_ascii("clusterset.local.").unwrap(),
        RecordType::SOA,
    ));
    let (answered, _) = ask_with(&t, &notify.to_vec().unwrap(), Transport::Udp);
    assert_eq!(answered.rcode, Rcode::NotImp);

    let mut message = Message::from_vec(&good).unwrap();
    let mut edns = Edns::new();
    edns.set_version(1);
    message.set_edns(edns);
    let (answered, m) = ask_with(&t, &message.to_vec().unwrap(), Transport::Udp);
    assert_eq!(answered.rcode, Rcode::BadVers);
    // 16 is BADVERS in an OPT context (RFC 6891); hickory names the value BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16);

    let mut chaos = Message::from_vec(&good).unwrap();
    let mut q = Query::query(
        Name::from_ascii("web.shop.svc.clusterset.local.").unwrap(),
        RecordType::A,
    );
    q.set_query_class(DNSClass::CH);
    chaos.queries = vec![q];
    let (answered, _) = ask_with(&t, &chaos.to_vec().unwrap(), Transport::Udp);
    assert_eq!(answered.rcode, Rcode::Refused);
}

#[test]
fn removing_a_service_removes_its_names() {
    let config = DnsConfig::default();
    let mut builder = ZoneBuilder::new(&config).unwrap();
    builder.upsert(&service("shop", "web", 1)).unwrap();
    builder.upsert(&service("shop", "api", 1)).unwrap();
    let before = builder.build();
    assert!(builder.remove("shop", "web"));
    let after = builder.build();
    assert!(after.serial() > before.serial());
    assert_eq!(
        ask(&after, "web.shop.svc.clusterset.local.", RecordType::A)
            .0
            .rcode,
        Rcode::NxDomain
    );
    assert_eq!(
        ask(&after, "api.shop.svc.clusterset.local.", RecordType::A)
            .0
            .rcode,
        Rcode::NoError
    );
    assert_eq!(
        ask(&before, "web.shop.svc.clusterset.local.", RecordType::A)
            .0
            .rcode,
        Rcode::NoError
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let t = table(&[service("shop", "web", 2)]);
        let mut out = Vec::new();
        for transport in [Transport::Udp, Transport::Tcp] {
            if t.respond(&bytes, transport, &mut out).is_some() {
                prop_assert!(out.len() >= 12);
                prop_assert!(transport == Transport::Tcp || out.len() <= 4096);
            }
        }
    }

    #[test]
    fn mutated_queries_never_panic(flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..8)) {
        let t = table(&[service("shop", "web", 2)]);
        let mut bytes = query_bytes("_http._tcp.web.shop.svc.clusterset.local.", RecordType::SRV, Some(1232));
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let mut out = Vec::new();
        if t.respond(&bytes, Transport::Udp, &mut out).is_some() {
            prop_assert!(out.len() <= usize::from(DEFAULT_MAX_UDP_PAYLOAD));
        }
    }

    #[test]
    fn incremental_zone_updates_match_a_fresh_build(
        ops in proptest::collection::vec((0usize..4, 0usize..3, 0usize..4, any::<bool>()), 1..40),
    ) {
        let names = ["web", "db", "api", "cache"];
        let namespaces = ["shop", "pay", "shop"];
        let config = DnsConfig::default();
        let mut incremental = ZoneBuilder::new(&config).unwrap();
        let mut current = std::collections::BTreeMap::new();
        for (n, ns, clusters, remove) in ops {
            let key = (namespaces[ns].to_owned(), names[n].to_owned());
            if remove {
                prop_assert_eq!(incremental.remove(&key.0, &key.1), current.remove(&key).is_some());
            } else {
                let records = service(&key.0, &key.1, clusters);
                incremental.upsert(&records).unwrap();
                current.insert(key, records);
            }
        }
        let mut fresh = ZoneBuilder::new(&config).unwrap();
        for records in current.values() {
            fresh.upsert(records).unwrap();
        }
        let (a, b) = (incremental.build(), fresh.build());
        prop_assert_eq!(a.entries(), b.entries());
        prop_assert_eq!(a.name_count(), b.name_count());
        prop_assert_eq!(a.service_count(), current.len());
    }
}
