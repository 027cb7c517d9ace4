//! One-time enrollment links: an admin prepares a device, the staff member opens the link on
//! the device and receives its config once.

use crate::devices::{finish, key_pair};
use crate::{generate_token, token_hash, Caller, Enrollment, Result, Service};
use heimweg_control::mobileconfig::ApplePlatform;
use heimweg_control::{LinkHours, Name, Scope};
use heimweg_store::{EnrollmentLink, NewLink};

/// A new link and its secret, which exists only in this value (the store keeps its hash).
#[derive(Debug)]
pub struct LinkOffer {
    pub link: EnrollmentLink,
    pub secret: String,
}

/// Longer is no secret heimweg made: refused before any lookup.
const MAX_SECRET_LEN: usize = 128;

impl Service {
    pub async fn create_link(
        &self,
        caller: &Caller,
        device_name: &Name,
        group: &Name,
        owner: Option<&Name>,
        lifetime: LinkHours,
    ) -> Result<LinkOffer> {
        caller.require(Scope::DevicesWrite)?;
        let secret = generate_token();
        let now = self.now();
        let link = self
            .store
            .create_enrollment_link(
                caller.actor(),
                &NewLink {
                    device_name: device_name.clone(),
                    group: group.clone(),
                    owner: owner.cloned(),
                    token_hash: token_hash(&secret),
                    expires_at: now + lifetime.as_secs(),
                },
                now,
            )
            .await?;
        Ok(LinkOffer { link, secret })
    }

    /// Links, newest first.
    pub async fn links(&self, caller: &Caller, limit: u32) -> Result<Vec<EnrollmentLink>> {
        caller.require(Scope::DevicesRead)?;
        Ok(self.store.enrollment_links(limit).await?)
    }

    pub async fn revoke_link(&self, caller: &Caller, id: i64) -> Result<()> {
        caller.require(Scope::DevicesWrite)?;
        Ok(self
            .store
            .revoke_enrollment_link(caller.actor(), id, self.now())
            .await?)
    }

    /// The open link behind `secret`, without using it: the secret is the authorisation.
    pub async fn open_link(&self, secret: &str) -> Result<Option<EnrollmentLink>> {
        if secret.len() > MAX_SECRET_LEN {
            return Ok(None);
        }
        Ok(self
            .store
            .open_enrollment_link(&token_hash(secret), self.now())
            .await?)
    }

    /// The open link behind `secret`, for its page: the first view is noted (the rollout's
    /// "opened"; a mail scanner that follows links counts too). A store too busy to note it
    /// does not keep the page from showing.
    pub async fn view_link(&self, secret: &str) -> Result<Option<EnrollmentLink>> {
        let link = self.open_link(secret).await?;
        if let Some(l) = &link {
            if let Err(e) = self.store.mark_link_opened(l, self.now()).await {
                tracing::warn!(link = l.id, error = %e, "could not note that a link was opened");
            }
        }
        Ok(link)
    }

    /// Redeems a link: enrolls the device it was made for with a fresh key pair and returns
    /// the config, once. `None` when the link is unknown, used, revoked or expired. The claim
    /// and the enrollment are one transaction: a failure (or a crash) leaves the link open.
    pub async fn redeem_link(&self, secret: &str) -> Result<Option<Enrollment>> {
        let Some(link) = self.open_link(secret).await? else {
            return Ok(None);
        };
        let (private_key, public_key) = key_pair(None);
        let conf = self.prepare_config(&link.group, private_key).await?;
        let redeemed = self
            .store
            .redeem_enrollment_link(&token_hash(secret), public_key, self.now())
            .await?;
        let Some(redeemed) = redeemed else {
            return Ok(None);
        };
        let enrolled = finish(conf, redeemed.device, ApplePlatform::Ios)?;
        self.applied().await;
        Ok(Some(enrolled))
    }
}
