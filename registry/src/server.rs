//! The gRPC server of one registry member: the client API and the Raft transport, both
//! over mutual TLS, each with its own message size bound.

use std::net::SocketAddr;

use causeway_trust::{IssuerDenylist, IssuerFingerprint, SpiffeId};
use protobuf::Message as _;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

mod access;

use crate::catalog::{Command, CommandError, Revision, validate_host_port};
use crate::node::{
    DriverHandle, MemberIds, MemberStatus, Node, NodeConfig, NodeError, NodeStatus, member_id,
};
use crate::transport::{NetworkSwitch, TlsConfigs, tls_incoming};
use crate::wire::{self, pb};

/// Largest client API message (a `ReplaceClusterExports` of 10,000 exports fits).
pub const MAX_API_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Largest Raft transport message: a batch of appends or one catalog snapshot at the
/// design's scale (100,000 endpoints across 10,000 services).
pub const MAX_RAFT_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Most Raft messages in one transport batch.
const MAX_RAFT_BATCH: usize = 4096;

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The node (storage, configuration) failed to start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The listener is unusable.
    #[error("registry listener: {0}")]
    Listener(std::io::Error),
}

/// A running registry member: its driver task and its gRPC server.
pub struct RegistryServer {
    node: Node,
    local_addr: SocketAddr,
    cancel: CancellationToken,
    driver: Option<DriverHandle>,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RegistryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryServer")
            .field("id", &self.node.id())
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl RegistryServer {
    /// Opens the member's storage, starts its Raft driver and serves gRPC on
    /// `listener`. `switch` injects network faults between members (tests only).
    ///
    /// The catalog's issuer denylist is enforced on the server's connections (new ones
    /// are dropped after the handshake, open ones closed). To make the same list refuse
    /// handshakes in the rustls verifiers too, use [`RegistryServer::start_with_denylist`]
    /// with the list the configs in `tls` were built with.
    pub async fn start(
        config: NodeConfig,
        listener: TcpListener,
        tls: TlsConfigs,
        switch: Option<NetworkSwitch>,
    ) -> Result<Self, StartError> {
        Self::start_with_denylist(config, listener, tls, switch, IssuerDenylist::new()).await
    }

    /// As [`RegistryServer::start`], keeping `denylist` equal to the catalog's denied
    /// issuers from now on (after every applied change). Pass the list the verifiers
    /// in `tls` consult (`GatewayIdentity::denylist`), so a denied issuer's handshakes
    /// are refused everywhere that identity is used, the gateway's tunnel included.
    pub async fn start_with_denylist(
        config: NodeConfig,
        listener: TcpListener,
        tls: TlsConfigs,
        switch: Option<NetworkSwitch>,
        denylist: IssuerDenylist,
    ) -> Result<Self, StartError> {
        let local_addr = listener.local_addr().map_err(StartError::Listener)?;
        let member_ids = config.member_ids;
        let (node, driver) =
            crate::node::spawn(config, tls.client.clone(), denylist.clone(), switch)?;
        let cancel = CancellationToken::new();
        spawn_denylist_sync(node.clone(), denylist.clone(), cancel.clone());
        let incoming = tls_incoming(listener, tls.server.clone(), denylist, cancel.clone());
        let api = pb::registry_server::RegistryServer::new(Api {
            node: node.clone(),
            member_ids,
        })
        .max_decoding_message_size(MAX_API_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        let raft = pb::raft_transport_server::RaftTransportServer::new(RaftApi {
            node: node.clone(),
            member_ids,
        })
        .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES);
        let shutdown = cancel.clone();
        let server = tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(api)
                .add_service(raft)
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "registry gRPC server failed");
            }
        });
        tracing::info!(member = node.id(), addr = %local_addr, "registry member serving");
        Ok(Self {
            node,
            local_addr,
            cancel,
            driver: Some(driver),
            server: Some(server),
        })
    }

    /// The in-process handle on the member's node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops at once, as a crash would: the driver is dropped wherever it is and every
    /// connection is cut. What was acknowledged is already on disk. Returns once the
    /// storage file is released.
    pub async fn kill(mut self) {
        self.cancel.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
        if let Some(driver) = self.driver.take() {
            driver.abort();
            driver.stopped().await;
        }
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

/// Keeps `denylist` equal to the catalog's denied issuers: once now, then after every
/// change set that denies an issuer and every snapshot.
fn spawn_denylist_sync(node: Node, denylist: IssuerDenylist, cancel: CancellationToken) {
    let sync = move |node: &Node| {
        let denied: Vec<IssuerFingerprint> = node.read_local(|c| {
            c.denied_issuers()
                .filter_map(|d| d.fingerprint.parse().ok())
                .collect()
        });
        denylist.replace(denied);
    };
    sync(&node);
    let mut watch = node.watch(node.read_local(|c| c.revision()));
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = watch.next() => event,
            };
            let Some(event) = event else { return };
            let relevant = match &event {
                crate::catalog::CatalogEvent::Snapshot(_) => true,
                crate::catalog::CatalogEvent::Change(c) => c
                    .changes
                    .iter()
                    .any(|ch| matches!(ch, crate::catalog::Change::IssuerDenied(_))),
            };
            if relevant {
                sync(&node);
            }
        }
    });
}

