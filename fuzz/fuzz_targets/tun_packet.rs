//! Bytes from the TUN into `Device::handle_tun`, as the workers feed them: a packet alone, or
//! a virtio-net header and a (super-)packet cut by the offload segmenter first. The first byte
//! picks the gateway's state (see `Setup`); the rest is records (see the crate's docs): packets
//! as they are or with their addresses set to reach the client, output buffers of every size,
//! time moving on, the gateway's housekeeping and the client answering.

#![no_main]

use heimweg_dataplane::fuzzing::{segment, VnetHdr, VNET_HDR_LEN};
use heimweg_fuzz::{
    set_addresses, Gateway, Records, Setup, BIG_OUT, CLIENT_V4, CLIENT_V6, FORBIDDEN_V4,
    FORBIDDEN_V6, LAN_V4, LAN_V6,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const MAX_RECORDS: usize = 128;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let mut g = Gateway::new(Setup::from_byte(setup));
    // The worker's segment buffer: the largest packet.
    let mut scratch = vec![0u8; 65535];
    for (tag, body) in Records::new(rest).take(MAX_RECORDS) {
        let variant = tag & 0x80 != 0;
        match (tag & 0x7f) % 8 {
            0 => g.tun(body, BIG_OUT),
            1 => {
                let mut p = body.to_vec();
                let (src4, src6) = if variant {
                    (FORBIDDEN_V4, FORBIDDEN_V6)
                } else {
                    (LAN_V4, LAN_V6)
                };
                set_addresses(&mut p, (src4, CLIENT_V4), (src6, CLIENT_V6));
                g.tun(&p, BIG_OUT);
            }
            2 => {
                // What one TUN read hands the worker: the virtio-net header, then the packet.
                let mut read = body.to_vec();
                if variant && read.len() > VNET_HDR_LEN {
                    set_addresses(
                        &mut read[VNET_HDR_LEN..],
                        (LAN_V4, CLIENT_V4),
                        (LAN_V6, CLIENT_V6),
                    );
                }
                let (head, packet) = read.split_at_mut(VNET_HDR_LEN.min(body.len()));
                let Some(hdr) = VnetHdr::parse(head) else {
                    continue;
                };
                let mut segments = Vec::new();
                let _ = segment(hdr, packet, &mut scratch, |p| segments.push(p.to_vec()));
                for s in segments {
                    g.tun(&s, BIG_OUT);
                }
            }
            3 => {
                let (len, rest) = match body {
                    [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
                    _ => (0, body),
                };
                let mut p = rest.to_vec();
                set_addresses(&mut p, (LAN_V4, CLIENT_V4), (LAN_V6, CLIENT_V6));
                g.tun(&p, len);
                g.housekeeping(len);
            }
            4 => {
                let n =
                    u16::from_le_bytes([*body.first().unwrap_or(&0), *body.get(1).unwrap_or(&0)]);
                let step = if variant {
                    Duration::from_secs(1)
                } else {
                    Duration::from_millis(1)
                };
                g.advance(step * u32::from(n));
            }
            5 => g.housekeeping(BIG_OUT),
            6 => g.change_peer(*body.first().unwrap_or(&0)),
            _ => g.settle(),
        }
    }
    g.settle();
});
