//! Handshakes: answering them off the lock, admission under load and floods, and the
//! stock clients' retransmits and cookies on the simulated clock.

use super::*;
use heimweg_core::PendingHandshake;

/// The next queued initiation, which must be one to answer.
fn take(sim: &Sim, now: Instant) -> PendingHandshake {
    match sim.server.take_handshake(now, &mut [0; 2048]) {
        Some(Taken::Pending(p)) => p,
        _ => panic!("an initiation is queued"),
    }
}

#[test]
fn cookie_replies_under_load_and_a_real_device_still_gets_in() {
    let mut sim = Sim::new(AdmissionConfig {
        queue_capacity: 64,
        // One worker at 1 ms a handshake: from a queue of 8, the expected wait is 9 ms.
        workers: 1,
        initial_handshake_cost: Duration::from_millis(1),
        cookie_after: Duration::from_millis(9),
        ..AdmissionConfig::default()
    });
    let legit = sim.add_client();
    // Unknown keys that know the gateway's public key: valid mac1, the expensive kind.
    let flood_from: SocketAddr = "192.0.2.200:1000".parse().unwrap();
    let mut out = vec![0u8; 2048];
    for _ in 0..40 {
        let b = junk_initiation(&sim);
        // Delivered directly, without draining, as if they all arrived in one burst.
        let o = sim.server.handle_network(sim.now, flood_from, &b, &mut out);
        assert!(!matches!(o, Output::Tun { .. }));
    }
    assert_eq!(
        sim.server.handshake_queue_depth(),
        8,
        "queue stops growing at the load threshold"
    );
    assert_eq!(sim.server.counters().cookies_sent, 32);

    // The real device's first attempt arrives while we are loaded: it gets a cookie.
    sim.client_handshake(legit);
    let first = sim.net.pop().unwrap();
    let o = sim
        .server
        .handle_network(sim.now, first.from, &first.bytes, &mut out);
    let cookie = match o {
        Output::Network(t) => out[..t.len].to_vec(),
        other => panic!("expected a cookie reply, got {other:?}"),
    };
    assert_eq!(cookie[0], 3);
    let client_addr = sim.clients[legit].addr;
    let mut cout = vec![0u8; 2048];
    let r = sim.clients[legit]
        .tunn
        .decapsulate(Some(Sim::server_addr().ip()), &cookie, &mut cout);
    assert!(matches!(r, TunnResult::Done));
    // Its retry carries mac2 and is admitted even though we are still loaded.
    sim.client_handshake(legit);
    let retry = sim.net.pop().unwrap();
    assert_eq!(retry.from, client_addr);
    let o = sim
        .server
        .handle_network(sim.now, retry.from, &retry.bytes, &mut out);
    assert_eq!(
        o,
        Output::Nothing,
        "queued, not answered with another cookie"
    );
    assert_eq!(sim.server.counters().cookies_sent, 33);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.server.counters().handshakes_ok, 1);
    assert_eq!(sim.server.counters().drops(DropReason::HandshakeInvalid), 8);
    let p = ipv4_packet(sim.clients[legit].inner, LAN_HOST, b"in");
    sim.client_send_ip(legit, &p);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.server_tun.len(), 1);
}

