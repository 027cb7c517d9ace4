//! Bytes from the internet into `Device::handle_network`, from a gateway with no peer, with the
//! client as a peer, with a live session, or without a private key (the first byte; see
//! `Setup`). The rest is records (see the crate's docs) that make a conversation: raw datagrams
//! from the client's and a stranger's address, handshake messages with a valid mac1 (so fuzzed
//! ones get past the first check), plaintext the client encrypts (so the *decrypted* packet is
//! fuzzed: source validation and policy), the client's own handshakes and timers, packets from
//! the LAN, handshakes answered step by step while the peer changes, the client roaming, output
//! buffers of every size, time moving on, and the gateway's housekeeping. Every output is
//! checked by `Gateway`.

#![no_main]

use heimweg_fuzz::{
    gateway_public, set_addresses, set_mac1, Gateway, Records, Setup, BIG_OUT, CLIENT_ADDR,
    CLIENT_V4, CLIENT_V6, FORBIDDEN_V4, FORBIDDEN_V6, LAN_V4, LAN_V6, STRANGER,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

/// Records per input: enough for a conversation, few enough to keep every input fast.
const MAX_RECORDS: usize = 128;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let mut g = Gateway::new(Setup::from_byte(setup));
    for (tag, body) in Records::new(rest).take(MAX_RECORDS) {
        let variant = tag & 0x80 != 0;
        match (tag & 0x7f) % 16 {
            0 => g.network(CLIENT_ADDR, body, BIG_OUT),
            1 => g.network(STRANGER, body, BIG_OUT),
            2 => {
                let mut m = body.to_vec();
                set_mac1(&mut m, &gateway_public());
                let src = if variant { STRANGER } else { g.client_addr };
                g.network(src, &m, BIG_OUT);
            }
            3 => g.client_send(body),
            4 => {
                let mut p = body.to_vec();
                let (dst4, dst6) = if variant {
                    (FORBIDDEN_V4, FORBIDDEN_V6)
                } else {
                    (LAN_V4, LAN_V6)
                };
                set_addresses(&mut p, (CLIENT_V4, dst4), (CLIENT_V6, dst6));
                g.client_send(&p);
            }
            5 => {
                let n = u64::from(u16::from_le_bytes([
                    *body.first().unwrap_or(&0),
                    *body.get(1).unwrap_or(&0),
                ]));
                let step = if variant {
                    Duration::from_secs(1)
                } else {
                    Duration::from_millis(1)
                };
                g.advance(step * n as u32);
            }
            6 => g.client_initiate(variant),
            7 => g.client_timers(),
            8 => g.tun(body, BIG_OUT),
            9 => {
                let mut p = body.to_vec();
                let (src4, src6) = if variant {
                    (FORBIDDEN_V4, FORBIDDEN_V6)
                } else {
                    (LAN_V4, LAN_V6)
                };
                set_addresses(&mut p, (src4, CLIENT_V4), (src6, CLIENT_V6));
                g.tun(&p, BIG_OUT);
            }
            10 => g.stepwise_handshake(*body.first().unwrap_or(&0), BIG_OUT),
            11 if variant => g.roam(),
            11 => g.change_peer(*body.first().unwrap_or(&0)),
            12 => {
                // A buffer of any size, down to nothing: too small must be a counted drop.
                let (len, rest) = match body {
                    [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
                    _ => (0, body),
                };
                if variant {
                    g.tun(rest, len);
                } else {
                    g.network(g.client_addr, rest, len);
                }
                g.housekeeping(len);
                g.stepwise_handshake(*rest.first().unwrap_or(&0), len);
            }
            13 => g.deliver(),
            14 => g.housekeeping(BIG_OUT),
            _ => g.settle(),
        }
    }
    g.settle();
});
