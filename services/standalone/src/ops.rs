//! One ops HTTP server for the whole stack (`/metrics`, `/healthz`, `/readyz`, loopback
//! only): the metrics of every service's registry in one scrape (each keeps its `service`
//! label), and readiness of the databases and the bus.

use prometheus::Registry;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use tokio_util::sync::CancellationToken;
use tucdesk_audit::Audit;
use tucdesk_auth::Auth;
use tucdesk_relay::Relay;
use tucdesk_rendezvous::Rendezvous;
use tucdesk_svc::http::Readiness;

/// Gathers several registries as one collector; families of the same name (the build-info
/// and start-time gauges every service has) are merged by the outer registry.
struct Registries(Vec<Registry>);

impl Collector for Registries {
    fn desc(&self) -> Vec<&Desc> {
        // Unchecked collector: the inner registries already checked their metrics.
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.iter().flat_map(Registry::gather).collect()
    }
}

/// The ops router of the stack.
pub fn router(
    auth: &Auth,
    rendezvous: &Rendezvous,
    relay: &Relay,
    audit: &Audit,
    shutdown: CancellationToken,
) -> anyhow::Result<axum::Router> {
    let registry = Registry::new();
    registry.register(Box::new(Registries(vec![
        auth.metrics().registry().clone(),
        rendezvous.metrics().registry().clone(),
        relay.metrics().registry().clone(),
        audit.metrics().registry().clone(),
    ])))?;
    let readiness = Readiness::new().with_shutdown(shutdown);
    let db = auth.db().clone();
    readiness.add_fn("auth-database", move || {
        let db = db.clone();
        async move { db.ping().await.map_err(|err| err.to_string()) }
    });
    let rdv = rendezvous.clone();
    readiness.add_fn("rendezvous-backends", move || {
        let rdv = rdv.clone();
        async move { rdv.check_backends().await }
    });
    let log = audit.clone();
    readiness.add_fn("audit-database", move || {
        let log = log.clone();
        async move { log.db().ping().await.map_err(|err| err.to_string()) }
    });
    Ok(tucdesk_svc::http::ops_router(registry, readiness))
}
