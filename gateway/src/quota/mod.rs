//! Quotas per principal, or per client address when auth is off: how many
//! requests it may send ([`rate`], per gateway replica) and how many live
//! sessions it may hold ([`sessions`], across replicas). Each refusal is
//! 429 with `Retry-After` and a JSON-RPC error (-32007).
//!
//! - [`client_addr`] — the client address, through trusted proxies only.
//! - [`rate`] — a token bucket per principal or address, bounded in memory.
//! - [`sessions`] — live sessions per principal or address, in KV.

pub mod client_addr;
pub mod rate;
pub mod sessions;

use crate::{Gateway, auth::Caller, error::GatewayError, served::Served};
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use jetway_shared::subjects::SessionId;
use rate::Key;
use std::{net::IpAddr, sync::Arc};

/// Who a request counts against, put into its extensions by [`layer`].
#[derive(Debug, Clone)]
pub struct Owner(pub Key);

/// The quotas of a gateway; each `None` when set to 0 (no limit).
pub struct Quotas {
    pub rate: Option<Arc<rate::Rate>>,
    pub sessions: Option<sessions::SessionQuota>,
}

/// Middleware on the MCP routes, inside authentication: works out the
/// request's [`Owner`] and takes a token of its rate bucket (429 when
/// there is none).
pub async fn layer(State(gw): State<Arc<Gateway>>, mut req: Request, next: Next) -> Response {
    let owner = owner_of(&gw, &req);
    if let Some(rate) = &gw.quotas.rate
        && let Err(wait) = rate.check(owner.clone())
    {
        tracing::debug!(?owner, ?wait, "rate limit: answering 429");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return GatewayError::RateLimited(secs.max(1)).into_response();
    }
    req.extensions_mut().insert(Owner(owner));
    next.run(req).await
}

/// The principal of the request, or its client address when it has none.
fn owner_of(gw: &Gateway, req: &Request) -> Key {
    if let Some(p) = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.principal.as_ref())
    {
        return Key::Principal(p.issuer.clone(), p.subject.clone());
    }
    let peer = req
        .extensions()
        .get::<client_addr::Peer>()
        .map(|p| p.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    Key::addr(client_addr::client(
        peer,
        req.headers(),
        &gw.config.trusted_proxies,
    ))
}

/// Counts a new `session` of `svc` for `owner`: 429 if the owner holds
/// `max_sessions_per_principal` live sessions of the service already.
pub async fn open_session(
    gw: &Gateway,
    svc: &Served,
    owner: &Owner,
    session: &SessionId,
) -> Result<(), GatewayError> {
    let Some(quota) = &gw.quotas.sessions else {
        return Ok(());
    };
    let sessions = svc.sessions.clone();
    quota
        .acquire(&owner.0, svc.service.name(), session, |id| {
            let sessions = sessions.clone();
            async move {
                match SessionId::parse(&svc.service, &id) {
                    Ok(id) => sessions.is_live(&id).await,
                    Err(_) => Ok(false),
                }
            }
        })
        .await
}

/// Stops counting `session` for `owner` (DELETE, or a create that failed).
pub async fn close_session(gw: &Gateway, svc: &Served, owner: &Owner, session: &SessionId) {
    if let Some(quota) = &gw.quotas.sessions {
        quota.release(&owner.0, svc.service.name(), session).await;
    }
}
