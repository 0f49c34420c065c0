//! Member ids bound to cluster identity: a gateway joins, speaks Raft and leaves
//! only as its own cluster's member id. Real gRPC over mutual TLS.

mod support;

use std::sync::Arc;
use std::time::Duration;

use causeway_registry::wire::pb;
use causeway_registry::{MemberIds, member_id};
use support::*;
use tonic::Code;

const LIMIT: Duration = Duration::from_secs(10);

fn id_of(cluster: &str) -> u64 {
    member_id(&cluster.parse().expect("valid cluster name"), None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_acts_only_as_its_own_clusters_member() -> anyhow::Result<()> {
    let reg = TestRegistry::start(1, |c| c.member_ids = MemberIds::OfCluster).await?;
    reg.leader(&[1], LIMIT).await?;
    let east = reg.fed.identity("east");
    let client = reg.client_as(&east, 1);

    // Joining in west's place is refused, naming both ids.
    let err = client
        .join(id_of("west"), "127.0.0.1:1")
        .await
        .expect_err("east joined as west's member");
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&id_of("west").to_string())
            && message.contains("cluster east")
            && message.contains(&id_of("east").to_string()),
        "{message}"
    );

    // Removing another member is refused; the member keeps serving.
    let err = client.leave(1).await.expect_err("east removed member 1");
    assert_eq!(err.code(), Some(Code::PermissionDenied), "{err}");
    assert_eq!(reg.servers[&1].node().status().await?.members.len(), 1);

    // Raft traffic claiming another member's id is refused before it is read; as
    // its own id, east gets as far as message validation.
    let tls = Arc::new(east.client_config(&[H2]));
    let channel = causeway_registry::transport::tls_channel(&reg.addrs[&1].to_string(), tls)
        .map_err(anyhow::Error::msg)?;
    let mut raft = pb::raft_transport_client::RaftTransportClient::new(channel);
    let batch = |from| pb::RaftBatch {
        from,
        messages: vec![vec![0xff, 0xff, 0xff]],
        from_address: String::new(),
    };
    for from in [1, id_of("west")] {
        let err = raft.raft(batch(from)).await.expect_err("impersonation");
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
        assert!(err.message().contains("not the member id"), "{err}");
        let err = raft
            .raft_stream(futures::stream::iter(vec![batch(from)]))
            .await
            .expect_err("streamed impersonation");
        assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    }
    let err = raft
        .raft(batch(id_of("east")))
        .await
        .expect_err("garbage accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("messages[0]"), "{err}");

    // An admin may still remove a member by id (here one that does not exist).
    let admin = causeway_trust::GatewayIdentity::new(
        reg.fed.issuer("ops"),
        causeway_trust::Role::Admin,
        causeway_trust::LEAF_LIFETIME,
    )?;
    let result = reg.client_as(&admin, 1).leave(id_of("gone")).await;
    assert_ne!(
        result.as_ref().err().and_then(|e| e.code()),
        Some(Code::PermissionDenied),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn member_ids_are_stable_distinct_and_nonzero() {
    let west = id_of("west");
    assert_eq!(west, id_of("west"));
    assert_ne!(west, id_of("east"));
    assert_ne!(west, 0);
    let replica = |c: &str, r: &str| member_id(&c.parse().unwrap(), Some(&r.parse().unwrap()));
    assert_eq!(replica("west", "a"), replica("west", "a"));
    assert_ne!(replica("west", "a"), replica("west", "b"));
    assert_ne!(replica("west", "a"), west);
    assert_ne!(replica("west", "a"), replica("westa", "a"));
}
