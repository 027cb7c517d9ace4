//! Sign-in through the city's identity provider (OpenID Connect, authorization code flow with
//! PKCE, state and nonce), for staff on their own page and for admins and the helpdesk in the
//! panel. The provider's answer is checked here: the state against the sign-in this browser
//! started (kept in the store, used once), the issuer (RFC 9207), the code exchanged with the
//! PKCE verifier, the ID token's signature against the provider's published keys (fetched
//! again once when a token names a key not seen yet: the provider rotated), its issuer,
//! audience, expiry (with a clock-skew allowance), issue time and nonce. What the verified
//! claims allow is `heimweg_control::identity`'s decision.

use crate::{invalid, secrets, Result, Service, ServiceError};
use heimweg_control::identity::{ClaimGroupMap, RoleClaims};
use heimweg_control::{Email, Name};
use heimweg_store::{PendingSignIn, ProviderAccount, SignInPurpose};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenClaims,
    IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, SignatureVerificationError, StandardErrorResponse, StandardTokenResponse,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The claims beside the standard ones, kept whole: which of them hold the login name and
/// the groups is a setting (Entra ID, Keycloak and ADFS name them differently).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct OtherClaims {
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}
impl AdditionalClaims for OtherClaims {}

type TokenFields = IdTokenFields<
    OtherClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<TokenFields, CoreTokenType>;
/// The client in one of its type states: discovery gives one whose token endpoint may be
/// missing; once it is known to be there, the client is stored and used.
type ClientIn<HasTokenUrl> = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    HasTokenUrl,
    EndpointMaybeSet,
>;
type OidcClient = ClientIn<EndpointSet>;

/// Signature algorithms accepted for ID tokens: the asymmetric ones. `HS*` would make the
/// client secret a signing key, `none` no signature at all.
const ALGORITHMS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The provider's keys are fetched again at most this often: a token naming an unknown key
/// reaches the check only with a code the provider issued, but a provider that signs with a
/// key it does not publish must not make every sign-in fetch them.
const REFETCH_MIN: Duration = Duration::from_secs(2);

/// Sign-ins begun per second, from everyone: each one is a row in the store for ten minutes, so
/// a flood of them must not fill it (at 8:00 the staff who sign in do so once, not per second).
static SIGN_INS: crate::limits::RateLimit = crate::limits::RateLimit::new(20.0, 200.0);
/// Per client (an IPv4 address, an IPv6 /64): an office behind one address still gets through.
static SIGN_INS_PER_CLIENT: std::sync::LazyLock<crate::limits::KeyedRateLimit> =
    std::sync::LazyLock::new(|| crate::limits::KeyedRateLimit::new(1.0, 20.0));

/// How a staff member's page is reached, once signed in.
pub const STAFF_SESSION_SECS: i64 = 3600;

/// The identity provider and what its claims mean.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer URL, as the provider's discovery document names it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Where the browser comes back to: `{public_url}/oidc/callback`.
    pub public_url: String,
    /// A CA certificate (PEM) the provider's TLS certificate is checked against, beside the
    /// built-in public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Scopes asked for beside `openid` (the groups often need one of their own).
    pub scopes: Vec<String>,
    /// The claim with the login name: the name of a user or panel account made at sign-in.
    pub login_claim: String,
    /// The claim with the person's groups (a list of strings, or one string).
    pub groups_claim: String,
    /// Provider groups to heimweg groups: who may put devices online, and in which group.
    pub groups: ClaimGroupMap,
    /// Provider groups that make an account an admin or the helpdesk in the panel.
    pub roles: RoleClaims,
    /// The most active devices a staff member may enroll on their own page.
    pub device_limit: u32,
    /// How far the provider's clock may be off from ours.
    pub clock_skew: Duration,
    /// For a sign-in to connect: the authentication methods (`amr` values such as `mfa`,
    /// `otp`, `hwk`) of which the ID token must name one; empty: the provider's own policy
    /// for this client decides (it must ask for the second factor).
    pub connect_amr: Vec<String>,
}

impl OidcSettings {
    /// Where the provider sends the browser back to (the panel's route), as registered there.
    pub fn redirect_uri(&self) -> String {
        format!("{}/oidc/callback", self.public_url)
    }
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("login_claim", &self.login_claim)
            .field("groups_claim", &self.groups_claim)
            .field("groups", &self.groups)
            .field("roles", &self.roles)
            .field("device_limit", &self.device_limit)
            .field("connect_amr", &self.connect_amr)
            .finish_non_exhaustive()
    }
}

