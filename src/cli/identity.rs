//! The identity provider's settings (OpenID Connect), read by `serve`; deploy/heimweg.env
//! documents them. The client secret only from the settings file (HEIMWEG_OIDC_CLIENT_SECRET),
//! never on a command line.

use anyhow::{bail, Context, Result};
use clap::Args;
use heimweg_control::identity::{ClaimGroupMap, RoleClaims};
use heimweg_service::{IdentityProvider, OidcSettings, Service};
use std::path::PathBuf;
use std::time::Duration;

/// Staff and admins sign in through the city's identity provider.
#[derive(Args)]
pub struct IdentityArgs {
    /// The provider's issuer URL, e.g. https://login.stadt.example/realms/stadt (its
    /// discovery document is read from ISSUER/.well-known/openid-configuration). Unset, no
    /// one signs in through a provider.
    #[arg(long, env = "HEIMWEG_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// The client id heimweg is registered under at the provider (its secret:
    /// HEIMWEG_OIDC_CLIENT_SECRET). Register the redirect URI PUBLIC_URL/oidc/callback.
    #[arg(long, env = "HEIMWEG_OIDC_CLIENT_ID", default_value = "heimweg")]
    oidc_client_id: String,
    /// PEM file with the CA certificate(s) of the provider's TLS certificate, beside the
    /// public CAs built in.
    #[arg(long, env = "HEIMWEG_OIDC_CA_FILE")]
    oidc_ca_file: Option<PathBuf>,
    /// Scopes asked for beside openid, space-separated (add the one that brings the groups
    /// claim where the provider has one, e.g. "profile email groups").
    #[arg(long, env = "HEIMWEG_OIDC_SCOPES", default_value = "profile email")]
    oidc_scopes: String,
    /// The claim holding the login name, which names the user (preferred_username; with
    /// Entra ID e.g. an onpremisessamaccountname claim). It must be one people cannot change
    /// themselves: a first sign-in links the heimweg user of that name.
    #[arg(
        long,
        env = "HEIMWEG_OIDC_LOGIN_CLAIM",
        default_value = "preferred_username"
    )]
    oidc_login_claim: String,
    /// The claim holding the person's groups.
    #[arg(long, env = "HEIMWEG_OIDC_GROUPS_CLAIM", default_value = "groups")]
    oidc_groups_claim: String,
    /// Which provider group lets staff put devices online, and in which heimweg group:
    /// staff=vpn-users;tiefbau=Straßenbau, Tiefbau (';' apart; the first listed is a new
    /// device's default, the others may be picked).
    #[arg(long, env = "HEIMWEG_OIDC_GROUPS", default_value = "")]
    oidc_groups: String,
    /// Provider groups whose members sign in to the panel as admins (';' apart).
    #[arg(long, env = "HEIMWEG_OIDC_ADMIN_GROUPS", default_value = "")]
    oidc_admin_groups: String,
    /// Provider groups whose members sign in to the panel as the helpdesk (read-only).
    #[arg(long, env = "HEIMWEG_OIDC_HELPDESK_GROUPS", default_value = "")]
    oidc_helpdesk_groups: String,
    /// The most active devices a staff member may enroll on their own page.
    #[arg(long, env = "HEIMWEG_OIDC_DEVICE_LIMIT", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    oidc_device_limit: u32,
    /// How far the provider's clock may be off, in seconds.
    #[arg(long, env = "HEIMWEG_OIDC_CLOCK_SKEW", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=600))]
    oidc_clock_skew: u64,
    /// For sign in to connect: the authentication methods (the ID token's `amr`, such as
    /// "mfa otp hwk") of which the provider must name one; empty: the provider's policy for
    /// heimweg's client must itself demand the second factor.
    #[arg(long, env = "HEIMWEG_OIDC_CONNECT_AMR", default_value = "")]
    oidc_connect_amr: String,
}

impl IdentityArgs {
    /// Adds the provider to `service`, if one is set; `public_url` is where browsers come
    /// back to.
    pub fn apply(&self, service: Service, public_url: Option<&String>) -> Result<Service> {
        let Some(issuer) = &self.oidc_issuer else {
            return Ok(service);
        };
        let Some(public_url) = public_url else {
            bail!(
                "HEIMWEG_OIDC_ISSUER is set, so HEIMWEG_PUBLIC_URL must be too: the provider \
                 sends browsers back to PUBLIC_URL/oidc/callback"
            );
        };
        let Ok(client_secret) = std::env::var("HEIMWEG_OIDC_CLIENT_SECRET") else {
            bail!(
                "HEIMWEG_OIDC_ISSUER is set but HEIMWEG_OIDC_CLIENT_SECRET is not (put it in \
                 the settings file, /etc/heimweg/env)"
            );
        };
        let ca_pem = self
            .oidc_ca_file
            .as_ref()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .transpose()?;
        let groups = ClaimGroupMap::parse(&self.oidc_groups).context("HEIMWEG_OIDC_GROUPS")?;
        let settings = OidcSettings {
            issuer: issuer.clone(),
            client_id: self.oidc_client_id.clone(),
            client_secret,
            public_url: public_url.clone(),
            ca_pem,
            scopes: self
                .oidc_scopes
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            login_claim: self.oidc_login_claim.clone(),
            groups_claim: self.oidc_groups_claim.clone(),
            groups,
            roles: RoleClaims::parse(&self.oidc_admin_groups, &self.oidc_helpdesk_groups),
            device_limit: self.oidc_device_limit,
            clock_skew: Duration::from_secs(self.oidc_clock_skew),
            connect_amr: self
                .oidc_connect_amr
                .split([' ', ','])
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
        };
        let provider = IdentityProvider::new(settings).context("HEIMWEG_OIDC_ISSUER")?;
        Ok(service.with_identity_provider(provider))
    }
}
