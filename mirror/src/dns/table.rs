//! The immutable zone table the DNS workers answer from, and the builder that makes it.
//!
//! Every answer is encoded once, when the table is built, as the bytes that follow the
//! question section of a response whose question is that very name. Name compression
//! pointers in those bytes point into the question (always at offset 12) or into earlier
//! records, so a query's answer is its header, its own question bytes and a copy.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::Query;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};

use super::config::DnsConfig;
use super::records::{NamedPort, PortProtocol, ServiceRecords};
use crate::config::ConfigError;

/// SOA timers for a zone nobody transfers: they only matter to secondaries, which
/// this authority does not have, so the RFC 1912 §2.2 suggestions are used.
const SOA_REFRESH: i32 = 3600;
const SOA_RETRY: i32 = 600;
const SOA_EXPIRE: i32 = 604_800;

/// Why a service could not be put in the zone.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// A label of the service is not a valid DNS label or the name is too long.
    #[error("service {namespace}/{name} cannot be named in DNS: {reason}")]
    BadName {
        /// The service's namespace.
        namespace: String,
        /// The service's name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The records could not be encoded.
    #[error("encoding records for {owner}: {reason}")]
    Encode {
        /// The owner name.
        owner: String,
        /// What went wrong.
        reason: String,
    },
}

/// Zone-wide settings, fixed for the life of a builder.
#[derive(Debug)]
pub(crate) struct ZoneSettings {
    pub(crate) zone: Name,
    /// The zone in lowercase wire format, root label included.
    pub(crate) zone_wire: Box<[u8]>,
    pub(crate) ttl: u32,
    pub(crate) max_udp_payload: u16,
    nameserver: Name,
    nameserver_addresses: Vec<IpAddr>,
    hasher: NameHashBuilder,
}

/// The records of one name and one type, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RrSet {
    pub(crate) rtype: RecordType,
    pub(crate) answer: Box<[u8]>,
    pub(crate) answer_count: u16,
    pub(crate) additional: Box<[u8]>,
    pub(crate) additional_count: u16,
}

/// Everything at one name. An entry without RRsets is an empty non-terminal: the
/// name exists (NODATA) because names below it do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct NameEntry {
    pub(crate) rrsets: Vec<RrSet>,
}

/// Everything at one name in one allocation, so that answering costs as few cache
/// misses as possible: `[key length][key][RRset count]`, then per RRset
/// `[type][answer count][additional count][answer length][additional length]` (each
/// 16 bits, big-endian) followed by the answer and additional bytes.
#[derive(Debug, Clone)]
pub(crate) struct NameBlob(Box<[u8]>);

/// One RRset inside a [`NameBlob`].
pub(crate) struct RrSetRef<'a> {
    pub(crate) rtype: RecordType,
    pub(crate) answer: &'a [u8],
    pub(crate) answer_count: u16,
    pub(crate) additional: &'a [u8],
    pub(crate) additional_count: u16,
}

impl NameBlob {
    fn new(key: &[u8], entry: &NameEntry) -> Self {
        let size = 2
            + key.len()
            + entry
                .rrsets
                .iter()
                .map(|r| 10 + r.answer.len() + r.additional.len())
                .sum::<usize>();
        let mut bytes = Vec::with_capacity(size);
        bytes.push(key.len() as u8);
        bytes.extend_from_slice(key);
        bytes.push(entry.rrsets.len() as u8);
        for set in &entry.rrsets {
            for field in [
                u16::from(set.rtype),
                set.answer_count,
                set.additional_count,
                set.answer.len() as u16,
                set.additional.len() as u16,
            ] {
                bytes.extend_from_slice(&field.to_be_bytes());
            }
            bytes.extend_from_slice(&set.answer);
            bytes.extend_from_slice(&set.additional);
        }
        Self(bytes.into_boxed_slice())
    }

    /// An empty non-terminal.
    fn empty(key: &[u8]) -> Self {
        Self::new(key, &NameEntry::default())
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.0[1..1 + self.0[0] as usize]
    }

    fn is_empty_non_terminal(&self) -> bool {
        self.0[1 + self.0[0] as usize] == 0
    }

