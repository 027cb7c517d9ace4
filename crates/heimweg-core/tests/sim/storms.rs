//! Storms, floods and failovers as stock clients live them: a cookie reply is stored and the
//! next initiation, with mac2, leaves on the client's own retransmit timer 5 s later (boringtun,
//! like wireguard-go and the kernel), so every cookie costs a device those 5 s.

use super::*;

/// One worker that spends `cost` of simulated time per handshake, and the default policy
/// otherwise (cookies from 4.75 s of expected wait).
fn one_worker(cost: Duration) -> AdmissionConfig {
    AdmissionConfig {
        workers: 1,
        initial_handshake_cost: cost,
        ..AdmissionConfig::default()
    }
}

/// `n` clients behind `addresses` NAT addresses (each with its own port), with client timers on.
fn storm_sim(admission: AdmissionConfig, cost: Duration, n: usize, addresses: usize) -> Sim {
    let mut sim = Sim::new(admission);
    sim.handshake_cost = cost;
    sim.client_timers = true;
    for i in 0..n {
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                100,
                64,
                (i % addresses / 250) as u8,
                (i % addresses % 250) as u8 + 1,
            )),
            20_000 + i as u16,
        );
        sim.add_client_at(addr);
    }
    sim
}

/// Every client starts its handshake now, as laptops waking at 8:00 do.
fn all_at_once(sim: &mut Sim, clients: std::ops::Range<usize>) {
    sim.mark = sim.now;
    for i in clients {
        sim.client_handshake(i);
    }
}

/// How long after the mark client `i` had its session.
fn took(sim: &Sim, i: usize) -> Duration {
    sim.clients[i]
        .connected_at
        .unwrap_or_else(|| panic!("client {i} has no session"))
        - sim.mark
}

#[test]
fn a_storm_the_queue_drains_in_time_gets_no_cookie_and_no_retry() {
    // 400 devices behind 40 addresses, 250 µs a handshake on one worker: 100 ms of work.
    let cost = Duration::from_micros(250);
    let mut sim = storm_sim(one_worker(cost), cost, 400, 40);
    all_at_once(&mut sim, 0..400);
    sim.run(Duration::from_secs(10));
    assert_eq!(sim.server.counters().cookies_sent, 0);
    assert_eq!(sim.server.counters().handshakes_ok, 400);
    let last = (0..400).map(|i| took(&sim, i)).max().unwrap();
    assert!(last < Duration::from_millis(200), "the last after {last:?}");
    assert!(
        sim.clients
            .iter()
            .all(|c| c.initiations == 1 && c.cookies == 0),
        "no device needed a retransmit"
    );
}

#[test]
fn beyond_the_drain_limit_only_the_tail_gets_cookies_and_comes_back_on_its_retransmit() {
    // 10 ms a handshake on one worker: a queue of 475 is 4.75 s of work, so of 600 devices at
    // once about 475 are answered from the queue and the rest get a cookie.
    let cost = Duration::from_millis(10);
    let mut sim = storm_sim(one_worker(cost), cost, 600, 60);
    all_at_once(&mut sim, 0..600);
    sim.run(Duration::from_secs(15));
    let cookies = sim.server.counters().cookies_sent;
    assert!(
        (115..=135).contains(&cookies),
        "{cookies} cookies: only the devices beyond 4.75 s of queue get one"
    );
    assert_eq!(sim.server.counters().handshakes_ok, 600);
    assert_eq!(sim.server.counters().drops(DropReason::HandshakeStale), 0);
    for (i, c) in sim.clients.iter().enumerate() {
        let t = took(&sim, i);
        if c.cookies == 0 {
            // Answered from the queue, before the device's own retransmit.
            assert_eq!(c.initiations, 1, "client {i}");
            assert!(t < Duration::from_secs(5), "client {i} after {t:?}");
        } else {
            // Its retransmit carried mac2 and found the queue drained: answered behind the
            // other retransmits (125 of them at this machine's 10 ms a handshake).
            assert_eq!((c.cookies, c.initiations), (1, 2), "client {i}");
            assert!(t >= Duration::from_secs(5), "client {i} after {t:?}");
            assert!(t < Duration::from_secs(7), "client {i} after {t:?}");
        }
    }
}