/// The caller's identity from its verified client certificate, and the chain.
fn caller<T>(request: &Request<T>) -> Result<(SpiffeId, Vec<CertificateDer<'static>>), Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no verified client certificate"))?;
    let id = causeway_trust::peer_identity(&certs)
        .map_err(|e| Status::unauthenticated(e.to_string()))?;
    Ok((id, certs.to_vec()))
}

/// The caller's identity, which must be allowed to act as a registry member.
fn member_caller<T>(request: &Request<T>, what: &'static str) -> Result<SpiffeId, Status> {
    let (id, _) = caller(request)?;
    access::authorize_member(&id, what).map_err(|e| Status::permission_denied(e.to_string()))?;
    Ok(id)
}

/// Checks that a member-role `caller` uses its own cluster's member id as `id`
/// (`what` names the field, for the error).
fn check_member_id(
    policy: MemberIds,
    caller: &SpiffeId,
    id: u64,
    what: &str,
) -> Result<(), Status> {
    let own = member_id(&caller.cluster, caller.replica.as_ref());
    if policy == MemberIds::OfCluster && id != own {
        tracing::warn!(caller = %caller, id, own, "member id of another gateway refused");
        return Err(Status::permission_denied(format!(
            "{what} {id} is not the member id of the caller {caller} (cluster {}, replica {}: {own})",
            caller.cluster,
            caller.replica_label()
        )));
    }
    Ok(())
}