    /// The RRsets, in the order they were encoded.
    pub(crate) fn rrsets(&self) -> impl Iterator<Item = RrSetRef<'_>> {
        let count_at = 1 + self.0[0] as usize;
        let mut at = count_at + 1;
        (0..self.0[count_at]).map(move |_| {
            let field = |i: usize| u16::from_be_bytes([self.0[at + 2 * i], self.0[at + 2 * i + 1]]);
            let (rtype, answer_count, additional_count) = (field(0), field(1), field(2));
            let (answer_len, additional_len) = (field(3) as usize, field(4) as usize);
            let answer_at = at + 10;
            let additional_at = answer_at + answer_len;
            at = additional_at + additional_len;
            RrSetRef {
                rtype: RecordType::from(rtype),
                answer: &self.0[answer_at..additional_at],
                answer_count,
                additional: &self.0[additional_at..at],
                additional_count,
            }
        })
    }
}

impl PartialEq for NameBlob {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for NameBlob {}

impl std::hash::Hash for NameBlob {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for NameBlob {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// Names are spread over this many shards. An update copies only the shards it
/// touches, so publishing a change costs the same with ten services or ten thousand.
const SHARDS: usize = 1024;

/// One shard of the name index.
type Shard = HashSet<NameBlob, NameHashBuilder>;

/// Hashes wire names eight bytes at a time with a per-process random seed: several
/// times cheaper than SipHash on the hot path, and its seed keeps collisions from
/// being precomputed. Only names from the catalog are ever inserted; queries only
/// look up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NameHashBuilder {
    seed: u64,
}

impl NameHashBuilder {
    fn random() -> Self {
        use std::hash::BuildHasher as _;
        Self {
            seed: std::collections::hash_map::RandomState::new()
                .hash_one(0x6361_7573_6577_6179_u64),
        }
    }
}

impl std::hash::BuildHasher for NameHashBuilder {
    type Hasher = NameHasher;
    fn build_hasher(&self) -> NameHasher {
        NameHasher(self.seed)
    }
}

/// See [`NameHashBuilder`].
#[derive(Debug)]
pub(crate) struct NameHasher(u64);

impl NameHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(
                chunk.try_into().expect("chunks of eight"),
            ));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3's finalizer: every input bit reaches the top bits the table uses.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The shard a wire name lives in.
#[inline]
fn shard_of(hasher: &NameHashBuilder, key: &[u8]) -> usize {
    use std::hash::BuildHasher as _;
    (hasher.hash_one(key) >> 40) as usize % SHARDS
}

/// A complete, immutable view of the zone. Workers read it through an atomic pointer;
/// updates build a new one and swap it in.
#[derive(Debug)]
pub struct DnsTable {
    pub(crate) settings: Arc<ZoneSettings>,
    shards: Vec<Arc<Shard>>,
    apex: NameBlob,
    nameserver: NameBlob,
    /// The SOA record after its owner name, names uncompressed, for negative answers.
    pub(crate) soa_tail: Box<[u8]>,
    serial: u32,
    services: usize,
    names: usize,
}

impl DnsTable {
    /// The SOA serial of this version of the zone.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// How many services the zone names.
    pub fn service_count(&self) -> usize {
        self.services
    }

    /// How many names (including empty non-terminals) the zone holds.
    pub fn name_count(&self) -> usize {
        self.names
    }

    /// Every name in the shards with its entry, sorted (for tests).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> BTreeMap<Box<[u8]>, Box<[u8]>> {
        self.shards
            .iter()
            .flat_map(|shard| shard.iter())
            .map(|blob| (blob.key().into(), blob.0.clone()))
            .collect()
    }

    /// The entry of a lowercase wire name.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&NameBlob> {
        if *key == *self.settings.zone_wire {
            return Some(&self.apex);
        }
        if key == self.nameserver.key() {
            return Some(&self.nameserver);
        }
        self.shards[shard_of(&self.settings.hasher, key)].get(key)
    }
}

/// The names one service put in the zone.
#[derive(Debug, Default)]
struct ServiceNames {
    /// Names only this service has.
    own: Vec<Box<[u8]>>,
    /// Empty non-terminals above them, shared with other services (reference counted).
    between: Vec<Box<[u8]>>,
}

/// Keeps the zone's names and builds [`DnsTable`]s from them.
///
/// Upserting a service re-encodes only that service and copies only the shards it
/// touches; building a table shares every shard with the previous one.
#[derive(Debug)]
pub struct ZoneBuilder {
    settings: Arc<ZoneSettings>,
    shards: Vec<Arc<Shard>>,
    services: BTreeMap<(String, String), ServiceNames>,
    /// How many services need each empty non-terminal.
    between_refs: HashMap<Box<[u8]>, u32>,
    nameserver: NameBlob,
    serial: u32,
}

