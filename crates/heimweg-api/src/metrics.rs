//! Request metrics for the API and the pages: count and latency by route template, method
//! and status. Route templates (`/api/v1/devices/{name}`), never raw paths, so a device name
//! or a link secret never becomes a label.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct ApiMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl ApiMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Arc<ApiMetrics>> {
        let requests = IntCounterVec::new(
            Opts::new(
                "heimweg_api_requests_total",
                "API and page requests by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "heimweg_api_request_duration_seconds",
                "Time from request to response head, by route template and method.",
            )
            // Enrollment renders a QR code (milliseconds); listing 10,000 devices is a few ms.
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Arc::new(ApiMetrics { requests, duration }))
    }
}

/// Wraps a router so that every request is counted and timed.
pub fn track(router: Router, metrics: Arc<ApiMetrics>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(metrics, record))
}

async fn record(State(m): State<Arc<ApiMetrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    // Only the methods the API knows: anything else would let a client mint label values.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PATCH" | "PUT" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    m.duration
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[route.as_str(), method.as_str(), resp.status().as_str()])
        .inc();
    resp
}
