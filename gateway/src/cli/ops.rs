//! Commands that talk to a running gateway over its admin HTTP: `status`, `check`,
//! `resolve`, `link`, `unlink`, `export`, `unexport`, one module each (`link` and
//! `unlink` share one, as do `export` and `unexport`). The admin client they use lives
//! in `cli::admin_client` and is re-exported here.

mod check;
mod export;
mod link;
mod resolve;
mod status;

pub use super::admin_client::{AdminClient, AdminTarget, DEFAULT_ADMIN};
pub use check::{CheckArgs, CheckResult, evaluate, run_check};
pub use export::{ExportArgs, UnexportArgs, export, unexport};
pub use link::{LinkArgs, UnlinkArgs, link, unlink};
pub use resolve::{ResolveArgs, resolve, route};
pub use status::{StatusArgs, render_status, status};

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2} ms"))
}

#[cfg(test)]
mod tests {
    use super::export::{parse_port, split_service};
    use super::*;
    use crate::config::PortConfig;
    use crate::status::{
        CertificateStatus, ImportStatus, PeerLink, PeerStatus, RegistryStatus, StatusReport,
    };

    fn healthy() -> StatusReport {
        StatusReport {
            cluster: "west".into(),
            trust_domain: "causeway.local".into(),
            ready: true,
            certificate: CertificateStatus {
                expires_in_seconds: 80_000,
                issuer_expires_in_seconds: 300 * 86_400,
                bundle_fingerprints: vec!["aa".into()],
                ..Default::default()
            },
            registry: RegistryStatus {
                has_quorum: true,
                ..Default::default()
            },
            peers: vec![PeerStatus {
                cluster: "east".into(),
                alive: true,
                link: PeerLink::Up,
                bundle_fingerprints: vec!["aa".into()],
                ..Default::default()
            }],
            imports: vec![ImportStatus {
                namespace: "shop".into(),
                name: "web".into(),
                address: "127.77.0.9".into(),
                listening: true,
                dns_name: "web.shop.svc.clusterset.local".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn status_shows_ejected_clusters() {
        let mut s = healthy();
        s.ejections = vec![crate::status::EjectionStatus {
            service: "shop/web".into(),
            cluster: "east".into(),
            remaining_seconds: 29.6,
            ejections: 2,
        }];
        let text = render_status(&s);
        assert!(
            text.contains("ejected: east for shop/web (30s left, ejection 2 in a row)"),
            "{text}"
        );
    }

    #[test]
    fn status_shows_traffic_policies_with_their_source_and_conflicts() {
        use crate::status::{TrafficConflictStatus, TrafficPolicyStatus, TrafficStatus};
        let mut s = healthy();
        s.traffic = TrafficStatus {
            in_effect: vec![TrafficPolicyStatus {
                service: "shop/web".into(),
                source: "catalog:east".into(),
                routing: "weighted east=90,west=10".into(),
                apply_to: Vec::new(),
            }],
            declared: Vec::new(),
            conflicts: vec![TrafficConflictStatus {
                service: "shop/web".into(),
                owner: "north".into(),
                followed: "catalog:east".into(),
            }],
        };
        let text = render_status(&s);
        assert!(
            text.contains("traffic policy shop/web: weighted east=90,west=10 (from catalog:east)"),
            "{text}"
        );
        assert!(
            text.contains("conflict shop/web: policy of north not followed; catalog:east wins"),
            "{text}"
        );
    }

    fn right_dns(_: &str) -> Result<Vec<String>, String> {
        Ok(vec!["127.77.0.9".into()])
    }

    #[test]
    fn a_healthy_gateway_passes_every_check() {
        let results = evaluate(&healthy(), &right_dns);
        assert!(results.iter().all(|r| r.ok), "{results:#?}");
        assert_eq!(results.len(), 6);
    }

    #[test]
    fn a_peer_never_dialed_or_draining_is_no_fault() {
        let mut s = healthy();
        for (cluster, link) in [
            ("north", PeerLink::NotDialed),
            ("south", PeerLink::Draining),
        ] {
            s.peers.push(PeerStatus {
                cluster: cluster.into(),
                link,
                bundle_fingerprints: vec!["aa".into()],
                ..Default::default()
            });
        }
        let results = evaluate(&s, &right_dns);
        assert!(results.iter().all(|r| r.ok), "{results:#?}");
        let peers = results
            .iter()
            .find(|r| r.name == "peers reachable")
            .unwrap();
        assert_eq!(
            peers.detail,
            "1 peer(s) answer probes, 1 not dialed yet (no connection needed so far), 1 draining"
        );
    }

    #[test]
    fn each_fault_fails_its_own_check_with_a_hint() {
        let mut s = healthy();
        s.peers[0].bundle_fingerprints = vec!["bb".into()];
        s.peers[0].alive = false;
        s.peers[0].link = PeerLink::Down;
        s.certificate.issuer_expires_in_seconds = 3 * 86_400;
        s.registry.has_quorum = false;
        s.imports[0].listening = false;
        let results = evaluate(&s, &|_| Ok(vec!["127.0.0.1".into()]));
        let failed: Vec<&str> = results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(
            failed,
            vec![
                "certificates valid",
                "one trust bundle",
                "registry quorum",
                "peers reachable",
                "DNS answers every import",
                "listener for every import"
            ]
        );
        assert!(results.iter().filter(|r| !r.ok).all(|r| r.hint.is_some()));
        let bundle = &results[1];
        assert!(
            bundle.detail.contains("east trust a different bundle"),
            "{}",
            bundle.detail
        );
    }

    #[test]
    fn routes_prefer_alive_then_nearest_and_pinned_names_reach_one_cluster() {
        let mut s = healthy();
        s.dns.zone = "clusterset.local".into();
        s.imports[0].clusters = vec!["east".into(), "north".into()];
        s.peers.push(PeerStatus {
            cluster: "north".into(),
            alive: true,
            rtt_ms: Some(0.5),
            ..Default::default()
        });
        s.peers[0].rtt_ms = Some(2.0);
        let (svc, order) = route(&s, "web.shop.svc.clusterset.local").unwrap();
        assert_eq!(svc, "shop/web");
        assert!(
            order[0].starts_with("north") && order[1].starts_with("east"),
            "{order:?}"
        );
        s.peers[1].alive = false;
        let (_, order) = route(&s, "web.shop.svc.clusterset.local.").unwrap();
        assert!(order[0].starts_with("east"), "{order:?}");
        let (_, order) = route(&s, "north.web.shop.svc.clusterset.local").unwrap();
        assert_eq!(order.len(), 1);
        assert!(route(&s, "web.shop.svc.example.org").is_err());
        assert!(route(&s, "api.shop.svc.clusterset.local").is_err());
    }

    #[test]
    fn port_specs_parse() {
        assert_eq!(
            parse_port("80:8080/http").unwrap(),
            PortConfig {
                name: Some("http".into()),
                port: 80,
                target_port: Some(8080),
                protocol: "tcp".into()
            }
        );
        assert!(parse_port("eighty").is_err());
        assert!(split_service("shop").is_err());
    }

    #[test]
    fn status_shows_the_access_default_and_hidden_imports() {
        let mut s = healthy();
        s.access = crate::status::AccessStatus {
            default: "deny".into(),
            default_source: "federation".into(),
            enforce: "new".into(),
            hidden_imports: vec![crate::status::HiddenImport {
                namespace: "shop".into(),
                name: "api".into(),
                cluster: "north".into(),
                reason: "port 9090: denied by the federation default (no policy matches)".into(),
            }],
            ..Default::default()
        };
        let text = render_status(&s);
        assert!(text.contains("access: default deny (federation)"), "{text}");
        assert!(
            text.contains("hidden import shop/api from north: port 9090: denied"),
            "{text}"
        );
    }
}
