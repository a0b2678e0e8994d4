//! The audit log: who did what, to what, when. Details never carry PII plaintext or secrets.

use serde_json::Value;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::http::error::current_request_id;
use crate::state::AppState;
use crate::store::NewAudit;

/// The object an audit row is about.
pub struct Target<'a> {
    pub kind: &'a str,
    pub id: String,
}

impl<'a> Target<'a> {
    pub fn new(kind: &'a str, id: impl ToString) -> Self {
        Self {
            kind,
            id: id.to_string(),
        }
    }
}

impl AppState {
    /// Record an action by an authenticated caller.
    pub async fn audit(
        &self,
        actor: &AuthUser,
        action: &str,
        target: Option<Target<'_>>,
        details: Value,
    ) -> anyhow::Result<Uuid> {
        self.audit_as(
            Some(actor.org_id),
            Some(actor.user_id),
            action,
            target,
            details,
        )
        .await
    }

    /// Record an action whose actor is known by id only (login) or not at all.
    pub async fn audit_as(
        &self,
        org_id: Option<Uuid>,
        actor_id: Option<Uuid>,
        action: &str,
        target: Option<Target<'_>>,
        details: Value,
    ) -> anyhow::Result<Uuid> {
        let (target_type, target_id) = match target {
            Some(t) => (Some(t.kind.to_owned()), Some(t.id)),
            None => (None, None),
        };
        Ok(self
            .store
            .insert_audit(NewAudit {
                org_id,
                actor_id,
                action: action.to_owned(),
                target_type,
                target_id,
                details,
                request_id: current_request_id(),
            })
            .await?)
    }
}
