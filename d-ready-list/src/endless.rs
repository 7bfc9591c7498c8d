//! The endless body: what `--endless` reads beside the requests, to show
//! that one connection that is never done cannot starve the others. It is
//! checksummed as it comes, standing in for what a real program does with
//! a big download (hash it, unpack it, store it): work for every byte,
//! which is what lets a sender outpace its reader.

/// The path of the endless body, and how its connection is named in errors.
pub const ENDLESS_PATH: &str = "/endless";

// ANCHOR: checksum
/// How much of the endless body has been read, and its CRC-32 so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum {
    pub bytes: u64,
    pub crc: u32,
}

impl Checksum {
    pub fn add(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.crc = crc32(self.crc, data);
    }
}

/// CRC-32 (the one zip and Ethernet use), a bit at a time: slow on purpose,
/// so that the reader, not loopback TCP, is the bottleneck.
fn crc32(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}
// ANCHOR_END: checksum

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        let mut whole = Checksum::default();
        whole.add(b"123456789");
        assert_eq!(whole.crc, 0xCBF4_3926);
        let mut split = Checksum::default();
        split.add(b"12345");
        split.add(b"6789");
        assert_eq!(split, whole);
        assert_eq!(split.bytes, 9);
    }
}