impl ZoneBuilder {
    /// A builder for the zone `config` describes, with no services.
    pub fn new(config: &DnsConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let zone = config.zone_name()?.to_lowercase();
        let nameserver = zone
            .prepend_label("ns")
            .expect("the zone leaves room for one more label (checked in validate)");
        let settings = ZoneSettings {
            zone_wire: wire_key(&zone).into_boxed_slice(),
            zone,
            ttl: config.ttl_seconds,
            max_udp_payload: config.max_udp_payload,
            nameserver,
            nameserver_addresses: config.effective_nameserver_addresses(),
            hasher: NameHashBuilder::random(),
        };
        let hasher = settings.hasher;
        let mut nameserver_entry = NameEntry::default();
        push_addresses(
            &mut nameserver_entry,
            &settings.nameserver,
            settings.ttl,
            &settings.nameserver_addresses,
        )
        .expect("address records encode");
        // Serials only have to grow; starting from the clock keeps them growing across
        // restarts too.
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        Ok(Self {
            nameserver: NameBlob::new(&wire_key(&settings.nameserver), &nameserver_entry),
            settings: Arc::new(settings),
            shards: (0..SHARDS)
                .map(|_| Arc::new(Shard::with_hasher(hasher)))
                .collect(),
            services: BTreeMap::new(),
            between_refs: HashMap::new(),
            serial,
        })
    }

    /// The zone's apex name.
    pub fn zone(&self) -> &Name {
        &self.settings.zone
    }

    fn shard_mut(&mut self, key: &[u8]) -> &mut Shard {
        Arc::make_mut(&mut self.shards[shard_of(&self.settings.hasher, key)])
    }

    /// Adds a service, or replaces what the zone says about it.
    ///
    /// On error the zone keeps its previous records for the service.
    pub fn upsert(&mut self, service: &ServiceRecords) -> Result<(), ZoneError> {
        let entries = encode_service(&self.settings, service)?;
        self.remove(&service.namespace, &service.name);
        let own: BTreeSet<&[u8]> = entries.iter().map(|(key, _)| &**key).collect();
        let mut between = BTreeSet::new();
        let zone_len = self.settings.zone_wire.len();
        for key in &own {
            let mut offset = 0;
            loop {
                offset += 1 + key[offset] as usize;
                let suffix = &key[offset..];
                if suffix.len() <= zone_len {
                    break;
                }
                if !own.contains(suffix) {
                    between.insert(Box::<[u8]>::from(suffix));
                }
            }
        }
        let mut names = ServiceNames {
            own: Vec::with_capacity(entries.len()),
            between: between.into_iter().collect(),
        };
        for (key, entry) in entries {
            self.shard_mut(&key).replace(NameBlob::new(&key, &entry));
            names.own.push(key);
        }
        for key in &names.between {
            let refs = self.between_refs.entry(key.clone()).or_insert(0);
            *refs += 1;
            if *refs == 1 {
                let shard = self.shard_mut(key);
                if !shard.contains(&**key) {
                    shard.insert(NameBlob::empty(key));
                }
            }
        }
        self.services
            .insert((service.namespace.clone(), service.name.clone()), names);
        Ok(())
    }

    /// Removes a service's names; returns whether it was there.
    pub fn remove(&mut self, namespace: &str, name: &str) -> bool {
        let Some(names) = self
            .services
            .remove(&(namespace.to_owned(), name.to_owned()))
        else {
            return false;
        };
        for key in &names.own {
            self.shard_mut(key).remove(&**key);
        }
        for key in &names.between {
            let Some(refs) = self.between_refs.get_mut(key) else {
                continue;
            };
            *refs -= 1;
            if *refs == 0 {
                self.between_refs.remove(key);
                let shard = self.shard_mut(key);
                if shard
                    .get(&**key)
                    .is_some_and(NameBlob::is_empty_non_terminal)
                {
                    shard.remove(&**key);
                }
            }
        }
        true
    }

    /// How many services the builder holds.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether the builder holds no service.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Builds the next version of the zone, with a higher serial.
    pub fn build(&mut self) -> DnsTable {
        self.serial = self.serial.wrapping_add(1);
        let settings = &self.settings;
        DnsTable {
            settings: settings.clone(),
            shards: self.shards.clone(),
            apex: NameBlob::new(&settings.zone_wire, &apex_entry(settings, self.serial)),
            nameserver: self.nameserver.clone(),
            soa_tail: soa_tail(settings, self.serial),
            serial: self.serial,
            services: self.services.len(),
            names: self.shards.iter().map(|s| s.len()).sum::<usize>() + 2,
        }
    }
}

