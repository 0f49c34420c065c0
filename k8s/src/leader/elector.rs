//! The driver: reads and writes the Lease as the [`Candidate`] decides, and
//! reports leadership changes.

use std::future::Future;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::chrono::Utc;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::candidate::{Candidate, Step};
use super::{Leadership, LeaseConfig};

/// Why one request about the Lease failed.
#[derive(Debug)]
enum Failure {
    /// `409`: another replica wrote the Lease since it was read.
    Conflict,
    /// Anything else: the API server unreachable or slow, access denied.
    Other(String),
}

/// Keeps this replica's claim on the Lease until shut down.
pub struct Elector {
    api: Api<Lease>,
    candidate: Candidate,
    leading: watch::Sender<bool>,
}

impl Elector {
    /// An elector for `config`'s Lease; nothing is sent until [`Elector::run`].
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        let (leading, _) = Leadership::channel(false);
        Self {
            api,
            candidate: Candidate::new(config),
            leading,
        }
    }

    /// Whether this replica leads, as it changes.
    pub fn leadership(&self) -> Leadership {
        Leadership {
            leading: self.leading.subscribe(),
        }
    }

    /// Competes for the Lease until `shutdown` completes, then releases it if held.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = self.round() => {}
            }
            let wait = self.candidate.next_wait();
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.release().await;
    }

    /// One read (unless leading: the last write is what the Lease holds) and at
    /// most one write.
    async fn round(&mut self) {
        let now = Instant::now();
        if !self.candidate.leads() {
            match self.request(self.api.get_opt(&self.name())).await {
                Ok(lease) => self.candidate.observe(lease, now),
                Err(failure) => {
                    debug!(lease = %self.name(), ?failure, "reading the Lease failed");
                    return;
                }
            }
        }
        let written = match self.candidate.step(now, Utc::now()) {
            Step::Wait => {
                self.publish();
                return;
            }
            Step::Create(lease) => {
                self.request(self.api.create(&PostParams::default(), &lease))
                    .await
            }
            Step::Replace(lease) => {
                let params = PostParams::default();
                self.request(self.api.replace(&self.name(), &params, &lease))
                    .await
            }
        };
        match written {
            Ok(lease) => self.candidate.won(lease, now),
            Err(Failure::Conflict) => self.candidate.lost(),
            Err(Failure::Other(error)) => {
                if self.candidate.failed(Instant::now()) {
                    warn!(lease = %self.name(), %error, "the Lease could not be renewed before the deadline; stepping down");
                } else {
                    debug!(lease = %self.name(), %error, "writing the Lease failed");
                }
            }
        }
        self.publish();
    }

    /// Stops leading, then clears the holder so another replica takes over at once.
    async fn release(&mut self) {
        let Some(lease) = self.candidate.release(Utc::now()) else {
            return;
        };
        self.publish();
        let params = PostParams::default();
        match self
            .request(self.api.replace(&self.name(), &params, &lease))
            .await
        {
            Ok(_) => info!(lease = %self.name(), "Lease released"),
            Err(failure) => {
                warn!(lease = %self.name(), ?failure, "releasing the Lease failed; it expires instead")
            }
        }
    }

    /// Tells the consumers when leadership changed.
    fn publish(&self) {
        let leads = self.candidate.leads();
        let changed = self.leading.send_if_modified(|leading| {
            let changed = *leading != leads;
            *leading = leads;
            changed
        });
        if changed {
            let identity = &self.candidate.config().identity;
            info!(lease = %self.name(), %identity, leading = leads, "controller leadership changed");
        }
    }

    /// `call`, bounded by the retry period: a request hanging past the renew
    /// deadline must not keep a deposed leader writing.
    async fn request<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Failure> {
        let limit = self.candidate.config().timings.retry_period;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(kube::Error::Api(response))) if response.code == 409 => Err(Failure::Conflict),
            Ok(Err(error)) => Err(Failure::Other(error.to_string())),
            Err(_) => Err(Failure::Other(format!("no answer within {limit:?}"))),
        }
    }

    fn name(&self) -> String {
        self.candidate.config().name.clone()
    }
}