#[test]
fn handshakes_answered_outside_the_lock_survive_what_happens_meanwhile() {
    let mut sim = Sim::new(AdmissionConfig::default());
    let (a, b) = (sim.add_client(), sim.add_client());
    let now = sim.now;
    let mut out = vec![0u8; 2048];
    let queue = |sim: &mut Sim, i: usize| {
        let init = initiation(sim, i);
        let from = sim.clients[i].addr;
        let mut buf = vec![0u8; 2048];
        assert_eq!(
            sim.server.handle_network(now, from, &init, &mut buf),
            Output::Nothing
        );
    };

    // a has no session, so its Tunn is lent out to answer without the lock.
    queue(&mut sim, a);
    let mut pending = take(&sim, now);
    pending.identify();
    let HandshakeStep::Lent(mut lent_a) = sim.server.begin_handshake(now, pending, &mut out) else {
        panic!("a peer without a session lends its Tunn");
    };
    // Meanwhile: a second initiation from a waits for the client's retry, and traffic to a
    // finds no session (it has none yet).
    queue(&mut sim, a);
    assert!(sim.server.poll_handshake(now, &mut out).is_none());
    assert_eq!(sim.server.counters().drops(DropReason::HandshakeBusy), 1);
    let to_a = ipv4_packet(LAN_HOST, sim.clients[a].inner, b"x");
    assert_eq!(sim.server_send_ip(&to_a), Output::Nothing);
    assert_eq!(sim.server.counters().drops(DropReason::NoSession), 1);
    // Meanwhile a is removed: its answer is dropped when it comes back.
    assert!(sim.server.remove_peer(sim.clients[a].peer));
    assert_eq!(
        sim.server.tunnels(),
        1,
        "a's state went with it; b still holds its own"
    );
    lent_a.run(&mut out);
    assert!(sim.server.finish_handshake(now, lent_a, &mut out).is_none());
    assert_eq!(sim.server.counters().drops(DropReason::HandshakeBusy), 2);
    assert_eq!(sim.server.counters().handshakes_ok, 0);
    assert_eq!(sim.server.tunnels(), 1);

    // b's answer, computed outside, completes a session the client accepts.
    queue(&mut sim, b);
    let mut pending = take(&sim, now);
    pending.identify();
    let HandshakeStep::Lent(mut lent_b) = sim.server.begin_handshake(now, pending, &mut out) else {
        panic!("a peer without a session lends its Tunn");
    };
    lent_b.run(&mut out);
    let t = sim
        .server
        .finish_handshake(now, lent_b, &mut out)
        .expect("an answer to send");
    assert_eq!(t.dst, sim.clients[b].addr);
    assert_eq!(sim.server.counters().handshakes_ok, 1);
    let mut buf = vec![0u8; 2048];
    let keepalive = match sim.clients[b]
        .tunn
        .decapsulate(None, &out[..t.len], &mut buf)
    {
        TunnResult::WriteToNetwork(k) => k.to_vec(),
        _ => panic!("the client accepts the answer and confirms with a keepalive"),
    };
    let from = sim.clients[b].addr;
    let _ = sim.server.handle_network(now, from, &keepalive, &mut out);
    // With a session, b's next initiation (a rekey) is answered under the lock at once.
    queue(&mut sim, b);
    let mut pending = take(&sim, now);
    pending.identify();
    assert!(matches!(
        sim.server.begin_handshake(now, pending, &mut out),
        HandshakeStep::Done(Some(_))
    ));
}

#[test]
fn beyond_the_retained_ones_idle_peers_hold_no_session_state_until_they_handshake() {
    let mut sim = Sim::new(AdmissionConfig::default());
    sim.server.set_retained_tunnels(2);
    for _ in 0..4 {
        sim.add_client();
    }
    assert_eq!(sim.server.peer_count(), 4);
    assert_eq!(
        sim.server.tunnels(),
        2,
        "the first two hold state, the others none yet"
    );
    // Traffic towards an idle peer without a known endpoint creates nothing.
    let to3 = ipv4_packet(LAN_HOST, sim.clients[3].inner, b"x");
    assert_eq!(sim.server_send_ip(&to3), Output::Nothing);
    assert_eq!(sim.server.counters().drops(DropReason::NoEndpoint), 1);
    assert_eq!(sim.server.tunnels(), 2);
    // Its first handshake gives it state (made without the lock), and traffic flows.
    sim.client_handshake(3);
    sim.run(Duration::from_secs(1));
    assert_eq!(sim.server.tunnels(), 3);
    let p = ipv4_packet(sim.clients[3].inner, LAN_HOST, b"hello");
    sim.client_send_ip(3, &p);
    sim.run(Duration::from_secs(1));
    assert!(sim
        .server_tun
        .iter()
        .any(|(_, pkt)| pkt.ends_with(b"hello")));
    // A new private key ends sessions; who holds state stays as it was, and removing peers
    // gives theirs back.
    sim.server.set_private_key(Some([9; 32]));
    assert_eq!(sim.server.tunnels(), 3);
    let (p0, p2) = (sim.clients[0].peer, sim.clients[2].peer);
    assert!(sim.server.remove_peer(p0) && sim.server.remove_peer(p2));
    assert_eq!(sim.server.tunnels(), 2);
}