/// The provider, discovered on first use (a gateway starts while the provider is down) and
/// again when it rotated its keys.
pub struct IdentityProvider {
    settings: OidcSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: openidconnect::reqwest::Client,
    client: tokio::sync::RwLock<Option<Arc<OidcClient>>>,
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

/// What a sign-in answer carries back to heimweg (the callback's query).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ProviderAnswer {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A sign-in begun: the cookie that binds it to this browser, and the provider's page.
#[derive(Debug)]
pub struct SignInStart {
    pub cookie: String,
    pub url: String,
}

/// A sign-in finished.
#[derive(Debug)]
pub enum SignedIn {
    /// A staff member: their session id for the cookie.
    Staff { session: String, next: String },
    /// An admin or the helpdesk: the panel starts their session.
    Panel {
        admin: heimweg_store::Admin,
        next: String,
    },
}

/// Who the verified ID token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    subject: String,
    login: Name,
    email: Option<Email>,
    groups: Vec<String>,
}

fn refused(what: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unauthorized(format!("the sign-in was refused: {what}"))
}

impl IdentityProvider {
    /// Checks the settings; the provider is asked nothing yet.
    pub fn new(settings: OidcSettings) -> Result<IdentityProvider> {
        let issuer = IssuerUrl::new(settings.issuer.clone()).map_err(|e| invalid("issuer", e))?;
        let url = issuer.url();
        match url.scheme() {
            "https" => {}
            "http" if url.host_str().is_some_and(crate::mail::is_loopback) => {}
            _ => {
                return Err(invalid(
                    "issuer",
                    "the identity provider is reached over https:// (plain http only on this \
                     machine's loopback, for tests)",
                ))
            }
        }
        let redirect =
            RedirectUrl::new(settings.redirect_uri()).map_err(|e| invalid("public URL", e))?;
        let mut http = openidconnect::reqwest::ClientBuilder::new()
            // Discovery names the endpoints; a redirect would let the provider's host send
            // heimweg's requests (and the client secret) elsewhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10));
        if let Some(pem) = &settings.ca_pem {
            for cert in openidconnect::reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| invalid("CA file", e))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| ServiceError::NotReady(format!("the HTTP client: {e}")))?;
        Ok(IdentityProvider {
            settings,
            issuer,
            redirect,
            http,
            client: tokio::sync::RwLock::new(None),
            fetched: tokio::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The client, discovering the provider first if that has not worked yet.
    async fn client(&self) -> Result<Arc<OidcClient>> {
        if let Some(c) = self.client.read().await.as_ref() {
            return Ok(c.clone());
        }
        self.discover(None).await
    }

    /// Reads the discovery document and the keys again, unless someone did since `seen`
    /// (then theirs is used) or the last fetch was less than [`REFETCH_MIN`] ago.
    async fn discover(&self, seen: Option<&Arc<OidcClient>>) -> Result<Arc<OidcClient>> {
        let mut fetched = self.fetched.lock().await;
        if let Some(current) = self.client.read().await.as_ref() {
            let newer = seen.is_none_or(|s| !Arc::ptr_eq(s, current));
            if newer || fetched.is_some_and(|at| at.elapsed() < REFETCH_MIN) {
                return Ok(current.clone());
            }
        }
        *fetched = Some(Instant::now());
        let unreachable = |e: &dyn std::fmt::Display| {
            ServiceError::NotReady(format!(
                "the identity provider {} cannot be used: {e}",
                self.issuer.as_str()
            ))
        };
        let metadata = CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http)
            .await
            .map_err(|e| unreachable(&error_chain(&e)))?;
        let token_url = metadata
            .token_endpoint()
            .cloned()
            .ok_or_else(|| unreachable(&"its discovery document names no token endpoint"))?;
        let client = Arc::new(
            ClientIn::<EndpointMaybeSet>::from_provider_metadata(
                metadata,
                ClientId::new(self.settings.client_id.clone()),
                Some(ClientSecret::new(self.settings.client_secret.clone())),
            )
            .set_token_uri(token_url)
            .set_redirect_uri(self.redirect.clone()),
        );
        tracing::info!(
            issuer = self.issuer.as_str(),
            "identity provider discovered"
        );
        *self.client.write().await = Some(client.clone());
        Ok(client)
    }

    /// The provider's sign-in page for a new sign-in for `purpose`, to return to `next`, and
    /// what to check its answer against.
    async fn begin(
        &self,
        purpose: SignInPurpose,
        next: &str,
        now: i64,
    ) -> Result<(String, PendingSignIn)> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        if purpose == SignInPurpose::Connect {
            // A sign-in to connect is a fresh one, second factor included: the provider may
            // not answer from the session it keeps for this browser.
            request = request
                .add_prompt(CoreAuthPrompt::Login)
                .set_max_age(Duration::ZERO);
        }
        for s in &self.settings.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = request.url();
        let pending = PendingSignIn {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            purpose,
            next: next.to_string(),
            begun_at: now,
        };
        Ok((url.to_string(), pending))
    }

