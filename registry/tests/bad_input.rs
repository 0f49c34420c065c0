//! Hostile and invalid input is refused with a clear status and changes nothing.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use causeway_registry::wire::{self, pb};
use causeway_registry::{Command, GetKey, Protocol, ReadConsistency, ServicePort};
use support::*;
use tonic::Code;

async fn revisions(reg: &TestRegistry) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for id in reg.running() {
        let snap = reg
            .client(id)
            .get(GetKey::All, ReadConsistency::Linearizable)
            .await?;
        out.push(snap.revision.0);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_commands_are_refused_naming_the_field() -> anyhow::Result<()> {
    let reg = TestRegistry::start(3, |_| {}).await?;
    reg.leader(&reg.running(), Duration::from_secs(10)).await?;
    let c = reg.client(2);
    let rev = propose_retrying(
        &c,
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    reg.converged(&reg.running(), rev, Duration::from_secs(5))
        .await?;
    let before = reg.states(&reg.running());

    let mut zero_port = export("west", "shop/web", 1);
    zero_port.ports[0].port = 0;
    let mut twice = export("west", "shop/web", 1);
    twice.ports.push(ServicePort {
        name: "http".into(),
        protocol: Protocol::Tcp,
        port: 9000,
    });
    let mut bad_label = export("west", "shop/web", 1);
    bad_label.labels = BTreeMap::from([("spaces are bad".into(), "v".into())]);
    let mut wrong_identity = cluster("west");
    wrong_identity.identity = "spiffe://causeway.local/cluster/east/gateway".parse()?;
    let cases = [
        (
            Command::PutExport(export("east", "shop/web", 1)),
            Code::PermissionDenied,
            "cluster east",
        ),
        (
            Command::PutExport(zero_port),
            Code::InvalidArgument,
            "export.ports[0].port",
        ),
        (
            Command::PutExport(twice),
            Code::InvalidArgument,
            "export.ports[1].name",
        ),
        (
            Command::PutExport(bad_label),
            Code::InvalidArgument,
            "export.labels",
        ),
        (
            Command::RegisterCluster(wrong_identity),
            Code::InvalidArgument,
            "cluster.identity",
        ),
        (
            Command::DeletePolicy {
                name: "missing".parse()?,
            },
            Code::NotFound,
            "policy missing",
        ),
    ];
    for (command, code, needle) in cases {
        let err = c
            .propose(&command)
            .await
            .expect_err("invalid command accepted");
        assert_eq!(err.code(), Some(code), "{err}");
        assert!(
            err.to_string().contains(needle),
            "{err} does not name {needle}"
        );
    }

    // Wire-level mistakes the typed client cannot make.
    let channel =
        causeway_registry::transport::tls_channel(&reg.addrs[&1].to_string(), reg.client_tls())
            .map_err(anyhow::Error::msg)?;
    let mut raw = pb::registry_client::RegistryClient::new(channel.clone());
    let err = raw
        .propose(pb::ProposeRequest {
            command: Some(pb::Command { kind: None }),
        })
        .await
        .expect_err("empty command accepted");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("command.kind"), "{}", err.message());
    let mut pb_export = wire::command_to_pb(&Command::PutExport(export("west", "shop/web", 1)));
    if let Some(pb::command::Kind::PutExport(e)) = &mut pb_export.kind {
        e.cluster = "West".into();
    }
    let err = raw
        .propose(pb::ProposeRequest {
            command: Some(pb_export),
        })
        .await
        .expect_err("bad cluster name accepted");
    assert!(
        err.message().contains("export.cluster"),
        "{}",
        err.message()
    );
    let err = raw
        .get(pb::GetRequest {
            consistency: 7,
            key: Some(pb::get_request::Key::All(true)),
        })
        .await
        .expect_err("unknown consistency accepted");
    assert!(err.message().contains("consistency"), "{}", err.message());
    let err = raw
        .join(pb::JoinRequest {
            node_id: 9,
            address: "not an address".into(),
        })
        .await
        .expect_err("bad address accepted");
    assert!(err.message().contains("address"), "{}", err.message());

    assert_eq!(reg.states(&reg.running()), before);
    assert_eq!(revisions(&reg).await?, vec![rev; 3]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_messages_are_refused() -> anyhow::Result<()> {
    let reg = TestRegistry::start(3, |_| {}).await?;
    reg.leader(&reg.running(), Duration::from_secs(10)).await?;
    let rev = propose_retrying(
        &reg.client(1),
        &Command::RegisterCluster(cluster("west")),
        Duration::from_secs(5),
    )
    .await?;
    reg.converged(&reg.running(), rev, Duration::from_secs(5))
        .await?;
    let before = reg.states(&reg.running());
    let channel =
        causeway_registry::transport::tls_channel(&reg.addrs[&1].to_string(), reg.client_tls())
            .map_err(anyhow::Error::msg)?;

    // Larger than the API's bound.
    let mut huge = wire::command_to_pb(&Command::PutExport(export("west", "shop/web", 1)));
    if let Some(pb::command::Kind::PutExport(e)) = &mut huge.kind {
        e.labels.insert(
            "big".into(),
            "x".repeat(causeway_registry::MAX_API_MESSAGE_BYTES + 1),
        );
    }
    let mut raw = pb::registry_client::RegistryClient::new(channel.clone())
        .max_encoding_message_size(usize::MAX);
    let err = raw
        .propose(pb::ProposeRequest {
            command: Some(huge),
        })
        .await
        .expect_err("oversized message accepted");
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );

    // Bytes that are not a ProposeRequest: a RaftBatch sent to Propose.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/causeway.registry.v1.Registry/Propose",
    );
    let codec: tonic_prost::ProstCodec<pb::RaftBatch, pb::ProposeResponse> = Default::default();
    let garbage = pb::RaftBatch {
        from: 77,
        messages: vec![vec![0xff; 64]],
        from_address: String::new(),
    };
    let err = grpc
        .unary(tonic::Request::new(garbage), path, codec)
        .await
        .expect_err("malformed protobuf accepted");
    assert_ne!(err.code(), Code::Ok);

    // Raft transport: garbage messages and misaddressed ones.
    let mut raft = pb::raft_transport_client::RaftTransportClient::new(channel.clone());
    let err = raft
        .raft(pb::RaftBatch {
            from: 2,
            messages: vec![vec![0xff, 0xff, 0xff]],
            from_address: String::new(),
        })
        .await
        .expect_err("garbage raft message accepted");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("messages[0]"), "{}", err.message());
    let m = raft::prelude::Message {
        to: 3,
        from: 2,
        ..Default::default()
    };
    let bytes = protobuf::Message::write_to_bytes(&m)?;
    let err = raft
        .raft(pb::RaftBatch {
            from: 2,
            messages: vec![bytes],
            from_address: String::new(),
        })
        .await
        .expect_err("misaddressed raft message accepted");
    assert!(
        err.message().contains("messages[0].to"),
        "{}",
        err.message()
    );

    assert_eq!(reg.states(&reg.running()), before);
    assert_eq!(revisions(&reg).await?, vec![rev; 3]);
    Ok(())
}