#[test]
fn an_answer_made_before_the_peer_was_added_again_is_not_used() {
    let mut sim = Sim::new(AdmissionConfig::default());
    let a = sim.add_client();
    let now = sim.now;
    let mut out = vec![0u8; 2048];
    let lend = |sim: &mut Sim, out: &mut [u8]| {
        let init = initiation(sim, a);
        let from = sim.clients[a].addr;
        let mut buf = vec![0u8; 2048];
        let _ = sim.server.handle_network(now, from, &init, &mut buf);
        let mut pending = take(sim, now);
        pending.identify();
        match sim.server.begin_handshake(now, pending, out) {
            HandshakeStep::Lent(l) => l,
            HandshakeStep::Done(_) => panic!("a peer without a session lends its Tunn"),
        }
    };
    let mut first = lend(&mut sim, &mut out);
    // The reconciler removes the peer and adds the same key again (same slot, new index).
    let key = sim.server.peer(sim.clients[a].peer).unwrap().public_key;
    assert!(sim.server.remove_peer(sim.clients[a].peer));
    let id = sim.server.add_peer(key);
    sim.server.add_allowed_ip(
        id,
        IpNetwork::new_truncate(IpAddr::V4(sim.clients[a].inner), 32).unwrap(),
    );
    sim.clients[a].peer = id;
    let mut second = lend(&mut sim, &mut out);
    // The first answer, made with the old peer's index, comes back last but one: dropped.
    first.run(&mut out);
    assert!(sim.server.finish_handshake(now, first, &mut out).is_none());
    second.run(&mut out);
    let t = sim
        .server
        .finish_handshake(now, second, &mut out)
        .expect("the current peer's answer");
    let response = out[..t.len].to_vec();
    sim.server_out(t.dst, response);
    // The session works: data from the client reaches the LAN.
    let p = ipv4_packet(sim.clients[a].inner, LAN_HOST, b"after re-add");
    sim.client_send_ip(a, &p);
    sim.run(Duration::from_secs(1));
    assert!(sim
        .server_tun
        .iter()
        .any(|(_, pkt)| pkt.ends_with(b"after re-add")));
    assert_eq!(sim.server.counters().drops(DropReason::UnknownIndex), 0);
}

#[test]
fn a_sustained_flood_costs_cookies_not_diffie_hellman() {
    let mut sim = Sim::new(AdmissionConfig::default());
    let legit = sim.add_client();
    let flood_from: SocketAddr = "192.0.2.200:1000".parse().unwrap();
    let mut out = vec![0u8; 2048];
    // 150 junk initiations, each answered (identified as nobody) before the next arrives: the
    // queue never gets deep, but the gateway learns it is being flooded.
    for _ in 0..150 {
        let junk = junk_initiation(&sim);
        let _ = sim
            .server
            .handle_network(sim.now, flood_from, &junk, &mut out);
        assert!(sim.server.poll_handshake(sim.now, &mut out).is_none());
    }
    // The first 100 cost a Diffie-Hellman each; then it is a flood, and the rest get cookies.
    assert_eq!(
        sim.server.counters().drops(DropReason::HandshakeInvalid),
        100
    );
    assert_eq!(sim.server.counters().cookies_sent, 50);
    // More junk now costs a cookie reply, not a queue slot and a Diffie-Hellman.
    let junk = junk_initiation(&sim);
    let o = sim
        .server
        .handle_network(sim.now, flood_from, &junk, &mut out);
    assert!(matches!(o, Output::Network(_)), "a cookie reply");
    assert_eq!(sim.server.handshake_queue_depth(), 0);
    // A real device gets a cookie too, comes back with mac2 (as the apps resend at once) and
    // gets in.
    let cookies = sim.server.counters().cookies_sent;
    sim.client_handshake(legit);
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.server.counters().cookies_sent, cookies + 1);
    sim.client_handshake(legit);
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.server.counters().handshakes_ok, 1);
    // Once the flood has been gone for a while, no cookies are demanded any more.
    sim.advance(Duration::from_secs(3));
    let before = sim.server.counters().cookies_sent;
    let junk = junk_initiation(&sim);
    let o = sim
        .server
        .handle_network(sim.now, flood_from, &junk, &mut out);
    assert_eq!(o, Output::Nothing, "queued again");
    assert_eq!(sim.server.counters().cookies_sent, before);
}

