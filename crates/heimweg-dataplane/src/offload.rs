//! TUN offloads: the virtio-net header, splitting the kernel's super-packets into packets the
//! peers can take, and coalescing decrypted TCP segments into super-packets for the kernel.
//!
//! Why: one syscall and one trip through the kernel's stack per 1420-byte packet cost far more
//! than the cryptography. With `IFF_VNET_HDR` and TSO the kernel hands a TCP sender's 64 KiB
//! in one read (we segment it here, as a NIC would), and takes up to 64 KiB of one flow in one
//! write (we coalesce here, as GRO would). The rules follow the kernel's GRO: a segment joins
//! a flow's super-packet only if every header field but the length, IPv4 id, sequence number,
//! checksums and PSH matches the first segment's, and its sequence number continues the run.

use std::io::IoSlice;

pub const VNET_HDR_LEN: usize = heimweg_sys::tun::VNET_HDR_LEN;

const F_NEEDS_CSUM: u8 = 1;
const F_DATA_VALID: u8 = 2;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// Largest IP packet (IPv4 total length or IPv6 payload plus header) a write may carry.
const MAX_SUPER: usize = 65535;
/// Segments per coalesced write, as the kernel's GRO allows.
const MAX_SEGMENTS: usize = 64;

// The TUN uses the host's byte order for the virtio-net header unless told otherwise
// (TUNSETVNETLE/BE); this code speaks little-endian only.
#[cfg(target_endian = "big")]
compile_error!("offload.rs encodes the virtio-net header little-endian");

/// `struct virtio_net_hdr`, in the host's (little-endian) byte order the TUN uses by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    pub fn encode(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// Why a TUN read could not be turned into packets (counted as an inner-malformed drop).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

// ---- checksums -------------------------------------------------------------------------------

/// Adds `data` to a ones'-complement sum (RFC 1071) kept in 64 bits with end-around carry.
/// Eight bytes at a time: the sum of big-endian 64-bit words folds to the same 16 bits as the
/// sum of 16-bit words, because 2^16 ≡ 1 modulo 2^16 − 1.
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut add = |v: u64| {
        let (s, carry) = acc.overflowing_add(v);
        acc = s + u64::from(carry);
    };
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        add(u64::from_be_bytes(w.try_into().unwrap_or_default()));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    add(u64::from_be_bytes(tail));
    acc
}

/// Folds a 64-bit ones'-complement sum to 16 bits (not complemented).
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The pseudo-header sum of a transport segment of `len` bytes.
fn pseudo(ip: &[u8], v6: bool, proto: u8, len: usize) -> u64 {
    let addrs = if v6 { &ip[8..40] } else { &ip[12..20] };
    sum(addrs, u64::from(proto) + len as u64)
}

