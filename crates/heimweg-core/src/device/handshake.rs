//! Handshakes: admitting initiations, answering them off the lock, and the handshakes the
//! gateway starts itself after a failover.

use super::*;

/// A handshake initiation taken off the queue (see [`Device::take_handshake`]).
pub struct PendingHandshake {
    init: QueuedInit,
    secret: StaticSecret,
    public: PublicKey,
    /// What [`PendingHandshake::identify`] computed, which the peer's `Tunn` continues from.
    identified: Option<IdentifiedHandshakeInit>,
}

impl PendingHandshake {
    /// Finds out who sent the initiation, if it decrypts for us: one Diffie-Hellman, with no
    /// device state, so callers run it without holding the device. The state it computed is
    /// kept, and the peer's `Tunn` answers from there (boringtun as patched in
    /// `third_party/boringtun`) instead of doing this Diffie-Hellman a second time.
    pub fn identify(&mut self) -> Option<Key> {
        let Ok(Packet::HandshakeInit(p)) = Tunn::parse_incoming_packet(&self.init.bytes) else {
            return None;
        };
        let identified = identify_handshake_init(&self.secret, &self.public, &p).ok()?;
        let sender = identified.peer_static_public();
        self.identified = Some(identified);
        Some(sender)
    }

    /// The sender [`PendingHandshake::identify`] found.
    pub fn sender(&self) -> Option<Key> {
        self.identified
            .as_ref()
            .map(IdentifiedHandshakeInit::peer_static_public)
    }
}

/// What [`Device::begin_handshake`] did with an initiation.
pub enum HandshakeStep {
    /// Answered (the datagram to send) or dropped, under the lock.
    Done(Option<Transmit>),
    /// The peer has no session, so its `Tunn` was lent out: [`LentHandshake::run`] it without
    /// holding the device, then hand it to [`Device::finish_handshake`]. (Boxed: it carries
    /// the initiation; one allocation per handshake is nothing beside its Diffie-Hellmans.)
    Lent(Box<LentHandshake>),
}

/// What [`Device::take_handshake`] took off the queue.
// One per handshake, consumed at once: boxing the large variant would allocate for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Taken {
    /// An initiation to answer: [`PendingHandshake::identify`] it, then
    /// [`Device::begin_handshake`].
    Pending(PendingHandshake),
    /// One that waited without mac2 while a flood was detected: answered with this cookie
    /// reply instead of a Diffie-Hellman (`None`: past the cookie budget, dropped).
    Reply(Option<Transmit>),
}

/// What [`answer_next_handshake`] did with one queued initiation.
pub struct Answered {
    /// The response or cookie reply to send, if any.
    pub transmit: Option<Transmit>,
    /// Whether it cost Diffie-Hellman: the drivers time those for
    /// [`Device::record_handshake_cost`].
    pub diffie_hellman: bool,
}

/// Answers the next queued initiation, in the steps every driver takes: take it off the queue,
/// identify the sender, begin, and for a peer without a session run the lent `Tunn` and finish.
/// `device` gives access to the device for each step and is dropped in between, so the
/// Diffie-Hellmans run without it (a driver that keeps the device in a reader-writer lock
/// passes a closure that takes a read guard). `None` when the queue is empty.
pub fn answer_next_handshake<D: Deref<Target = Device>>(
    device: impl Fn() -> D,
    now: Instant,
    out: &mut [u8],
) -> Option<Answered> {
    if out.len() < MIN_OUT_LEN {
        return None;
    }
    let taken = device().take_handshake(now, out)?;
    let pending = match taken {
        Taken::Reply(transmit) => {
            return Some(Answered {
                transmit,
                diffie_hellman: false,
            })
        }
        Taken::Pending(p) => p,
    };
    let mut pending = pending;
    pending.identify();
    let step = device().begin_handshake(now, pending, out);
    let transmit = match step {
        HandshakeStep::Done(t) => t,
        HandshakeStep::Lent(mut lent) => {
            lent.run(out);
            device().finish_handshake(now, lent, out)
        }
    };
    Some(Answered {
        transmit,
        diffie_hellman: true,
    })
}

/// A peer's `Tunn`, lent out to answer one initiation. Hand it back with
/// [`Device::finish_handshake`] even if [`LentHandshake::run`] was not called: until then the
/// peer cannot handshake.
#[must_use]
pub struct LentHandshake {
    id: PeerId,
    generation: u64,
    tunn: Lent,
    init: QueuedInit,
    identified: Option<IdentifiedHandshakeInit>,
    result: Option<Result<Span, WireGuardError>>,
}

