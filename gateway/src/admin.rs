//! Admin HTTP on loopback: `/metrics`, `/live`, `/ready`, `/v1/status`,
//! `/v1/replicas`, and the few
//! mutating calls the CLI makes (`link`, `unlink`, `export`, `unexport`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::config::ExportConfig;
use crate::status::{ReplicaState, StatusReport};

/// Largest request body accepted: requests are small JSON documents.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the admin endpoint can ask of a gateway.
pub trait AdminApi: Send + Sync + 'static {
    /// The gateway's status now.
    fn status(&self) -> StatusReport;
    /// Prometheus text exposition of every metric.
    fn metrics_text(&self) -> String;
    /// Every replica of this cluster the catalog lists, this one first, each asked
    /// for its catalog revision.
    fn replicas(&self) -> impl Future<Output = Vec<ReplicaState>> + Send;
    /// Joins the federation through the registry member at `peer`.
    fn link(&self, peer: SocketAddr) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Removes a cluster (its registry seat and its exports) from the federation.
    fn unlink(&self, cluster: String) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Takes one gone replica of a cluster's gateway off the catalog's list, with
    /// its registry seat; the cluster and its exports stay.
    fn unlink_replica(
        &self,
        cluster: String,
        replica: String,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Adds or replaces one export of this cluster.
    fn put_export(
        &self,
        export: ExportConfig,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Removes one export of this cluster.
    fn delete_export(
        &self,
        namespace: String,
        name: String,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
}

/// A refused or failed admin call.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status to answer with.
    #[serde(skip, default = "default_status")]
    pub status: u16,
    /// What went wrong and what to do.
    pub message: String,
}

fn default_status() -> u16 {
    500
}

impl ApiError {
    /// The request itself was wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// The gateway could not do it now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            status: 503,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

/// The answer to a successful mutating call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiOk {
    /// What was done.
    pub message: String,
}

/// Body of `POST /v1/link`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// A registry member's address.
    pub peer: SocketAddr,
}

/// Serves the admin API on `listener` until `shutdown` resolves.
pub async fn serve<A: AdminApi>(
    listener: TcpListener,
    api: Arc<A>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/live", get(|| async { "ok\n" }))
        .route("/ready", get(ready::<A>))
        .route("/metrics", get(metrics::<A>))
        .route("/v1/status", get(status::<A>))
        .route("/v1/replicas", get(replicas::<A>))
        .route("/v1/link", post(link::<A>))
        .route("/v1/clusters/{cluster}", delete(unlink::<A>))
        .route(
            "/v1/clusters/{cluster}/replicas/{replica}",
            delete(unlink_replica::<A>),
        )
        .route("/v1/exports", put(put_export::<A>))
        .route("/v1/exports/{namespace}/{name}", delete(delete_export::<A>))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ready<A: AdminApi>(State(api): State<Arc<A>>) -> Response {
    let status = api.status();
    let body = serde_json::json!({ "ready": status.ready, "reasons": status.not_ready });
    let code = if status.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics<A: AdminApi>(State(api): State<Arc<A>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics_text(),
    )
        .into_response()
}

async fn status<A: AdminApi>(State(api): State<Arc<A>>) -> Json<StatusReport> {
    Json(api.status())
}

async fn replicas<A: AdminApi>(State(api): State<Arc<A>>) -> Json<Vec<ReplicaState>> {
    Json(api.replicas().await)
}

fn done(result: Result<String, ApiError>) -> Response {
    match result {
        Ok(message) => Json(ApiOk { message }).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn link<A: AdminApi>(State(api): State<Arc<A>>, Json(req): Json<LinkRequest>) -> Response {
    done(api.link(req.peer).await)
}

async fn unlink<A: AdminApi>(State(api): State<Arc<A>>, Path(cluster): Path<String>) -> Response {
    done(api.unlink(cluster).await)
}

async fn unlink_replica<A: AdminApi>(
    State(api): State<Arc<A>>,
    Path((cluster, replica)): Path<(String, String)>,
) -> Response {
    done(api.unlink_replica(cluster, replica).await)
}

async fn put_export<A: AdminApi>(
    State(api): State<Arc<A>>,
    Json(export): Json<ExportConfig>,
) -> Response {
    done(api.put_export(export).await)
}

async fn delete_export<A: AdminApi>(
    State(api): State<Arc<A>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    done(api.delete_export(namespace, name).await)
}
