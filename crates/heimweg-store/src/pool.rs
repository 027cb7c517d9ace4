//! Address pools: offsets inside the configured IPv4 and IPv6 networks.
//!
//! Offset 1 is the gateway's own address; devices get 2, 3, … from a cursor, or a released
//! offset whose grace period has passed (oldest first). The `addresses` table's primary key is
//! the final word on uniqueness.

use crate::db::Tx;
use crate::{Result, StoreError};
use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4 = 4,
    V6 = 6,
}

/// Highest usable offset: all but network, gateway (1) and, for IPv4, broadcast.
pub(crate) fn capacity_v4(net: &Ipv4Net) -> i64 {
    let hosts = 1i64 << (32 - u32::from(net.prefix_len()));
    hosts - 2
}

pub(crate) fn capacity_v6(net: &Ipv6Net) -> i64 {
    let bits = 128 - u32::from(net.prefix_len());
    // Offsets are i64; a /64 pool holds more devices than any city has.
    if bits >= 63 {
        i64::MAX
    } else {
        (1i64 << bits) - 1
    }
}

pub(crate) fn v4_at(net: &Ipv4Net, offset: i64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()).wrapping_add(offset as u32))
}

pub(crate) fn v6_at(net: &Ipv6Net, offset: i64) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()).wrapping_add(offset as u128))
}

/// Picks an offset for a new device (not yet claimed: see [`claim`]).
pub(crate) async fn allocate(
    tx: &mut Tx<'_>,
    family: Family,
    max: i64,
    grace_cutoff: i64,
) -> Result<i64> {
    let reusable: Option<i64> = sqlx::query_scalar(
        "SELECT pool_offset FROM addresses
         WHERE family = $1 AND device_id IS NULL AND released_at <= $2 AND pool_offset <= $3
         ORDER BY released_at, pool_offset LIMIT 1",
    )
    .bind(family as i64)
    .bind(grace_cutoff)
    .bind(max)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(offset) = reusable {
        return Ok(offset);
    }
    let key = cursor_key(family);
    let next: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
    let next: i64 = next.and_then(|v| v.parse().ok()).unwrap_or(2);
    if next > max {
        return Err(StoreError::PoolExhausted(family as u8));
    }
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .bind(key)
    .bind((next + 1).to_string())
    .execute(&mut **tx)
    .await?;
    Ok(next)
}

/// Records `offset` as the device's; the primary key refuses a double allocation.
pub(crate) async fn claim(
    tx: &mut Tx<'_>,
    family: Family,
    offset: i64,
    device_id: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO addresses (family, pool_offset, device_id, released_at) VALUES ($1, $2, $3, NULL)
         ON CONFLICT(family, pool_offset) DO UPDATE SET device_id = excluded.device_id,
             released_at = NULL
         WHERE addresses.device_id IS NULL",
    )
    .bind(family as i64)
    .bind(offset)
    .bind(device_id)
    .execute(&mut **tx)
    .await?;
    let owner: Option<i64> = sqlx::query_scalar(
        "SELECT device_id FROM addresses WHERE family = $1 AND pool_offset = $2",
    )
    .bind(family as i64)
    .bind(offset)
    .fetch_one(&mut **tx)
    .await?;
    if owner != Some(device_id) {
        return Err(StoreError::Conflict(format!(
            "address offset {offset} (IPv{}) is already in use",
            family as u8
        )));
    }
    Ok(())
}

/// Starts the grace period of a device's addresses.
pub(crate) async fn release(tx: &mut Tx<'_>, device_id: i64, now: i64) -> Result<()> {
    sqlx::query("UPDATE addresses SET device_id = NULL, released_at = $1 WHERE device_id = $2")
        .bind(now)
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn cursor_key(family: Family) -> &'static str {
    match family {
        Family::V4 => "pool_v4_next",
        Family::V6 => "pool_v6_next",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_and_addresses() {
        let v4: Ipv4Net = "10.77.0.0/16".parse().unwrap();
        assert_eq!(capacity_v4(&v4), 65_534);
        assert_eq!(v4_at(&v4, 2), Ipv4Addr::new(10, 77, 0, 2));
        assert_eq!(v4_at(&v4, 65_534), Ipv4Addr::new(10, 77, 255, 254));
        let small: Ipv4Net = "10.0.0.0/30".parse().unwrap();
        assert_eq!(capacity_v4(&small), 2, "only .2 is left for a device");
        let v6: Ipv6Net = "fd12:3456:789a::/64".parse().unwrap();
        assert_eq!(capacity_v6(&v6), i64::MAX);
        assert_eq!(
            v6_at(&v6, 2),
            "fd12:3456:789a::2".parse::<Ipv6Addr>().unwrap()
        );
        let v6small: Ipv6Net = "fd00::/126".parse().unwrap();
        assert_eq!(capacity_v6(&v6small), 3);
    }
}
