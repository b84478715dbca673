//! Enrollment: a new identity from the OS CSPRNG, bound to a team once with a single-use
//! enrollment token (SPEC §2). The key is written (0600) before the server is asked, so a
//! crash after the server accepted cannot leave an enrolled key that nobody holds.

use std::path::PathBuf;

use tucdesk_crypto::Identity;
use tucdesk_proto::v1::EnrollRequest;

use crate::link::{LinkError, agent_client, host_info, registration_proof, server_info};
use crate::state::{Enrollment, LocalLimits, StateDir, StateError};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{0}")]
    Setup(String),
    #[error("enrollment refused: {0}")]
    Refused(String),
}

/// What to enroll with.
#[derive(Debug, Clone)]
pub struct EnrollArgs {
    pub server: String,
    pub token: String,
    pub name: Option<String>,
    pub tags: Vec<String>,
    pub limits: LocalLimits,
    pub ca_file: Option<PathBuf>,
}

/// Enrolls this host, storing the identity and the record in `state`.
pub async fn enroll(state: &StateDir, args: EnrollArgs) -> Result<Enrollment, EnrollError> {
    state.ensure_not_enrolled()?;
    let mut client = agent_client(&args.server, args.ca_file.as_deref())
        .map_err(|err| EnrollError::Setup(err.to_string()))?;
    let info = server_info(&mut client).await?;
    let identity = Identity::generate().map_err(|err| EnrollError::Setup(err.to_string()))?;
    state.create()?;
    state.save_identity(&identity)?;
    let host = host_info();
    let name = args
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| host.hostname.clone());
    let proof = registration_proof(&identity, &info.audience)
        .map_err(|err| EnrollError::Setup(err.to_string()))?;
    let enrolled = tokio::time::timeout(
        tucdesk_transport::rpc::CALL_TIMEOUT,
        client.enroll(EnrollRequest {
            protocol_version: tucdesk_proto::PROTOCOL_VERSION,
            enrollment_token: args.token.clone(),
            proof: Some(proof),
            name,
            tags: args.tags.clone(),
            host: Some(host),
        }),
    )
    .await;
    let response = match enrolled {
        Ok(Ok(response)) => response.into_inner(),
        failed => {
            // Nothing was bound to the key: remove it, so a retry starts clean.
            let _ = std::fs::remove_file(state.root().join(crate::state::IDENTITY_FILE));
            return Err(match failed {
                Ok(Err(status)) => EnrollError::Refused(tucdesk_transport::rpc::describe(&status)),
                _ => EnrollError::Refused("rendezvous did not answer in time".into()),
            });
        }
    };
    if response.agent_id != identity.agent_id() {
        return Err(EnrollError::Refused(
            "the server answered for a different key".into(),
        ));
    }
    let enrollment = Enrollment {
        server: args.server,
        audience: info.audience,
        agent_id: response.agent_id,
        fingerprint: identity.fingerprint(),
        team_id: response.team_id,
        name: response.name,
        tags: response.tags,
        limits: args.limits,
        ca_file: args.ca_file,
        enrolled_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    state.save(&enrollment)?;
    Ok(enrollment)
}
