//! `iris run`: the node in the foreground until SIGINT or SIGTERM.

use std::{future::IntoFuture, path::Path};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::{node::Node, store::Store};

pub async fn run(dir: &Path) -> anyhow::Result<()> {
    init_logging();
    let node = Node::start(dir).await?;
    let token = Store::new(dir).load_or_renew_token()?;
    let config = node.config();
    let addr = std::net::SocketAddr::new(config.api.bind, config.api.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the API on {addr}"))?;
    let addr = listener.local_addr()?;
    Store::new(dir).save_api_port(addr.port())?;
    tracing::info!(name = %config.name, api = %addr, "node running");

    let app = crate::api::router(node.clone(), token);
    let shutdown = {
        let node = node.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            node.shutdown().await;
        }
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => result.context("API server failed")?,
        // Requests in flight get a moment to finish once the node has said
        // goodbye; event streams end with the node.
        _ = async { node.stopped().await; tokio::time::sleep(std::time::Duration::from_secs(2)).await } => {}
    }
    Ok(())
}

async fn wait_for_signal() {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Logs to stderr; `RUST_LOG` filters.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,libp2p_gossipsub=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
