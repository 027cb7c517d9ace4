//! API tokens. A token can mint only tokens with a subset of its own scopes, so
//! `tokens:write` never escalates privileges; what it minted is revoked with it; and a token
//! revoked while its request was on the way changes nothing (the store checks the actor
//! inside the transaction).

use crate::{generate_token, token_hash, Caller, Result, Service, ServiceError};
use heimweg_control::{Name, Scope, Scopes};
use heimweg_store::ApiToken;

/// A new token and its secret, which exists only in this value (the store keeps its hash).
#[derive(Debug)]
pub struct MintedToken {
    pub token: ApiToken,
    pub secret: String,
}

impl Service {
    /// The caller a bearer token stands for.
    pub async fn authenticate_token(&self, bearer: &str) -> Result<Caller> {
        let bearer = bearer.trim();
        if bearer.is_empty() || bearer.len() > 128 {
            return Err(ServiceError::Unauthorized("no valid token".into()));
        }
        match self.store.api_token_by_hash(&token_hash(bearer)).await? {
            Some(t) => Ok(Caller::token(&t)),
            None => Err(ServiceError::Unauthorized("no valid token".into())),
        }
    }

    pub async fn create_token(
        &self,
        caller: &Caller,
        name: &Name,
        scopes: &Scopes,
    ) -> Result<MintedToken> {
        caller.require(Scope::TokensWrite)?;
        if scopes.is_empty() {
            return Err(ServiceError::Invalid(
                "scopes must name at least one scope".into(),
            ));
        }
        if let Some(s) = caller.scopes().missing_from(scopes) {
            return Err(ServiceError::Invalid(format!(
                "a token can only grant scopes it holds itself, and this one lacks {:?}",
                s.as_str()
            )));
        }
        let secret = generate_token();
        let token = self
            .store
            .create_api_token(
                caller.actor(),
                name,
                &token_hash(&secret),
                scopes,
                self.now(),
            )
            .await?;
        Ok(MintedToken { token, secret })
    }

    /// Every token, newest first (never their secrets).
    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<ApiToken>> {
        caller.require(Scope::TokensRead)?;
        Ok(self.store.api_tokens().await?)
    }

    /// Revokes a token and what it minted. Revoking is as strong as granting: only a caller
    /// that holds every scope of the target may revoke it, so a narrow token cannot lock out
    /// the admin's. Returns how many descendants went with it.
    pub async fn revoke_token(&self, caller: &Caller, name: &Name) -> Result<u64> {
        caller.require(Scope::TokensWrite)?;
        let target = self.store.live_api_token(name).await?;
        if let Some(s) = caller.scopes().missing_from(&target.scopes) {
            return Err(ServiceError::Invalid(format!(
                "a token can only revoke tokens whose scopes it holds itself, and this one lacks {:?}",
                s.as_str()
            )));
        }
        Ok(self
            .store
            .revoke_api_token(caller.actor(), name, self.now())
            .await?)
    }
}