// === encoding ===

/// The encoded names of one service, keyed by lowercase wire name.
type EncodedNames = Vec<(Box<[u8]>, Arc<NameEntry>)>;

/// A name in lowercase wire format, as used for table keys.
pub(crate) fn wire_key(name: &Name) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        key.push(label.len() as u8);
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    key
}

fn soa_record(settings: &ZoneSettings, serial: u32) -> Record {
    let soa = SOA::new(
        settings.nameserver.clone(),
        settings
            .zone
            .prepend_label("hostmaster")
            .expect("the zone leaves room for one more label"),
        serial,
        SOA_REFRESH,
        SOA_RETRY,
        SOA_EXPIRE,
        settings.ttl,
    );
    Record::from_rdata(settings.zone.clone(), settings.ttl, RData::SOA(soa))
}

fn soa_tail(settings: &ZoneSettings, serial: u32) -> Box<[u8]> {
    let record = soa_record(settings, serial);
    let mut buf = Vec::with_capacity(128);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_name_encoding(NameEncoding::Uncompressed);
    record
        .emit(&mut encoder)
        .expect("an SOA of a validated zone encodes");
    buf[settings.zone_wire.len()..].into()
}

fn address_records(owner: &Name, ttl: u32, addresses: &[IpAddr]) -> (Vec<Record>, Vec<Record>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for address in addresses {
        match address {
            IpAddr::V4(a) => v4.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*a)))),
            IpAddr::V6(a) => v6.push(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::AAAA(AAAA(*a)),
            )),
        }
    }
    (v4, v6)
}

/// Encodes `answers` and `additional` as they follow a question for `owner`.
fn encode_rrset(
    owner: &Name,
    rtype: RecordType,
    answers: &[Record],
    additional: &[Record],
) -> Result<RrSet, ZoneError> {
    let fail = |e: hickory_proto::ProtoError| ZoneError::Encode {
        owner: owner.to_string(),
        reason: e.to_string(),
    };
    let mut buf = Vec::with_capacity(256);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.emit_vec(&[0; 12]).map_err(fail)?;
    Query::query(owner.clone(), rtype)
        .emit(&mut encoder)
        .map_err(fail)?;
    let start = encoder.offset();
    for record in answers {
        record.emit(&mut encoder).map_err(fail)?;
    }
    let middle = encoder.offset();
    for record in additional {
        record.emit(&mut encoder).map_err(fail)?;
    }
    if buf.len() > usize::from(u16::MAX) {
        return Err(ZoneError::Encode {
            owner: owner.to_string(),
            reason: format!("{} bytes do not fit in one DNS message", buf.len()),
        });
    }
    let too_many = |_| ZoneError::Encode {
        owner: owner.to_string(),
        reason: "more than 65535 records".to_owned(),
    };
    Ok(RrSet {
        rtype,
        answer: buf[start..middle].into(),
        answer_count: u16::try_from(answers.len()).map_err(too_many)?,
        additional: buf[middle..].into(),
        additional_count: u16::try_from(additional.len()).map_err(too_many)?,
    })
}

/// Adds A and AAAA RRsets for `addresses` to `entry`.
fn push_addresses(
    entry: &mut NameEntry,
    owner: &Name,
    ttl: u32,
    addresses: &[IpAddr],
) -> Result<(), ZoneError> {
    let (v4, v6) = address_records(owner, ttl, addresses);
    if !v4.is_empty() {
        entry
            .rrsets
            .push(encode_rrset(owner, RecordType::A, &v4, &[])?);
    }
    if !v6.is_empty() {
        entry
            .rrsets
            .push(encode_rrset(owner, RecordType::AAAA, &v6, &[])?);
    }
    Ok(())
}

fn child(parent: &Name, label: &str, service: &ServiceRecords) -> Result<Name, ZoneError> {
    parent.prepend_label(label).map_err(|e| ZoneError::BadName {
        namespace: service.namespace.clone(),
        name: service.name.clone(),
        reason: e.to_string(),
    })
}

fn checked_label(label: &str, service: &ServiceRecords) -> Result<(), ZoneError> {
    causeway_trust::validate_label("DNS label", label).map_err(|e| ZoneError::BadName {
        namespace: service.namespace.clone(),
        name: service.name.clone(),
        reason: e.to_string(),
    })
}

