//! etcd as three processes over plaintext gRPC: the few messages of its API the
//! benchmark uses, a writer that puts keys round-robin over the members, and the
//! SIGKILL and restart of a failover round.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

use super::load::Writer;
use super::{FAILOVER_ATTEMPT, RegistryBenchArgs, retry_until};

/// The parts of etcd's `etcdserverpb` API the benchmark uses (field numbers from
/// etcd's rpc.proto).
mod etcdpb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub(super) key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(super) value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct ResponseHeader {
        #[prost(uint64, tag = "1")]
        pub(super) cluster_id: u64,
        #[prost(uint64, tag = "2")]
        pub(super) member_id: u64,
        #[prost(int64, tag = "3")]
        pub(super) revision: i64,
        #[prost(uint64, tag = "4")]
        pub(super) raft_term: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct PutResponse {
        #[prost(message, optional, tag = "1")]
        pub(super) header: Option<ResponseHeader>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct StatusRequest {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct StatusResponse {
        #[prost(message, optional, tag = "1")]
        pub(super) header: Option<ResponseHeader>,
        #[prost(uint64, tag = "4")]
        pub(super) leader: u64,
    }
}

async fn etcd_put(channel: &Channel, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<()> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let codec: tonic_prost::ProstCodec<etcdpb::PutRequest, etcdpb::PutResponse> =
        Default::default();
    grpc.unary(
        tonic::Request::new(etcdpb::PutRequest { key, value }),
        tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put"),
        codec,
    )
    .await?;
    Ok(())
}

async fn etcd_status(channel: &Channel) -> anyhow::Result<(u64, u64)> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await?;
    let codec: tonic_prost::ProstCodec<etcdpb::StatusRequest, etcdpb::StatusResponse> =
        Default::default();
    let r = grpc
        .unary(
            tonic::Request::new(etcdpb::StatusRequest {}),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/etcdserverpb.Maintenance/Status",
            ),
            codec,
        )
        .await?
        .into_inner();
    let me = r.header.map(|h| h.member_id).unwrap_or_default();
    Ok((me, r.leader))
}

struct EtcdMember {
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    channel: Channel,
}

/// Three etcd processes, restartable by index.
pub(super) struct EtcdCluster {
    binary: String,
    members: Vec<EtcdMember>,
}

/// Puts keys round-robin over the members.
#[derive(Clone)]
pub(super) struct EtcdWriter {
    channels: Arc<Vec<Channel>>,
    value: Arc<Vec<u8>>,
    keys: u64,
}

impl Writer for EtcdWriter {
    async fn write(&self, client: usize, seq: u64) -> anyhow::Result<()> {
        let ch = &self.channels[client % self.channels.len()];
        etcd_put(
            ch,
            format!("bench/s{}", seq % self.keys).into_bytes(),
            self.value.to_vec(),
        )
        .await
    }
}

impl EtcdCluster {
    /// Starts three members and waits until they accept a write.
    pub(super) async fn start(dir: &Path, args: &RegistryBenchArgs) -> anyhow::Result<Self> {
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push((free_addr().await?, free_addr().await?));
        }
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://{peer}"))
            .collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data = dir.join(format!("etcd-{i}"));
            let args = vec![
                "--name".into(),
                format!("e{i}"),
                "--data-dir".into(),
                data.display().to_string(),
                "--listen-client-urls".into(),
                format!("http://{client}"),
                "--advertise-client-urls".into(),
                format!("http://{client}"),
                "--listen-peer-urls".into(),
                format!("http://{peer}"),
                "--initial-advertise-peer-urls".into(),
                format!("http://{peer}"),
                "--initial-cluster".into(),
                initial.join(","),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                "causeway-bench".into(),
                "--log-level".into(),
                "error".into(),
                "--logger".into(),
                "zap".into(),
            ];
            let channel = Endpoint::from_shared(format!("http://{client}"))?
                .tcp_nodelay(true)
                .connect_lazy();
            members.push(EtcdMember {
                args,
                log: dir.join(format!("etcd-{i}.log")),
                child: None,
                channel,
            });
        }
        let mut cluster = Self {
            binary: args.etcd.clone(),
            members,
        };
        for i in 0..3 {
            cluster.spawn(i)?;
        }
        let first = cluster.members[0].channel.clone();
        retry_until(Duration::from_secs(30), || async {
            etcd_put(&first, b"bench/ready".to_vec(), b"1".to_vec()).await
        })
        .await
        .context("etcd did not accept a write within 30 s")?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        let log = std::fs::File::create(&m.log)?;
        let child = Process::new(&self.binary)
            .args(&m.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} (install Debian's etcd-server)", self.binary))?;
        m.child = Some(child);
        Ok(())
    }

    /// A writer over every member's channel.
    pub(super) fn writer(&self, args: &RegistryBenchArgs) -> EtcdWriter {
        EtcdWriter {
            channels: Arc::new(self.members.iter().map(|m| m.channel.clone()).collect()),
            value: Arc::new(vec![b'x'; args.value_bytes]),
            keys: args.keys as u64,
        }
    }

    async fn leader(&self, limit: Duration) -> anyhow::Result<usize> {
        retry_until(limit, || async {
            let mut ids = Vec::new();
            let mut leader = 0;
            for m in &self.members {
                let (me, l) = etcd_status(&m.channel).await?;
                ids.push(me);
                if leader == 0 {
                    leader = l;
                } else if l != leader {
                    bail!("members disagree on the leader");
                }
            }
            ids.iter()
                .position(|id| *id == leader && leader != 0)
                .context("no etcd leader")
        })
        .await
    }

    /// Kills the leader and times the next acknowledged write; then restarts it.
    pub(super) async fn failover(&mut self, args: &RegistryBenchArgs) -> anyhow::Result<Duration> {
        let leader = self.leader(Duration::from_secs(30)).await?;
        let survivors: Vec<Channel> = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != leader)
            .map(|(_, m)| m.channel.clone())
            .collect();
        let value = vec![b'x'; args.value_bytes];
        let mut child = self.members[leader]
            .child
            .take()
            .context("leader not running")?;
        let t0 = Instant::now();
        child.kill()?;
        let _ = child.wait();
        let mut seq = 0usize;
        loop {
            let ch = &survivors[seq % survivors.len()];
            if let Ok(Ok(())) = tokio::time::timeout(
                FAILOVER_ATTEMPT,
                etcd_put(ch, b"bench/failover".to_vec(), value.clone()),
            )
            .await
            {
                break;
            }
            seq += 1;
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("no etcd write acknowledged within 60 s of killing the leader");
            }
        }
        let elapsed = t0.elapsed();
        // Restart the killed member from its data directory; it rejoins the cluster.
        self.spawn(leader)?;
        self.leader(Duration::from_secs(30)).await?;
        Ok(elapsed)
    }

    /// Kills every member.
    pub(super) fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn free_addr() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    Ok(l.local_addr()?)
}
