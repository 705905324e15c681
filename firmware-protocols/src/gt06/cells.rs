//! Packets that locate the device by the cells (and Wi-Fi access points) it hears, with no
//! GNSS position: records with the device time and the cells in `io`, never a `lat`/`lon`.
//!
//! ```text
//! LBS multi-cell (0x28; the same layout as 0x18, 0x24, 0x2E; 4G: 0xA1)
//!   0          6      8         9 (10)
//!   ┌──────────┬──────┬─────────┬──────────────────────────────────┬────┬──────────┐
//!   │ YY MM DD │ MCC  │ MNC u8  │ 7 × (LAC, cell id, RSSI u8):     │ TA │ language │
//!   │ hh mm ss │ u16  │ (u16 if │   2G: LAC u16, cell id u24       │ u8 │ u16      │
//!   │ (UTC)    │      │ MCC b15)│   4G: LAC u32, cell id u64       │    │ (if sent)│
//!   └──────────┴──────┴─────────┴──────────────────────────────────┴────┴──────────┘
//!   the first cell is the serving one, then 6 neighbours; an all-zero cell is an empty slot.
//! LBS + Wi-Fi (0x2C; 4G: 0xA2): the multi-cell layout up to TA, then
//!   Wi-Fi count u8, count × (MAC 6 bytes, RSSI u8).
//! ```
//!
//! io names: `mcc`, `mnc`, then the serving cell as `lac`, `cell_id`, `rssi` (the names the
//! single-cell packets use) and neighbour n (1..=6) as `lac_n`, `cell_id_n`, `rssi_n`
//! (empty slots left out), `ta`, `language`; `wifi_count`, `wifi_n_mac` (text
//! `aa:bb:cc:dd:ee:ff`) and `wifi_n_rssi`; `extra` and `serial` as everywhere.

use super::packets::{base, finish, mnc, name, push, utc_ms, Cells, Context, Frame};
use crate::cursor::Cursor;
use crate::{DecodeError, IoValue, Record};

/// Serving cell + 6 neighbours.
const CELLS: usize = 7;

/// A multi-cell packet, with Wi-Fi access points after the timing advance when `wifi`.
pub(super) fn multi_cell(
    frame: &Frame<'_>,
    ctx: &Context<'_>,
    form: Cells,
    wifi: bool,
) -> Result<Record, DecodeError> {
    let mut cur = Cursor::new(frame.content, frame.content_at);
    let mut record = base(frame, ctx, 32);
    let time = cur.take(6, "date/time")?;
    record.time_ms = utc_ms(time);
    if record.time_ms.is_none() {
        record
            .io
            .push((name("time_raw"), IoValue::Bytes(time.to_vec())));
    }
    let mcc = cur.u16("MCC")?;
    let mnc = mnc(&mut cur, mcc)?;
    push(&mut record.io, "mcc", mcc & 0x7FFF);
    push(&mut record.io, "mnc", mnc);
    for n in 0..CELLS {
        let (lac, cell_id) = if form == Cells::Lte {
            (cur.u32("LAC")?, cur.u64("cell ID")?)
        } else {
            (u32::from(cur.u16("LAC")?), u64::from(cur.u24("cell ID")?))
        };
        let rssi = cur.u8("RSSI")?;
        if n > 0 && lac == 0 && cell_id == 0 {
            continue;
        }
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("_{n}")
        };
        push(&mut record.io, &format!("lac{suffix}"), lac);
        push(&mut record.io, &format!("cell_id{suffix}"), cell_id);
        push(&mut record.io, &format!("rssi{suffix}"), rssi);
    }
    let ta = cur.u8("timing advance")?;
    push(&mut record.io, "ta", ta);
    if wifi {
        access_points(&mut cur, &mut record)?;
    } else if cur.remaining() >= 2 {
        let language = cur.u16("language")?;
        push(&mut record.io, "language", language);
    }
    finish(&mut cur, &mut record, frame.serial);
    Ok(record)
}

/// Wi-Fi count, then MAC + RSSI for each.
fn access_points(cur: &mut Cursor<'_>, record: &mut Record) -> Result<(), DecodeError> {
    let count = cur.u8("Wi-Fi count")?;
    push(&mut record.io, "wifi_count", count);
    for n in 1..=count {
        let mac = cur.take(6, "Wi-Fi MAC")?;
        let rssi = cur.u8("Wi-Fi RSSI")?;
        let text = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        record
            .io
            .push((name(&format!("wifi_{n}_mac")), IoValue::Text(text)));
        push(&mut record.io, &format!("wifi_{n}_rssi"), rssi);
    }
    Ok(())
}