    /// The code in the provider's answer, if the answer is one to `pending`: no error, the
    /// sign-in's state (compared in constant time), this provider as its issuer.
    fn code_in(&self, pending: &PendingSignIn, answer: &ProviderAnswer) -> Result<String> {
        if let Some(e) = &answer.error {
            let detail = answer.error_description.as_deref().unwrap_or("");
            return Err(refused(format!(
                "the identity provider answered {}: {}",
                clip(e),
                clip(detail)
            )));
        }
        let state = answer.state.as_deref().unwrap_or("");
        if !secrets::same(state, &pending.state) {
            return Err(refused(
                "the answer does not belong to the sign-in this browser started (state)",
            ));
        }
        if answer
            .iss
            .as_deref()
            .is_some_and(|i| i != self.issuer.as_str())
        {
            return Err(refused("the answer names another issuer"));
        }
        answer
            .code
            .clone()
            .ok_or_else(|| refused("the answer carries no code"))
    }

    /// Checks the provider's answer to `pending` and returns who signed in.
    async fn finish(&self, pending: PendingSignIn, answer: &ProviderAnswer) -> Result<Identity> {
        let code = self.code_in(&pending, answer)?;
        let (purpose, begun_at) = (pending.purpose, pending.begun_at);
        let client = self.client().await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| refused(format!("the code exchange failed: {}", error_chain(&e))))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| refused("the provider sent no ID token"))?;
        let nonce = Nonce::new(pending.nonce);
        let skew = chrono::Duration::from_std(self.settings.clock_skew).unwrap_or_default();
        let check = |c: &OidcClient| -> std::result::Result<
            IdTokenClaims<OtherClaims, CoreGenderClaim>,
            ClaimsVerificationError,
        > {
            let verifier = c
                .id_token_verifier()
                .set_allowed_algs(ALGORITHMS)
                // The verifier has no skew allowance: its clock is set back by the skew for
                // the expiry, and the issue time may be ahead by as much.
                .set_time_fn(move || chrono::Utc::now() - skew)
                .set_issue_time_verifier_fn(move |iat| {
                    if iat > chrono::Utc::now() + skew {
                        Err(format!("issued in the future ({iat})"))
                    } else {
                        Ok(())
                    }
                });
            id_token.claims(&verifier, &nonce).cloned()
        };
        let claims = match check(&client) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey
                | SignatureVerificationError::CryptoError(_),
            )) => {
                tracing::info!(
                    "ID token signed with a key not seen yet: fetching the provider's keys again"
                );
                let fresh = self.discover(Some(&client)).await?;
                check(&fresh)
            }
            other => other,
        }
        .map_err(|e| match e {
            // The verifier's own text shows its skew-shifted clock as the current time.
            ClaimsVerificationError::Expired(_) => refused(format!(
                "the ID token expired (more than the allowed clock skew of {} s ago); if this \
                 happens to everyone, the provider's or the gateway's clock is wrong",
                self.settings.clock_skew.as_secs()
            )),
            e => refused(format!("the ID token does not hold: {e}")),
        })?;
        if purpose == SignInPurpose::Connect {
            self.fresh_with_second_factor(&claims, begun_at)?;
        }
        let mut who = self.identity(&claims)?;
        if !claims
            .additional_claims()
            .rest
            .contains_key(&self.settings.groups_claim)
        {
            who.groups = self
                .userinfo_groups(&client, &tokens, claims.subject())
                .await?;
        }
        Ok(who)
    }

    /// The groups from the userinfo endpoint, for a provider that keeps them out of the ID
    /// token (a Keycloak mapper without "add to ID token", ADFS). Its answer must name the ID
    /// token's subject. No endpoint: no groups.
    async fn userinfo_groups(
        &self,
        client: &OidcClient,
        tokens: &Tokens,
        subject: &openidconnect::SubjectIdentifier,
    ) -> Result<Vec<String>> {
        let Ok(request) = client.user_info(tokens.access_token().clone(), Some(subject.clone()))
        else {
            return Ok(Vec::new());
        };
        let info: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> = request
            .request_async(&self.http)
            .await
            .map_err(|e| refused(format!("the userinfo request failed: {}", error_chain(&e))))?;
        Ok(groups_in(
            &info.additional_claims().rest,
            &self.settings.groups_claim,
        ))
    }

    /// A sign-in to connect must be one the person made at the provider after it began here,
    /// with a second factor where the settings ask for one (see [`fresh_second_factor`]).
    fn fresh_with_second_factor(
        &self,
        claims: &IdTokenClaims<OtherClaims, CoreGenderClaim>,
        begun_at: i64,
    ) -> Result<()> {
        let methods: Vec<&str> = claims
            .auth_method_refs()
            .map(|m| m.iter().map(|r| r.as_str()).collect())
            .unwrap_or_default();
        fresh_second_factor(
            claims.auth_time().map(|t| t.timestamp()),
            &methods,
            &self.settings.connect_amr,
            begun_at,
            (
                chrono::Utc::now().timestamp(),
                i64::try_from(self.settings.clock_skew.as_secs()).unwrap_or(i64::MAX),
            ),
        )
        .map_err(refused)
    }

    /// Subject, login name, address and groups from verified claims.
    fn identity(&self, claims: &IdTokenClaims<OtherClaims, CoreGenderClaim>) -> Result<Identity> {
        let rest = &claims.additional_claims().rest;
        let login = match self.settings.login_claim.as_str() {
            "preferred_username" => claims.preferred_username().map(|u| u.to_string()),
            "email" => claims.email().map(|e| e.to_string()),
            "sub" => Some(claims.subject().to_string()),
            other => rest.get(other).and_then(|v| v.as_str()).map(str::to_string),
        }
        .ok_or_else(|| {
            refused(format!(
                "the ID token has no {:?} claim (the login name)",
                self.settings.login_claim
            ))
        })?;
        let login = Name::new(&login).map_err(|e| {
            refused(format!(
                "the login name {login:?} cannot be a heimweg name: {e}"
            ))
        })?;
        let groups = groups_in(rest, &self.settings.groups_claim);
        let email = claims.email().and_then(|e| Email::new(e.as_str()).ok());
        Ok(Identity {
            subject: claims.subject().to_string(),
            login,
            email,
            groups,
        })
    }
}