/// One SRV target: the pinned name of a cluster, its port, weight and addresses.
struct SrvTarget<'a> {
    target: &'a Name,
    port: u16,
    weight: u16,
    addresses: &'a [IpAddr],
}

fn srv_entry(owner: &Name, ttl: u32, targets: &[SrvTarget<'_>]) -> Result<NameEntry, ZoneError> {
    let answers: Vec<Record> = targets
        .iter()
        .map(|t| {
            let srv = SRV::new(0, t.weight, t.port, t.target.clone());
            Record::from_rdata(owner.clone(), ttl, RData::SRV(srv))
        })
        .collect();
    let mut additional = Vec::new();
    for t in targets {
        let (v4, v6) = address_records(t.target, ttl, t.addresses);
        additional.extend(v4);
        additional.extend(v6);
    }
    Ok(NameEntry {
        rrsets: vec![encode_rrset(owner, RecordType::SRV, &answers, &additional)?],
    })
}

fn encode_service(
    settings: &ZoneSettings,
    service: &ServiceRecords,
) -> Result<EncodedNames, ZoneError> {
    let ttl = settings.ttl;
    checked_label(&service.namespace, service)?;
    checked_label(&service.name, service)?;
    let svc_parent = child(&settings.zone, "svc", service)?;
    let base = child(
        &child(&svc_parent, &service.namespace, service)?,
        &service.name,
        service,
    )?;

    let mut out = Vec::new();
    let mut base_entry = NameEntry::default();
    push_addresses(&mut base_entry, &base, ttl, &service.addresses)?;
    out.push((wire_key(&base), base_entry));

    // Pinned names first: SRV records point at them.
    let mut pinned = Vec::with_capacity(service.clusters.len());
    for cluster in &service.clusters {
        let name = child(&base, cluster.cluster.as_str(), service)?;
        let mut entry = NameEntry::default();
        push_addresses(&mut entry, &name, ttl, &cluster.addresses)?;
        out.push((wire_key(&name), entry));
        pinned.push(name);
    }

    // `_<port>._<proto>.<svc>...`: every cluster exporting that named port;
    // `_<port>._<proto>.<cluster>.<svc>...`: that cluster only.
    let mut by_port: BTreeMap<(&str, PortProtocol), Vec<SrvTarget<'_>>> = BTreeMap::new();
    for (cluster, target) in service.clusters.iter().zip(&pinned) {
        for NamedPort {
            name,
            protocol,
            port,
        } in &cluster.ports
        {
            if checked_label(name, service).is_err() {
                // An unnamed or odd port gets no SRV record; its address records stand.
                continue;
            }
            let srv_target = SrvTarget {
                target,
                port: *port,
                weight: cluster.weight,
                addresses: &cluster.addresses,
            };
            let owner = child(
                &child(target, &format!("_{protocol}"), service)?,
                &format!("_{name}"),
                service,
            )?;
            out.push((
                wire_key(&owner),
                srv_entry(&owner, ttl, std::slice::from_ref(&srv_target))?,
            ));
            by_port
                .entry((name.as_str(), *protocol))
                .or_default()
                .push(srv_target);
        }
    }
    for ((name, protocol), targets) in &by_port {
        let owner = child(
            &child(&base, &format!("_{protocol}"), service)?,
            &format!("_{name}"),
            service,
        )?;
        out.push((wire_key(&owner), srv_entry(&owner, ttl, targets)?));
    }
    Ok(out
        .into_iter()
        .map(|(key, entry)| (key.into_boxed_slice(), Arc::new(entry)))
        .collect())
}

fn apex_entry(settings: &ZoneSettings, serial: u32) -> NameEntry {
    let ttl = settings.ttl;
    let zone = &settings.zone;
    let soa = soa_record(settings, serial);
    let ns = Record::from_rdata(
        zone.clone(),
        ttl,
        RData::NS(NS(settings.nameserver.clone())),
    );
    let (v4, v6) = address_records(&settings.nameserver, ttl, &settings.nameserver_addresses);
    let glue: Vec<Record> = v4.into_iter().chain(v6).collect();
    NameEntry {
        rrsets: vec![
            encode_rrset(zone, RecordType::SOA, &[soa], &[]).expect("the SOA encodes"),
            encode_rrset(zone, RecordType::NS, &[ns], &glue).expect("the NS record encodes"),
        ],
    }
}
