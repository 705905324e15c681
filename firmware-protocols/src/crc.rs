//! Checksums used by device protocols.

/// CRC-16/ARC, which Teltonika calls "CRC-16/IBM" and Wialon "CRC16": poly 0x8005
/// (reflected 0xA001), init 0, reflected in and out, no final xor. Check value 0xBB3D.
pub fn crc16_arc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc = (crc >> 8) ^ ARC_TABLE[usize::from((crc ^ u16::from(byte)) as u8)];
    }
    crc
}

const ARC_TABLE: [u16; 256] = reflected_table(0xA001);

const fn reflected_table(poly: u16) -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ poly } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arc_check_value() {
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D);
        assert_eq!(crc16_arc(b""), 0);
    }
}
