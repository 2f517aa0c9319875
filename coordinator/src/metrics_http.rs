//! The plain-HTTP side of a coordinator: `GET /metrics` (Prometheus text
//! format) for scrapers and autoscalers. Kept off the gRPC port so TLS and
//! tokens there do not get in a scraper's way; bind it where only the
//! monitoring network reaches.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::server::Coordinator;

pub(crate) async fn metrics(State(coord): State<Arc<Coordinator>>) -> impl IntoResponse {
    match coord.metrics_text() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("metrics unavailable: {}\n", e.message()),
        ),
    }
}

/// Serves `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    coord: Arc<Coordinator>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(coord);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "metrics endpoint stopped");
    }
}
