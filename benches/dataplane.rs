//! Micro-benchmarks of the core's per-packet paths, on one core, without I/O:
//! allowed-IP lookup at 1k, 10k and 100k peers (routing a TUN packet to no endpoint, which
//! stops right after the lookup), encapsulation/decapsulation at 64 and 1420 bytes through
//! an established session, a whole responder handshake (initiation in, response out), and the
//! cookie path under load (initiation in, cookie reply out, no Diffie-Hellman).
//! Method and results: BENCHMARKS.md.

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use heimweg_core::{AdmissionConfig, Device, IpNetwork, Output};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p
}

fn peer_key(n: u32) -> [u8; 32] {
    let mut k = [0x11u8; 32];
    k[..4].copy_from_slice(&n.to_le_bytes());
    k
}

/// A device with `n` peers, each owning one /32 in 10.0.0.0/8 (none with an endpoint).
fn device_with_peers(n: u32) -> Device {
    let mut d = Device::new(Some([7; 32]), 1, AdmissionConfig::default());
    for i in 0..n {
        let id = d.add_peer(peer_key(i));
        let addr = Ipv4Addr::from(0x0a00_0000 + i);
        d.add_allowed_ip(id, IpNetwork::new_truncate(IpAddr::V4(addr), 32).unwrap());
    }
    d
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("allowed_ip_lookup");
    for n in [1_000u32, 10_000, 100_000] {
        let d = device_with_peers(n);
        let packets: Vec<Vec<u8>> = (0..1024u32)
            .map(|i| {
                let dst = Ipv4Addr::from(0x0a00_0000 + (i.wrapping_mul(2_654_435_761) % n));
                ipv4_packet(Ipv4Addr::new(192, 0, 2, 1), dst, 64)
            })
            .collect();
        let mut out = vec![0u8; 2048];
        let now = Instant::now();
        let mut i = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(d.handle_tun(now, &packets[i], &mut out))
            })
        });
    }
    g.finish();
}

/// A gateway with one client whose session is established.
fn connected() -> (Device, Tunn, SocketAddr, Ipv4Addr) {
    let server_key = [9u8; 32];
    let server_pub = PublicKey::from(&StaticSecret::from(server_key));
    let client_key = [5u8; 32];
    let client_pub = PublicKey::from(&StaticSecret::from(client_key));
    let mut d = Device::new(Some(server_key), 1, AdmissionConfig::default());
    let inner = Ipv4Addr::new(10, 77, 0, 2);
    let id = d.add_peer(client_pub.to_bytes());
    d.add_allowed_ip(id, IpNetwork::new_truncate(IpAddr::V4(inner), 32).unwrap());
    let mut client = Tunn::new(
        StaticSecret::from(client_key),
        server_pub,
        None,
        None,
        1,
        None,
    );
    let addr: SocketAddr = "198.51.100.2:40000".parse().unwrap();
    let now = Instant::now();
    let (mut a, mut b) = (vec![0u8; 2048], vec![0u8; 2048]);
    let init = match client.format_handshake_initiation(&mut a, false) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        _ => unreachable!("a fresh Tunn initiates"),
    };
    let _ = d.handle_network(now, addr, &init, &mut b);
    let t = d.poll_handshake(now, &mut b).expect("response");
    let resp = b[..t.len].to_vec();
    let keepalive = match client.decapsulate(None, &resp, &mut a) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        _ => unreachable!("the client confirms with a keepalive"),
    };
    let _ = d.handle_network(now, addr, &keepalive, &mut b);
    (d, client, addr, inner)
}

fn crypto(c: &mut Criterion) {
    let mut g = c.benchmark_group("data");
    for len in [64usize, 1420] {
        let (d, mut client, addr, inner) = connected();
        let now = Instant::now();
        let to_client = ipv4_packet(Ipv4Addr::new(192, 0, 2, 1), inner, len);
        let mut out = vec![0u8; 2048];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::new("encapsulate", len), |b| {
            b.iter(|| {
                let o = d.handle_tun(now, black_box(&to_client), &mut out);
                assert!(matches!(o, Output::Network(_)));
            })
        });
        // Decapsulation needs a fresh counter each time (a repeat is a replay and takes the
        // drop path): the client encrypts each packet in the untimed setup.
        let from_client = ipv4_packet(inner, Ipv4Addr::new(192, 0, 2, 1), len);
        let mut tmp = vec![0u8; 2048];
        g.bench_function(BenchmarkId::new("decapsulate", len), |b| {
            b.iter_batched(
                || match client.encapsulate(&from_client, &mut tmp) {
                    TunnResult::WriteToNetwork(p) => p.to_vec(),
                    _ => unreachable!("session established"),
                },
                |datagram| {
                    let o = d.handle_network(now, addr, &datagram, &mut out);
                    assert!(matches!(o, Output::Tun { .. }));
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A gateway that knows `client_pub`, with admission limits out of the way (the benchmark
/// sends thousands of initiations per second from one address).
fn gateway_for(client_pub: &PublicKey, cookie_after: Duration) -> Device {
    let admission = AdmissionConfig {
        queue_capacity: 1 << 20,
        cookie_after,
        per_source_rate: u32::MAX,
        per_source_burst: u32::MAX,
        ..AdmissionConfig::default()
    };
    let mut d = Device::new(Some([9u8; 32]), 1, admission);
    let id = d.add_peer(client_pub.to_bytes());
    d.add_allowed_ip(
        id,
        IpNetwork::new_truncate(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2)), 32).unwrap(),
    );
    d
}

/// A fresh initiation from the client (a new `Tunn` each time: each carries a newer timestamp,
/// so none is a replay).
fn initiation(client_key: [u8; 32], server_pub: PublicKey) -> Vec<u8> {
    let mut client = Tunn::new(
        StaticSecret::from(client_key),
        server_pub,
        None,
        None,
        1,
        None,
    );
    let mut buf = vec![0u8; 256];
    match client.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(p) => p.to_vec(),
        _ => unreachable!("a fresh Tunn initiates"),
    }
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    let server_pub = PublicKey::from(&StaticSecret::from([9u8; 32]));
    let client_key = [5u8; 32];
    let client_pub = PublicKey::from(&StaticSecret::from(client_key));
    let addr: SocketAddr = "198.51.100.2:40000".parse().unwrap();
    let mut out = vec![0u8; 2048];

    // Responder: admit, queue, then the Diffie-Hellman work and the response.
    let d = gateway_for(&client_pub, Duration::MAX);
    g.bench_function("respond", |b| {
        b.iter_batched(
            || initiation(client_key, server_pub),
            |init| {
                let now = Instant::now();
                let _ = d.handle_network(now, addr, &init, &mut out);
                assert!(d.poll_handshake(now, &mut out).is_some(), "a response");
            },
            BatchSize::SmallInput,
        )
    });

    // Under load (cookies demanded from any wait): an initiation without a valid mac2 gets a cookie reply and
    // costs no Diffie-Hellman.
    let d = gateway_for(&client_pub, Duration::ZERO);
    g.bench_function("cookie_reply", |b| {
        b.iter_batched(
            || initiation(client_key, server_pub),
            |init| {
                let o = d.handle_network(Instant::now(), addr, &init, &mut out);
                assert!(
                    matches!(o, Output::Network(t) if t.len == 64),
                    "a cookie reply"
                );
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = lookup, crypto, handshakes
}
criterion_main!(benches);
