//! `/v1/users`: the caller's own profile and audit trail; user administration (admin only).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Json, Path, Query};
use super::pagination::{PageQuery, Paginated};
use crate::audit::Target;
use crate::auth::{password, AuthUser};
use crate::state::AppState;
use crate::store::{AuditRecord, NewUser, Role, UserPatch, UserRecord};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(my_audits))
        .routes(routes!(create, list))
        .routes(routes!(update))
        .routes(routes!(revoke_tokens))
        .routes(routes!(unlock))
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub role: Role,
    pub full_name: Option<String>,
    pub phone: Option<String>,
    /// The licence or accreditation number the user signs completed sessions with.
    pub licence_number: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AppState {
    pub fn user_view(&self, u: UserRecord) -> UserView {
        UserView {
            full_name: self.pii.decrypt_opt(u.full_name_enc.as_deref()),
            phone: self.pii.decrypt_opt(u.phone_enc.as_deref()),
            role: u.role(),
            licence_number: u.licence_number,
            id: u.id,
            org_id: u.org_id,
            email: u.email,
            active: u.active,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// The caller's own profile.
#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = Problem)))]
async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<UserView>> {
    let rec = state.store.get_user(user.user_id).await?;
    Ok(Json(state.user_view(rec)))
}

/// The audit trail of the caller's own actions, oldest first.
#[utoipa::path(get, path = "/v1/users/me/audits", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paginated<AuditRecord>), (status = 401, body = Problem)))]
async fn my_audits(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Paginated<AuditRecord>>> {
    let page = q.page()?;
    let rows = state.store.list_audits_by_actor(user.user_id, page).await?;
    Ok(Json(Paginated::from_rows(rows, page, |a| a.id, |a| a)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub password: String,
    pub role: Role,
    pub full_name: Option<String>,
    pub phone: Option<String>,
}

pub fn normalise_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.'));
    if valid {
        Ok(email)
    } else {
        Err(ApiError::unprocessable(
            "invalid_email",
            format!("'{}' is not a valid email address", raw.trim()),
        ))
    }
}

/// NIST SP 800-63B policy (see `auth::policy`); 422 `weak_password` naming the field.
fn password_policy(password: &str, email: &str, org_name: &str) -> Result<(), ApiError> {
    let ctx = password::PolicyContext {
        email: Some(email),
        org_name: Some(org_name),
    };
    password::check_policy(password, ctx).map_err(|m| ApiError::unprocessable("weak_password", m))
}

fn check_pii(field: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.trim().is_empty() || v.len() > 200 => Err(ApiError::unprocessable(
            "invalid_field",
            format!("{field} must be 1-200 characters"),
        )),
        _ => Ok(()),
    }
}

/// Create a user in the caller's organisation (admin).
#[utoipa::path(post, path = "/v1/users", tag = "users", security(("bearer" = [])), request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(req): Json<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    user.require_admin()?;
    let email = normalise_email(&req.email)?;
    let org = state.store.get_org(user.org_id).await?;
    password_policy(&req.password, &email, &org.name)?;
    check_pii("full_name", &req.full_name)?;
    check_pii("phone", &req.phone)?;
    let password_hash = state.hasher.hash(req.password).await?;
    let rec = state
        .store
        .create_user(NewUser {
            org_id: user.org_id,
            email,
            password_hash,
            role: req.role,
            full_name_enc: state.pii.encrypt_opt(req.full_name.as_deref()),
            phone_enc: state.pii.encrypt_opt(req.phone.as_deref()),
        })
        .await?;
    state
        .audit(
            &user,
            "user.create",
            Some(Target::new("user", rec.id)),
            json!({ "role": req.role }),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(state.user_view(rec))))
}

/// Users of the caller's organisation (admin).
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paginated<UserView>), (status = 403, body = Problem)))]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Paginated<UserView>>> {
    user.require_admin()?;
    let page = q.page()?;
    let rows = state.store.list_users(user.org_id, page).await?;
    Ok(Json(Paginated::from_rows(
        rows,
        page,
        |u| u.id,
        |u| state.user_view(u),
    )))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub role: Option<Role>,
    pub active: Option<bool>,
    pub password: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<String>)]
    pub full_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    /// Licence or accreditation number (e.g. a state licence or FPA Australia accreditation),
    /// needed to sign sessions off; `null` clears it.
    #[serde(default, deserialize_with = "super::extract::double_option")]
    #[schema(value_type = Option<String>)]
    pub licence_number: Option<Option<String>>,
}

