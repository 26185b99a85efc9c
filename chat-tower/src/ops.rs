//! For operators: health probes, Prometheus metrics and request ids, each a small router or
//! layer the host mounts where it wants (the chat router itself serves none of them).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::Router;
//! use chat_tower::{ops, ChatBuilder};
//!
//! // The recorder first: the engine registers its metrics with it when the chat is built.
//! # #[cfg(feature = "prometheus")]
//! let prometheus = ops::install_prometheus()?;
//! let (chat_router, chat) = ChatBuilder::new().build();
//! let app: Router = Router::new()
//!     .merge(chat_router)
//!     .merge(ops::health(chat.clone()));
//! # #[cfg(feature = "prometheus")]
//! let app = app.merge(ops::metrics(chat.clone(), prometheus));
//! let app = ops::request_id(app);
//! # Ok(()) }
//! ```

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

use crate::{error::Problem, handle::ChatHandle};

/// `GET /healthz` (200 while the process serves HTTP, whatever the backend does) and
/// `GET /readyz` (200 when [`chat_core::Chat::ready`]: the backend reachable, its
/// subscriptions restored after an outage, and the instance not draining; otherwise a 503
/// problem, so that a load balancer sends nobody new to it).
pub fn health<S: Clone + Send + Sync + 'static>(chat: ChatHandle) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(chat)
}

async fn readyz(State(chat): State<ChatHandle>) -> Response {
    if chat.chat().ready().await {
        return "ready\n".into_response();
    }
    let detail = if chat.chat().is_draining() {
        "this instance is draining"
    } else {
        "the chat backend is unreachable or its subscriptions are not restored yet"
    };
    // Not a `ChatRejection`: a probe failing during an outage is expected, not an error to
    // log under a correlation id every few seconds.
    let problem = Problem {
        type_uri: "urn:roomcast:problem:not_ready".into(),
        title: "Not ready".into(),
        status: 503,
        detail: detail.into(),
        code: "not_ready".into(),
        correlation_id: None,
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        serde_json::to_vec(&problem).unwrap_or_default(),
    )
        .into_response()
}

/// Installs the Prometheus recorder as the process's global `metrics` recorder and returns
/// its handle (for [`metrics`]). Call it before building the chat: the engine registers its
/// metrics (all named `roomcast_*`, listed in `docs/operations.md`) with the recorder
/// installed when the first chat is built. The library never installs a recorder by itself;
/// a host with its own `metrics` exporter installs that one instead.
///
/// # Errors
/// If a global recorder is installed already.
#[cfg(feature = "prometheus")]
pub fn install_prometheus(
) -> Result<metrics_exporter_prometheus::PrometheusHandle, metrics_exporter_prometheus::BuildError>
{
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    // Latency buckets in seconds, from a millisecond (the timestamps' resolution) up.
    const LATENCY: [f64; 12] = [
        0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("roomcast_delivery_latency_seconds".into()),
            &LATENCY,
        )?
        .install_recorder()?;
    // A histogram's samples wait in the recorder until an upkeep folds them into its buckets,
    // and `install_recorder` leaves the upkeep to its caller: with only the scrape's (see
    // `metrics`), an instance nobody scrapes would keep every delivery's latency sample (16
    // bytes each) for good. One thread folds them every few seconds, scraped or not.
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("prometheus-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_PERIOD);
            upkeep.run_upkeep();
        });
    if let Err(err) = spawned {
        tracing::warn!(cause = %err, "no metrics upkeep thread: histograms fold at scrapes only");
    }
    Ok(handle)
}

/// How often the recorder's pending histogram samples are folded when nobody scrapes (the
/// exporter's own default upkeep period).
#[cfg(feature = "prometheus")]
const UPKEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /metrics`: the metrics in Prometheus text format. Sets the engine's gauges from the
/// node first ([`chat_core::Chat::record_gauges`]), so that they cost the hot path nothing.
#[cfg(feature = "prometheus")]
pub fn metrics<S: Clone + Send + Sync + 'static>(
    chat: ChatHandle,
    prometheus: metrics_exporter_prometheus::PrometheusHandle,
) -> Router<S> {
    Router::new()
        .route(
            "/metrics",
            get(
                |State((chat, prometheus)): State<(
                    ChatHandle,
                    metrics_exporter_prometheus::PrometheusHandle,
                )>| async move {
                    chat.chat().record_gauges();
                    prometheus.run_upkeep();
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            HeaderValue::from_static("text/plain; version=0.0.4"),
                        )],
                        prometheus.render(),
                    )
                },
            ),
        )
        .with_state((chat, prometheus))
}

/// The response header that carries a request's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Gives every request an id and one `request` span (fields `request_id`, `method`, `path`;
/// never the query, which may carry a token): the id comes from the client's `X-Request-Id`
/// when that is a short token of letters, digits, `-` and `_`, else a new UUID; the response
/// carries it in `X-Request-Id`, and a problem response (RFC 9457) also as the extension
/// member `requestId`. A WebSocket's session runs in its own span, a child of this one.
pub fn request_id<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(axum::middleware::from_fn(with_request_id))
}

async fn with_request_id(mut request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    let _enter = span.enter();
    // A 5xx was logged already, with its correlation id, inside this span.
    tracing::debug!(status = status.as_u16(), "request done");
    drop(_enter);
    with_id(response, &id).await
}

/// A request's id, in the request's extensions (from [`request_id`]).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Adds the id to the response header and, in a problem document, as `requestId`.
async fn with_id(response: Response, id: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(id) {
        parts.headers.insert(REQUEST_ID_HEADER, value);
    }
    let is_problem = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/problem+json");
    if !is_problem {
        return Response::from_parts(parts, body);
    }
    // Problem documents are small (a few hundred bytes): read, add the member, write back.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let bytes = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut problem)) => {
            problem.insert("requestId".into(), id.into());
            serde_json::to_vec(&problem).map_or(bytes, Into::into)
        }
        _ => bytes,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
