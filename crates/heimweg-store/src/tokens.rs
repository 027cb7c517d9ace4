//! API tokens, kept as the hash of their secret.

use crate::db::{audit, decode_error};
use crate::{stored_name, Result, Store, StoreError};
use heimweg_control::{Actor, AuditAction, Name, Scopes};

/// An API token as stored: its hash, never the token.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: i64,
    pub name: Name,
    pub scopes: Scopes,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    scopes: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

const COLUMNS: &str = "id, name, scopes, created_at, revoked_at";

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<ApiToken> {
        let names: Vec<&str> = r
            .scopes
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .collect();
        Ok(ApiToken {
            id: r.id,
            name: stored_name("api_tokens", r.id, &r.name)?,
            scopes: Scopes::parse(&names).map_err(|e| decode_error("api_tokens", r.id, e))?,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
    }
}

impl Store {
    /// Records a token by the hash of its secret. A token minted by another (`actor` is that
    /// token) is its child: revoking the parent revokes it too, and a parent revoked while
    /// the request was on its way mints nothing (the actor is checked in the transaction).
    pub async fn create_api_token(
        &self,
        actor: &Actor,
        name: &Name,
        token_hash: &str,
        scopes: &Scopes,
        now: i64,
    ) -> Result<ApiToken> {
        let parent = match actor {
            Actor::Token { id, .. } => Some(*id),
            _ => None,
        };
        let mut tx = self.write(actor).await?;
        let taken: Option<i64> =
            sqlx::query_scalar("SELECT id FROM api_tokens WHERE name_key = $1")
                .bind(name.key())
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "a token named {name:?} already exists"
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, name_key, token_hash, scopes, created_at, parent_id)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(name.as_str())
        .bind(name.key())
        .bind(token_hash)
        .bind(scopes.to_stored())
        .bind(now)
        .bind(parent)
        .fetch_one(&mut *tx)
        .await?;
        let detail = scopes.to_stored();
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::TokenCreate,
            name.as_str(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(ApiToken {
            id,
            name: name.clone(),
            scopes: scopes.clone(),
            created_at: now,
            revoked_at: None,
        })
    }

    /// The live token with this hash, if any.
    pub async fn api_token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        sqlx::query_as::<_, TokenRow>(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(token_hash)
        .fetch_optional(&self.reads)
        .await?
        .map(ApiToken::try_from)
        .transpose()
    }

    /// The live token named `name`.
    pub async fn live_api_token(&self, name: &Name) -> Result<ApiToken> {
        sqlx::query_as::<_, TokenRow>(&format!(
            "SELECT {COLUMNS} FROM api_tokens WHERE name_key = $1 AND revoked_at IS NULL"
        ))
        .bind(name.key())
        .fetch_optional(&self.reads)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("there is no live token named {name:?}")))?
        .try_into()
    }

    /// Every token, newest first (never their secrets: only hashes are stored).
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>> {
        sqlx::query_as::<_, TokenRow>(&format!(
            "SELECT {COLUMNS} FROM api_tokens ORDER BY id DESC"
        ))
        .fetch_all(&self.reads)
        .await?
        .into_iter()
        .map(ApiToken::try_from)
        .collect()
    }

    /// Revokes a token and every token minted from it, at any depth, in one statement.
    /// Returns how many descendants went with it.
    pub async fn revoke_api_token(&self, actor: &Actor, name: &Name, now: i64) -> Result<u64> {
        let mut tx = self.write(actor).await?;
        let live: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, name FROM api_tokens WHERE name_key = $1 AND revoked_at IS NULL",
        )
        .bind(name.key())
        .fetch_optional(&mut *tx)
        .await?;
        let (id, stored) = live.ok_or_else(|| {
            StoreError::NotFound(format!("there is no live token named {name:?}"))
        })?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND id IN (
                 WITH RECURSIVE family(id) AS (
                     SELECT CAST($2 AS BIGINT)
                     UNION ALL
                     SELECT t.id FROM api_tokens t JOIN family f ON t.parent_id = f.id
                 )
                 SELECT id FROM family)",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let descendants = done.saturating_sub(1);
        let detail = format!("{descendants} tokens minted from it revoked too");
        audit(
            &mut tx,
            now,
            actor,
            AuditAction::TokenRevoke,
            &stored,
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(descendants)
    }
}
