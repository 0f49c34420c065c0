//! Answering one query from a [`DnsTable`]: bytes in, bytes out, no I/O.

use std::fmt;

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use super::config::MIN_UDP_PAYLOAD;
use super::table::DnsTable;

/// Longest name in wire format (RFC 1035 §3.1).
const MAX_NAME_WIRE_LEN: usize = 255;
/// Largest message a TCP frame carries (its length prefix is 16 bits).
const MAX_TCP_MESSAGE: usize = u16::MAX as usize;

/// The transport a query came over; it decides the size limit of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: 512 bytes, or the client's EDNS payload up to our configured maximum.
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

impl Transport {
    /// `udp` or `tcp`, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// The response code of an answer, as counted in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rcode {
    /// NOERROR with records.
    NoError,
    /// NOERROR without records: the name exists, the type does not.
    NoData,
    /// The name does not exist in the zone.
    NxDomain,
    /// The name is outside the zone, or the class or type is not served.
    Refused,
    /// The query could not be parsed.
    FormErr,
    /// The opcode is not QUERY.
    NotImp,
    /// The EDNS version is not 0.
    BadVers,
}

impl Rcode {
    /// Every code, for pre-creating metric series.
    pub const ALL: [Rcode; 7] = [
        Rcode::NoError,
        Rcode::NoData,
        Rcode::NxDomain,
        Rcode::Refused,
        Rcode::FormErr,
        Rcode::NotImp,
        Rcode::BadVers,
    ];

    /// Lowercase name for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Rcode::NoError => "noerror",
            Rcode::NoData => "nodata",
            Rcode::NxDomain => "nxdomain",
            Rcode::Refused => "refused",
            Rcode::FormErr => "formerr",
            Rcode::NotImp => "notimp",
            Rcode::BadVers => "badvers",
        }
    }

    fn wire(self) -> ResponseCode {
        match self {
            Rcode::NoError | Rcode::NoData => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::Refused => ResponseCode::Refused,
            Rcode::FormErr => ResponseCode::FormErr,
            Rcode::NotImp => ResponseCode::NotImp,
            Rcode::BadVers => ResponseCode::BADVERS,
        }
    }
}

impl fmt::Display for Rcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one query that got an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// The response code sent.
    pub rcode: Rcode,
    /// Whether the answer did not fit and was sent truncated (TC set, no records).
    pub truncated: bool,
}

/// The EDNS facts of a query.
#[derive(Clone, Copy)]
struct EdnsRequest {
    payload: u16,
    version: u8,
}

/// The sections after the question, chosen for the answer.
#[derive(Default)]
struct Sections<'a> {
    answer: &'a [u8],
    answer_count: u16,
    /// Negative answers carry the SOA: a pointer to the zone inside the question, then
    /// the record's tail.
    soa_pointer: Option<[u8; 2]>,
    additional: &'a [u8],
    additional_count: u16,
    authoritative: bool,
}