/// Checks that `caller` may propose `command`; fills a registration's issuer
/// fingerprint from the caller's verified chain, or refuses one that differs from it.
fn admit(
    caller: &SpiffeId,
    chain: &[CertificateDer<'_>],
    command: &mut Command,
) -> Result<(), Status> {
    access::authorize(caller, command).map_err(|e| {
        tracing::info!(caller = %caller, kind = command.kind(), reason = %e, "proposal refused");
        Status::permission_denied(e.to_string())
    })?;
    if let Command::RegisterCluster(record) = command {
        let actual = IssuerFingerprint::of_peer_chain(chain)
            .ok_or_else(|| Status::unauthenticated("client chain carries no cluster issuer"))?
            .to_string();
        match &record.issuer_fingerprint {
            None => record.issuer_fingerprint = Some(actual),
            Some(claimed) if *claimed == actual => {}
            Some(claimed) => {
                return Err(Status::permission_denied(format!(
                    "cluster.issuer_fingerprint {claimed} is not the caller's issuer {actual}"
                )));
            }
        }
    }
    Ok(())
}

fn status_of_command(e: CommandError) -> Status {
    match &e {
        CommandError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        CommandError::NotFound { .. } => Status::not_found(e.to_string()),
        CommandError::LimitReached(_) => Status::resource_exhausted(e.to_string()),
    }
}

fn status_of_node(e: NodeError) -> Status {
    match e {
        NodeError::Rejected(c) => status_of_command(c),
        NodeError::NoLeader | NodeError::Stopped => Status::unavailable(e.to_string()),
        NodeError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
        NodeError::Raft(_) => Status::unavailable(e.to_string()),
        NodeError::Invalid(_) => Status::invalid_argument(e.to_string()),
        NodeError::Storage(_) => Status::internal(e.to_string()),
    }
}

fn member_to_pb(m: MemberStatus) -> pb::Member {
    pb::Member {
        id: m.id,
        address: m.address,
        voter: m.voter,
        matched: m.matched,
        next_index: m.next_index,
        progress: m.progress,
    }
}

fn status_to_pb(s: NodeStatus) -> pb::StatusResponse {
    pb::StatusResponse {
        id: s.id,
        leader: s.leader,
        term: s.term,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        revision: s.revision.0,
        role: s.role,
        members: s.members.into_iter().map(member_to_pb).collect(),
        fault_tolerant: s.fault_tolerant,
        snapshot_index: s.snapshot_index,
        first_index: s.first_index,
    }
}

struct Api {
    node: Node,
    member_ids: MemberIds,
}

#[tonic::async_trait]
impl pb::registry_server::Registry for Api {
    async fn propose(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::ProposeResponse>, Status> {
        let (caller, chain) = caller(&request)?;
        let command = request
            .into_inner()
            .command
            .ok_or_else(|| Status::invalid_argument("invalid command: missing"))?;
        let mut command = wire::command_from_pb(command).map_err(status_of_command)?;
        admit(&caller, &chain, &mut command)?;
        tracing::debug!(caller = %caller, kind = command.kind(), "proposal");
        let revision = self.node.propose(&command).await.map_err(status_of_node)?;
        Ok(Response::new(pb::ProposeResponse {
            revision: revision.0,
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        use pb::get_request::Key;
        let request = request.into_inner();
        let consistency = pb::Consistency::try_from(request.consistency).map_err(|_| {
            Status::invalid_argument(format!(
                "invalid consistency: {} is neither LOCAL (0) nor LINEARIZABLE (1)",
                request.consistency
            ))
        })?;
        let key = request.key.ok_or_else(|| {
            Status::invalid_argument(
                "invalid key: missing; set one of all, cluster, export, cluster_exports, policy, traffic_policy",
            )
        })?;
        let parse_cluster = |field: &str, v: &str| {
            v.parse::<causeway_trust::ClusterName>()
                .map_err(|e| Status::invalid_argument(format!("invalid {field}: {e}")))
        };
        let key = match key {
            Key::All(_) => GetKey::All,
            Key::Cluster(c) => GetKey::Cluster(parse_cluster("cluster", &c)?),
            Key::ClusterExports(c) => GetKey::ClusterExports(parse_cluster("cluster_exports", &c)?),
            Key::Export(k) => {
                let (c, s) = wire::export_key_from_pb(&k, "export").map_err(status_of_command)?;
                GetKey::Export(c, s)
            }
            Key::Policy(p) => GetKey::Policy(
                p.parse()
                    .map_err(|e| Status::invalid_argument(format!("invalid policy: {e}")))?,
            ),
            Key::TrafficPolicy(k) => {
                let (o, s) =
                    wire::traffic_key_from_pb(&k, "traffic_policy").map_err(status_of_command)?;
                GetKey::TrafficPolicy(o, s)
            }
        };
        if consistency == pb::Consistency::Linearizable {
            self.node.read_barrier().await.map_err(status_of_node)?;
        }
        let snapshot = self.node.read_local(|c| {
            let mut s = crate::catalog::CatalogSnapshot {
                revision: c.revision(),
                ..Default::default()
            };
            match &key {
                GetKey::All => s = c.snapshot(),
                GetKey::Cluster(name) => s.clusters.extend(c.cluster(name).cloned()),
                GetKey::ClusterExports(name) => s.exports.extend(c.cluster_exports(name).cloned()),
                GetKey::Export(cluster, service) => {
                    s.exports.extend(c.export(cluster, service).cloned())
                }
                GetKey::Policy(name) => s.policies.extend(c.policy(name).cloned()),
                GetKey::TrafficPolicy(owner, service) => s
                    .traffic_policies
                    .extend(c.traffic_policy(owner, service).cloned()),
            }
            s
        });
        Ok(Response::new(pb::GetResponse {
            result: Some(wire::snapshot_to_pb(&snapshot)),
        }))
    }

    type WatchStream = ReceiverStream<Result<pb::WatchEvent, Status>>;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let from = Revision(request.into_inner().from_revision);
        let mut watch = self.node.watch(from);
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    event = watch.next() => match event {
                        Some(event) => {
                            if tx.send(Ok(wire::event_to_pb(&event))).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            let _ = tx.send(Err(Status::unavailable("registry member stopped"))).await;
                            break;
                        }
                    },
                    _ = tx.closed() => break,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let caller = member_caller(&request, "join")?;
        let request = request.into_inner();
        if request.node_id == 0 {
            return Err(Status::invalid_argument("invalid node_id: 0 is reserved"));
        }
        check_member_id(self.member_ids, &caller, request.node_id, "node_id")?;
        validate_host_port(&request.address, &crate::catalog::Limits::default())
            .map_err(|reason| Status::invalid_argument(format!("invalid address: {reason}")))?;
        tracing::info!(
            caller = %caller,
            node = request.node_id,
            address = %request.address,
            "join requested"
        );
        let members = self
            .node
            .join(request.node_id, request.address)
            .await
            .map_err(status_of_node)?;
        Ok(Response::new(pb::JoinResponse {
            members: members.into_iter().map(member_to_pb).collect(),
        }))
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveResponse>, Status> {
        // Removing a (dead) member is an operator's act: admins may remove any; a
        // gateway only its own, so a compromised cluster cannot empty the registry.
        let (caller, _) = caller(&request)?;
        let id = request.into_inner().node_id;
        if id == 0 {
            return Err(Status::invalid_argument("invalid node_id: 0 is reserved"));
        }
        if caller.role != causeway_trust::Role::Admin {
            check_member_id(self.member_ids, &caller, id, "node_id")?;
        }
        tracing::info!(caller = %caller, node = id, "member removal requested");
        self.node.remove(id).await.map_err(status_of_node)?;
        Ok(Response::new(pb::LeaveResponse {}))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.node.status().await.map_err(status_of_node)?;
        Ok(Response::new(status_to_pb(status)))
    }
}

/// What a `Get` selects.
enum GetKey {
    All,
    Cluster(causeway_trust::ClusterName),
    ClusterExports(causeway_trust::ClusterName),
    Export(causeway_trust::ClusterName, crate::catalog::ServiceKey),
    Policy(causeway_policy::PolicyName),
    TrafficPolicy(causeway_trust::ClusterName, crate::catalog::ServiceKey),
}

struct RaftApi {
    node: Node,
    member_ids: MemberIds,
}

impl RaftApi {
    /// Checks a batch and hands its messages to the driver.
    async fn deliver(&self, caller: &SpiffeId, batch: pb::RaftBatch) -> Result<(), Status> {
        check_member_id(self.member_ids, caller, batch.from, "from")?;
        if batch.messages.len() > MAX_RAFT_BATCH {
            return Err(Status::invalid_argument(format!(
                "invalid messages: {} in one batch; at most {MAX_RAFT_BATCH}",
                batch.messages.len()
            )));
        }
        let mut messages = Vec::with_capacity(batch.messages.len());
        for (i, bytes) in batch.messages.iter().enumerate() {
            let m = raft::prelude::Message::parse_from_bytes(bytes).map_err(|e| {
                Status::invalid_argument(format!("invalid messages[{i}]: not a raft message: {e}"))
            })?;
            if m.to != self.node.id() {
                return Err(Status::invalid_argument(format!(
                    "invalid messages[{i}].to: {} is not this member ({})",
                    m.to,
                    self.node.id()
                )));
            }
            if m.from != batch.from || m.from == 0 {
                return Err(Status::invalid_argument(format!(
                    "invalid messages[{i}].from: {} does not match the batch sender {}",
                    m.from, batch.from
                )));
            }
            messages.push(m);
        }
        if !batch.from_address.is_empty() {
            validate_host_port(&batch.from_address, &crate::catalog::Limits::default()).map_err(
                |reason| Status::invalid_argument(format!("invalid from_address: {reason}")),
            )?;
        }
        self.node
            .deliver_raft(batch.from, batch.from_address, messages)
            .await
            .map_err(status_of_node)
    }
}

#[tonic::async_trait]
impl pb::raft_transport_server::RaftTransport for RaftApi {
    async fn raft(&self, request: Request<pb::RaftBatch>) -> Result<Response<pb::RaftAck>, Status> {
        let caller = member_caller(&request, "raft")?;
        self.deliver(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::RaftAck {}))
    }

    async fn raft_stream(
        &self,
        request: Request<tonic::Streaming<pb::RaftBatch>>,
    ) -> Result<Response<pb::RaftAck>, Status> {
        let caller = member_caller(&request, "raft")?;
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            self.deliver(&caller, batch).await?;
        }
        Ok(Response::new(pb::RaftAck {}))
    }
}
