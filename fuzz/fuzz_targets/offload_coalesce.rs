//! Decrypted packets of one batch into the coalescer, then the writes it makes cut again by the
//! segmenter, as the kernel would cut them. Checked: every packet is written exactly once;
//! packets of one flow keep their order; a packet written alone is written untouched; a
//! super-packet is at most 64 segments and 64 KiB, and cutting it gives back the packets it was
//! made of (but for the IPv4 id and the checksums, which GRO does not keep either).
//!
//! Input: records (see the crate's docs), one packet each. Tags help the fuzzer build runs
//! that can be coalesced: 0 the packet as it is; 1 its length fields made right; 2 the next
//! segment of the previous packet's flow with this payload; 3 the same with one header byte
//! (chosen by the first payload byte) changed.

#![no_main]

use heimweg_dataplane::fuzzing::{segment, Coalescer, VnetHdr, VNET_HDR_LEN};
use heimweg_fuzz::Records;
use libfuzzer_sys::fuzz_target;

/// Packets per batch: the workers' output slots.
const MAX_PACKETS: usize = 128;

fuzz_target!(|data: &[u8]| {
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for (tag, body) in Records::new(data).take(MAX_PACKETS) {
        let p = match tag % 4 {
            0 => body.to_vec(),
            1 => fix_lengths(body.to_vec()),
            t => match packets
                .last()
                .and_then(|prev| next_segment(prev, body, t == 3))
            {
                Some(p) => p,
                None => body.to_vec(),
            },
        };
        packets.push(p);
    }
    // The workers' slots are larger than what they hold: the coalescer must use the length.
    let mut slots: Vec<Vec<u8>> = packets
        .iter()
        .map(|p| {
            let mut s = p.clone();
            s.extend_from_slice(&[0xee; 16]);
            s
        })
        .collect();
    let mut c = Coalescer::default();
    for (i, p) in packets.iter().enumerate() {
        c.push(&slots, i, p.len());
    }
    // Which packets each write is made of, identified by where its parts point.
    let ranges: Vec<(usize, usize)> = slots
        .iter()
        .map(|s| (s.as_ptr() as usize, s.as_ptr() as usize + s.len()))
        .collect();
    let mut writes: Vec<(VnetHdr, Vec<u8>, Vec<usize>)> = Vec::new();
    let failed = c.flush(&mut slots, |iov| {
        assert!(
            iov.len() >= 2 && iov.len() <= 65,
            "{} parts in a write",
            iov.len()
        );
        let hdr = VnetHdr::parse(&iov[0]).expect("a virtio-net header first");
        assert_eq!(iov[0].len(), VNET_HDR_LEN);
        let mut bytes = Vec::new();
        let mut from = Vec::new();
        for part in &iov[1..] {
            let at = part.as_ptr() as usize;
            let slot = ranges
                .iter()
                .position(|&(s, e)| at >= s && at < e.max(s + 1))
                .expect("a part points into a slot");
            from.push(slot);
            bytes.extend_from_slice(part);
        }
        writes.push((hdr, bytes, from));
        true
    });
    assert_eq!(failed, 0);
    assert!(c.is_empty());

    let order: Vec<usize> = writes.iter().flat_map(|w| w.2.iter().copied()).collect();
    let mut seen = order.clone();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..packets.len()).collect::<Vec<_>>(),
        "not every packet written once"
    );
    // Within a flow, the order of the batch.
    for (i, &a) in order.iter().enumerate() {
        for &b in &order[i + 1..] {
            if b < a && flow(&packets[a]).is_some() && flow(&packets[a]) == flow(&packets[b]) {
                panic!("packets {b} and {a} of one flow were reordered");
            }
        }
    }
    let mut scratch = vec![0u8; 65535];
    for (hdr, bytes, from) in &writes {
        if from.len() == 1 && hdr.gso_type == 0 {
            assert_eq!(
                bytes, &packets[from[0]],
                "a packet written alone was changed"
            );
            continue;
        }
        assert!(from.len() <= 64, "{} segments in one write", from.len());
        assert!(
            bytes.len() <= 65535,
            "a super-packet of {} bytes",
            bytes.len()
        );
        let mut sup = bytes.clone();
        let mut back = Vec::new();
        segment(*hdr, &mut sup, &mut scratch, |s| back.push(s.to_vec()))
            .expect("the kernel can cut what we wrote");
        assert_eq!(
            back.len(),
            from.len(),
            "cut into another number of segments"
        );
        for (s, &i) in back.iter().zip(from) {
            assert_eq!(
                masked(s),
                masked(&packets[i]),
                "segment of packet {i} differs"
            );
        }
    }
});

/// A packet with the IPv4 id and the IP and transport checksums zeroed.
fn masked(p: &[u8]) -> Vec<u8> {
    let mut p = p.to_vec();
    let v6 = p[0] >> 4 == 6;
    let iph = if v6 { 40 } else { usize::from(p[0] & 0x0f) * 4 };
    if !v6 {
        p[4..6].fill(0);
        p[10..12].fill(0);
    }
    p[iph + 16..iph + 18].fill(0);
    p
}

/// The flow a packet belongs to: version, addresses, protocol and ports (when there).
fn flow(p: &[u8]) -> Option<Vec<u8>> {
    let (addrs, proto, l4) = match p.first()? >> 4 {
        4 if p.len() >= 20 => (&p[12..20], p[9], usize::from(p[0] & 0x0f) * 4),
        6 if p.len() >= 40 => (&p[8..40], p[6], 40),
        _ => return None,
    };
    let mut key = addrs.to_vec();
    key.push(proto);
    key.extend_from_slice(p.get(l4..l4 + 4).unwrap_or(&[]));
    Some(key)
}

fn fix_lengths(mut p: Vec<u8>) -> Vec<u8> {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 && p.len() <= 65535 => {
            let n = p.len() as u16;
            p[2..4].copy_from_slice(&n.to_be_bytes());
        }
        Some(6) if p.len() >= 40 && p.len() - 40 <= 65535 => {
            let n = (p.len() - 40) as u16;
            p[4..6].copy_from_slice(&n.to_be_bytes());
        }
        _ => {}
    }
    p
}

/// The segment after `prev` in its TCP flow, carrying `payload`: the same headers, the
/// sequence number moved on by `prev`'s payload, the lengths made right.
fn next_segment(prev: &[u8], payload: &[u8], mutate: bool) -> Option<Vec<u8>> {
    let v6 = prev.first()? >> 4 == 6;
    let iph = if v6 {
        40
    } else {
        usize::from(prev[0] & 0x0f) * 4
    };
    let th = usize::from(*prev.get(iph + 12)? >> 4) * 4;
    let headers = iph + th;
    if th < 20 || prev.len() < headers {
        return None;
    }
    let seq = u32::from_be_bytes(prev[iph + 4..iph + 8].try_into().ok()?);
    let next = seq.wrapping_add((prev.len() - headers) as u32);
    let (payload, flip) = match (mutate, payload.split_first()) {
        (true, Some((&at, rest))) => (rest, Some(usize::from(at) % headers)),
        _ => (payload, None),
    };
    let mut p = prev[..headers].to_vec();
    p.extend_from_slice(payload);
    p[iph + 4..iph + 8].copy_from_slice(&next.to_be_bytes());
    if let Some(at) = flip {
        p[at] ^= 0x01;
    }
    Some(fix_lengths(p))
}
