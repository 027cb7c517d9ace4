//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`, off in every build
//! that ships). They reach the parsers of untrusted bytes that are private to this crate by the
//! same code the workers and the UAPI socket run, so a fuzz finding is a finding in production.
//! Not an API: nothing but `fuzz/` may depend on it.

use crate::uapi::{DeviceSnapshot, SetRequest, UapiHandler};
use heimweg_core::Device;
use std::time::SystemTime;

pub use crate::offload::{segment, Coalescer, Malformed, VnetHdr, VNET_HDR_LEN};

/// Serves one UAPI connection whose client sent `input` and then closed its side; returns
/// everything the server answered.
pub fn uapi_session(input: &[u8], handler: &dyn UapiHandler) -> Vec<u8> {
    let mut reply = Vec::new();
    // Reading a byte slice and writing to a vector fail in no way this framing can cause.
    let _ = crate::uapi::server::serve(input, &mut reply, handler);
    reply
}

/// Applies the device's part of a validated `set=1` request, as `DataPlane`'s handler does
/// once the listen port is bound.
pub fn apply_set(device: &mut Device, req: &SetRequest) {
    crate::apply_set(device, req);
}

/// What `get=1` reports of `device` (listen port and fwmark 0).
pub fn snapshot(device: &Device, now: SystemTime) -> DeviceSnapshot {
    crate::device_snapshot(device, now)
}
