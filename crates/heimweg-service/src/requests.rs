//! Staff access requests: the public form files one, an admin approves or rejects it, and
//! the requester's status page then offers the enrollment.
//!
//! The requester gets a random secret and keeps the status page's address; the store keeps
//! only hashes. An approval activates an enrollment link derived from that secret
//! ([`request_link_secret`]), so the config reaches the person who asked, on the device they
//! asked from, without the admin handling any secret.

use crate::limits::{KeyedRateLimit, RateLimit};
use crate::{generate_token, invalid, token_hash, Caller, Result, Service, ServiceError};
use heimweg_control::{LinkHours, Name, RequestStatus, Scope};
use heimweg_store::{AccessRequest, NewAccessRequest};
use sha2::{Digest, Sha256};

/// The public form as sent: free text, validated here.
#[derive(Debug, Clone, Default)]
pub struct RequestForm {
    pub requester: String,
    pub contact: String,
    pub device_name: String,
    pub reason: String,
}

/// A filed request and the requester's secret (the key to their status page), which exists
/// only in this value.
#[derive(Debug)]
pub struct FiledRequest {
    pub request: AccessRequest,
    pub secret: String,
}

/// Filings admitted per second across all clients, and the burst: a whole department filing
/// at once gets through, a script cannot fill the pending queue in a moment or keep the
/// store's write lock busy (on PostgreSQL that lock is shared by every gateway).
static FILINGS: RateLimit = RateLimit::new(1.0, 30.0);
/// Per client address: three filings at once, then one a minute. One client cannot use up
/// the shared budget above and shut out everyone else.
static FILINGS_PER_CLIENT: std::sync::LazyLock<KeyedRateLimit> =
    std::sync::LazyLock::new(|| KeyedRateLimit::new(1.0 / 60.0, 3.0));

/// Longer is no secret heimweg made: refused before any lookup.
const MAX_SECRET_LEN: usize = 128;

/// The link secret an approved access request activates, derived from the requester's
/// secret so that only the requester can compute it and the store keeps neither.
pub fn request_link_secret(request_secret: &str) -> String {
    use base64::Engine;
    let mut h = Sha256::new();
    h.update(b"heimweg access request link\0");
    h.update(request_secret.as_bytes());
    format!(
        "hw_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
    )
}

fn validate(form: &RequestForm) -> Result<NewAccessRequest> {
    let requester = Name::new(form.requester.trim()).map_err(|e| invalid("requester", e))?;
    let device_name = Name::new(form.device_name.trim()).map_err(|e| invalid("device_name", e))?;
    if form.contact.len() > 254 || form.contact.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(
            "contact must be at most 254 printable characters".into(),
        ));
    }
    if form.reason.chars().count() > 500 || form.reason.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(ServiceError::Invalid(
            "reason must be at most 500 characters".into(),
        ));
    }
    Ok(NewAccessRequest {
        requester,
        contact: form.contact.trim().to_string(),
        device_name,
        reason: form.reason.trim().to_string(),
    })
}

impl Service {
    /// Files a staff member's request from `client` (its address, if known): public, so
    /// bounded by rate limits.
    pub async fn file_request(
        &self,
        client: Option<std::net::IpAddr>,
        form: &RequestForm,
    ) -> Result<FiledRequest> {
        let req = validate(form)?;
        // Without a known address (tests, or a server not given peer addresses) only the
        // shared budget applies.
        if client.is_some() && !FILINGS_PER_CLIENT.admit(client) {
            return Err(ServiceError::Busy(
                "you have filed several requests just now; please wait a minute before the next"
                    .into(),
            ));
        }
        if !FILINGS.admit() {
            return Err(ServiceError::Busy(
                "too many access requests right now; please try again in a minute".into(),
            ));
        }
        let secret = generate_token();
        let request = self
            .store
            .create_access_request(
                &req,
                &token_hash(&secret),
                &token_hash(&request_link_secret(&secret)),
                self.now(),
            )
            .await?;
        Ok(FiledRequest { request, secret })
    }

    /// Requests, oldest pending first when listing pending ones, newest first otherwise.
    pub async fn requests(
        &self,
        caller: &Caller,
        status: Option<RequestStatus>,
        limit: u32,
    ) -> Result<Vec<AccessRequest>> {
        caller.require(Scope::DevicesRead)?;
        Ok(self
            .store
            .access_requests(status, limit, self.now())
            .await?)
    }

    /// Approves a request: its requester's status page then offers the enrollment (in
    /// `group`, the default one unless said otherwise). The admin never sees the link's
    /// secret.
    pub async fn approve_request(
        &self,
        caller: &Caller,
        id: i64,
        group: Option<&Name>,
        lifetime: LinkHours,
    ) -> Result<AccessRequest> {
        caller.require(Scope::DevicesWrite)?;
        let default = Name::new("default").expect("a valid name");
        let now = self.now();
        Ok(self
            .store
            .approve_access_request(
                caller.actor(),
                id,
                group.unwrap_or(&default),
                now + lifetime.as_secs(),
                now,
            )
            .await?)
    }

    pub async fn reject_request(&self, caller: &Caller, id: i64) -> Result<AccessRequest> {
        caller.require(Scope::DevicesWrite)?;
        Ok(self
            .store
            .reject_access_request(caller.actor(), id, self.now())
            .await?)
    }

    /// The request behind a requester's secret, and once approved with its link open, the
    /// secret of that link: what the requester's status page shows.
    pub async fn request_status(
        &self,
        secret: &str,
    ) -> Result<Option<(AccessRequest, Option<String>)>> {
        if secret.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        let found = self
            .store
            .access_request_by_hash(&token_hash(secret), self.now())
            .await?;
        Ok(found.map(|r| {
            let link = (r.status == RequestStatus::Approved && r.link_open)
                .then(|| request_link_secret(secret));
            (r, link)
        }))
    }
}
