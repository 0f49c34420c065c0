//! A client of the registry's gRPC API over mutual TLS, for gateways and the CLI.

use std::sync::Arc;

use causeway_trust::ClusterName;
use futures::{Stream, StreamExt as _};
use tonic::transport::Channel;

use crate::catalog::{CatalogEvent, CatalogSnapshot, Command, CommandError, Revision, ServiceKey};

use crate::node::{MemberStatus, NodeStatus};
use crate::server::{MAX_API_MESSAGE_BYTES, MAX_RAFT_MESSAGE_BYTES};
use crate::wire::{self, pb};
use causeway_policy::PolicyName;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is unusable.
    #[error("registry address: {0}")]
    Address(String),
    /// The server answered with an error (or could not be reached).
    #[error("registry: {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The server's answer did not decode.
    #[error("registry answer: {0}")]
    Decode(#[from] CommandError),
}

impl ClientError {
    /// The gRPC status code, if the server answered.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            ClientError::Status(s) => Some(s.code()),
            _ => None,
        }
    }
}

/// What a [`RegistryClient::get`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetKey {
    /// The whole catalog.
    All,
    /// One cluster's record.
    Cluster(ClusterName),
    /// Every export of one cluster.
    ClusterExports(ClusterName),
    /// One export.
    Export(ClusterName, ServiceKey),
    /// One policy.
    Policy(PolicyName),
    /// The traffic policy one owner cluster declared for one service.
    TrafficPolicy(ClusterName, ServiceKey),
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// From the member's own applied state: fast, possibly stale (the answer's revision
    /// says how stale).
    Local,
    /// Confirmed with the leader first (ReadIndex): reflects every write acknowledged
    /// before the call.
    Linearizable,
}

/// A connection to one registry member. Cheap to clone; calls may run concurrently.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    inner: pb::registry_client::RegistryClient<Channel>,
}

impl RegistryClient {
    /// A client of the member at `addr` (`host:port`). Connects lazily, on first use.
    pub fn connect(addr: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self, ClientError> {
        let channel = crate::transport::tls_channel(addr, tls).map_err(ClientError::Address)?;
        Ok(Self {
            inner: pb::registry_client::RegistryClient::new(channel)
                .max_decoding_message_size(MAX_RAFT_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_API_MESSAGE_BYTES),
        })
    }

    /// Proposes `command`; returns the revision it produced once it is committed and
    /// applied on the member.
    pub async fn propose(&self, command: &Command) -> Result<Revision, ClientError> {
        let request = pb::ProposeRequest {
            command: Some(wire::command_to_pb(command)),
        };
        // Checked here, because a message over the limit fails inside the HTTP/2
        // stream, where it surfaces as a bare protocol error.
        let size = prost::Message::encoded_len(&request);
        if size > MAX_API_MESSAGE_BYTES {
            return Err(ClientError::Status(tonic::Status::out_of_range(format!(
                "{} command of {size} bytes is over the registry's message limit of \
                 {MAX_API_MESSAGE_BYTES} bytes",
                command.kind()
            ))));
        }
        let response = self.inner.clone().propose(request).await?;
        Ok(Revision(response.into_inner().revision))
    }

    /// Reads records; absent keys are simply missing from the answer.
    pub async fn get(
        &self,
        key: GetKey,
        consistency: ReadConsistency,
    ) -> Result<CatalogSnapshot, ClientError> {
        use pb::get_request::Key;
        let key = match key {
            GetKey::All => Key::All(true),
            GetKey::Cluster(c) => Key::Cluster(c.to_string()),
            GetKey::ClusterExports(c) => Key::ClusterExports(c.to_string()),
            GetKey::Export(c, s) => Key::Export(wire::export_key_to_pb(&c, &s)),
            GetKey::Policy(p) => Key::Policy(p.to_string()),
            GetKey::TrafficPolicy(o, s) => Key::TrafficPolicy(wire::traffic_key_to_pb(&o, &s)),
        };
        let consistency = match consistency {
            ReadConsistency::Local => pb::Consistency::Local,
            ReadConsistency::Linearizable => pb::Consistency::Linearizable,
        };
        let response = self
            .inner
            .clone()
            .get(pb::GetRequest {
                consistency: consistency as i32,
                key: Some(key),
            })
            .await?
            .into_inner();
        let result = response
            .result
            .ok_or_else(|| CommandError::invalid("result", "missing"))?;
        Ok(wire::snapshot_from_pb(result)?)
    }

    /// Streams every catalog event after `from_revision` (the last revision the caller
    /// applied, 0 for none). See [`CatalogEvent`] for the ordering guarantees.
    pub async fn watch(
        &self,
        from_revision: Revision,
    ) -> Result<impl Stream<Item = Result<CatalogEvent, ClientError>> + Send + 'static, ClientError>
    {
        let stream = self
            .inner
            .clone()
            .watch(pb::WatchRequest {
                from_revision: from_revision.0,
            })
            .await?
            .into_inner();
        Ok(stream.map(|item| match item {
            Ok(event) => wire::event_from_pb(event).map_err(ClientError::from),
            Err(status) => Err(ClientError::from(status)),
        }))
    }

    /// Asks the registry to add member `node_id`, reachable at `address`, as a learner;
    /// it becomes a voter once caught up.
    pub async fn join(
        &self,
        node_id: u64,
        address: &str,
    ) -> Result<Vec<MemberStatus>, ClientError> {
        let response = self
            .inner
            .clone()
            .join(pb::JoinRequest {
                node_id,
                address: address.to_owned(),
            })
            .await?
            .into_inner();
        Ok(response.members.into_iter().map(member_from_pb).collect())
    }

    /// Removes member `node_id` (itself leaving, or a dead member).
    pub async fn leave(&self, node_id: u64) -> Result<(), ClientError> {
        self.inner
            .clone()
            .leave(pb::LeaveRequest { node_id })
            .await?;
        Ok(())
    }

    /// The member's view of the registry.
    pub async fn status(&self) -> Result<NodeStatus, ClientError> {
        let s = self
            .inner
            .clone()
            .status(pb::StatusRequest {})
            .await?
            .into_inner();
        Ok(NodeStatus {
            id: s.id,
            leader: s.leader,
            term: s.term,
            commit_index: s.commit_index,
            applied_index: s.applied_index,
            revision: Revision(s.revision),
            role: s.role,
            members: s.members.into_iter().map(member_from_pb).collect(),
            fault_tolerant: s.fault_tolerant,
            snapshot_index: s.snapshot_index,
            first_index: s.first_index,
        })
    }
}

fn member_from_pb(m: pb::Member) -> MemberStatus {
    MemberStatus {
        id: m.id,
        address: m.address,
        voter: m.voter,
        matched: m.matched,
        next_index: m.next_index,
        progress: m.progress,
    }
}