#[test]
fn lost_handshake_messages_are_recovered_by_the_clients_retransmits() {
    let mut sim = storm_sim(AdmissionConfig::default(), Duration::ZERO, 60, 60);
    sim.handshake_loss_permille = 300;
    all_at_once(&mut sim, 0..60);
    sim.run(Duration::from_secs(40));
    let retried = sim.clients.iter().filter(|c| c.initiations > 1).count();
    assert!(
        retried > 0,
        "with 30 % loss some handshakes needed a retransmit"
    );
    for i in 0..60 {
        let _ = took(&sim, i);
    }
    // Data flows on every session.
    sim.handshake_loss_permille = 0;
    for i in 0..60 {
        let p = ipv4_packet(sim.clients[i].inner, LAN_HOST, b"after loss");
        sim.client_send_ip(i, &p);
    }
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.server_tun.len(), 60);
}

/// Junk initiations from unknown keys with a valid mac1, from spoofed addresses nobody answers
/// at: `per_tick` every 10 ms for `ticks`, while the simulation runs.
fn flood(sim: &mut Sim, junk: &[Vec<u8>], per_tick: usize, ticks: usize) {
    let mut n = 0;
    for _ in 0..ticks {
        for _ in 0..per_tick {
            let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, (n % 50) as u8 + 1)), 7);
            sim.send(from, Sim::server_addr(), junk[n % junk.len()].clone());
            n += 1;
        }
        sim.run(Duration::from_millis(10));
    }
}

#[test]
fn under_a_flood_known_devices_skip_the_cookie_and_new_ones_get_in_on_their_retransmit() {
    let cost = Duration::from_micros(250);
    let mut sim = storm_sim(one_worker(cost), cost, 60, 60);
    // The first 30 were connected earlier in the day.
    all_at_once(&mut sim, 0..30);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.server.counters().handshakes_ok, 30);
    let junk: Vec<Vec<u8>> = (0..400).map(|_| junk_initiation(&sim)).collect();
    // A flood of 2,000 a second from 50 addresses, 0.5 s before the devices come (back).
    flood(&mut sim, &junk, 20, 50);
    let invalid_before = sim.server.counters().drops(DropReason::HandshakeInvalid);
    assert!(
        sim.server.counters().cookies_sent > 0,
        "the flood was detected and costs cookies now"
    );
    for c in &mut sim.clients {
        c.connected_at = None;
        c.initiations = 0;
    }
    all_at_once(&mut sim, 0..60);
    // The flood goes on for 8 s more.
    flood(&mut sim, &junk, 20, 800);
    for i in 0..30 {
        let c = &sim.clients[i];
        assert_eq!((c.cookies, c.initiations), (0, 1), "known client {i}");
        let t = took(&sim, i);
        assert!(
            t < Duration::from_millis(100),
            "known client {i} after {t:?}"
        );
    }
    for i in 30..60 {
        let t = took(&sim, i);
        assert!(
            t < Duration::from_secs(6),
            "new client {i} after {t:?}: one retransmit"
        );
    }
    // While the flood lasts, its initiations cost cookie replies: only what arrives before
    // each detection (and in the moments a flood's hold lapses) costs a Diffie-Hellman.
    let invalid = sim.server.counters().drops(DropReason::HandshakeInvalid) - invalid_before;
    assert!(
        invalid < 2_000,
        "{invalid} Diffie-Hellmans for 16,000 junk initiations"
    );
}

