//! Counters of the DNS authority.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::answer::{Rcode, Transport};

/// The transport label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum TransportLabel {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl From<Transport> for TransportLabel {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Udp => TransportLabel::Udp,
            Transport::Tcp => TransportLabel::Tcp,
        }
    }
}

/// The response code label (NODATA is told apart from NOERROR with records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(missing_docs)]
pub enum RcodeLabel {
    Noerror,
    Nodata,
    Nxdomain,
    Refused,
    Formerr,
    Notimp,
    Badvers,
}

impl From<Rcode> for RcodeLabel {
    fn from(r: Rcode) -> Self {
        match r {
            Rcode::NoError => RcodeLabel::Noerror,
            Rcode::NoData => RcodeLabel::Nodata,
            Rcode::NxDomain => RcodeLabel::Nxdomain,
            Rcode::Refused => RcodeLabel::Refused,
            Rcode::FormErr => RcodeLabel::Formerr,
            Rcode::NotImp => RcodeLabel::Notimp,
            Rcode::BadVers => RcodeLabel::Badvers,
        }
    }
}

/// Labels of the query counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueryLabels {
    /// How the query arrived.
    pub transport: TransportLabel,
    /// The response code sent.
    pub rcode: RcodeLabel,
}

/// The DNS authority's metrics.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Queries answered, by transport and response code.
    pub queries: Family<QueryLabels, Counter>,
    /// UDP answers that did not fit and were sent with TC set.
    pub truncated: Counter,
    /// Datagrams and TCP frames dropped without an answer (too short, or responses).
    pub dropped: Counter,
    /// The SOA serial of the table being served.
    pub serial: Gauge,
    /// Services named by the table being served.
    pub services: Gauge,
}

impl Metrics {
    /// Registers every metric under `causeway_dns_`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("causeway_dns");
        sub.register(
            "queries",
            "DNS queries answered, by transport and response code",
            self.queries.clone(),
        );
        sub.register(
            "truncated",
            "UDP answers sent truncated so that the client retries over TCP",
            self.truncated.clone(),
        );
        sub.register(
            "dropped",
            "DNS messages dropped without an answer",
            self.dropped.clone(),
        );
        sub.register(
            "zone_serial",
            "SOA serial of the zone being served",
            self.serial.clone(),
        );
        sub.register(
            "zone_services",
            "Services in the zone being served",
            self.services.clone(),
        );
    }

    /// Counter handles for one transport, indexed like [`Rcode::ALL`], so that the hot
    /// path increments an atomic without a label lookup.
    pub(crate) fn per_rcode(&self, transport: Transport) -> [Counter; 7] {
        Rcode::ALL.map(|rcode| {
            self.queries
                .get_or_create(&QueryLabels {
                    transport: transport.into(),
                    rcode: rcode.into(),
                })
                .clone()
        })
    }
}

/// Index of `rcode` in [`Rcode::ALL`].
pub(crate) fn rcode_index(rcode: Rcode) -> usize {
    Rcode::ALL
        .iter()
        .position(|r| *r == rcode)
        .expect("ALL lists every code")
}