/// Whether a sign-in to connect holds: the person signed in at the provider after it began
/// here (`begun_at`, less the clock skew), not from a session the provider remembered, and not
/// in the future; and, where `wanted` names authentication methods, with one of them (`amr`).
/// `(now, skew)` in Unix seconds.
fn fresh_second_factor(
    auth_time: Option<i64>,
    methods: &[&str],
    wanted: &[String],
    begun_at: i64,
    (now, skew): (i64, i64),
) -> std::result::Result<(), String> {
    match auth_time {
        None => {
            return Err(
                "the ID token does not say when the person signed in (auth_time); the provider \
                 must send it for a sign-in to connect"
                    .into(),
            )
        }
        Some(t) if t < begun_at - skew => {
            return Err(format!(
                "the provider answered from an earlier sign-in ({} s before this one began), \
                 not a new one",
                begun_at - t
            ))
        }
        Some(t) if t > now + skew => {
            return Err("the ID token says the person signed in in the future".into())
        }
        Some(_) => {}
    }
    if wanted.is_empty() || methods.iter().any(|m| wanted.iter().any(|w| w == m)) {
        return Ok(());
    }
    Err(format!(
        "signing in to connect needs a second factor ({}), and the provider names only {}",
        wanted.join(", "),
        if methods.is_empty() {
            "none".to_string()
        } else {
            methods.join(", ")
        }
    ))
}

