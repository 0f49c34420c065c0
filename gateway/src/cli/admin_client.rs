//! A client of a running gateway's admin HTTP endpoint, and where to find it: what
//! every command that talks to a gateway (`status`, `check`, `link`, `token create`,
//! ...) shares.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::admin::{ApiError, ApiOk, LinkRequest};
use crate::config::ExportConfig;
use crate::status::{ReplicaState, StatusReport};

/// The default admin address of a gateway on this host.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15090";

/// Where the gateway's admin endpoint is.
#[derive(Debug, Clone, Args)]
pub struct AdminTarget {
    /// The gateway's admin address.
    #[arg(long, env = "CAUSEWAY_ADMIN", default_value = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
}

/// A client of one gateway's admin endpoint.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the gateway at `admin`.
    pub fn new(admin: SocketAddr) -> Self {
        Self {
            base: format!("http://{admin}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client builds"),
        }
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusReport> {
        let url = format!("{}/v1/status", self.base);
        let resp = self.http.get(&url).send().await.with_context(|| {
            format!("cannot reach the gateway's admin endpoint at {url}; is `causeway gateway run` running, and is --admin right?")
        })?;
        Ok(resp.error_for_status()?.json().await?)
    }

    /// `GET /v1/replicas`.
    pub async fn replicas(&self) -> Result<Vec<ReplicaState>> {
        let url = format!("{}/v1/replicas", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway's admin endpoint at {url}"))?;
        Ok(resp.error_for_status()?.json().await?)
    }

    async fn answer(resp: reqwest::Response) -> Result<String> {
        if resp.status().is_success() {
            Ok(resp.json::<ApiOk>().await?.message)
        } else {
            let status = resp.status();
            match resp.json::<ApiError>().await {
                Ok(e) => bail!("{}", e.message),
                Err(_) => bail!("the gateway answered {status}"),
            }
        }
    }

    /// `POST /v1/link`.
    pub async fn link(&self, peer: SocketAddr) -> Result<String> {
        let resp = self
            .http
            .post(format!("{}/v1/link", self.base))
            .json(&LinkRequest { peer })
            .timeout(Duration::from_secs(120))
            .send()
            .await?;
        Self::answer(resp).await
    }

    /// `DELETE /v1/clusters/{cluster}`.
    pub async fn unlink(&self, cluster: &str) -> Result<String> {
        let resp = self
            .http
            .delete(format!("{}/v1/clusters/{cluster}", self.base))
            .send()
            .await?;
        Self::answer(resp).await
    }

    /// `DELETE /v1/clusters/{cluster}/replicas/{replica}`.
    pub async fn unlink_replica(&self, cluster: &str, replica: &str) -> Result<String> {
        let resp = self
            .http
            .delete(format!(
                "{}/v1/clusters/{cluster}/replicas/{replica}",
                self.base
            ))
            .send()
            .await?;
        Self::answer(resp).await
    }

    /// `PUT /v1/exports`.
    pub async fn export(&self, export: &ExportConfig) -> Result<String> {
        let resp = self
            .http
            .put(format!("{}/v1/exports", self.base))
            .json(export)
            .send()
            .await?;
        Self::answer(resp).await
    }

    /// `DELETE /v1/exports/{namespace}/{name}`.
    pub async fn unexport(&self, namespace: &str, name: &str) -> Result<String> {
        let resp = self
            .http
            .delete(format!("{}/v1/exports/{namespace}/{name}", self.base))
            .send()
            .await?;
        Self::answer(resp).await
    }
}
