//! What the Teltonika TCP and UDP tests share: the fact sheet's AVL packets (§7 examples,
//! whose data fields are also what a UDP datagram carries), the io list a record carries, and
//! the property tests' AVL record strategy.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::teltonika::encode::{AvlRecord, IoData};
use crate::{IoKey, IoValue};

/// Fact sheet §7, Codec 8 example 1 (one record).
pub const CODEC8_EX1: &str = "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01F10000601A014E0000000000000000010000C7CF";
/// Fact sheet §7, Codec 8 example 3 (two records).
pub const CODEC8_EX3: &str = "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B40D5C198010000000000000000000000000000000101010101000000020000252C";
/// Fact sheet §7, Codec 8 Extended example.
pub const CODEC8E_EX: &str = "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994";
/// Fact sheet §7, Codec 16 example (two records).
pub const CODEC16_EX: &str = "000000000000005F10020000016BDBC7833000000000000000000000000000000000000B05040200010000030002000B00270042563A00000000016BDBC7871800000000000000000000000000000000000B05040200010000030002000B00260042563A00000200005FB3";

/// The io list a record carries: named fields first, then `(id, value)` in frame order.
pub fn io_list(named: &[(&str, u64)], ids: &[(u32, u64)]) -> Vec<(IoKey, IoValue)> {
    named
        .iter()
        .map(|&(n, v)| (IoKey::Name(n.to_owned()), IoValue::U64(v)))
        .chain(ids.iter().map(|&(id, v)| (IoKey::Id(id), IoValue::U64(v))))
        .collect()
}

/// One IO element: an id (one byte unless `wide_ids`) and a fixed-size value, or (with
/// `with_bytes`, Codec 8 Extended) a variable-length one.
pub fn io_data(wide_ids: bool, with_bytes: bool) -> impl Strategy<Value = (u16, IoData)> {
    let id = if wide_ids {
        any::<u16>().boxed()
    } else {
        (0u16..=255).boxed()
    };
    let fixed = prop_oneof![
        any::<u8>().prop_map(IoData::U8),
        any::<u16>().prop_map(IoData::U16),
        any::<u32>().prop_map(IoData::U32),
        any::<u64>().prop_map(IoData::U64),
    ];
    let value = if with_bytes {
        prop_oneof![4 => fixed, 1 => vec(any::<u8>(), 0..40).prop_map(IoData::Bytes)].boxed()
    } else {
        fixed.boxed()
    };
    (id, value)
}

prop_compose! {
    /// Any AVL record a codec can carry, with fewer than `max_io` IO elements.
    pub fn avl_record(wide_ids: bool, with_bytes: bool, max_io: usize)(
        timestamp_ms in 0u64..=i64::MAX as u64,
        priority in 0u8..=2,
        lon in any::<i32>(),
        lat in any::<i32>(),
        altitude in any::<i16>(),
        angle in 0u16..=360,
        satellites in any::<u8>(),
        speed in any::<u16>(),
        event_id in if wide_ids { any::<u16>().boxed() } else { (0u16..=255).boxed() },
        generation_type in 0u8..=7,
        io in vec(io_data(wide_ids, with_bytes), 0..max_io),
    ) -> AvlRecord {
        AvlRecord {
            timestamp_ms, priority, lon, lat, altitude, angle, satellites, speed,
            event_id, generation_type, io,
        }
    }
}