/// The state lent out: the peer's `Tunn`, or, for an idle peer that has none, what makes one
/// (making one costs a Diffie-Hellman too, so it also happens without the lock).
enum Lent {
    Tunn(Box<Tunn>),
    Make(TunnSpec),
}

impl LentHandshake {
    /// Computes the answer (the handshake's Diffie-Hellmans) into `out`.
    pub fn run(&mut self, out: &mut [u8]) {
        if let Lent::Make(spec) = &self.tunn {
            self.tunn = Lent::Tunn(new_tunn(spec));
        }
        let Lent::Tunn(tunn) = &mut self.tunn else {
            return;
        };
        let base = out.as_ptr() as usize;
        let result = answer_initiation(tunn, &self.init, self.identified.take(), out);
        self.result = Some(locate(result, base).map(|l| l.settle(out)));
    }
}

impl Device {
    pub(super) fn admit_initiation(
        &self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Output {
        let Some(identity) = self.identity.as_ref() else {
            return self.dropped(DropReason::NoPrivateKey);
        };
        // A guarded initiation without mac2 can only earn a cookie reply, which costs several
        // MACs and an encryption. It is charged to its address's cookie budget first, so that
        // past the budget it is dropped before any MAC is computed; if its mac1 then turns out
        // wrong the charge is given back, so a sender who does not know our public key cannot
        // spend an address's budget. One with a mac2 goes on to be checked: it may be a real
        // device coming back with its cookie.
        let (lane, charged) = {
            let mut admission = self.admission.lock();
            let lane = admission.lane(now, src.ip(), self.cost.get());
            let charged =
                if lane == Lane::Guarded && datagram[INIT_LEN - 16..].iter().all(|&b| b == 0) {
                    match admission.allow_cookie(now, src.ip()) {
                        Some(grant) => Some(grant),
                        None => {
                            drop(admission);
                            return self.dropped(DropReason::HandshakeRateLimited);
                        }
                    }
                } else {
                    None
                };
            (lane, charged)
        };
        let limiter = if lane == Lane::Guarded {
            &identity.loaded
        } else {
            &identity.normal
        };
        // The MACs are checked without the admission lock: workers check them in parallel.
        match limiter.verify_packet(Some(src.ip()), datagram, out) {
            Ok(_) => {}
            Err(TunnResult::WriteToNetwork(cookie)) => {
                let len = cookie.len();
                // A wrong but non-zero mac2 was not charged beforehand; it is now. Its cost
                // is spent, but past the budget it gets no reply, so the gateway does not
                // reflect a flood without limit.
                if charged.is_none() && self.admission.lock().allow_cookie(now, src.ip()).is_none()
                {
                    return self.dropped(DropReason::HandshakeRateLimited);
                }
                self.counters.add(Count::CookiesSent, 1);
                return Output::Network(Transmit { dst: src, len });
            }
            Err(_) => {
                if let Some(grant) = charged {
                    self.admission.lock().refund_cookie(now, src.ip(), grant);
                }
                return self.dropped(DropReason::InvalidMac);
            }
        }
        let mut admission = self.admission.lock();
        // Only senders that proved mac1 (and, when guarded, their address via mac2) spend
        // tokens, so spoofed junk cannot exhaust a real address's budget.
        if !admission.allow_source(now, src.ip()) {
            drop(admission);
            return self.dropped(DropReason::HandshakeRateLimited);
        }
        if !admission.push(lane, src, datagram, now) {
            drop(admission);
            return self.dropped(DropReason::HandshakeQueueFull);
        }
        Output::Nothing
    }

    /// Processes queued handshake initiations until one produces a datagram to send, the queue
    /// is empty, or a small work budget is spent: [`answer_next_handshake`] with the device at
    /// hand, for drivers without a lock around it (benchmarks, the fuzz harness).
    pub fn poll_handshake(&self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        for _ in 0..HANDSHAKE_WORK_PER_POLL {
            if let Some(t) = answer_next_handshake(|| self, now, out)?.transmit {
                return Some(t);
            }
        }
        None
    }

    /// Folds what one handshake's Diffie-Hellman work took a worker (from taking it off the
    /// queue to its answer, wall time) into the estimate that decides when the queue is too
    /// long to wait in (see [`AdmissionConfig::cookie_after`]).
    pub fn record_handshake_cost(&self, took: Duration) {
        self.cost.record(took);
    }

    /// The current estimate of what a handshake costs a worker.
    pub fn handshake_cost(&self) -> Duration {
        self.cost.get()
    }

    /// Takes the next admitted initiation off the queue. The expensive part of answering it
    /// then runs without holding any lock, so several threads answer handshakes at once:
    /// [`PendingHandshake::identify`] (one Diffie-Hellman), then [`Device::begin_handshake`],
    /// then, for a peer without a session, [`LentHandshake::run`] (the handshake's own
    /// Diffie-Hellmans) and [`Device::finish_handshake`]. [`answer_next_handshake`] is those
    /// steps in order; drivers call it rather than the steps. An initiation that waited without
    /// mac2 while a flood was detected gets its cookie reply here, in `out`, instead.
    pub fn take_handshake(&self, now: Instant, out: &mut [u8]) -> Option<Taken> {
        let Some(identity) = self.identity.as_ref() else {
            // The key was removed after these were queued: nothing can answer them. Left in the
            // queue they would keep its depth above zero, and the workers polling without pause.
            let stale = self.admission.lock().drain();
            for _ in 0..stale {
                self.counters.drop(DropReason::NoPrivateKey);
            }
            return None;
        };
        let mut stale = 0;
        let popped = self.admission.lock().pop(now, &mut stale);
        for _ in 0..stale {
            self.counters.drop(DropReason::HandshakeStale);
        }
        match popped? {
            Popped::Work(init) => Some(Taken::Pending(PendingHandshake {
                init,
                secret: identity.secret.clone(),
                public: identity.public,
                identified: None,
            })),
            Popped::Cookie(init) => {
                Some(Taken::Reply(self.cookie_reply(now, identity, &init, out)))
            }
        }
    }

    /// A cookie reply to a queued initiation, within the cookie budget.
    fn cookie_reply(
        &self,
        now: Instant,
        identity: &Identity,
        init: &QueuedInit,
        out: &mut [u8],
    ) -> Option<Transmit> {
        if out.len() < MIN_OUT_LEN {
            return None;
        }
        let src = init.src;
        if self.admission.lock().allow_cookie(now, src.ip()).is_none() {
            return self.dropped_none(DropReason::HandshakeRateLimited);
        }
        match identity
            .loaded
            .verify_packet(Some(src.ip()), &init.bytes, out)
        {
            Err(TunnResult::WriteToNetwork(cookie)) => {
                let len = cookie.len();
                self.counters.add(Count::CookiesSent, 1);
                Some(Transmit { dst: src, len })
            }
            // Its mac1 was checked when it was queued, and it has no valid mac2 (else it would
            // not be here): nothing else can come back.
            _ => self.dropped_none(DropReason::InvalidMac),
        }
    }

    /// Transport data arrived under a receiver index this gateway never handed out, from an
    /// address where the store last saw a device: the device's session is with another gateway
    /// that shares this one's key and address, which has failed or handed the address over. A
    /// stock client keeps sending on that session until its own timers give up, 15 s later;
    /// the gateway starts a handshake to it now instead (it has the device's public key and
    /// the shared private key), and the client's traffic follows the new session within a
    /// round trip.
    ///
    /// Whoever can send a datagram from that address can trigger this, so it is bounded: one
    /// initiation per device per retransmit interval (boringtun's own retransmits follow it,
    /// as for any handshake), and [`AdmissionConfig::max_prompts_per_second`] in all. The
    /// initiation goes only to the address the store already held for the device, never to
    /// one the sender chooses.
    pub(super) fn prompt_handshake(
        &self,
        now: Instant,
        src: SocketAddr,
        out: &mut [u8],
    ) -> Option<Transmit> {
        let id = *self.hints.get(&src)?;
        let peer = self.peer_ref(id)?;
        let identity = self.identity.as_ref()?;
        let mut live = peer.live.lock();
        if live.lent
            || live
                .prompted_at
                .is_some_and(|t| now.saturating_duration_since(t) < RETRANSMIT)
        {
            return None;
        }
        if !self.admission.lock().allow_prompt(now) {
            return None;
        }
        let live = &mut *live;
        live.prompted_at = Some(now);
        let tunn = self.tunn_of(identity, peer, live);
        let base = out.as_ptr() as usize;
        let result =
            locate(tunn.format_handshake_initiation(out, false), base).map(|l| l.settle(out));
        // `Done`: a handshake of its own is already underway.
        let Ok(Span::Network(len)) = result else {
            return None;
        };
        live.endpoint = Some(src);
        live.tx_bytes += len as u64;
        self.counters.add(Count::HandshakesPrompted, 1);
        self.schedule(id, live, now + TIMER_TICK);
        Some(Transmit { dst: src, len })
    }

    /// Finds the peer `sender` (from [`PendingHandshake::identify`]) names. A peer with a live
    /// session answers at once, under its own lock, so its traffic pauses only for its own
    /// handshake; a peer without one (the Monday-morning case) lends its `Tunn` out to be
    /// answered without any lock.
    pub fn begin_handshake(
        &self,
        now: Instant,
        mut pending: PendingHandshake,
        out: &mut [u8],
    ) -> HandshakeStep {
        let known = pending.sender().and_then(|k| self.by_key.get(&k).copied());
        self.admission.lock().record(now, known.is_some());
        let Some((id, peer)) = known.and_then(|id| Some((id, self.peer_ref(id)?))) else {
            return HandshakeStep::Done(self.dropped_none(DropReason::HandshakeInvalid));
        };
        let Some(identity) = &self.identity else {
            return HandshakeStep::Done(self.dropped_none(DropReason::NoPrivateKey));
        };
        let mut live = peer.live.lock();
        if live.lent {
            return HandshakeStep::Done(self.dropped_none(DropReason::HandshakeBusy));
        }
        let lent = match live.tunn.take() {
            // An idle peer: its `Tunn` is made outside the lock, too.
            None => {
                self.tunnels.fetch_add(1, Ordering::Relaxed);
                Some(Lent::Make(tunn_spec(identity, peer)))
            }
            Some(t)
                if t.time_since_last_handshake()
                    .is_none_or(|ago| ago >= SESSION_LIFETIME) =>
            {
                Some(Lent::Tunn(t))
            }
            Some(t) => {
                live.tunn = Some(t);
                None
            }
        };
        if let Some(tunn) = lent {
            live.lent = true;
            return HandshakeStep::Lent(Box::new(LentHandshake {
                id,
                generation: peer.generation,
                tunn,
                init: pending.init,
                identified: pending.identified,
                result: None,
            }));
        }
        let live = &mut *live;
        let Some(tunn) = live.tunn.as_mut() else {
            return HandshakeStep::Done(self.dropped_none(DropReason::NoSession));
        };
        let init = &pending.init;
        let base = out.as_ptr() as usize;
        let result = answer_initiation(tunn, init, pending.identified.take(), out);
        let result = locate(result, base).map(|l| l.settle(out));
        let rx = Received {
            now,
            src: init.src,
            datagram: &init.bytes,
        };
        match self.settle_decapsulation(id, peer, live, rx, result, out) {
            Output::Network(t) => HandshakeStep::Done(Some(t)),
            _ => HandshakeStep::Done(None),
        }
    }

    /// Gives a lent `Tunn` back and sends what it answered. If the peer was removed or
    /// rebuilt meanwhile, its new state wins and the answer is dropped.
    pub fn finish_handshake(
        &self,
        now: Instant,
        lent: Box<LentHandshake>,
        out: &mut [u8],
    ) -> Option<Transmit> {
        let LentHandshake {
            id,
            generation,
            tunn,
            init,
            result,
            ..
        } = *lent;
        let Some(peer) = self.peer_ref(id).filter(|p| p.generation == generation) else {
            return self.dropped_none(DropReason::HandshakeBusy);
        };
        let mut live = peer.live.lock();
        if !live.lent {
            return self.dropped_none(DropReason::HandshakeBusy);
        }
        live.lent = false;
        if live.tunn.is_some() {
            return self.dropped_none(DropReason::HandshakeBusy);
        }
        // Timers that came due while it was lent were skipped: look again soon.
        self.schedule(id, &mut live, now + TIMER_TICK);
        match tunn {
            Lent::Tunn(t) => live.tunn = Some(t),
            // Never run: the peer stays idle.
            Lent::Make(_) => {
                self.tunnels.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
        }
        let result = result.unwrap_or(Err(WireGuardError::UnexpectedPacket));
        let rx = Received {
            now,
            src: init.src,
            datagram: &init.bytes,
        };
        match self.settle_decapsulation(id, peer, &mut live, rx, result, out) {
            Output::Network(t) => Some(t),
            _ => None,
        }
    }
}

/// The peer's `Tunn` answers an initiation: from where [`PendingHandshake::identify`] left off,
/// or, for one that was not identified first, from the start.
fn answer_initiation<'a>(
    tunn: &mut Tunn,
    init: &QueuedInit,
    identified: Option<IdentifiedHandshakeInit>,
    out: &'a mut [u8],
) -> TunnResult<'a> {
    match identified {
        Some(identified) => tunn.handle_identified_handshake_init(identified, out),
        None => tunn.decapsulate(Some(init.src.ip()), &init.bytes, out),
    }
}
