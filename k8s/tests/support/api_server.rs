//! A scripted Kubernetes API server for controller tests: a `kube::Client` whose
//! transport is a `tower_test` mock, and a handle that takes each request in turn,
//! checks it, and answers with canned JSON.

use std::time::Duration;

use futures::FutureExt;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

/// How long a test waits for one request or one reconciliation before failing: far
/// above anything an in-process exchange needs, so only a hang reaches it.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// The server side of a mocked API connection.
pub(crate) struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A client talking to a new scripted server.
pub(crate) fn start() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer { handle })
}

/// One request taken from the client, waiting for its answer.
pub(crate) struct Exchange {
    pub(crate) method: Method,
    pub(crate) path: String,
    query: String,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Value,
    respond: SendResponse<Response<Body>>,
}

impl ApiServer {
    /// Takes the next request and checks its method and path (without the query).
    pub(crate) async fn expect(&mut self, method: Method, path: &str) -> Exchange {
        let exchange = self.next().await;
        assert_eq!(
            (&exchange.method, exchange.path.as_str()),
            (&method, path),
            "unexpected request (body {})",
            exchange.body
        );
        exchange
    }

    /// Takes the next request, whatever it is.
    pub(crate) async fn next(&mut self) -> Exchange {
        let (request, respond) = tokio::time::timeout(STEP_TIMEOUT, self.handle.next_request())
            .await
            .expect("a request came in time")
            .expect("the client is still connected");
        Self::exchange(request, respond).await
    }

    async fn exchange(request: Request<Body>, respond: SendResponse<Response<Body>>) -> Exchange {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("the request body reads");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("the request body is JSON")
        };
        Exchange {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
            respond,
        }
    }

    /// Takes the next request if one comes within `wait`.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Exchange> {
        // Receiving from the mock's channel is cancel-safe: a request that arrives
        // after the timeout stays queued for the next call.
        let (request, respond) = tokio::time::timeout(wait, self.handle.next_request())
            .await
            .ok()?
            .expect("the client is still connected");
        Some(Self::exchange(request, respond).await)
    }

    /// Fails if the client sent a request the script did not take.
    pub(crate) fn assert_idle(&mut self) {
        // The client side has returned, so any request it made is already queued.
        if let Some(Some((request, _))) = self.handle.next_request().now_or_never() {
            panic!(
                "unexpected extra request: {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

impl Exchange {
    /// The decoded value of query parameter `name`.
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| percent_decode(value))
        })
    }

    /// Answers with `status` and a JSON body.
    pub(crate) fn respond(self, status: u16, body: &Value) {
        let response = Response::builder()
            .status(StatusCode::from_u16(status).expect("a valid status code"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::to_vec(body).expect("JSON serializes"),
            ))
            .expect("a valid response");
        self.respond.send_response(response);
    }

    /// Answers a watch with `events` (`{"type": "MODIFIED", "object": ...}`), one
    /// JSON document per line, then ends the stream (the client watches again).
    pub(crate) fn stream(self, events: &[Value]) {
        let mut body = Vec::new();
        for event in events {
            serde_json::to_writer(&mut body, event).expect("JSON serializes");
            body.push(b'\n');
        }
        let response = Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a valid response");
        self.respond.send_response(response);
    }

    /// Answers with the API server's error `Status` for `code` (`404 NotFound`,
    /// `409 AlreadyExists`).
    pub(crate) fn fail(self, code: u16) {
        let reason = match code {
            404 => "NotFound",
            409 => "AlreadyExists",
            _ => "InternalError",
        };
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("{} {reason}", self.path),
            "reason": reason,
            "code": code,
        });
        self.respond(code, &status);
    }

    /// Answers a DELETE with success.
    pub(crate) fn deleted(self) {
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 200,
        });
        self.respond(200, &status);
    }
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("a percent escape"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("UTF-8 query")
}