#[test]
fn past_its_cookie_budget_a_flooding_address_costs_no_cookie_replies() {
    let mut sim = Sim::new(AdmissionConfig {
        // Always under load: every initiation without mac2 needs a cookie.
        cookie_after: Duration::ZERO,
        free_cookie_rate: 0,
        per_source_cookie_rate: 1,
        per_source_cookie_burst: 5,
        ..AdmissionConfig::default()
    });
    let legit = sim.add_client();
    let flood_from: SocketAddr = "192.0.2.200:1000".parse().unwrap();
    let mut out = vec![0u8; 2048];
    let mut replies = 0;
    for _ in 0..20 {
        let junk = junk_initiation(&sim);
        let o = sim
            .server
            .handle_network(sim.now, flood_from, &junk, &mut out);
        replies += usize::from(matches!(o, Output::Network(_)));
    }
    assert_eq!((replies, sim.server.counters().cookies_sent), (5, 5));
    assert_eq!(
        sim.server
            .counters()
            .drops(DropReason::HandshakeRateLimited),
        15
    );
    // A made-up mac2 does not escape the budget: the cookie is computed, but not sent.
    let mut fake_mac2 = junk_initiation(&sim);
    fake_mac2[132..148].fill(1);
    let o = sim
        .server
        .handle_network(sim.now, flood_from, &fake_mac2, &mut out);
    assert_eq!(o, Output::Nothing);
    assert_eq!(
        sim.server
            .counters()
            .drops(DropReason::HandshakeRateLimited),
        16
    );
    // Junk without a valid mac1 (no knowledge of our key) cannot spend another address's
    // budget: it is dropped as such, and that address still gets its cookies.
    let victim: SocketAddr = "192.0.2.201:1000".parse().unwrap();
    for _ in 0..20 {
        let mut forged = junk_initiation(&sim);
        forged[120] ^= 1; // inside mac1
        let _ = sim
            .server
            .handle_network(sim.now, victim, &forged, &mut out);
    }
    assert_eq!(sim.server.counters().drops(DropReason::InvalidMac), 20);
    let junk = junk_initiation(&sim);
    let o = sim.server.handle_network(sim.now, victim, &junk, &mut out);
    assert!(
        matches!(o, Output::Network(_)),
        "the victim's budget is whole"
    );
    // Another address is not affected: the device gets its cookie and comes in with mac2.
    sim.client_handshake(legit);
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.server.counters().cookies_sent, 7);
    sim.client_handshake(legit);
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.server.counters().handshakes_ok, 1);
    // The flooding address earns one more cookie a second.
    sim.advance(Duration::from_secs(1));
    let junk = junk_initiation(&sim);
    let o = sim
        .server
        .handle_network(sim.now, flood_from, &junk, &mut out);
    assert!(matches!(o, Output::Network(_)));
}

/// Initiations queued when the private key is removed cannot be answered: they are dropped and
/// counted, so the queue does not stay non-empty (which would keep the workers polling).
#[test]
fn removing_the_key_empties_the_handshake_queue() {
    let mut sim = Sim::new(AdmissionConfig::default());
    sim.add_client();
    let init = initiation(&mut sim, 0);
    let mut out = vec![0u8; 2048];
    let from = sim.clients[0].addr;
    let _ = sim.server.handle_network(sim.now, from, &init, &mut out);
    assert_eq!(sim.server.handshake_queue_depth(), 1);
    sim.server.set_private_key(None);
    assert!(sim.server.take_handshake(sim.now, &mut out).is_none());
    assert_eq!(sim.server.handshake_queue_depth(), 0);
    assert_eq!(sim.server.counters().drops(DropReason::NoPrivateKey), 1);
}
