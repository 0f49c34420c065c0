//! A Service's EndpointSlices, as the controllers read them: which endpoints are
//! ready, and at which addresses.

use std::collections::HashSet;
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::ListParams;
use kube::{Api, Client};

/// The label tying an EndpointSlice to its Service (kube-proxy reads it).
pub const SERVICE_LABEL: &str = "kubernetes.io/service-name";

/// The EndpointSlices of the Service `namespace/service`.
pub(crate) async fn of_service(
    client: &Client,
    namespace: &str,
    service: &str,
) -> Result<Vec<EndpointSlice>, kube::Error> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{SERVICE_LABEL}={service}");
    Ok(slices
        .list(&ListParams::default().labels(&selector))
        .await?
        .items)
}

/// Whether an endpoint takes new traffic: `conditions.ready` is not false (a
/// terminating pod's endpoint is not ready).
fn is_ready(endpoint: &Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false)
}

/// The ready endpoints across `slices`: an endpoint listed in two slices (one per
/// address family) counts once, keyed by its target (the Pod) when it names one.
pub(crate) fn ready_count(slices: &[EndpointSlice]) -> u32 {
    let mut ready = HashSet::new();
    for endpoint in slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| is_ready(e))
    {
        let target = endpoint.target_ref.as_ref();
        let key = target
            .and_then(|t| t.uid.clone().or_else(|| t.name.clone()))
            .unwrap_or_else(|| endpoint.addresses.join(","));
        ready.insert(key);
    }
    u32::try_from(ready.len()).unwrap_or(u32::MAX)
}

/// The addresses of the ready endpoints across `slices`, sorted, each once;
/// addresses that do not parse are skipped.
pub(crate) fn ready_addresses(slices: &[EndpointSlice]) -> Vec<IpAddr> {
    let mut addresses: Vec<IpAddr> = slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| is_ready(e))
        .flat_map(|e| &e.addresses)
        .filter_map(|a| a.parse().ok())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses
}
