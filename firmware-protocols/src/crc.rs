//! Checksums used by device protocols.

/// CRC-16/ARC, which Teltonika calls "CRC-16/IBM" and Wialon "CRC16": poly 0x8005
/// (reflected 0xA001), init 0, reflected in and out, no final xor. Check value 0xBB3D.
pub fn crc16_arc(data: &[u8]) -> u16 {
    // Slicing-by-8: eight table lookups per 8 bytes break the byte-to-byte dependency chain
    // of the classic loop; it is most of a Teltonika decode's cost otherwise.
    let mut crc: u16 = 0;
    let (chunks, tail) = data.as_chunks::<8>();
    for &[b0, b1, b2, b3, b4, b5, b6, b7] in chunks {
        let c = crc ^ u16::from_le_bytes([b0, b1]);
        crc = ARC_TABLES[7][usize::from(c as u8)]
            ^ ARC_TABLES[6][usize::from(c >> 8)]
            ^ ARC_TABLES[5][usize::from(b2)]
            ^ ARC_TABLES[4][usize::from(b3)]
            ^ ARC_TABLES[3][usize::from(b4)]
            ^ ARC_TABLES[2][usize::from(b5)]
            ^ ARC_TABLES[1][usize::from(b6)]
            ^ ARC_TABLES[0][usize::from(b7)];
    }
    for &byte in tail {
        crc = (crc >> 8) ^ ARC_TABLES[0][usize::from((crc ^ u16::from(byte)) as u8)];
    }
    crc
}

/// CRC-16/X-25, which Concox calls "CRC-ITU": poly 0x1021 (reflected 0x8408), init 0xFFFF,
/// reflected in and out, final xor 0xFFFF. Check value 0x906E.
pub fn crc16_x25(data: &[u8]) -> u16 {
    // One table lookup per byte: GT06 frames are a few dozen bytes, so slicing would only
    // add 3.5 KiB of tables for no measurable gain.
    let crc = data.iter().fold(0xFFFFu16, |crc, &byte| {
        (crc >> 8) ^ X25_TABLE[usize::from((crc ^ u16::from(byte)) as u8)]
    });
    crc ^ 0xFFFF
}

const X25_TABLE: [u16; 256] = reflected_table(0x8408);

/// `ARC_TABLES[k][b]`: the CRC register after byte `b` followed by `k` zero bytes.
const ARC_TABLES: [[u16; 256]; 8] = sliced_tables(reflected_table(0xA001));

const fn reflected_table(poly: u16) -> [u16; 256] {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ poly
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

const fn sliced_tables(base: [u16; 256]) -> [[u16; 256]; 8] {
    let mut tables = [[0u16; 256]; 8];
    tables[0] = base;
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev >> 8) ^ base[(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook one-byte-at-a-time loop, as the reference for the sliced one.
    fn bytewise(data: &[u8]) -> u16 {
        data.iter().fold(0u16, |crc, &b| {
            (crc >> 8) ^ ARC_TABLES[0][usize::from((crc ^ u16::from(b)) as u8)]
        })
    }

    #[test]
    fn arc_check_value() {
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D);
        assert_eq!(crc16_arc(b""), 0);
    }

    #[test]
    fn x25_check_value() {
        assert_eq!(crc16_x25(b"123456789"), 0x906E);
        assert_eq!(crc16_x25(b""), 0x0000);
        // Concox's login reply body `05 01 00 01`, whose CRC the document prints as D9 DC.
        assert_eq!(crc16_x25(&[0x05, 0x01, 0x00, 0x01]), 0xD9DC);
    }

    /// Bit by bit from the catalogue parameters, as the reference for the table.
    #[test]
    fn x25_table_matches_bitwise() {
        let bitwise = |data: &[u8]| {
            let mut crc = 0xFFFFu16;
            for &b in data {
                crc ^= u16::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0x8408
                    } else {
                        crc >> 1
                    };
                }
            }
            crc ^ 0xFFFF
        };
        let data: Vec<u8> = (0u32..300)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
            .collect();
        for end in 0..data.len() {
            assert_eq!(crc16_x25(&data[..end]), bitwise(&data[..end]), "..{end}");
        }
    }

    #[test]
    fn sliced_matches_bytewise_at_every_length_and_alignment() {
        let data: Vec<u8> = (0u32..300)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..8 {
            for end in start..data.len() {
                let slice = &data[start..end];
                assert_eq!(crc16_arc(slice), bytewise(slice), "{start}..{end}");
            }
        }
    }
}
