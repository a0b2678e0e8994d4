//! The SQL both backends run. `sql_store!` expands to `impl Store` for a type with `writer` and
//! `reader` pools of one sqlx driver; the statements are the same text for both drivers.

/// Columns of `users` as inserted, in `UserRecord` order.
pub(crate) const USER_COLUMNS: &str = "id, org_id, email, password_hash, role, full_name_enc, \
     phone_enc, active, created_at, updated_at";

/// Columns of a `users` read: the inserted ones and the licence number.
pub(crate) const USER_SELECT: &str = "id, org_id, email, password_hash, role, full_name_enc, \
     phone_enc, active, created_at, updated_at, licence_number";

macro_rules! sql_store {
    ($store:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn pool_stats(&self) -> Vec<$crate::store::PoolStats> {
                [("writer", &self.writer), ("reader", &self.reader)]
                    .into_iter()
                    .map(|(pool, p)| $crate::store::PoolStats {
                        pool,
                        open: p.size(),
                        idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
                        max: p.options().get_max_connections(),
                    })
                    .collect()
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }

            async fn create_org(&self, name: &str) -> $crate::store::StoreResult<$crate::store::Organisation> {
                let org = $crate::store::Organisation {
                    id: uuid::Uuid::now_v7(),
                    name: name.to_owned(),
                    created_at: chrono::Utc::now(),
                };
                sqlx::query("INSERT INTO organisations (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(org.id)
                    .bind(&org.name)
                    .bind(org.created_at)
                    .execute(&self.writer)
                    .await?;
                Ok(org)
            }

            async fn get_org(&self, id: uuid::Uuid) -> $crate::store::StoreResult<$crate::store::Organisation> {
                sqlx::query_as("SELECT id, name, created_at FROM organisations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?
                    .ok_or($crate::store::StoreError::NotFound)
            }

            async fn create_user(&self, user: $crate::store::NewUser) -> $crate::store::StoreResult<$crate::store::UserRecord> {
                let now = chrono::Utc::now();
                let rec = $crate::store::UserRecord {
                    id: uuid::Uuid::now_v7(),
                    org_id: user.org_id,
                    email: user.email,
                    password_hash: user.password_hash,
                    role: user.role.as_str().to_owned(),
                    full_name_enc: user.full_name_enc,
                    phone_enc: user.phone_enc,
                    active: true,
                    created_at: now,
                    updated_at: now,
                    licence_number: None,
                };
                sqlx::query(&format!(
                    "INSERT INTO users ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    $crate::store::sql::USER_COLUMNS
                ))
                .bind(rec.id)
                .bind(rec.org_id)
                .bind(&rec.email)
                .bind(&rec.password_hash)
                .bind(&rec.role)
                .bind(&rec.full_name_enc)
                .bind(&rec.phone_enc)
                .bind(rec.active)
                .bind(rec.created_at)
                .bind(rec.updated_at)
                .execute(&self.writer)
                .await
                .map_err(|e| $crate::store::StoreError::unique(e, "email"))?;
                Ok(rec)
            }

            async fn get_user(&self, id: uuid::Uuid) -> $crate::store::StoreResult<$crate::store::UserRecord> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM users WHERE id = $1",
                    $crate::store::sql::USER_SELECT
                ))
                .bind(id)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn get_user_by_email(&self, email: &str) -> $crate::store::StoreResult<$crate::store::UserRecord> {
                sqlx::query_as(&format!(
                    "SELECT {} FROM users WHERE email = $1",
                    $crate::store::sql::USER_SELECT
                ))
                .bind(email)
                .fetch_optional(&self.reader)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn list_users(
                &self,
                org_id: uuid::Uuid,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::UserRecord>> {
                Ok(sqlx::query_as(&format!(
                    "SELECT {} FROM users WHERE org_id = $1 AND ($2 IS NULL OR id > $2) \
                     ORDER BY id LIMIT $3",
                    $crate::store::sql::USER_SELECT
                ))
                .bind(org_id)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?)
            }

            async fn update_user(
                &self,
                org_id: uuid::Uuid,
                id: uuid::Uuid,
                patch: $crate::store::UserPatch,
            ) -> $crate::store::StoreResult<$crate::store::UserRecord> {
                let mut tx = self.writer.begin().await?;
                let current: $crate::store::UserRecord = sqlx::query_as(&format!(
                    "SELECT {} FROM users WHERE id = $1 AND org_id = $2",
                    $crate::store::sql::USER_SELECT
                ))
                .bind(id)
                .bind(org_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or($crate::store::StoreError::NotFound)?;
                let role = patch.role.map(|r| r.as_str().to_owned()).unwrap_or(current.role);
                let active = patch.active.unwrap_or(current.active);
                let password_hash = patch.password_hash.unwrap_or(current.password_hash);
                let full_name_enc = patch.full_name_enc.unwrap_or(current.full_name_enc);
                let phone_enc = patch.phone_enc.unwrap_or(current.phone_enc);
                let licence_number = patch.licence_number.unwrap_or(current.licence_number);
                let now = chrono::Utc::now();
                sqlx::query(
                    "UPDATE users SET role = $1, active = $2, password_hash = $3, \
                     full_name_enc = $4, phone_enc = $5, updated_at = $6, licence_number = $8 \
                     WHERE id = $7",
                )
                .bind(&role)
                .bind(active)
                .bind(&password_hash)
                .bind(&full_name_enc)
                .bind(&phone_enc)
                .bind(now)
                .bind(id)
                .bind(&licence_number)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok($crate::store::UserRecord {
                    role,
                    active,
                    password_hash,
                    full_name_enc,
                    phone_enc,
                    licence_number,
                    updated_at: now,
                    ..current
                })
            }

            async fn all_user_pii(
                &self,
            ) -> $crate::store::StoreResult<Vec<(uuid::Uuid, Option<Vec<u8>>, Option<Vec<u8>>)>> {
                Ok(sqlx::query_as("SELECT id, full_name_enc, phone_enc FROM users ORDER BY id")
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn insert_refresh_token(
                &self,
                t: &$crate::store::RefreshTokenRecord,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, created_at, \
                     expires_at, used_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(t.id)
                .bind(&t.token_hash)
                .bind(t.family_id)
                .bind(t.user_id)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.used_at)
                .bind(t.revoked_at)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn get_refresh_token(
                &self,
                token_hash: &[u8],
            ) -> $crate::store::StoreResult<$crate::store::RefreshTokenRecord> {
                sqlx::query_as(
                    "SELECT id, token_hash, family_id, user_id, created_at, expires_at, used_at, \
                     revoked_at FROM refresh_tokens WHERE token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.writer)
                .await?
                .ok_or($crate::store::StoreError::NotFound)
            }

            async fn use_refresh_token(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                // The conditional UPDATE is the race guard: of two concurrent refreshes with the
                // same token, exactly one sees rows_affected == 1.
                let done = sqlx::query(
                    "UPDATE refresh_tokens SET used_at = $1 \
                     WHERE id = $2 AND used_at IS NULL AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(id)
                .execute(&self.writer)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke_refresh_family(
                &self,
                family_id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $1 \
                     WHERE family_id = $2 AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(family_id)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn revoke_user_refresh_tokens(
                &self,
                user_id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "UPDATE refresh_tokens SET revoked_at = $1 \
                     WHERE user_id = $2 AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(user_id)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn insert_revocation(
                &self,
                kind: $crate::store::RevocationKind,
                subject: &str,
                not_before: chrono::DateTime<chrono::Utc>,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<i64> {
                let (seq,): (i64,) = sqlx::query_as(
                    "INSERT INTO revocations (kind, subject, not_before, expires_at) \
                     VALUES ($1, $2, $3, $4) RETURNING seq",
                )
                .bind(kind.as_str())
                .bind(subject)
                .bind(not_before)
                .bind(expires_at)
                .fetch_one(&self.writer)
                .await?;
                self.after_revocation(seq).await;
                Ok(seq)
            }

            async fn revocations_since(
                &self,
                after: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::Revocation>> {
                let rows: Vec<(i64, String, String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> =
                    sqlx::query_as(
                        "SELECT seq, kind, subject, not_before, expires_at FROM revocations \
                         WHERE seq > $1 AND expires_at > $2 ORDER BY seq",
                    )
                    .bind(after)
                    .bind(now)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(seq, kind, subject, not_before, expires_at)| $crate::store::Revocation {
                        seq,
                        kind: $crate::store::RevocationKind::parse(&kind),
                        subject,
                        not_before,
                        expires_at,
                    })
                    .collect())
            }

            async fn purge_expired(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let a = sqlx::query("DELETE FROM revocations WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                let b = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= $1")
                    .bind(now)
                    .execute(&self.writer)
                    .await?;
                // Throttle counters idle for a day are long past any window or lock.
                let day_ago = now.timestamp_millis() - 24 * 3600 * 1000;
                let c = sqlx::query(
                    "DELETE FROM login_throttle WHERE last_at < $1 AND locked_until < $1",
                )
                .bind(day_ago)
                .execute(&self.writer)
                .await?;
                Ok(a.rows_affected() + b.rows_affected() + c.rows_affected())
            }

            async fn throttle_rows(
                &self,
                email: &str,
                address: &str,
            ) -> $crate::store::StoreResult<(
                Option<$crate::store::ThrottleRow>,
                Option<$crate::store::ThrottleRow>,
            )> {
                let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
                    "SELECT email, failures, last_at, locked_until FROM login_throttle \
                     WHERE address = $1 AND (email = $2 OR email = '')",
                )
                .bind(address)
                .bind(email)
                .fetch_all(&self.writer)
                .await?;
                let mut pair = None;
                let mut whole = None;
                for (e, failures, last_at, locked_until) in rows {
                    let row = $crate::store::ThrottleRow { failures, last_at, locked_until };
                    if e.is_empty() {
                        whole = Some(row);
                    } else {
                        pair = Some(row);
                    }
                }
                Ok((pair, whole))
            }

            async fn throttle_attempt(
                &self,
                email: &str,
                address: &str,
                now_ms: i64,
                rule: $crate::store::ThrottleRule,
            ) -> $crate::store::StoreResult<Option<i64>> {
                // n = failures counting this attempt (starting over after a quiet window); from
                // the rule's `free`-th on, the pair is locked for step * k^2 (k = n - free + 1),
                // capped. The WHERE makes a locked pair update nothing (and return no row).
                let n = "(CASE WHEN login_throttle.last_at < $4 THEN 1 \
                         ELSE login_throttle.failures + 1 END)";
                let k = format!("({n} - $5 + 1)", n = n);
                let sql = format!(
                    "INSERT INTO login_throttle (email, address, failures, last_at, locked_until) \
                     VALUES ($1, $2, 1, $3, CASE WHEN $5 <= 1 THEN $3 + $6 ELSE 0 END) \
                     ON CONFLICT (email, address) DO UPDATE SET \
                     failures = {n}, last_at = $3, \
                     locked_until = CASE WHEN {n} < $5 THEN 0 \
                       WHEN $6 * {k} * {k} > $7 THEN $3 + $7 \
                       ELSE $3 + $6 * {k} * {k} END \
                     WHERE login_throttle.locked_until <= $3 \
                     RETURNING failures",
                    n = n,
                    k = k
                );
                let row: Option<(i64,)> = sqlx::query_as(&sql)
                    .bind(email)
                    .bind(address)
                    .bind(now_ms)
                    .bind(now_ms - rule.window_ms)
                    .bind(rule.free)
                    .bind(rule.step_ms)
                    .bind(rule.max_ms)
                    .fetch_optional(&self.writer)
                    .await?;
                Ok(row.map(|(n,)| n))
            }

            async fn throttle_forgive(
                &self,
                email: &str,
                address: &str,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "UPDATE login_throttle SET failures = failures - 1 \
                     WHERE email = $1 AND address = $2 AND failures > 0",
                )
                .bind(email)
                .bind(address)
                .execute(&self.writer)
                .await?;
                Ok(())
            }

            async fn throttle_clear(
                &self,
                email: &str,
                address: Option<&str>,
            ) -> $crate::store::StoreResult<u64> {
                let r = sqlx::query(
                    "DELETE FROM login_throttle WHERE email = $1 AND email <> '' \
                     AND ($2 IS NULL OR address = $2)",
                )
                .bind(email)
                .bind(address)
                .execute(&self.writer)
                .await?;
                Ok(r.rows_affected())
            }

            async fn insert_audit(&self, a: $crate::store::NewAudit) -> $crate::store::StoreResult<uuid::Uuid> {
                let id = uuid::Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO audits (id, org_id, actor_id, action, target_type, target_id, \
                     details, request_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(id)
                .bind(a.org_id)
                .bind(a.actor_id)
                .bind(&a.action)
                .bind(&a.target_type)
                .bind(&a.target_id)
                .bind(sqlx::types::Json(&a.details))
                .bind(&a.request_id)
                .bind(chrono::Utc::now())
                .execute(&self.writer)
                .await?;
                Ok(id)
            }

            async fn list_audits_by_actor(
                &self,
                actor_id: uuid::Uuid,
                page: $crate::store::Page,
            ) -> $crate::store::StoreResult<Vec<$crate::store::AuditRecord>> {
                Ok(sqlx::query_as(
                    "SELECT id, org_id, actor_id, action, target_type, target_id, details, \
                     request_id, created_at FROM audits WHERE actor_id = $1 \
                     AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
                )
                .bind(actor_id)
                .bind(page.after)
                .bind(page.limit)
                .fetch_all(&self.reader)
                .await?)
            }
        }
    };
}

pub(crate) use sql_store;
