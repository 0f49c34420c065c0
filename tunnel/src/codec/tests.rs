use proptest::prelude::*;

use super::*;

fn data(ns: &str, svc: &str, port: u16) -> Request {
    Request::Data {
        target: ServiceTarget::new(ns, svc, port),
        trace: None,
    }
}

#[test]
fn request_round_trips() {
    let req = Request::Data {
        target: ServiceTarget::new("shop", "web", 8080),
        trace: Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: "vendor=x".into(),
        }),
    };
    let mut buf = Vec::new();
    req.encode(&mut buf).unwrap();
    buf.extend_from_slice(b"payload that follows");
    let (decoded, used) = Request::decode(&buf).unwrap().unwrap();
    assert_eq!(decoded, req);
    assert_eq!(&buf[used..], b"payload that follows");
}

#[test]
fn control_request_round_trips() {
    let mut buf = Vec::new();
    Request::Control.encode(&mut buf).unwrap();
    assert_eq!(
        Request::decode(&buf).unwrap(),
        Some((Request::Control, buf.len()))
    );
}

#[test]
fn wrong_version_is_refused_from_the_first_byte() {
    assert_eq!(
        Request::decode(&[2]),
        Err(FrameError::UnsupportedVersion(2))
    );
    assert_eq!(
        Request::decode(b"GET / HTTP/1.1\r\n"),
        Err(FrameError::UnsupportedVersion(b'G'))
    );
    assert_eq!(
        FrameError::UnsupportedVersion(2).status(),
        Status::UnsupportedVersion
    );
}

#[test]
fn oversized_length_is_refused_before_the_body_arrives() {
    let prefix = [FRAME_VERSION, 0xff, 0xff];
    let err = Request::decode(&prefix).unwrap_err();
    assert_eq!(err, FrameError::Oversized { len: 0xffff + 3 });
    assert_eq!(err.status(), Status::Malformed);
    // The largest allowed body is accepted by the prefix check.
    let ok = u16::try_from(MAX_BODY_LEN).unwrap().to_be_bytes();
    assert_eq!(
        parse_prefix([FRAME_VERSION, ok[0], ok[1]]),
        Ok(MAX_BODY_LEN)
    );
}

#[test]
fn oversized_request_cannot_be_encoded() {
    let req = data("shop", &"a".repeat(5000), 80);
    assert!(matches!(
        req.encode(&mut Vec::new()),
        Err(FrameError::Oversized { .. })
    ));
}

#[test]
fn garbage_body_is_malformed() {
    let body = [0xff_u8; 10];
    let mut buf = vec![FRAME_VERSION, 0, 10];
    buf.extend_from_slice(&body);
    assert!(matches!(
        Request::decode(&buf),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn invalid_targets_are_malformed() {
    for req in [
        data("", "web", 80),
        data("shop", "", 80),
        data("Shop", "web", 80),
        data("shop", "web/../x", 80),
        data("shop", "web", 0),
        data("shop", &"a".repeat(64), 80),
    ] {
        let mut buf = Vec::new();
        req.encode(&mut buf).unwrap();
        assert!(
            matches!(Request::decode(&buf), Err(FrameError::Malformed(_))),
            "{req:?} was accepted"
        );
    }
    // A port above u16 only arrives from a foreign encoder.
    let mut buf = Vec::new();
    encode_frame(
        &proto::StreamHeader {
            kind: 0,
            namespace: "shop".into(),
            service: "web".into(),
            port: 70_000,
            trace: None,
        },
        &mut buf,
    )
    .unwrap();
    assert!(matches!(
        Request::decode(&buf),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn unknown_stream_kind_is_malformed() {
    let mut buf = Vec::new();
    encode_frame(
        &proto::StreamHeader {
            kind: 9,
            ..Default::default()
        },
        &mut buf,
    )
    .unwrap();
    assert!(matches!(
        Request::decode(&buf),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn answers_round_trip_and_unspecified_status_is_refused() {
    for status in [
        Status::Accepted,
        Status::Denied,
        Status::NoSuchService,
        Status::NoEndpoints,
        Status::Overloaded,
        Status::UnsupportedVersion,
        Status::Malformed,
    ] {
        let a = Answer::new(status, format!("because {}", status.label()));
        let mut buf = Vec::new();
        a.encode(&mut buf).unwrap();
        assert_eq!(Answer::decode(&buf).unwrap(), Some((a, buf.len())));
    }
    let mut buf = Vec::new();
    encode_frame(&proto::StreamAnswer::default(), &mut buf).unwrap();
    assert!(matches!(
        Answer::decode(&buf),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn long_answer_messages_are_cut_on_a_char_boundary() {
    let a = Answer::new(Status::NoEndpoints, "é".repeat(2000));
    assert!(a.message.len() <= Answer::MAX_MESSAGE_LEN);
    let mut buf = Vec::new();
    a.encode(&mut buf).unwrap();
    assert!(buf.len() <= MAX_FRAME_LEN);
}

#[test]
fn control_messages_round_trip_back_to_back() {
    let msgs = [
        ControlMessage::Probe(1),
        ControlMessage::ProbeAck(1),
        ControlMessage::Drain {
            deadline_ms: 30_000,
        },
        ControlMessage::Probe(u64::MAX),
    ];
    let mut buf = Vec::new();
    for m in msgs {
        m.encode(&mut buf);
    }
    let mut rest = &buf[..];
    for m in msgs {
        let (got, used) = ControlMessage::decode(rest).unwrap().unwrap();
        assert_eq!(got, m);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    assert_eq!(ControlMessage::decode(rest), Ok(None));
}

fn label() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,20}[a-z0-9])?"
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Control),
        (
            label(),
            label(),
            1..=u16::MAX,
            proptest::option::of(("[ -~]{0,100}", "[ -~]{0,100}"))
        )
            .prop_map(|(ns, svc, port, trace)| Request::Data {
                target: ServiceTarget::new(ns, svc, port),
                trace: trace.map(|(traceparent, tracestate)| TraceContext {
                    traceparent,
                    tracestate
                }),
            }),
    ]
}

proptest! {
    #[test]
    fn valid_requests_round_trip(req in request(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = Vec::new();
        req.encode(&mut buf).unwrap();
        prop_assert!(buf.len() <= MAX_FRAME_LEN);
        let len = buf.len();
        buf.extend_from_slice(&tail);
        prop_assert_eq!(Request::decode(&buf).unwrap(), Some((req, len)));
    }

    #[test]
    fn every_truncation_asks_for_more(req in request(), cut in any::<prop::sample::Index>()) {
        let mut buf = Vec::new();
        req.encode(&mut buf).unwrap();
        let cut = cut.index(buf.len());
        prop_assert_eq!(Request::decode(&buf[..cut]).unwrap(), None);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        if let Ok(Some((_, used))) = Request::decode(&bytes) {
            prop_assert!(used <= bytes.len() && used <= MAX_FRAME_LEN);
        }
        let _ = Answer::decode(&bytes);
        let _ = ControlMessage::decode(&bytes);
    }

    #[test]
    fn arbitrary_bodies_with_a_valid_prefix_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = vec![FRAME_VERSION];
        buf.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        buf.extend_from_slice(&body);
        match Request::decode(&buf) {
            Ok(Some((Request::Data { target, .. }, used))) => {
                prop_assert_eq!(used, buf.len());
                prop_assert!(target.validate().is_ok());
            }
            Ok(Some((Request::Control, used))) => prop_assert_eq!(used, buf.len()),
            Ok(None) => prop_assert!(false, "a complete frame asked for more"),
            Err(e) => prop_assert_eq!(e.status(), Status::Malformed),
        }
    }
}
