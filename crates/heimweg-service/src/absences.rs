//! Absences: a user's or a device's access suspended for a span, coming back by itself.

use crate::{invalid, Caller, Result, Service};
use heimweg_control::window::{absence_span, time_zone, DEFAULT_TIME_ZONE};
use heimweg_control::Scope;
use heimweg_store::{Absence, AbsenceOf};

/// The scope that changes whose access an absence suspends.
fn scope_for(of: &AbsenceOf) -> Scope {
    match of {
        AbsenceOf::User(_) => Scope::UsersWrite,
        AbsenceOf::Device(_) => Scope::DevicesWrite,
    }
}

/// Whether the caller may enter or end any absence at all: asked before anything is read, so
/// that a caller with neither scope learns nothing (not even whether an absence exists).
pub fn require_absence_writer(caller: &Caller) -> Result<()> {
    if caller.may(Scope::DevicesWrite) {
        Ok(())
    } else {
        caller.require(Scope::UsersWrite)
    }
}

/// An absence as a person asks for it: the texts are read in `time_zone` (empty: Europe/Berlin),
/// see [`heimweg_control::window::moment`].
#[derive(Debug, Clone)]
pub struct AbsenceRequest {
    pub of: AbsenceOf,
    pub from: String,
    pub until: String,
    pub time_zone: String,
    pub reason: String,
}

impl Service {
    /// The absences that have not ended.
    pub async fn absences(&self, caller: &Caller) -> Result<Vec<Absence>> {
        caller.require(Scope::UsersRead)?;
        Ok(self.store.absences(self.now()).await?)
    }

    /// Suspends a user's devices (users:write) or one device (devices:write) for a span; the
    /// data plane follows at once if it has begun, and by itself at its start and end.
    pub async fn add_absence(&self, caller: &Caller, req: &AbsenceRequest) -> Result<Absence> {
        caller.require(scope_for(&req.of))?;
        let zone_name = match req.time_zone.trim() {
            "" => DEFAULT_TIME_ZONE,
            z => z,
        };
        let zone = time_zone(zone_name).map_err(|e| invalid("time_zone", e))?;
        let span = absence_span(&req.from, &req.until, &zone).map_err(|e| invalid("until", e))?;
        let absence = self
            .store
            .add_absence(caller.actor(), &req.of, span, &req.reason, self.now())
            .await?;
        self.applied().await;
        Ok(absence)
    }

    /// Ends an absence now (one that has not begun is withdrawn); the devices are back within
    /// a second.
    pub async fn end_absence(&self, caller: &Caller, id: i64) -> Result<Absence> {
        require_absence_writer(caller)?;
        let absence = self.store.absence(id).await?;
        caller.require(scope_for(&absence.of))?;
        let absence = self
            .store
            .end_absence(caller.actor(), id, self.now())
            .await?;
        self.applied().await;
        Ok(absence)
    }
}
