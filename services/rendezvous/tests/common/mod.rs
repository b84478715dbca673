//! Shared set-up for the rendezvous suites: a deployment (auth + database + cache + bus) on
//! the real backends or the embedded ones, one replica, a team owner and a relay.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

use tucdesk_proto::v1::{
    AuditEvent, CreateSessionResponse, ExecSpec, SessionKind, create_session_response,
};
use tucdesk_testkit::operator::SessionRequest;
use tucdesk_testkit::relay::RelayBeacon;
use tucdesk_testkit::{AgentLinkConn, Backend, Deployment, Operator, SimAgent, TestRendezvous};

pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Fixture {
    pub dep: Deployment,
    pub rdv: TestRendezvous,
    pub owner: Operator,
    pub relay: RelayBeacon,
}

impl Fixture {
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, |_| {}).await
    }

    /// A fixture whose replica configuration `adjust` changes first.
    pub async fn with(
        backend: Backend,
        adjust: impl FnOnce(&mut tucdesk_rendezvous::RendezvousConfig),
    ) -> Self {
        let mut dep = Deployment::new(backend).await.unwrap();
        adjust(&mut dep.config);
        let rdv = dep.replica().await.unwrap();
        let owner = dep
            .team(&format!("owner-{}@example.com", short_id()))
            .await
            .unwrap();
        let relay = dep.relay(&format!("relay-{}", short_id())).await.unwrap();
        // The replica learns the relay from its first heartbeats.
        assert!(
            tucdesk_testkit::eventually(WAIT, || async { rdv.rdv.relays().pick().is_some() }).await,
            "the replica never saw the relay heartbeat"
        );
        Self {
            dep,
            rdv,
            owner,
            relay,
        }
    }

    /// A new agent enrolled into the owner's team with `tags`.
    pub async fn enrolled(&self, name: &str, tags: &[&str]) -> SimAgent {
        let token = self.rdv.enrollment_token(&self.owner, tags).await.unwrap();
        let agent = SimAgent::new(tucdesk_testkit::rendezvous::AUDIENCE).unwrap();
        agent
            .enroll(&mut self.rdv.agent_client(), &token, name, &[])
            .await
            .unwrap();
        agent
    }

    /// A new agent enrolled and connected to the replica.
    pub async fn connected(&self, name: &str, tags: &[&str]) -> (SimAgent, AgentLinkConn) {
        let agent = self.enrolled(name, tags).await;
        let conn = agent.connect(&mut self.rdv.agent_client()).await.unwrap();
        (agent, conn)
    }

    /// Audit events written so far (outbox), in order.
    pub async fn audit(&self) -> Vec<AuditEvent> {
        audit_events(&self.dep.db).await
    }

    pub async fn actions(&self) -> Vec<String> {
        self.audit().await.into_iter().map(|e| e.action).collect()
    }

    pub async fn cleanup(self) {
        drop(self.relay);
        self.rdv.stop().await;
        self.dep.cleanup().await;
    }
}

pub async fn audit_events(db: &tucdesk_svc::sql::Database) -> Vec<AuditEvent> {
    let payloads: Vec<Vec<u8>> = tucdesk_svc::on_pool!(db, |pool| {
        sqlx::query_scalar("SELECT payload FROM outbox ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    payloads
        .iter()
        .map(|p| prost::Message::decode(p.as_slice()).unwrap())
        .collect()
}

pub fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

pub fn exec(argv: &[&str]) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    }
}

/// A shell CreateSession for `agent` by `operator`.
pub fn shell(operator: &Operator, agent: &SimAgent) -> SessionRequest {
    operator
        .session_request(&agent.public_key(), SessionKind::Shell, None)
        .unwrap()
}

/// The accepted session of a response, or a panic naming what came instead.
pub fn accepted(response: CreateSessionResponse) -> tucdesk_proto::v1::SessionAccepted {
    match response.result {
        Some(create_session_response::Result::Accepted(accepted)) => accepted,
        other => panic!("expected an accepted session, got {other:?}"),
    }
}

/// Starts a CreateSession in the background (it waits for the agent's answer).
pub fn spawn_session(
    f: &Fixture,
    who: &Operator,
    request: tucdesk_proto::v1::CreateSessionRequest,
) -> tokio::task::JoinHandle<Result<tonic::Response<CreateSessionResponse>, tonic::Status>> {
    let mut client = f.rdv.operator_client();
    let request = who.request(request).unwrap();
    tokio::spawn(async move { client.create_session(request).await })
}

pub fn pending(response: CreateSessionResponse) -> tucdesk_proto::v1::ApprovalPending {
    match response.result {
        Some(create_session_response::Result::ApprovalPending(pending)) => pending,
        other => panic!("expected a pending approval, got {other:?}"),
    }
}