impl DnsTable {
    /// Answers `query` into `out` (cleared first). Returns `None` when nothing must be
    /// sent: the bytes are too short to carry an ID, or they are a response.
    pub fn respond(
        &self,
        query: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Option<Answered> {
        out.clear();
        let mut decoder = BinDecoder::new(query);
        let header = Header::read(&mut decoder).ok()?;
        if header.message_type != MessageType::Query {
            return None;
        }
        let mut reply = Metadata::response_from_request(&header.metadata);
        reply.checking_disabled = false;
        if header.op_code != OpCode::Query {
            return Some(self.write_bare(reply, Rcode::NotImp, out));
        }
        if header.counts.queries != 1 {
            return Some(self.write_bare(reply, Rcode::FormErr, out));
        }
        let question_start = decoder.index();
        let Ok(question) = Query::read(&mut decoder) else {
            return Some(self.write_bare(reply, Rcode::FormErr, out));
        };
        let question_bytes = &query[question_start..decoder.index()];
        let Some(edns) = read_edns(&mut decoder, header.counts) else {
            return Some(self.write_bare(reply, Rcode::FormErr, out));
        };

        let mut key = [0u8; MAX_NAME_WIRE_LEN];
        let Some(key_len) = lowercase_key(&question, &mut key) else {
            return Some(self.write_bare(reply, Rcode::FormErr, out));
        };
        // The precomputed answers point into the question at offset 12, so the
        // question must be the plain, uncompressed name the key was made from.
        if key_len + 4 != question_bytes.len() {
            return Some(self.write_bare(reply, Rcode::FormErr, out));
        }
        let key = &key[..key_len];

        let limit = match transport {
            Transport::Tcp => MAX_TCP_MESSAGE,
            Transport::Udp => match edns {
                Some(e) => e
                    .payload
                    .clamp(MIN_UDP_PAYLOAD, self.settings.max_udp_payload)
                    as usize,
                None => MIN_UDP_PAYLOAD as usize,
            },
        };
        if edns.is_some_and(|e| e.version != 0) {
            let sections = Sections::default();
            return Some(self.write(
                reply,
                Rcode::BadVers,
                question_bytes,
                &sections,
                edns,
                limit,
                out,
            ));
        }

        let (rcode, sections) = self.lookup(key, question.query_class(), question.query_type());
        Some(self.write(reply, rcode, question_bytes, &sections, edns, limit, out))
    }

    fn lookup(&self, key: &[u8], class: DNSClass, rtype: RecordType) -> (Rcode, Sections<'_>) {
        let zone_len = self.settings.zone_wire.len();
        let in_zone = key.len() >= zone_len
            && key[key.len() - zone_len..] == *self.settings.zone_wire
            && is_label_boundary(key, key.len() - zone_len);
        if !in_zone || class != DNSClass::IN {
            return (Rcode::Refused, Sections::default());
        }
        if matches!(rtype, RecordType::AXFR | RecordType::IXFR) {
            return (Rcode::Refused, Sections::default());
        }
        // The zone starts at this offset inside the question name (which is at 12).
        let zone_offset = 12 + key.len() - zone_len;
        let soa_pointer = Some([0xC0 | (zone_offset >> 8) as u8, zone_offset as u8]);
        let Some(entry) = self.get(key) else {
            let sections = Sections {
                soa_pointer,
                authoritative: true,
                ..Sections::default()
            };
            return (Rcode::NxDomain, sections);
        };
        // ANY gets one RRset (RFC 8482 allows a minimal answer).
        let found = entry
            .rrsets()
            .find(|set| set.rtype == rtype || rtype == RecordType::ANY);
        match found {
            Some(set) => (
                Rcode::NoError,
                Sections {
                    answer: set.answer,
                    answer_count: set.answer_count,
                    additional: set.additional,
                    additional_count: set.additional_count,
                    authoritative: true,
                    ..Sections::default()
                },
            ),
            None => (
                Rcode::NoData,
                Sections {
                    soa_pointer,
                    authoritative: true,
                    ..Sections::default()
                },
            ),
        }
    }

    /// A header-only answer, for queries whose question cannot be trusted.
    fn write_bare(&self, mut reply: Metadata, rcode: Rcode, out: &mut Vec<u8>) -> Answered {
        reply.response_code = rcode.wire();
        let header = Header {
            metadata: reply,
            counts: HeaderCounts::default(),
        };
        let mut encoder = BinEncoder::new(out);
        header.emit(&mut encoder).expect("a header fits in a Vec");
        Answered {
            rcode,
            truncated: false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        mut reply: Metadata,
        rcode: Rcode,
        question: &[u8],
        sections: &Sections<'_>,
        edns: Option<EdnsRequest>,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Answered {
        const OPT_LEN: usize = 11;
        let opt_len = if edns.is_some() { OPT_LEN } else { 0 };
        let authority_len = sections.soa_pointer.map_or(0, |_| 2 + self.soa_tail.len());
        let fixed = 12 + question.len() + opt_len;
        let body = sections.answer.len() + authority_len;
        // Additional records are optional (RFC 2181 §9): drop them before truncating.
        let (with_body, with_additional) = if fixed + body + sections.additional.len() <= limit {
            (true, true)
        } else if fixed + body <= limit {
            (true, false)
        } else {
            (false, false)
        };
        reply.response_code = rcode.wire();
        reply.authoritative = sections.authoritative;
        reply.truncation = !with_body;
        let counts = HeaderCounts {
            queries: 1,
            answers: if with_body { sections.answer_count } else { 0 },
            authorities: u16::from(with_body && sections.soa_pointer.is_some()),
            additionals: if with_additional {
                sections.additional_count
            } else {
                0
            } + u16::from(edns.is_some()),
        };
        out.reserve(fixed + body + sections.additional.len());
        let mut encoder = BinEncoder::new(out);
        Header {
            metadata: reply,
            counts,
        }
        .emit(&mut encoder)
        .expect("a header fits in a Vec");
        drop(encoder);
        out.extend_from_slice(question);
        if with_body {
            out.extend_from_slice(sections.answer);
            if let Some(pointer) = sections.soa_pointer {
                out.extend_from_slice(&pointer);
                out.extend_from_slice(&self.soa_tail);
            }
        }
        if with_additional {
            out.extend_from_slice(sections.additional);
        }
        if edns.is_some() {
            let ext = rcode.wire().high();
            let payload = self.settings.max_udp_payload.to_be_bytes();
            // Root owner, type OPT, our payload, extended rcode, version 0, no flags.
            out.extend_from_slice(&[0, 0, 41, payload[0], payload[1], ext, 0, 0, 0, 0, 0]);
        }
        Answered {
            rcode,
            truncated: !with_body,
        }
    }
}

/// Skips answer and authority records and reads the OPT record, if any. `None` when the
/// records do not parse or there is more than one OPT (RFC 6891 §6.1.1).
fn read_edns(decoder: &mut BinDecoder<'_>, counts: HeaderCounts) -> Option<Option<EdnsRequest>> {
    for _ in 0..u32::from(counts.answers) + u32::from(counts.authorities) {
        Record::read(decoder).ok()?;
    }
    let mut edns = None;
    for _ in 0..counts.additionals {
        let record = Record::read(decoder).ok()?;
        if record.record_type() == RecordType::OPT {
            if edns.is_some() {
                return None;
            }
            edns = Some(EdnsRequest {
                payload: u16::from(record.dns_class),
                version: (record.ttl >> 16) as u8,
            });
        }
    }
    Some(edns)
}

/// Writes the question name in lowercase wire format into `key`; its length, or `None`
/// if it does not fit.
fn lowercase_key(question: &Query, key: &mut [u8; MAX_NAME_WIRE_LEN]) -> Option<usize> {
    let mut len = 0;
    for label in question.name().iter() {
        let end = len + 1 + label.len();
        if end + 1 > key.len() {
            return None;
        }
        key[len] = label.len() as u8;
        for (slot, byte) in key[len + 1..end].iter_mut().zip(label) {
            *slot = byte.to_ascii_lowercase();
        }
        len = end;
    }
    key[len] = 0;
    Some(len + 1)
}

/// Whether `offset` starts a label of the wire name `key`.
fn is_label_boundary(key: &[u8], offset: usize) -> bool {
    let mut at = 0;
    while at < offset {
        at += 1 + key[at] as usize;
    }
    at == offset
}
