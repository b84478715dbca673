//! The simulated fleet: enrollment tokens and enrollments through the real gRPC API, one
//! connection (its own TCP + HTTP/2) per agent, and tasks that hold the streams open while the
//! agents heartbeat on their own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tucdesk_proto::v1::agent_link_client::AgentLinkClient;
use tucdesk_proto::v1::operator_service_client::OperatorServiceClient;
use tucdesk_proto::v1::{
    CreateEnrollmentTokenRequest, ListAgentsRequest, PageRequest, PresenceFilter,
};
use tucdesk_testkit::{AgentLinkConn, Operator, SimAgent};

/// ListAgents page size (the API's maximum).
const PAGE_SIZE: u32 = tucdesk_proto::limits::MAX_PAGE_SIZE;
/// Bound on one connection attempt to the replica.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A new connection (TCP + HTTP/2) to `url`.
pub async fn channel(url: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(url.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Creates an enrollment token as `admin` and enrolls a fresh simulated agent with it, both
/// over `channel` (an installer enrolls once and goes: no connection of its own needed).
pub async fn enroll_one(
    channel: Channel,
    admin: Arc<Operator>,
    audience: Arc<str>,
    index: usize,
) -> anyhow::Result<SimAgent> {
    let binding = tucdesk_rendezvous::enrollment_api::create_binding(&[], false, 0);
    let proof = admin.proof(
        tucdesk_rendezvous::enrollment_api::CREATE_METHOD,
        "",
        &binding,
    )?;
    let token = OperatorServiceClient::new(channel.clone())
        .create_enrollment_token(admin.request(CreateEnrollmentTokenRequest {
            description: "tucdesk-bench agent-load".into(),
            tags: Vec::new(),
            allow_host_tags: false,
            ttl_seconds: 0,
            proof: Some(proof),
        })?)
        .await
        .map_err(|status| anyhow!("CreateEnrollmentToken: {}", status.message()))?
        .into_inner()
        .token;
    let agent = SimAgent::new(&audience)?;
    let mut client = AgentLinkClient::new(channel);
    agent
        .enroll(&mut client, &token, &format!("bench-{index:05}"), &[])
        .await
        .map_err(|status| anyhow!("Enroll of agent {index}: {}", status.message()))?;
    Ok(agent)
}

/// Live streams and how many ended before the bench stopped them.
#[derive(Debug, Default)]
pub struct Held {
    pub dropped: AtomicUsize,
}

/// Connects `agent` over a connection of its own and holds the stream until `stop`: reads
/// (and discards) what the server sends, and counts the stream as dropped if it ends first.
pub async fn connect_and_hold(
    url: Arc<str>,
    index: usize,
    agent: SimAgent,
    stop: CancellationToken,
    held: Arc<Held>,
) -> anyhow::Result<()> {
    let mut client = AgentLinkClient::new(channel(&url).await?);
    let conn = agent
        .connect(&mut client)
        .await
        .map_err(|err| anyhow!("agent {index} was not registered: {err:?}"))?;
    tokio::spawn(hold(conn, client, stop, held));
    Ok(())
}

async fn hold(
    mut conn: AgentLinkConn,
    client: AgentLinkClient<Channel>,
    stop: CancellationToken,
    held: Arc<Held>,
) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = drain(&mut conn) => {
            held.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
    // The connection lives as long as its client: dropped together, after the stream.
    drop(conn);
    drop(client);
}

async fn drain(conn: &mut AgentLinkConn) {
    while let Ok(Some(_)) = conn.inbound.message().await {}
}

/// Agents of `viewer`'s team the replica reports online (ListAgents, presence ONLINE, paged).
pub async fn count_online(url: &str, viewer: &Operator) -> anyhow::Result<usize> {
    let mut client = OperatorServiceClient::new(channel(url).await?);
    let (mut online, mut token) = (0, String::new());
    loop {
        let page = client
            .list_agents(viewer.request(ListAgentsRequest {
                page: Some(PageRequest {
                    page_size: PAGE_SIZE,
                    page_token: token,
                }),
                tags: Vec::new(),
                presence: PresenceFilter::Online as i32,
                name_contains: String::new(),
                include_revoked: false,
            })?)
            .await
            .map_err(|status| anyhow!("ListAgents: {}", status.message()))?
            .into_inner();
        online += page.agents.len();
        token = page.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            return Ok(online);
        }
    }
}
