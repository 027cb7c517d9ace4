//! `traffic`: once the devices are connected, UDP packets through every device's tunnel at a
//! given rate (or as fast as the generator can), batched with GSO.

use crate::cpu::{cpu_since, own_cpu_s};
use crate::keys::device_address;
use anyhow::{Context, Result};
use boringtun::noise::{Tunn, TunnResult};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

pub struct TrafficPlan {
    pub server: SocketAddr,
    pub target: SocketAddrV4,
    pub source_base: Ipv4Addr,
    pub sources: u32,
    /// The seed's number of the first device (`--first`): device `i` of the run is `first + i`,
    /// and its tunnel address is that device's.
    pub first: u32,
    pub packet_size: usize,
    /// 0: as fast as it can.
    pub bytes_per_second: u64,
    pub duration: Duration,
}

/// An IPv4/UDP packet of `size` bytes from `src` to `dst` (UDP checksum 0: none, as IPv4
/// allows), written into `buf`.
fn udp_packet(src: Ipv4Addr, dst: SocketAddrV4, size: usize, buf: &mut [u8]) {
    let p = &mut buf[..size];
    p.fill(0);
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(size as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 17;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let mut sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..22].copy_from_slice(&40000u16.to_be_bytes());
    p[22..24].copy_from_slice(&dst.port().to_be_bytes());
    p[24..26].copy_from_slice(&((size - 20) as u16).to_be_bytes());
}

/// Sends packets through every connected device's tunnel, round-robin, for the planned time.
/// Devices that share a source address (as in the storm, device `i` uses address `i % sources`)
/// share one socket, and up to 64 of their datagrams leave as one GSO message.
pub fn traffic(devices: &mut [(u32, Tunn)], plan: &TrafficPlan) -> Result<serde_json::Value> {
    use heimweg_sys::udp::{Transmit, UdpSocket as BatchSocket};
    use std::io::IoSlice;
    const BATCH: usize = 64;
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); plan.sources as usize];
    for (pos, (i, _)) in devices.iter().enumerate() {
        groups[(*i % plan.sources) as usize].push(pos);
    }
    groups.retain(|g| !g.is_empty());
    let sockets = groups
        .iter()
        .map(|g| {
            let i = devices[g[0]].0;
            let source = Ipv4Addr::from(u32::from(plan.source_base) + i % plan.sources);
            BatchSocket::bind(SocketAddr::new(IpAddr::V4(source), 0), false, 4 << 20)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding the traffic's sockets")?;
    // One GSO message carries at most 64 datagrams and must fit one UDP datagram's 64 KiB.
    let per_message = BATCH.min(65_000 / (plan.packet_size + 32));
    let mut cursors = vec![0usize; groups.len()];
    let mut packet = vec![0u8; plan.packet_size];
    let mut slots = vec![vec![0u8; plan.packet_size + 64]; BATCH];
    let (mut packets, mut unsent) = (0u64, 0u64);
    let cpu_before = own_cpu_s();
    let start = Instant::now();
    let mut group = 0;
    while start.elapsed() < plan.duration {
        let inner_bytes = packets * plan.packet_size as u64;
        if plan.bytes_per_second > 0
            && inner_bytes as f64 >= start.elapsed().as_secs_f64() * plan.bytes_per_second as f64
        {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        let members = &groups[group];
        let mut lens = [0usize; BATCH];
        let mut n = 0;
        for _ in 0..members.len().min(per_message) {
            let (i, tunn) = &mut devices[members[cursors[group]]];
            cursors[group] = (cursors[group] + 1) % members.len();
            udp_packet(
                device_address(plan.first + *i),
                plan.target,
                plan.packet_size,
                &mut packet,
            );
            if let TunnResult::WriteToNetwork(d) = tunn.encapsulate(&packet, &mut slots[n]) {
                lens[n] = d.len();
                n += 1;
            }
        }
        let segments: Vec<IoSlice<'_>> =
            (0..n).map(|k| IoSlice::new(&slots[k][..lens[k]])).collect();
        unsent += sockets[group].send_batch(&[Transmit {
            dst: plan.server,
            segments: &segments,
        }]) as u64;
        packets += n as u64;
        group = (group + 1) % groups.len();
    }
    let seconds = start.elapsed().as_secs_f64();
    let delivered = packets - unsent;
    Ok(serde_json::json!({
        "devices": devices.len(),
        "seconds": seconds,
        "packets_sent": delivered,
        "packets_unsent": unsent,
        "inner_mbit_per_s": (delivered * plan.packet_size as u64) as f64 * 8.0 / seconds / 1e6,
        "generator_cpu_s": cpu_since(cpu_before),
    }))
}
