//! A TUN read (virtio-net header, then a packet or a super-packet) into the offload segmenter,
//! with the worker's buffer and with one of an MTU. Checked: a refusal is the same whatever the
//! buffer; no segment is longer than the headers plus `gso_size`, nor than the buffer; a whole
//! packet comes out once, changed at most in the checksum field it asked for; a super-packet
//! comes out as consecutive segments that carry its payload in order, with lengths, sequence
//! numbers and checksums right, and headers otherwise its own.

#![no_main]

use heimweg_dataplane::fuzzing::{segment, VnetHdr, VNET_HDR_LEN};
use libfuzzer_sys::fuzz_target;

const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
const GSO_ECN: u8 = 0x80;
const F_NEEDS_CSUM: u8 = 1;

fuzz_target!(|data: &[u8]| {
    let Some(hdr) = VnetHdr::parse(data) else {
        return;
    };
    let original = &data[VNET_HDR_LEN..];
    let big = run(hdr, original, 65535);
    // An MTU-sized buffer (what a gateway with 1420-byte tunnels would need): refused
    // super-packets are refused there too, and what fits comes out the same.
    let small = run(hdr, original, 1500);
    if let (Ok(b), Ok(s)) = (&big, &small) {
        assert_eq!(b, s, "the buffer size changed the segments");
    }
    if big.is_err() {
        assert!(
            small.is_err(),
            "a small buffer accepted what a big one refused"
        );
    }
    let Ok(segments) = big else {
        return;
    };
    let gso = hdr.gso_type & !GSO_ECN;
    if gso == GSO_NONE {
        assert_eq!(segments.len(), 1, "a whole packet is emitted once");
        let s = &segments[0];
        assert_eq!(s.len(), original.len());
        let field = (hdr.flags & F_NEEDS_CSUM != 0)
            .then(|| usize::from(hdr.csum_start) + usize::from(hdr.csum_offset));
        for (i, (a, b)) in s.iter().zip(original).enumerate() {
            if field.is_some_and(|f| i == f || i == f + 1) {
                continue;
            }
            assert_eq!(a, b, "byte {i} of a whole packet changed");
        }
        return;
    }
    check_super(hdr, original, &segments);
});

fn run(hdr: VnetHdr, packet: &[u8], scratch_len: usize) -> Result<Vec<Vec<u8>>, ()> {
    let mut pkt = packet.to_vec();
    let mut scratch = vec![0u8; scratch_len];
    let mut out = Vec::new();
    let gso = hdr.gso_type & !GSO_ECN != GSO_NONE;
    segment(hdr, &mut pkt, &mut scratch, |s| {
        // A whole packet is handed on in place; only segments are cut into the buffer.
        assert!(
            !gso || s.len() <= scratch_len,
            "a segment longer than the buffer"
        );
        out.push(s.to_vec());
    })
    .map_err(|_| ())?;
    if gso {
        assert_eq!(pkt, packet, "a super-packet was changed in place");
    }
    Ok(out)
}

/// Ones'-complement sum of 16-bit big-endian words, folded.
fn sum16(data: &[u8], mut acc: u32) -> u32 {
    for w in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn check_super(hdr: VnetHdr, original: &[u8], segments: &[Vec<u8>]) {
    let gso = hdr.gso_type & !GSO_ECN;
    let v6 = original[0] >> 4 == 6;
    let iph = if v6 {
        40
    } else {
        usize::from(original[0] & 0x0f) * 4
    };
    let tcp = gso == GSO_TCPV4 || gso == GSO_TCPV6;
    assert!(tcp || gso == GSO_UDP_L4, "an unknown GSO type was accepted");
    let th = if tcp {
        usize::from(original[iph + 12] >> 4) * 4
    } else {
        8
    };
    let headers = iph + th;
    let mss = usize::from(hdr.gso_size);
    let payload = &original[headers..];
    assert_eq!(segments.len(), payload.len().div_ceil(mss));
    let mut joined = Vec::new();
    let first_seq = u32::from_be_bytes(original[iph + 4..iph + 8].try_into().unwrap());
    for (i, s) in segments.iter().enumerate() {
        assert!(
            s.len() <= headers + mss,
            "segment {i} is longer than headers + gso_size"
        );
        assert!(s.len() > headers, "segment {i} carries no payload");
        joined.extend_from_slice(&s[headers..]);
        // Lengths.
        if v6 {
            assert_eq!(usize::from(u16::from_be_bytes([s[4], s[5]])), s.len() - 40);
        } else {
            assert_eq!(usize::from(u16::from_be_bytes([s[2], s[3]])), s.len());
            assert_eq!(
                sum16(&s[..iph], 0),
                0xffff,
                "IPv4 header checksum of segment {i}"
            );
        }
        // Headers: the same as the super-packet's but for lengths, id, checksums, sequence
        // number and the flags a segmenter must clear.
        let same = |range: std::ops::Range<usize>| {
            assert_eq!(
                s[range.clone()],
                original[range.clone()],
                "segment {i} bytes {range:?}"
            );
        };
        if v6 {
            same(0..4);
            same(6..40);
        } else {
            same(0..2);
            same(6..10);
            same(12..iph);
        }
        same(iph..iph + 4);
        if tcp {
            let seq = u32::from_be_bytes(s[iph + 4..iph + 8].try_into().unwrap());
            assert_eq!(
                seq,
                first_seq.wrapping_add((i * mss) as u32),
                "sequence number of segment {i}"
            );
            same(iph + 8..iph + 13);
            same(iph + 14..iph + 16);
            same(iph + 18..headers);
        } else {
            assert_eq!(
                usize::from(u16::from_be_bytes([s[iph + 4], s[iph + 5]])),
                s.len() - iph
            );
        }
        // The transport checksum verifies over the pseudo-header.
        let proto = if tcp { 6u8 } else { 17 };
        let addrs = if v6 { &s[8..40] } else { &s[12..20] };
        let l4 = (s.len() - iph) as u32;
        let acc = sum16(addrs, u32::from(proto) + (l4 >> 16) + (l4 & 0xffff));
        assert_eq!(
            sum16(&s[iph..], acc),
            0xffff,
            "transport checksum of segment {i}"
        );
    }
    assert_eq!(
        joined, payload,
        "the segments do not carry the payload in order"
    );
}
