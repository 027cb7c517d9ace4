//! The peer table: adding, removing and configuring peers (through `&mut Device`), and the views
//! of it that UAPI, the reconciler and the metrics read.

use super::*;

impl Device {
    /// The counters as they are now.
    pub fn counters(&self) -> Counters {
        self.counters.read()
    }

    /// Initiations waiting for Diffie-Hellman.
    pub fn handshake_queue_depth(&self) -> usize {
        self.admission.lock().depth()
    }

    pub fn peer_count(&self) -> usize {
        self.by_key.len()
    }

    /// Peers holding a `Tunn` (WireGuard session state, about 11 KB each): the active ones.
    /// Idle peers get theirs on first use and lose it when their session has expired.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Relaxed)
    }

    /// Sets how many peers may hold session state while idle (default [`RETAINED_TUNNELS`]),
    /// trading memory for handshakes that need no extra Diffie-Hellman.
    pub fn set_retained_tunnels(&mut self, n: usize) {
        self.retained_tunnels = n;
    }

    /// Peers whose current session was established less than `window` ago. Walks the table
    /// without building a [`PeerInfo`] per peer, taking each peer's lock only for a moment.
    pub fn peers_with_handshake_within(&self, window: Duration) -> usize {
        self.peers
            .iter()
            .flatten()
            .filter(|p| {
                p.live
                    .lock()
                    .tunn
                    .as_ref()
                    .and_then(|t| t.time_since_last_handshake())
                    .is_some_and(|ago| ago < window)
            })
            .count()
    }

    pub fn peer_id(&self, key: &Key) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// Makes room for `additional` more peers at once. Growing the tables moves every entry,
    /// which takes milliseconds at tens of thousands of peers; done for a whole set while the
    /// tables are still small (a gateway starting), that copying never happens.
    pub fn reserve_peers(&mut self, additional: usize) {
        let free = self.free_slots.len();
        self.peers.reserve(additional.saturating_sub(free));
        self.by_key.reserve(additional);
        self.by_index.reserve(additional);
    }

    /// Adds a peer with no allowed IPs, or returns the existing one.
    pub fn add_peer(&mut self, public_key: Key) -> PeerId {
        if let Some(id) = self.by_key.get(&public_key) {
            return *id;
        }
        let index = self.fresh_index();
        let peer = Peer {
            public_key,
            preshared_key: None,
            persistent_keepalive: 0,
            index,
            allowed_ips: Vec::new(),
            generation: self.next_generation(),
            policy: None,
            hint: None,
            live: Mutex::new(Live {
                tunn: None,
                endpoint: None,
                rx_bytes: 0,
                tx_bytes: 0,
                needs_flush: false,
                waiting: 0,
                lent: false,
                deadline: None,
                prompted_at: None,
                roaming: Roaming::default(),
            }),
        };
        let id = match self.free_slots.pop() {
            Some(slot) => {
                self.peers[slot as usize] = Some(peer);
                PeerId(slot)
            }
            None => {
                self.peers.push(Some(peer));
                PeerId((self.peers.len() - 1) as u32)
            }
        };
        self.by_key.insert(public_key, id);
        self.by_index.insert(index, id);
        self.rebuild_tunn(id);
        id
    }

    /// Removes a peer with its sessions, allowed IPs and timers. Other peers are untouched.
    pub fn remove_peer(&mut self, id: PeerId) -> bool {
        let Some(mut peer) = self.peers.get_mut(id.slot()).and_then(Option::take) else {
            return false;
        };
        let live = peer.live.get_mut();
        if live.holds_tunn() {
            *self.tunnels.get_mut() -= 1;
        }
        if live.deadline.is_some() {
            *self.scheduled.get_mut() -= 1;
        }
        self.by_key.remove(&peer.public_key);
        self.by_index.remove(&peer.index);
        if let Some(hint) = peer.hint {
            if self.hints.get(&hint) == Some(&id) {
                self.hints.remove(&hint);
            }
        }
        for net in &peer.allowed_ips {
            self.allowed_ips.remove(*net, id);
        }
        // Its heap entries are stale now: a slot reused by a new peer has its own deadline.
        self.free_slots.push(id.0);
        true
    }

    /// Removes every peer (UAPI `replace_peers`).
    pub fn clear_peers(&mut self) {
        let ids: Vec<PeerId> = self.by_key.values().copied().collect();
        for id in ids {
            self.remove_peer(id);
        }
    }

    /// Sets the preshared key. Changing it restarts only this peer's session.
    pub fn set_preshared_key(&mut self, id: PeerId, psk: Option<Key>) {
        if let Some(p) = self.peer_mut(id) {
            if p.preshared_key != psk {
                p.preshared_key = psk;
                self.rebuild_tunn(id);
            }
        }
    }

    /// Sets the persistent keepalive interval in seconds (0 = off). boringtun fixes it at
    /// construction, so a change restarts only this peer's session.
    pub fn set_persistent_keepalive(&mut self, id: PeerId, seconds: u16) {
        if let Some(p) = self.peer_mut(id) {
            if p.persistent_keepalive != seconds {
                p.persistent_keepalive = seconds;
                self.rebuild_tunn(id);
            }
        }
    }

    /// Sets the peer's access policy (usually its group's, shared). Takes effect with the next
    /// packet; the session is untouched. Returns whether the allowed prefixes changed, since a
    /// reconciler resends every peer's policy on each pass.
    pub fn set_policy(&mut self, id: PeerId, policy: Option<Arc<Policy>>) -> bool {
        let Some(p) = self.peer_mut(id) else {
            return false;
        };
        let same = Policy::same(p.policy.as_ref(), policy.as_ref());
        p.policy = policy;
        !same
    }

    pub fn set_endpoint(&mut self, id: PeerId, endpoint: SocketAddr) {
        if let Some(p) = self.peer_mut(id) {
            p.live.get_mut().endpoint = Some(endpoint);
        }
    }

    /// Where the store last saw the device, by this gateway or another that shares its key and
    /// database. Transport data under a session this gateway does not know, from exactly this
    /// address, makes it start a handshake to the device at once (see
    /// [`Device::handle_network`]): after a failover the device's traffic moves over within a
    /// round trip instead of the 15 s its own timers take. A peer without an endpoint of its own
    /// takes the hint as its endpoint. Several devices behind one NAT address have different
    /// ports; if two claim one address, the later hint wins.
    pub fn set_endpoint_hint(&mut self, id: PeerId, hint: SocketAddr) {
        let Some(p) = self.peer_mut(id) else {
            return;
        };
        if p.hint == Some(hint) {
            return;
        }
        let old = p.hint.replace(hint);
        let live = p.live.get_mut();
        live.endpoint.get_or_insert(hint);
        if let Some(old) = old {
            if self.hints.get(&old) == Some(&id) {
                self.hints.remove(&old);
            }
        }
        self.hints.insert(hint, id);
    }

    /// Gives `net` to the peer; if another peer held exactly this prefix it loses it.
    pub fn add_allowed_ip(&mut self, id: PeerId, net: IpNetwork) {
        if self.peer_mut(id).is_none() {
            return;
        }
        if let Some(prev) = self.allowed_ips.insert(net, id) {
            if let Some(p) = self.peer_mut(prev) {
                p.allowed_ips.retain(|n| *n != net);
            }
        }
        if let Some(p) = self.peer_mut(id) {
            if !p.allowed_ips.contains(&net) {
                p.allowed_ips.push(net);
            }
        }
    }

    pub fn remove_allowed_ip(&mut self, id: PeerId, net: IpNetwork) {
        if self.allowed_ips.remove(net, id) {
            if let Some(p) = self.peer_mut(id) {
                p.allowed_ips.retain(|n| *n != net);
            }
        }
    }

    pub fn clear_allowed_ips(&mut self, id: PeerId) {
        let nets = self
            .peer_mut(id)
            .map(|p| std::mem::take(&mut p.allowed_ips))
            .unwrap_or_default();
        for net in nets {
            self.allowed_ips.remove(net, id);
        }
    }

    /// A view of one peer.
    pub fn peer(&self, id: PeerId) -> Option<PeerInfo> {
        let p = self.peers.get(id.slot())?.as_ref()?;
        let live = p.live.lock();
        Some(PeerInfo {
            id,
            public_key: p.public_key,
            preshared_key: p.preshared_key,
            endpoint: live.endpoint,
            persistent_keepalive: p.persistent_keepalive,
            allowed_ips: p.allowed_ips.clone(),
            last_handshake_ago: live
                .tunn
                .as_ref()
                .and_then(|t| t.time_since_last_handshake()),
            rx_bytes: live.rx_bytes,
            tx_bytes: live.tx_bytes,
            roaming: live.roaming,
        })
    }

    /// What the control plane sets on a peer, without copying it.
    pub fn peer_settings(&self, id: PeerId) -> Option<PeerSettings<'_>> {
        let p = self.peers.get(id.slot())?.as_ref()?;
        Some(PeerSettings {
            preshared_key: p.preshared_key,
            allowed_ips: &p.allowed_ips,
            policy: p.policy.as_ref(),
        })
    }

    /// Number of peer slots (occupied or free): the bound for [`Device::peer_keys`].
    pub fn peer_slots(&self) -> usize {
        self.peers.len()
    }

    /// The peers in `slots`, by public key: lets a caller walk a large table a piece at a time.
    pub fn peer_keys(
        &self,
        slots: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (PeerId, Key)> + '_ {
        let end = slots.end.min(self.peers.len());
        let start = slots.start.min(end);
        self.peers[start..end]
            .iter()
            .zip(start..)
            .filter_map(|(p, s)| Some((PeerId(s as u32), p.as_ref()?.public_key)))
    }

    /// Every peer, in slot order.
    pub fn peers(&self) -> impl Iterator<Item = PeerInfo> + '_ {
        (0..self.peers.len() as u32).filter_map(|s| self.peer(PeerId(s)))
    }

    pub(super) fn peer_mut(&mut self, id: PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(id.slot()).and_then(Option::as_mut)
    }

    /// Applies a new identity or new settings to the peer's `Tunn`, ending its session. A peer
    /// gets one if it had one, needs one all the time (a persistent keepalive), or while fewer
    /// than [`RETAINED_TUNNELS`] peers hold one; others get theirs on first use (see
    /// [`Device::handle_tun`], [`Device::begin_handshake`]).
    pub(super) fn rebuild_tunn(&mut self, id: PeerId) {
        let room = *self.tunnels.get_mut() < self.retained_tunnels;
        let generation = self.next_generation();
        let Some(p) = self.peers.get_mut(id.slot()).and_then(Option::as_mut) else {
            return;
        };
        let wanted = p.live.get_mut().holds_tunn() || room || p.persistent_keepalive > 0;
        let tunn = match &self.identity {
            Some(identity) if wanted => Some(new_tunn(&tunn_spec(identity, p))),
            _ => None,
        };
        p.generation = generation;
        let live = p.live.get_mut();
        let tunnels = self.tunnels.get_mut();
        *tunnels = *tunnels + usize::from(tunn.is_some()) - usize::from(live.holds_tunn());
        // A `Tunn` lent out for a handshake was made with the old settings: its answer is
        // dropped when it comes back (see `finish_handshake`).
        live.lent = false;
        live.tunn = tunn;
        live.needs_flush = false;
        live.waiting = 0;
        if live.deadline.take().is_some() {
            *self.scheduled.get_mut() -= 1;
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// A random 24-bit peer index not in use. boringtun shifts it left by 8 and numbers the
    /// sessions in the low byte, so `receiver_index >> 8` finds the peer in one hash lookup.
    fn fresh_index(&mut self) -> u32 {
        loop {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let idx = (self.rng as u32) & 0x00ff_ffff;
            if !self.by_index.contains_key(&idx) {
                return idx;
            }
        }
    }
}
