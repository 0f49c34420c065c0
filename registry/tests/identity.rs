//! Identity checks at the registry: a gateway writes only its own cluster's records
//! (a traffic policy only when it owns it; an admin may write any), only gateways are
//! members, and an unlinked cluster's issuer is refused (new handshakes and open
//! connections) within seconds. Real gRPC over mutual TLS.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_policy::PolicyAction;
use causeway_registry::wire::pb;
use causeway_registry::{Command, GetKey, ReadConsistency};
use causeway_trust::{GatewayIdentity, IssuerFingerprint, LEAF_LIFETIME, Role};
use futures::StreamExt as _;
use support::*;
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_writes_only_its_own_cluster_on_leader_and_through_a_follower()
-> anyhow::Result<()> {
    let reg = TestRegistry::start(3, |_| {}).await?;
    let leader = reg.leader(&reg.running(), LIMIT).await?;
    let follower = reg.running().into_iter().find(|id| *id != leader).unwrap();
    let east = reg.fed.identity("east");
    let east_client = reg.client_as(&east, follower);
    let rev = propose_retrying(
        &east_client,
        &Command::RegisterCluster(cluster("east")),
        LIMIT,
    )
    .await?;
    let mut rev = rev.max(
        propose_retrying(
            &reg.client(leader),
            &Command::RegisterCluster(cluster("west")),
            LIMIT,
        )
        .await?,
    );
    reg.converged(&reg.running(), rev, LIMIT).await?;

    // The member filled east's issuer fingerprint from its verified chain.
    let record = reg.servers[&leader]
        .node()
        .read_local(|c| c.cluster(&"east".parse().unwrap()).cloned())
        .expect("east registered");
    assert_eq!(
        record.value.issuer_fingerprint,
        Some(IssuerFingerprint::of_issuer(east.issuer()).to_string())
    );

    for member in [leader, follower] {
        let west = reg.client(member);
        let before = reg.states(&reg.running());
        for command in [
            Command::PutExport(export("east", "shop/web", 1)),
            Command::RegisterCluster(cluster("east")),
            Command::DeleteExport {
                cluster: "east".parse()?,
                service: "shop/web".parse()?,
            },
            Command::ReplaceClusterExports {
                cluster: "east".parse()?,
                exports: vec![],
            },
        ] {
            let err = west
                .propose(&command)
                .await
                .expect_err("another cluster's write accepted");
            assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("cluster west") && text.contains("cluster east"),
                "{text} names both clusters"
            );
        }
        assert_eq!(reg.states(&reg.running()), before, "nothing changed");
        // Its own export goes through.
        rev = west
            .propose(&Command::PutExport(export("west", "shop/web", 1)))
            .await?
            .0;
        reg.converged(&reg.running(), rev, LIMIT).await?;
    }

    // A registration claiming another issuer's fingerprint is refused.
    let mut forged = cluster("west");
    forged.issuer_fingerprint = Some(IssuerFingerprint::of_issuer(east.issuer()).to_string());
    let err = reg
        .client(leader)
        .propose(&Command::RegisterCluster(forged))
        .await
        .expect_err("forged issuer fingerprint accepted");
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    assert!(err.to_string().contains("issuer_fingerprint"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_certificate_reads_and_runs_federation_commands_but_is_no_member()
-> anyhow::Result<()> {
    let reg = TestRegistry::start(1, |_| {}).await?;
    reg.leader(&reg.running(), LIMIT).await?;
    let admin = GatewayIdentity::new(reg.fed.issuer("west"), Role::Admin, LEAF_LIFETIME)?;
    let client = reg.client_as(&admin, 1);
    propose_retrying(
        &client,
        &Command::SetDefaultAccess(PolicyAction::Deny),
        LIMIT,
    )
    .await?;
    let snap = client.get(GetKey::All, ReadConsistency::Local).await?;
    assert_eq!(
        snap.default_access.map(|v| v.value),
        Some(PolicyAction::Deny)
    );

    let err = client
        .propose(&Command::RegisterCluster(cluster("west")))
        .await
        .expect_err("admin registered a cluster");
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    assert!(err.to_string().contains("role admin"), "{err}");
    let err = client
        .join(9, "127.0.0.1:1")
        .await
        .expect_err("admin joined");
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");

    // Raft transport: both the unary and the streaming call are refused.
    let tls = Arc::new(admin.client_config(&[H2]));
    let channel = causeway_registry::transport::tls_channel(&reg.addrs[&1].to_string(), tls)
        .map_err(anyhow::Error::msg)?;
    let mut raft = pb::raft_transport_client::RaftTransportClient::new(channel);
    let batch = pb::RaftBatch {
        from: 9,
        messages: vec![],
        from_address: String::new(),
    };
    let err = raft
        .raft(batch.clone())
        .await
        .expect_err("admin spoke raft");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    let err = raft
        .raft_stream(futures::stream::iter(vec![batch]))
        .await
        .expect_err("admin streamed raft");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_issuer_is_refused_and_its_open_connections_closed_within_5s() -> anyhow::Result<()>
{
    let reg = TestRegistry::start(1, |_| {}).await?;
    reg.leader(&reg.running(), LIMIT).await?;
    let east = reg.fed.identity("east");
    let east_client = reg.client_as(&east, 1);
    propose_retrying(
        &east_client,
        &Command::RegisterCluster(cluster("east")),
        LIMIT,
    )
    .await?;
    propose_retrying(
        &reg.client(1),
        &Command::RegisterCluster(cluster("west")),
        LIMIT,
    )
    .await?;
    let mut watch = east_client.watch(causeway_registry::Revision::ZERO).await?;
    assert!(watch.next().await.is_some(), "east's watch delivers");
    let west_client = reg.client(1);
    let head = west_client
        .get(GetKey::All, ReadConsistency::Local)
        .await?
        .revision;
    let mut west_watch = west_client.watch(head).await?;

    let fingerprint = IssuerFingerprint::of_issuer(east.issuer());
    let denied_at = Instant::now();
    reg.client(1)
        .propose(&Command::DenyIssuer {
            cluster: "east".parse()?,
            fingerprint: fingerprint.to_string(),
        })
        .await?;

    // The open watch stream ends with an error within 5 s.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Some(e),
                None => return None,
            }
        }
    })
    .await
    .expect("east's open connection was not closed within 5 s");
    eprintln!(
        "east's watch ended after {:?}: {ended:?}",
        denied_at.elapsed()
    );
    // New requests from east fail; west's still work.
    let err = east_client
        .get(GetKey::All, ReadConsistency::Local)
        .await
        .expect_err("denied issuer still served");
    assert!(denied_at.elapsed() < Duration::from_secs(5));
    eprintln!("east refused: {err}");
    // West's watch sees the unlink as one change set.
    let event = tokio::time::timeout(Duration::from_secs(5), west_watch.next())
        .await?
        .expect("west's watch is open")?;
    let causeway_registry::CatalogEvent::Change(change) = event else {
        panic!("expected a change, got {event:?}");
    };
    assert!(
        change.changes.iter().any(|c| matches!(
            c,
            causeway_registry::Change::ClusterDeleted { cluster } if cluster.as_str() == "east"
        )),
        "{change:?}"
    );
    assert!(
        change.changes.iter().any(|c| matches!(
            c,
            causeway_registry::Change::IssuerDenied(d) if d.fingerprint == fingerprint.to_string()
        )),
        "{change:?}"
    );
    let snap = reg
        .client(1)
        .get(GetKey::All, ReadConsistency::Local)
        .await?;
    assert!(
        snap.clusters
            .iter()
            .all(|c| c.value.name.as_str() != "east")
    );
    assert_eq!(snap.denied_issuers.len(), 1);
    assert!(reg.identities[&1].denylist().contains(&fingerprint));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_stop_replicating_to_a_denied_members_issuer() -> anyhow::Result<()> {
    let reg = TestRegistry::start(3, |_| {}).await?;
    let leader = reg.leader(&reg.running(), LIMIT).await?;
    let victim = reg.running().into_iter().find(|id| *id != leader).unwrap();
    let others: Vec<u64> = reg
        .running()
        .into_iter()
        .filter(|id| *id != victim)
        .collect();
    let client = reg.client(leader);
    let rev = propose_retrying(&client, &Command::RegisterCluster(cluster("west")), LIMIT).await?;
    reg.converged(&reg.running(), rev, LIMIT).await?;

    let fingerprint = IssuerFingerprint::of_issuer(reg.identities[&victim].issuer());
    client
        .propose(&Command::DenyIssuer {
            cluster: format!("c{victim}").parse()?,
            fingerprint: fingerprint.to_string(),
        })
        .await?;
    let mut last = 0;
    for i in 0..5 {
        last = propose_retrying(
            &client,
            &Command::PutExport(export("west", &format!("shop/s{i}"), 1)),
            LIMIT,
        )
        .await?;
    }
    reg.converged(&others, last, LIMIT).await?;
    // The victim's member gets nothing more: the open Raft connection to it was closed
    // and new ones are refused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim_rev = reg.servers[&victim].node().read_local(|c| c.revision().0);
    assert!(
        victim_rev < last,
        "member {victim} still replicated to revision {victim_rev} of {last}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traffic_policy_is_written_by_its_owner_or_an_admin_and_read_and_watched_by_all()
-> anyhow::Result<()> {
    use causeway_policy::{RoutingMode, TrafficPolicy, TrafficScope};
    use causeway_registry::{CatalogEvent, Change, TrafficPolicyRecord};
    let reg = TestRegistry::start(1, |_| {}).await?;
    reg.leader(&reg.running(), LIMIT).await?;
    let west = reg.client(1);
    let east = reg.client_as(&reg.fed.identity("east"), 1);
    propose_retrying(&west, &Command::RegisterCluster(cluster("west")), LIMIT).await?;
    let head = propose_retrying(&east, &Command::RegisterCluster(cluster("east")), LIMIT).await?;
    let mut watch = east.watch(causeway_registry::Revision(head)).await?;

    // West declares a canary split for every importer.
    let canary = TrafficPolicyRecord {
        owner: "west".parse()?,
        service: "shop/web".parse()?,
        apply_to: TrafficScope::All,
        policy: TrafficPolicy {
            routing: RoutingMode::Weighted,
            weights: [("west".parse()?, 90), ("east".parse()?, 10)].into(),
            ..TrafficPolicy::default()
        },
    };
    west.propose(&Command::PutTrafficPolicy(canary.clone()))
        .await?;
    let event = tokio::time::timeout(LIMIT, watch.next())
        .await?
        .expect("the watch delivers")?;
    let CatalogEvent::Change(change) = event else {
        panic!("a change, not {event:?}");
    };
    assert_eq!(change.changes, [Change::TrafficPolicyPut(canary.clone())]);
    let key = GetKey::TrafficPolicy("west".parse()?, "shop/web".parse()?);
    let read = east.get(key.clone(), ReadConsistency::Linearizable).await?;
    assert_eq!(read.traffic_policies.len(), 1);
    assert_eq!(read.traffic_policies[0].value, canary);

    // East may neither replace nor delete west's policy.
    let before = reg.states(&reg.running());
    let mut hijack = canary.clone();
    hijack.policy.weights = [("east".parse()?, 100)].into();
    for command in [
        Command::PutTrafficPolicy(hijack),
        Command::DeleteTrafficPolicy {
            owner: "west".parse()?,
            service: "shop/web".parse()?,
        },
    ] {
        let err = east
            .propose(&command)
            .await
            .expect_err("another cluster's traffic policy written");
        assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("cluster east") && text.contains("cluster west"),
            "{text} names both clusters"
        );
    }
    assert_eq!(reg.states(&reg.running()), before, "nothing changed");

    // An admin may remove it.
    let admin = GatewayIdentity::new(reg.fed.issuer("east"), Role::Admin, LEAF_LIFETIME)?;
    reg.client_as(&admin, 1)
        .propose(&Command::DeleteTrafficPolicy {
            owner: "west".parse()?,
            service: "shop/web".parse()?,
        })
        .await?;
    let read = east.get(key, ReadConsistency::Linearizable).await?;
    assert!(read.traffic_policies.is_empty());
    Ok(())
}