/// Change a user (admin). Role changes, deactivation and password changes revoke the user's
/// tokens (and so close their sync sockets).
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
    Json(req): Json<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    user.require_admin()?;
    if id == user.user_id
        && (req.role.is_some_and(|r| r != Role::Admin) || req.active == Some(false))
    {
        return Err(ApiError::conflict(
            "last_admin_guard",
            "you cannot remove your own admin access; ask another admin",
        ));
    }
    if let Some(Some(v)) = &req.full_name {
        check_pii("full_name", &Some(v.clone()))?;
    }
    if let Some(Some(v)) = &req.phone {
        check_pii("phone", &Some(v.clone()))?;
    }
    if let Some(Some(l)) = &req.licence_number {
        let l = l.trim();
        if l.is_empty() || l.chars().count() > 64 || l.chars().any(char::is_control) {
            return Err(ApiError::unprocessable(
                "invalid_field",
                "licence_number must be 1-64 characters without control characters",
            ));
        }
    }
    let before = state.store.get_user(id).await?;
    if before.org_id != user.org_id {
        return Err(ApiError::NotFound);
    }
    let password_hash = match req.password {
        Some(p) => {
            let org = state.store.get_org(user.org_id).await?;
            password_policy(&p, &before.email, &org.name)?;
            Some(state.hasher.hash(p).await?)
        }
        None => None,
    };
    let changes_access = req.role.is_some_and(|r| r != before.role())
        || req.active == Some(false)
        || password_hash.is_some();
    let patch = UserPatch {
        role: req.role,
        active: req.active,
        password_hash,
        full_name_enc: req.full_name.map(|v| state.pii.encrypt_opt(v.as_deref())),
        phone_enc: req.phone.map(|v| state.pii.encrypt_opt(v.as_deref())),
        licence_number: req.licence_number.map(|v| v.map(|l| l.trim().to_owned())),
    };
    let after = state.store.update_user(user.org_id, id, patch).await?;
    // Reactivation writes no revocation: forget the cached answer here (other nodes within
    // `known_users::KNOWN_USER_TTL`).
    state.revocations.known.forget(id);
    if changes_access {
        state
            .revocations
            .revoke_user(state.store.as_ref(), id, state.config.access_token_ttl)
            .await?;
    }
    state
        .audit(
            &user,
            "user.update",
            Some(Target::new("user", id)),
            json!({
                "old": { "role": before.role, "active": before.active, "licence_number": before.licence_number },
                "new": { "role": after.role, "active": after.active, "licence_number": after.licence_number },
                "password_changed": changes_access && after.password_hash != before.password_hash,
                "pii_changed": after.full_name_enc != before.full_name_enc || after.phone_enc != before.phone_enc,
            }),
        )
        .await?;
    Ok(Json(state.user_view(after)))
}

/// Revoke every token the user holds now (admin). Open sync sockets of the user close.
#[utoipa::path(post, path = "/v1/users/{id}/revoke-tokens", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_tokens(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    let target = state.store.get_user(id).await?;
    if target.org_id != user.org_id {
        return Err(ApiError::NotFound);
    }
    state
        .revocations
        .revoke_user(state.store.as_ref(), id, state.config.access_token_ttl)
        .await?;
    state
        .audit(
            &user,
            "user.revoke_tokens",
            Some(Target::new("user", id)),
            json!({}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct UnlockView {
    pub user_id: Uuid,
    /// Throttled (email, client address) pairs cleared.
    pub cleared_addresses: u64,
}

/// Clear the login throttling of the user's email from every client address (admin), what
/// `firemode admin unlock` does: the next sign-in with the right password goes through at once.
#[utoipa::path(post, path = "/v1/users/{id}/unlock", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = UnlockView), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn unlock(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<UnlockView>> {
    user.require_admin()?;
    let target = state.store.get_user(id).await?;
    if target.org_id != user.org_id {
        return Err(ApiError::NotFound);
    }
    let cleared = state.store.throttle_clear(&target.email, None).await?;
    state
        .audit(
            &user,
            "user.unlock",
            Some(Target::new("user", id)),
            json!({ "cleared_addresses": cleared }),
        )
        .await?;
    Ok(Json(UnlockView {
        user_id: id,
        cleared_addresses: cleared,
    }))
}