fn ipv4_header_checksum(ip: &mut [u8], ihl: usize) {
    ip[10..12].fill(0);
    let c = !fold(sum(&ip[..ihl], 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
}

// ---- TUN read: super-packets to packets ---------------------------------------------------

/// The IP header of a packet the kernel handed over: its version and length.
fn ip_header(pkt: &[u8]) -> Option<(bool, usize, u8)> {
    match pkt.first()? >> 4 {
        4 => {
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            (ihl >= 20 && pkt.len() >= ihl).then(|| (false, ihl, pkt[9]))
        }
        // Super-packets carry TCP or UDP right after the fixed header (the kernel does not
        // offload with extension headers in front of them on TUN).
        6 => (pkt.len() >= 40).then(|| (true, 40, pkt[6])),
        _ => None,
    }
}

/// Turns what one TUN read returned (`hdr` and the packet after it) into ordinary IP packets
/// and hands each to `emit`: a whole packet as it is (its checksum completed if the kernel
/// left that to us), a super-packet cut at `gso_size` with every header fixed up, as a NIC's
/// segmentation offload would. `scratch` must hold one segment (the MTU).
pub fn segment(
    hdr: VnetHdr,
    pkt: &mut [u8],
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<(), Malformed> {
    let gso = hdr.gso_type & !GSO_ECN;
    if gso == GSO_NONE {
        if hdr.flags & F_NEEDS_CSUM != 0 {
            let start = usize::from(hdr.csum_start);
            let field = start + usize::from(hdr.csum_offset);
            if field + 2 > pkt.len() {
                return Err(Malformed);
            }
            // The field holds the pseudo-header sum; the sum over everything from
            // `csum_start` then completes it.
            let mut c = !fold(sum(&pkt[start..], 0));
            if c == 0 && ip_header(pkt).is_some_and(|(_, _, proto)| proto == PROTO_UDP) {
                c = 0xffff; // zero means "no checksum" in UDP (and is invalid over IPv6)
            }
            pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
        }
        emit(pkt);
        return Ok(());
    }
    let (v6, iph, proto) = ip_header(pkt).ok_or(Malformed)?;
    let tcp = match (gso, v6, proto) {
        (GSO_TCPV4, false, PROTO_TCP) | (GSO_TCPV6, true, PROTO_TCP) => true,
        (GSO_UDP_L4, _, PROTO_UDP) => false,
        _ => return Err(Malformed),
    };
    let th = if tcp {
        let off = *pkt.get(iph + 12).ok_or(Malformed)?;
        usize::from(off >> 4) * 4
    } else {
        8
    };
    let headers = iph + th;
    let mss = usize::from(hdr.gso_size);
    if th < if tcp { 20 } else { 8 }
        || pkt.len() < headers
        || mss == 0
        || headers + mss > scratch.len()
    {
        return Err(Malformed);
    }
    let (head, payload) = pkt.split_at(headers);
    let first_seq = u32::from_be_bytes(head[iph + 4..iph + 8].try_into().map_err(|_| Malformed)?);
    let id = u16::from_be_bytes([head[4], head[5]]);
    let count = payload.len().div_ceil(mss);
    for (i, chunk) in payload.chunks(mss).enumerate() {
        let len = headers + chunk.len();
        let seg = &mut scratch[..len];
        seg[..headers].copy_from_slice(head);
        seg[headers..].copy_from_slice(chunk);
        let transport_len = len - iph;
        if v6 {
            seg[4..6].copy_from_slice(&(transport_len as u16).to_be_bytes());
        } else {
            seg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            seg[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            ipv4_header_checksum(seg, iph);
        }
        let csum_at = if tcp {
            let seq = first_seq.wrapping_add((i * mss) as u32);
            seg[iph + 4..iph + 8].copy_from_slice(&seq.to_be_bytes());
            let flags = &mut seg[iph + 13];
            if i + 1 < count {
                *flags &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                *flags &= !TCP_CWR;
            }
            iph + 16
        } else {
            seg[iph + 4..iph + 6].copy_from_slice(&(transport_len as u16).to_be_bytes());
            iph + 6
        };
        seg[csum_at..csum_at + 2].fill(0);
        let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
        let mut c = !fold(sum(&seg[iph..], pseudo(seg, v6, proto, transport_len)));
        if !tcp && c == 0 {
            c = 0xffff; // zero means "no checksum" in UDP
        }
        seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        emit(seg);
    }
    Ok(())
}

// ---- TUN write: packets to super-packets --------------------------------------------------

/// A TCP segment that may start or join a super-packet.
#[derive(Clone, Copy)]
struct Tcp {
    v6: bool,
    iph: usize,
    th: usize,
    seq: u32,
    flags: u8,
    payload: usize,
}

impl Tcp {
    /// Recognises a TCP segment with data and only ACK (or ACK and PSH) set, in an IP packet
    /// without options or fragmentation: the only kind GRO merges.
    fn parse(p: &[u8]) -> Option<Tcp> {
        let (v6, iph, proto) = ip_header(p)?;
        if proto != PROTO_TCP {
            return None;
        }
        let total = if v6 {
            40 + usize::from(u16::from_be_bytes([p[4], p[5]]))
        } else {
            let frag = u16::from_be_bytes([p[6], p[7]]);
            if iph != 20 || frag & 0x3fff != 0 {
                return None; // options, more fragments or an offset
            }
            usize::from(u16::from_be_bytes([p[2], p[3]]))
        };
        let th = usize::from(*p.get(iph + 12)? >> 4) * 4;
        if total != p.len() || th < 20 || iph + th >= total {
            return None;
        }
        let flags = p[iph + 13];
        if flags & !TCP_PSH != TCP_ACK {
            return None;
        }
        Some(Tcp {
            v6,
            iph,
            th,
            seq: u32::from_be_bytes(p[iph + 4..iph + 8].try_into().ok()?),
            flags,
            payload: total - iph - th,
        })
    }

    /// Whether `p` (this segment's packet) and `q` (described by `other`) are of one flow.
    fn same_flow(&self, p: &[u8], other: &Tcp, q: &[u8]) -> bool {
        let (a, b) = if self.v6 { (8, 40) } else { (12, 20) };
        self.v6 == other.v6
            && p[a..b] == q[a..b]
            && p[self.iph..self.iph + 4] == q[other.iph..other.iph + 4]
    }

    /// Whether segment `p` may follow the super-packet started by `first` (packet `f`): every
    /// field that GRO keeps from the first segment must be equal.
    fn joins(&self, p: &[u8], first: &Tcp, f: &[u8]) -> bool {
        let ip_equal = if self.v6 {
            // version, traffic class, flow label; next header; hop limit
            p[..4] == f[..4] && p[6..8] == f[6..8]
        } else {
            // version/IHL, TOS; flags (DF); TTL, protocol
            p[..2] == f[..2] && p[6] == f[6] && p[8..10] == f[8..10]
        };
        let (t, u) = (self.iph, first.iph);
        ip_equal
            && self.th == first.th
            // acknowledgment number; data offset and reserved bits; window (the flags are
            // checked by `parse`); urgent pointer (meaningless without URG, but segmenting the
            // super-packet would give every segment the first one's); the options
            // (timestamps included) byte for byte
            && p[t + 8..t + 13] == f[u + 8..u + 13]
            && p[t + 14..t + 16] == f[u + 14..u + 16]
            && p[t + 18..t + 20] == f[u + 18..u + 20]
            && p[t + 20..t + self.th] == f[u + 20..u + first.th]
    }
}

/// One TUN write: a packet alone, or the first segment of a super-packet and the payloads of
/// those that joined it.
struct Group {
    slot: usize,
    len: usize,
    tcp: Option<Tcp>,
    /// Sequence number the next segment must start at.
    next_seq: u32,
    /// IP packet length once coalesced.
    total: usize,
    segments: usize,
    psh: bool,
    /// Nothing may join any more (a shorter or PSH segment ended it, or the flow moved on).
    closed: bool,
    /// First and last entry of this group's joined payloads in `Coalescer::parts`.
    parts: Option<(usize, usize)>,
}

/// A joined segment's payload: `slot[start..end]`, and the next part of the same group.
struct Part {
    slot: usize,
    start: usize,
    end: usize,
    next: Option<usize>,
}

/// Collects the decrypted packets of one batch and writes them to the TUN with as few writes
/// as possible. Packets of different flows may be reordered among each other; within a flow,
/// order is kept. Allocation-free once its vectors have grown to a batch.
#[derive(Default)]
pub struct Coalescer {
    groups: Vec<Group>,
    parts: Vec<Part>,
}

/// How many of the newest groups a segment is compared against: a batch seldom carries more
/// bulk flows than that, and the search stays short when it carries many small ones.
const SEARCH: usize = 8;

impl Coalescer {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Adds the IP packet `slots[slot][..len]`.
    pub fn push(&mut self, slots: &[Vec<u8>], slot: usize, len: usize) {
        let p = &slots[slot][..len];
        let tcp = Tcp::parse(p);
        let n = self.groups.len();
        if let Some(t) = tcp {
            for gi in (n.saturating_sub(SEARCH)..n).rev() {
                let g = &self.groups[gi];
                let Some(first) = g.tcp else { continue };
                let f = &slots[g.slot][..g.len];
                if g.closed || !t.same_flow(p, &first, f) {
                    continue;
                }
                let fits = t.seq == g.next_seq
                    && t.payload <= first.payload
                    && g.total + t.payload <= MAX_SUPER
                    && g.segments < MAX_SEGMENTS
                    && t.joins(p, &first, f);
                if !fits {
                    // Out of order or different: this flow's next write starts here.
                    self.groups[gi].closed = true;
                    break;
                }
                let part = self.parts.len();
                self.parts.push(Part {
                    slot,
                    start: t.iph + t.th,
                    end: len,
                    next: None,
                });
                let g = &mut self.groups[gi];
                match g.parts {
                    Some((head, last)) => {
                        self.parts[last].next = Some(part);
                        g.parts = Some((head, part));
                    }
                    None => g.parts = Some((part, part)),
                }
                g.next_seq = t.seq.wrapping_add(t.payload as u32);
                g.total += t.payload;
                g.segments += 1;
                g.psh |= t.flags & TCP_PSH != 0;
                g.closed = t.payload < first.payload || g.psh;
                return;
            }
        } else if let Some(gi) = self.open_flow_of(slots, p) {
            // A segment that cannot be merged (SYN, FIN, RST, no data) ends its flow's run so
            // that it is written after it, in order.
            self.groups[gi].closed = true;
        }
        self.groups.push(Group {
            slot,
            len,
            tcp,
            next_seq: tcp.map_or(0, |t| t.seq.wrapping_add(t.payload as u32)),
            total: len,
            segments: 1,
            psh: tcp.is_some_and(|t| t.flags & TCP_PSH != 0),
            closed: tcp.is_none_or(|t| t.flags & TCP_PSH != 0),
            parts: None,
        });
    }

    /// The open group of the TCP flow `p` belongs to, if `p` is TCP at all.
    fn open_flow_of(&self, slots: &[Vec<u8>], p: &[u8]) -> Option<usize> {
        let (v6, iph, proto) = ip_header(p)?;
        if proto != PROTO_TCP || p.len() < iph + 4 {
            return None;
        }
        let me = Tcp {
            v6,
            iph,
            th: 0,
            seq: 0,
            flags: 0,
            payload: 0,
        };
        let n = self.groups.len();
        (n.saturating_sub(SEARCH)..n).rev().find(|&gi| {
            let g = &self.groups[gi];
            !g.closed
                && g.tcp
                    .is_some_and(|f| me.same_flow(p, &f, &slots[g.slot][..g.len]))
        })
    }

    /// Writes every group with `write` (the virtio-net header first, then the packet's parts)
    /// and empties the coalescer. Returns how many writes failed.
    pub fn flush(
        &mut self,
        slots: &mut [Vec<u8>],
        mut write: impl FnMut(&[IoSlice<'_>]) -> bool,
    ) -> u64 {
        let mut failed = 0;
        for g in self.groups.drain(..) {
            let hdr = match (g.tcp, g.parts) {
                (Some(t), Some(_)) => finish_super(&mut slots[g.slot][..g.len], &t, &g),
                // The tunnel authenticated the packet; the kernel need not verify its checksum
                // again (kernel WireGuard marks decrypted packets the same way).
                _ => VnetHdr {
                    flags: F_DATA_VALID,
                    ..VnetHdr::default()
                },
            }
            .encode();
            let mut iov: [IoSlice<'_>; MAX_SEGMENTS + 1] =
                std::array::from_fn(|_| IoSlice::new(&[]));
            iov[0] = IoSlice::new(&hdr);
            iov[1] = IoSlice::new(&slots[g.slot][..g.len]);
            let mut n = 2;
            let mut next = g.parts.map(|(head, _)| head);
            while let Some(i) = next {
                let part = &self.parts[i];
                iov[n] = IoSlice::new(&slots[part.slot][part.start..part.end]);
                n += 1;
                next = part.next;
            }
            if !write(&iov[..n]) {
                failed += 1;
            }
        }
        self.parts.clear();
        failed
    }
}

/// Rewrites the first segment's headers to describe the whole super-packet and returns the
/// virtio-net header that lets the kernel take it as one (it completes the TCP checksum, so
/// the field gets only the pseudo-header sum).
fn finish_super(first: &mut [u8], t: &Tcp, g: &Group) -> VnetHdr {
    let iph = t.iph;
    if t.v6 {
        first[4..6].copy_from_slice(&((g.total - 40) as u16).to_be_bytes());
    } else {
        first[2..4].copy_from_slice(&(g.total as u16).to_be_bytes());
        ipv4_header_checksum(first, iph);
    }
    if g.psh {
        first[iph + 13] |= TCP_PSH;
    }
    let partial = fold(pseudo(first, t.v6, PROTO_TCP, g.total - iph));
    first[iph + 16..iph + 18].copy_from_slice(&partial.to_be_bytes());
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if t.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: (iph + t.th) as u16,
        gso_size: t.payload as u16,
        csum_start: iph as u16,
        csum_offset: 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook checksum, 16 bits at a time, to check the fast one against.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for w in data.chunks(2) {
            acc += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    /// Whether the IP header and transport checksums of `p` verify.
    fn checksums_ok(p: &[u8]) -> bool {
        let (v6, iph, proto) = ip_header(p).unwrap();
        let ip_ok = v6 || reference_sum(&p[..iph]) == 0xffff;
        let mut pseudo_bytes = Vec::new();
        if v6 {
            pseudo_bytes.extend_from_slice(&p[8..40]);
        } else {
            pseudo_bytes.extend_from_slice(&p[12..20]);
        }
        pseudo_bytes.extend_from_slice(&[0, proto]);
        pseudo_bytes.extend_from_slice(&((p.len() - iph) as u16).to_be_bytes());
        pseudo_bytes.extend_from_slice(&p[iph..]);
        ip_ok && reference_sum(&pseudo_bytes) == 0xffff
    }

    /// The two ends of a test segment: addresses and ports.
    #[derive(Clone, Copy)]
    struct Ends {
        src: std::net::IpAddr,
        dst: std::net::IpAddr,
        sport: u16,
        dport: u16,
    }

    /// A TCP segment with the given fields, its checksums right. IPv4 ids follow `seq`.
    fn build_tcp(
        e: Ends,
        seq: u32,
        ack: u32,
        flags: u8,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        use std::net::IpAddr;
        let th = 20 + options.len();
        let v6 = e.src.is_ipv6();
        let iph = if v6 { 40 } else { 20 };
        let mut p = vec![0u8; iph + th + payload.len()];
        match (e.src, e.dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                p[0] = 0x60;
                p[4..6].copy_from_slice(&((th + payload.len()) as u16).to_be_bytes());
                p[6] = PROTO_TCP;
                p[7] = 64;
                p[8..24].copy_from_slice(&s.octets());
                p[24..40].copy_from_slice(&d.octets());
            }
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                p[0] = 0x45;
                let total = p.len() as u16;
                p[2..4].copy_from_slice(&total.to_be_bytes());
                p[4..6].copy_from_slice(&seq.to_be_bytes()[2..]);
                p[6] = 0x40;
                p[8] = 64;
                p[9] = PROTO_TCP;
                p[12..16].copy_from_slice(&s.octets());
                p[16..20].copy_from_slice(&d.octets());
                ipv4_header_checksum(&mut p, 20);
            }
            _ => panic!("mixed address families"),
        }
        let t = iph;
        p[t..t + 2].copy_from_slice(&e.sport.to_be_bytes());
        p[t + 2..t + 4].copy_from_slice(&e.dport.to_be_bytes());
        p[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        p[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
        p[t + 12] = (th as u8 / 4) << 4;
        p[t + 13] = flags;
        p[t + 14..t + 16].copy_from_slice(&65535u16.to_be_bytes());
        p[t + 20..t + th].copy_from_slice(options);
        p[t + th..].copy_from_slice(payload);
        let c = !fold(sum(&p[t..], pseudo(&p, v6, PROTO_TCP, p.len() - t)));
        p[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        p
    }

    /// A TCP packet with a timestamp option between two fixed hosts.
    fn tcp_packet(v6: bool, seq: u32, flags: u8, payload: &[u8], port: u16) -> Vec<u8> {
        let (src, dst): (std::net::IpAddr, std::net::IpAddr) = if v6 {
            ("fd00::2".parse().unwrap(), "fd00::1".parse().unwrap())
        } else {
            ("10.9.0.2".parse().unwrap(), "10.1.0.1".parse().unwrap())
        };
        let ends = Ends {
            src,
            dst,
            sport: port,
            dport: 5201,
        };
        let timestamps = [1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3];
        build_tcp(ends, seq, 7, flags, &timestamps, payload)
    }

    #[test]
    fn the_fast_checksum_equals_the_textbook_one_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 13) as u8).collect();
        for start in 0..8 {
            for len in 0..(300 - start) {
                let d = &data[start..start + len];
                assert_eq!(fold(sum(d, 0)), reference_sum(d), "start {start} len {len}");
            }
        }
        assert_eq!(fold(sum(&[0xff; 64], 0)), 0xffff);
    }

    /// Runs the coalescer over `packets` and returns each write's header and bytes.
    fn coalesce(packets: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>)> {
        let mut slots: Vec<Vec<u8>> = packets.to_vec();
        let mut c = Coalescer::default();
        for (i, p) in packets.iter().enumerate() {
            c.push(&slots, i, p.len());
        }
        let mut writes = Vec::new();
        let failed = c.flush(&mut slots, |iov| {
            let bytes: Vec<u8> = iov.iter().flat_map(|s| s.to_vec()).collect();
            let hdr = VnetHdr::parse(&bytes).unwrap();
            writes.push((hdr, bytes[VNET_HDR_LEN..].to_vec()));
            true
        });
        assert_eq!(failed, 0);
        assert!(c.is_empty());
        writes
    }

    /// Segments a super-packet the way a TUN read hands it over.
    fn split(hdr: VnetHdr, mut pkt: Vec<u8>) -> Vec<Vec<u8>> {
        let mut scratch = vec![0u8; 2000];
        let mut out = Vec::new();
        segment(hdr, &mut pkt, &mut scratch, |p| out.push(p.to_vec())).unwrap();
        out
    }

    #[test]
    fn consecutive_segments_coalesce_and_split_back_into_the_same_packets() {
        for v6 in [false, true] {
            let mss = 1000;
            let segs: Vec<Vec<u8>> = (0..5u32)
                .map(|i| {
                    let len = if i == 4 { 300 } else { mss };
                    let payload: Vec<u8> = (0..len).map(|b| (b as u32 * 3 + i) as u8).collect();
                    let flags = if i == 4 { TCP_ACK | TCP_PSH } else { TCP_ACK };
                    tcp_packet(v6, 1_000 + i * mss as u32, flags, &payload, 40000)
                })
                .collect();
            let writes = coalesce(&segs);
            assert_eq!(writes.len(), 1, "one flow, in order: one write");
            let (hdr, sup) = &writes[0];
            assert_eq!(hdr.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
            assert_eq!(usize::from(hdr.gso_size), mss);
            assert_eq!(hdr.flags, F_NEEDS_CSUM);
            let headers = if v6 { 72 } else { 52 };
            assert_eq!(sup.len(), headers + 4 * mss + 300);
            // Completed as the kernel would (the sum from csum_start, the field included),
            // the super-packet's checksum must verify: the field held the pseudo-header sum.
            let mut completed = sup.clone();
            let (start, field) = (
                usize::from(hdr.csum_start),
                usize::from(hdr.csum_start + hdr.csum_offset),
            );
            let c = !fold(sum(&completed[start..], 0));
            completed[field..field + 2].copy_from_slice(&c.to_be_bytes());
            assert!(checksums_ok(&completed));
            // What the kernel would do with it: segment it again. The result must be the
            // original packets, checksums and all (the IPv4 ids of our test packets follow
            // the sequence number, so compare everything but those).
            let back = split(*hdr, sup.clone());
            assert_eq!(back.len(), 5);
            for (a, b) in back.iter().zip(&segs) {
                assert!(checksums_ok(a));
                assert_eq!(a.len(), b.len());
                let (a, b) = if v6 {
                    (&a[..], &b[..])
                } else {
                    (&a[12..], &b[12..])
                };
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn gaps_flows_and_flags_start_new_writes_and_keep_each_flows_order() {
        let mss = 500;
        let pay = vec![7u8; mss];
        let a0 = tcp_packet(false, 0, TCP_ACK, &pay, 1);
        let b0 = tcp_packet(false, 0, TCP_ACK, &pay, 2);
        let a1 = tcp_packet(false, 500, TCP_ACK, &pay, 1);
        let a3 = tcp_packet(false, 1500, TCP_ACK, &pay, 1); // a gap: a2 is missing
        let b1 = tcp_packet(false, 500, TCP_ACK, &pay, 2);
        let a_fin = tcp_packet(false, 2000, TCP_ACK | TCP_FIN, &[], 1);
        let b2 = tcp_packet(false, 1000, TCP_ACK, &pay, 2);
        let mut bad_ack = tcp_packet(false, 1500, TCP_ACK, &pay, 2);
        bad_ack[28..32].copy_from_slice(&8u32.to_be_bytes());
        bad_ack[36..38].fill(0);
        let c = !fold(sum(
            &bad_ack[20..],
            pseudo(&bad_ack, false, PROTO_TCP, 52 + mss - 20),
        ));
        bad_ack[36..38].copy_from_slice(&c.to_be_bytes());
        let writes = coalesce(&[a0, b0, a1, a3, b1, a_fin, b2, bad_ack]);
        let described: Vec<(u16, usize)> = writes
            .iter()
            .map(|(_, p)| (u16::from_be_bytes([p[20], p[21]]), p.len()))
            .collect();
        assert_eq!(
            described,
            vec![
                (1, 52 + 2 * mss), // a0+a1
                (2, 52 + 3 * mss), // b0+b1+b2
                (1, 52 + mss),     // a3 alone after the gap
                (1, 52),           // the FIN after it
                (2, 52 + mss),     // another acknowledgment number
            ]
        );
        assert!(writes
            .iter()
            .all(|(_, p)| p.len() > 52 + mss || checksums_ok(p)));
    }

    #[test]
    fn other_packets_are_written_alone_and_marked_verified() {
        let mut udp = tcp_packet(false, 0, TCP_ACK, b"hello", 1);
        udp[9] = PROTO_UDP;
        let writes = coalesce(&[udp.clone(), vec![0x45, 0, 0]]);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].0.flags, F_DATA_VALID);
        assert_eq!(writes[0].0.gso_type, GSO_NONE);
        assert_eq!(writes[0].1, udp);
        assert_eq!(
            writes[1].1,
            vec![0x45, 0, 0],
            "garbage is passed through untouched"
        );
    }

    #[test]
    fn a_segment_with_another_urgent_pointer_is_not_joined() {
        // Found by fuzz/offload_coalesce: the urgent pointer was not compared, so coalescing
        // and the kernel's segmenting gave the second packet the first one's.
        let pay = vec![3u8; 400];
        let a = tcp_packet(false, 0, TCP_ACK, &pay, 1);
        let mut b = tcp_packet(false, 400, TCP_ACK, &pay, 1);
        b[38..40].copy_from_slice(&1u16.to_be_bytes());
        b[36..38].fill(0);
        let c = !fold(sum(&b[20..], pseudo(&b, false, PROTO_TCP, b.len() - 20)));
        b[36..38].copy_from_slice(&c.to_be_bytes());
        let writes = coalesce(&[a.clone(), b.clone()]);
        assert_eq!(writes.len(), 2, "two writes");
        assert_eq!(writes[0].1, a);
        assert_eq!(writes[1].1, b, "written untouched");
    }

    #[test]
    fn a_partial_checksum_is_completed() {
        let good = tcp_packet(true, 5, TCP_ACK, b"some data!", 9);
        let mut partial = good.clone();
        let sum0 = fold(pseudo(&partial, true, PROTO_TCP, partial.len() - 40));
        partial[56..58].copy_from_slice(&sum0.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 40,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        assert_eq!(split(hdr, partial), vec![good]);
    }

    #[test]
    fn udp_super_packets_are_cut_with_lengths_and_checksums_fixed() {
        let payload: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let mut p = tcp_packet(false, 0, TCP_ACK, &[], 1)[..20].to_vec();
        p[9] = PROTO_UDP;
        p.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 0]);
        p.extend_from_slice(&payload);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: 28,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 6,
        };
        let segs = split(hdr, p);
        assert_eq!(
            segs.iter().map(Vec::len).collect::<Vec<_>>(),
            [1028, 1028, 528]
        );
        let joined: Vec<u8> = segs.iter().flat_map(|s| s[28..].to_vec()).collect();
        assert_eq!(joined, payload);
        for s in &segs {
            assert!(checksums_ok(s));
            assert_eq!(
                usize::from(u16::from_be_bytes([s[24], s[25]])),
                s.len() - 20
            );
        }
    }

    #[test]
    fn malformed_super_packets_are_refused_without_panicking() {
        let base = tcp_packet(false, 0, TCP_ACK, &[1; 3000], 1);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 52,
            gso_size: 1000,
            csum_start: 20,
            csum_offset: 16,
        };
        let mut scratch = vec![0u8; 2000];
        for cut in 0..60 {
            let mut p = base[..cut].to_vec();
            let _ = segment(hdr, &mut p, &mut scratch, |_| {});
        }
        let mut p = base.clone();
        let zero = VnetHdr { gso_size: 0, ..hdr };
        assert_eq!(segment(zero, &mut p, &mut scratch, |_| {}), Err(Malformed));
        let huge = VnetHdr {
            gso_size: 5000,
            ..hdr
        };
        assert_eq!(segment(huge, &mut p, &mut scratch, |_| {}), Err(Malformed));
        let v6 = VnetHdr {
            gso_type: GSO_TCPV6,
            ..hdr
        };
        assert_eq!(segment(v6, &mut p, &mut scratch, |_| {}), Err(Malformed));
        for offset in 2..5u8 {
            // A TCP data offset below five words: the header would overlap the payload.
            let mut short = base.clone();
            short[32] = offset << 4;
            assert_eq!(
                segment(hdr, &mut short, &mut scratch, |_| {}),
                Err(Malformed)
            );
        }
        let bad_csum = VnetHdr {
            gso_type: GSO_NONE,
            csum_offset: 4000,
            ..hdr
        };
        assert_eq!(
            segment(bad_csum, &mut p, &mut scratch, |_| {}),
            Err(Malformed)
        );
    }

    /// Reads from `tun` until `want` says yes to a packet (after the virtio-net header), or
    /// fails after five seconds. Other packets (the kernel's own chatter) are skipped.
    fn read_until(
        tun: &heimweg_sys::tun::Tun,
        mut want: impl FnMut(VnetHdr, &mut Vec<u8>) -> bool,
    ) {
        use std::os::fd::AsRawFd;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut buf = vec![0u8; VNET_HDR_LEN + 65535];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "the kernel did not send what the test waits for"
            );
            let _ = heimweg_sys::poll::wait_readable(&[tun.as_raw_fd()], Some(left));
            let Ok(n) = tun.read(&mut buf) else { continue };
            let hdr = VnetHdr::parse(&buf[..n]).unwrap();
            let mut pkt = buf[VNET_HDR_LEN..n].to_vec();
            if want(hdr, &mut pkt) {
                return;
            }
        }
    }

    /// The real kernel as the other side: a TCP connection between a local socket and a
    /// hand-made peer behind a TUN. It must accept a coalesced write as the segments it stands
    /// for, and its own 64 KiB sends must arrive as super-packets that `segment` cuts into
    /// valid, contiguous segments.
    #[test]
    // One exchange with the kernel's TCP, step by step.
    #[allow(clippy::too_many_lines)]
    fn the_kernel_takes_coalesced_writes_and_its_super_packets_cut_cleanly() {
        use heimweg_sys::{iface, tun::Tun};
        use std::io::{Read, Write};
        let name = format!("hwoff-{}", std::process::id());
        let tun = Tun::open(&name, false).expect("root and /dev/net/tun are needed");
        tun.set_nonblocking(true).unwrap();
        // A subnet no other test uses; the TUN gives it to this test alone.
        iface::add_address(&name, "10.214.9.1".parse().unwrap(), 24).unwrap();
        iface::set_up(&name, true).unwrap();
        let listener = std::net::TcpListener::bind("10.214.9.1:0").unwrap();
        let ends = Ends {
            src: "10.214.9.2".parse().unwrap(),
            dst: "10.214.9.1".parse().unwrap(),
            sport: 40000,
            dport: listener.local_addr().unwrap().port(),
        };
        let write = |p: &[u8], hdr: VnetHdr| {
            let h = hdr.encode();
            tun.write_vectored(&[IoSlice::new(&h), IoSlice::new(p)])
                .unwrap();
        };
        let is_ours = |p: &[u8]| {
            p.len() >= 24
                && p[0] >> 4 == 4
                && p[9] == PROTO_TCP
                && p[20..22] == ends.dport.to_be_bytes()
        };

        // Handshake by hand: SYN with MSS 1380, the kernel's SYN-ACK, our ACK.
        let mss_option = [2, 4, 0x05, 0x64];
        write(
            &build_tcp(ends, 1000, 0, 0x02, &mss_option, &[]),
            VnetHdr::default(),
        );
        let mut their_seq = 0;
        read_until(&tun, |_, p| {
            if is_ours(p) && p[33] == 0x12 {
                their_seq = u32::from_be_bytes(p[24..28].try_into().unwrap());
                return true;
            }
            false
        });
        let mut ack = their_seq.wrapping_add(1);
        write(
            &build_tcp(ends, 1001, ack, TCP_ACK, &[], &[]),
            VnetHdr::default(),
        );
        listener.set_nonblocking(false).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();

        // Inbound: twenty 1000-byte segments become one write, which the socket reads back.
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut slots: Vec<Vec<u8>> = data
            .chunks(1000)
            .enumerate()
            .map(|(i, c)| build_tcp(ends, 1001 + 1000 * i as u32, ack, TCP_ACK, &[], c))
            .collect();
        let mut c = Coalescer::default();
        for i in 0..slots.len() {
            c.push(&slots, i, slots[i].len());
        }
        let mut writes = 0;
        let failed = c.flush(&mut slots, |iov| {
            writes += 1;
            tun.write_vectored(iov).is_ok()
        });
        assert_eq!(
            (writes, failed),
            (1, 0),
            "one write, accepted by the kernel"
        );
        let mut got = vec![0u8; data.len()];
        conn.read_exact(&mut got).unwrap();
        assert_eq!(got, data);

        // Outbound: the kernel sends 60,000 bytes; we acknowledge what we cut out, by sequence.
        let sent: Vec<u8> = (0..60_000u32).map(|i| (i % 241) as u8).collect();
        conn.write_all(&sent).unwrap();
        let mut received = Vec::new();
        let mut super_packets = 0;
        let mut scratch = vec![0u8; 65535];
        let our_seq = 1001 + data.len() as u32;
        read_until(&tun, |hdr, p| {
            if !is_ours(p) {
                return false;
            }
            if hdr.gso_type != GSO_NONE {
                super_packets += 1;
            }
            segment(hdr, p, &mut scratch, |seg| {
                assert!(checksums_ok(seg), "every segment carries a valid checksum");
                assert!(seg.len() <= 1420);
                let seq = u32::from_be_bytes(seg[24..28].try_into().unwrap());
                let payload = &seg[20 + usize::from(seg[32] >> 4) * 4..];
                if seq == ack && !payload.is_empty() {
                    received.extend_from_slice(payload);
                    ack = ack.wrapping_add(payload.len() as u32);
                }
            })
            .unwrap();
            write(
                &build_tcp(ends, our_seq, ack, TCP_ACK, &[], &[]),
                VnetHdr::default(),
            );
            received.len() >= sent.len()
        });
        assert_eq!(received, sent);
        assert!(super_packets > 0, "the kernel used TSO towards the TUN");
    }
}