#[test]
fn after_a_failover_the_standby_starts_the_handshake_and_traffic_moves_within_a_second() {
    let mut sim = Sim::new(AdmissionConfig::default());
    sim.client_timers = true;
    let (a, b) = (sim.add_client(), sim.add_client());
    sim.connect_all();
    sim.add_standby(AdmissionConfig::default());
    // The standby read from the store where the active gateway last saw each device; b's
    // entry is stale (it has moved since).
    let hints = [
        (sim.clients[a].peer, sim.clients[a].addr),
        (sim.clients[b].peer, "198.51.100.250:9".parse().unwrap()),
    ];
    for (peer, addr) in hints {
        let key = sim.server.peer(peer).unwrap().public_key;
        let standby = sim.standby.as_mut().unwrap();
        let id = standby.peer_id(&key).unwrap();
        standby.set_endpoint_hint(id, addr);
    }
    // The address moves to the standby. The clients keep sending on their old sessions, a
    // packet every 100 ms.
    sim.failed_over = true;
    let standby_id = |sim: &Sim, i: usize| {
        let key = sim.server.peer(sim.clients[i].peer).unwrap().public_key;
        sim.standby.as_ref().unwrap().peer_id(&key).unwrap()
    };
    let (a_there, b_there) = (standby_id(&sim, a), standby_id(&sim, b));
    let mut first_through = None;
    for round in 0..20u8 {
        for i in [a, b] {
            let p = ipv4_packet(sim.clients[i].inner, LAN_HOST, &[round]);
            sim.client_send_ip(i, &p);
        }
        sim.run(Duration::from_millis(100));
        if first_through.is_none() && sim.standby_tun.iter().any(|(p, _)| *p == a_there) {
            first_through = Some(round);
        }
    }
    let standby = sim.standby.as_ref().unwrap();
    assert_eq!(standby.counters().handshakes_prompted, 1, "for a only");
    // The first packet after the move is lost with the old session; the standby's initiation
    // and a's answer take a round trip, and a's next packet goes through the standby, long
    // before its own timers would have started a handshake (15 s).
    assert_eq!(first_through, Some(1), "a's traffic moved within 200 ms");
    let a_arrived = sim
        .standby_tun
        .iter()
        .filter(|(p, _)| *p == a_there)
        .count();
    assert_eq!(a_arrived, 19);
    // b's hint is stale: its traffic starts nothing and stays lost until its own timers act.
    assert!(!sim.standby_tun.iter().any(|(p, _)| *p == b_there));
}

#[test]
fn traffic_under_an_unknown_session_makes_at_most_one_initiation_per_retransmit_interval() {
    let mut sim = Sim::new(AdmissionConfig::default());
    let a = sim.add_client();
    let hinted: SocketAddr = "198.51.100.77:4000".parse().unwrap();
    let peer = sim.clients[a].peer;
    sim.server.set_endpoint_hint(peer, hinted);
    let mut out = vec![0u8; 2048];
    let mut initiations = 0;
    // Junk transport data from the hinted address (anyone can send it), 20 a second for 12 s,
    // with the gateway's timers running as a worker runs them.
    for n in 0..240u32 {
        let mut junk = vec![0u8; 64];
        junk[0] = MSG_DATA;
        junk[4..8].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
        let mut sent = Vec::new();
        if let Output::Network(t) = sim.server.handle_network(sim.now, hinted, &junk, &mut out) {
            sent.push((t.dst, out[0]));
        }
        // From any other address it starts nothing.
        let other: SocketAddr = "198.51.100.78:4000".parse().unwrap();
        assert_eq!(
            sim.server.handle_network(sim.now, other, &junk, &mut out),
            Output::Nothing
        );
        while let Some(t) = sim.server.poll_transmit(sim.now, &mut out) {
            sent.push((t.dst, out[0]));
        }
        for (dst, kind) in sent {
            assert_eq!(
                (dst, kind),
                (hinted, MSG_INIT),
                "only initiations, only to the hint"
            );
            initiations += 1;
        }
        sim.advance(Duration::from_millis(50));
    }
    // One handshake started, retransmitted like any other: at 0, 5 and 10 s.
    assert_eq!(sim.server.counters().handshakes_prompted, 1);
    assert_eq!(initiations, 3);
    assert_eq!(sim.server.counters().drops(DropReason::UnknownIndex), 480);
}