/// The groups in claim `name`: a list of strings, or one string.
fn groups_in(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// A provider's text shown on a page: bounded, whatever the provider sends.
fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// An error and its causes on one line (reqwest's own text is only its top layer).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl Service {
    /// Signs staff and (if roles are mapped) admins in through `provider`.
    pub fn with_identity_provider(mut self, provider: IdentityProvider) -> Service {
        self.oidc = Some(Arc::new(provider));
        self
    }

    /// The identity provider's settings, if one is connected.
    pub fn identity_provider(&self) -> Option<&OidcSettings> {
        self.oidc.as_deref().map(IdentityProvider::settings)
    }

    fn provider(&self) -> Result<&IdentityProvider> {
        self.oidc.as_deref().ok_or_else(|| {
            ServiceError::NotReady(
                "no identity provider is connected (set HEIMWEG_OIDC_ISSUER)".into(),
            )
        })
    }

    /// Begins a sign-in for `purpose` from `client`, to return to `next` (a path of this
    /// site).
    pub async fn begin_sign_in(
        &self,
        client: Option<std::net::IpAddr>,
        purpose: SignInPurpose,
        next: &str,
    ) -> Result<SignInStart> {
        let provider = self.provider()?;
        if (client.is_some() && !SIGN_INS_PER_CLIENT.admit(client)) || !SIGN_INS.admit() {
            return Err(ServiceError::Busy(
                "too many sign-ins right now; please try again in a minute".into(),
            ));
        }
        if purpose == SignInPurpose::Panel && provider.settings.roles.is_empty() {
            return Err(ServiceError::NotReady(
                "the panel takes no sign-in through the identity provider: no provider group \
                 is mapped to a role (HEIMWEG_OIDC_ADMIN_GROUPS, HEIMWEG_OIDC_HELPDESK_GROUPS)"
                    .into(),
            ));
        }
        let (url, pending) = provider.begin(purpose, next, self.now()).await?;
        let cookie = secrets::random_token(32);
        self.store
            .save_sign_in(&crate::token_hash(&cookie), &pending, self.now())
            .await?;
        Ok(SignInStart { cookie, url })
    }

    /// Finishes the sign-in this browser's `cookie` began, with the provider's answer.
    pub async fn finish_sign_in(
        &self,
        cookie: Option<&str>,
        answer: &ProviderAnswer,
    ) -> Result<SignedIn> {
        let provider = self.provider()?;
        let pending = match cookie {
            Some(c) if c.len() <= 64 => {
                self.store
                    .take_sign_in(&crate::token_hash(c), self.now())
                    .await?
            }
            _ => None,
        }
        .ok_or_else(|| {
            refused(
                "this browser started no sign-in that is still open (it took longer than ten \
                 minutes, was finished already, or was started in another browser); start again",
            )
        })?;
        let (purpose, next) = (pending.purpose, pending.next.clone());
        let who = provider.finish(pending, answer).await?;
        let account = ProviderAccount {
            subject: &who.subject,
            login: &who.login,
            email: who.email.as_ref(),
        };
        let now = self.now();
        match purpose {
            SignInPurpose::Panel => {
                let role = provider
                    .settings
                    .roles
                    .role_for(&who.groups)
                    .ok_or_else(|| {
                        refused(format!(
                            "{} is in no group the panel is open to; staff use their own page, /my",
                            who.login
                        ))
                    })?;
                let admin = self.store.admin_sign_in(&account, role, now).await?;
                Ok(SignedIn::Panel { admin, next })
            }
            SignInPurpose::Staff | SignInPurpose::Connect => {
                let claimed = provider.settings.groups.groups_for(&who.groups);
                let user = self
                    .store
                    .staff_sign_in(&account, !claimed.is_empty(), now)
                    .await?;
                // The directory, where it knows the user, decides their group (its sync
                // moves their devices there anyway).
                let groups = match (&user.group, user.from_directory) {
                    (Some(g), true) => vec![g.clone()],
                    _ => claimed,
                };
                if groups.is_empty() {
                    return Err(refused(format!(
                        "{} is in no group that may connect; ask the IT service desk",
                        who.login
                    )));
                }
                let session = secrets::random_token(32);
                self.store
                    .create_staff_session(
                        &crate::token_hash(&session),
                        &user,
                        &groups,
                        &secrets::random_token(32),
                        now,
                        now + STAFF_SESSION_SECS,
                    )
                    .await?;
                if purpose == SignInPurpose::Connect {
                    self.start_activation(&user).await?;
                }
                Ok(SignedIn::Staff { session, next })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_to_connect_must_be_fresh_and_name_a_second_factor() {
        let wanted = vec!["otp".to_string(), "mfa".to_string()];
        let (begun, now, skew) = (1_000_000, 1_000_030, 60);
        let check = |auth_time, methods: &[&str], wanted: &[String]| {
            fresh_second_factor(auth_time, methods, wanted, begun, (now, skew))
        };
        assert_eq!(check(Some(now - 5), &["pwd", "otp"], &wanted), Ok(()));
        assert_eq!(
            check(Some(begun - skew), &["mfa"], &wanted),
            Ok(()),
            "within the skew"
        );
        let stale = check(Some(begun - skew - 1), &["pwd", "otp"], &wanted).unwrap_err();
        assert!(stale.contains("earlier sign-in"), "{stale}");
        let missing = check(None, &["otp"], &wanted).unwrap_err();
        assert!(missing.contains("auth_time"), "{missing}");
        let future = check(Some(now + skew + 1), &["otp"], &wanted).unwrap_err();
        assert!(future.contains("future"), "{future}");
        let password = check(Some(now), &["pwd"], &wanted).unwrap_err();
        assert!(password.contains("names only pwd"), "{password}");
        let nothing = check(Some(now), &[], &wanted).unwrap_err();
        assert!(nothing.contains("names only none"), "{nothing}");
        assert_eq!(
            check(Some(now), &[], &[]),
            Ok(()),
            "the provider's policy decides"
        );
    }

    #[test]
    fn claims_of_any_name_are_kept_beside_the_standard_ones() {
        let json = serde_json::json!({
            "iss": "https://id.stadt.example", "aud": "heimweg", "sub": "s-1",
            "exp": 2_000_000_000, "iat": 1_900_000_000,
            "preferred_username": "anna", "email": "anna@stadt.example",
            "groups": ["vpn-users"], "samaccountname": "amueller", "roles": "vpn"
        });
        let c: IdTokenClaims<OtherClaims, CoreGenderClaim> = serde_json::from_value(json).unwrap();
        assert_eq!(c.preferred_username().unwrap().as_str(), "anna");
        let rest = &c.additional_claims().rest;
        assert_eq!(rest["samaccountname"], "amueller");
        assert_eq!(rest["groups"][0], "vpn-users");
        assert_eq!(rest["roles"], "vpn");
    }

    fn settings(issuer: &str) -> OidcSettings {
        OidcSettings {
            issuer: issuer.into(),
            client_id: "heimweg".into(),
            client_secret: "s3cret".into(),
            public_url: "https://vpn.stadt.example".into(),
            ca_pem: None,
            scopes: vec![],
            login_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            groups: ClaimGroupMap::default(),
            roles: RoleClaims::default(),
            device_limit: 3,
            connect_amr: Vec::new(),
            clock_skew: Duration::from_secs(60),
        }
    }

    /// A "provider" on loopback that answers every request with `body` (status 200, JSON).
    async fn answering(body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn a_provider_that_answers_garbage_or_nothing_is_a_clear_error() {
        for body in ["not json at all", "{\"issuer\": 5}", "[]", "{}"] {
            let url = answering(body).await;
            let p = IdentityProvider::new(settings(&url)).unwrap();
            let e = p.begin(SignInPurpose::Staff, "/my", 0).await.unwrap_err();
            assert!(
                matches!(&e, ServiceError::NotReady(m) if m.contains("cannot be used")),
                "{body}: {e}"
            );
        }
        // A well-formed document for another issuer is refused too.
        let url = answering(
            r#"{"issuer":"https://evil.example","authorization_endpoint":"https://evil.example/a",
                "jwks_uri":"https://evil.example/j","response_types_supported":["code"],
                "subject_types_supported":["public"],
                "id_token_signing_alg_values_supported":["RS256"]}"#,
        )
        .await;
        let e = IdentityProvider::new(settings(&url))
            .unwrap()
            .begin(SignInPurpose::Staff, "/my", 0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot be used"), "{e}");
        // Nobody listening.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let e = IdentityProvider::new(settings(&closed))
            .unwrap()
            .begin(SignInPurpose::Staff, "/my", 0)
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::NotReady(_)), "{e}");
    }

    #[test]
    fn the_provider_is_reached_over_https_or_on_loopback_only() {
        assert!(IdentityProvider::new(settings("https://id.stadt.example/realms/stadt")).is_ok());
        assert!(IdentityProvider::new(settings("http://127.0.0.1:9000")).is_ok());
        let e = IdentityProvider::new(settings("http://id.stadt.example"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("https://"), "{e}");
        assert!(IdentityProvider::new(settings("not a url")).is_err());
        assert!(!format!("{:?}", settings("https://x")).contains("s3cret"));
    }
}
