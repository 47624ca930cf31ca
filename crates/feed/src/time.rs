//! Times in entries are microseconds since the Unix epoch (`*_us` fields). This module turns
//! RFC 3339 text (as Lemmy sends it) into them and back, with no clock and no dependency.

const US_PER_SEC: u64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Parse an RFC 3339 date-time (`2026-10-06T07:36:06.551719Z`, `…06Z`, `…06.5+02:00`) into
/// microseconds since the Unix epoch. Digits past microseconds are cut. `None` for text that is
/// not RFC 3339 or for a time before 1970.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let year = num(0..4)?;
    let month = num(5..7)?;
    let day = num(8..10)?;
    let hour = num(11..13)?;
    let minute = num(14..16)?;
    let second = num(17..19)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut micros = 0u64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 6 {
                micros = micros * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..6 {
            micros *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if b.len() == i + 1 => 0,
        sign @ (b'+' | b'-') if b.len() == i + 6 && b[i + 3] == b':' => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            if h > 23 || m > 59 {
                return None;
            }
            let secs = i64::from(h * 3600 + m * 60);
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    secs.checked_mul(US_PER_SEC)?.checked_add(micros)
}

/// Format microseconds since the Unix epoch as RFC 3339 in UTC, the way Lemmy does: no
/// fraction for a whole second, 3 digits for a whole millisecond, else 6.
pub fn format_rfc3339(us: u64) -> String {
    let secs = us / US_PER_SEC;
    let micros = us % US_PER_SEC;
    // u64 microseconds reach about year 586 000: days fit in i64.
    let days = (secs / SECS_PER_DAY as u64) as i64;
    let rem = secs % SECS_PER_DAY as u64;
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if micros == 0 {
    } else if micros % 1000 == 0 {
        s.push_str(&format!(".{:03}", micros / 1000));
    } else {
        s.push_str(&format!(".{micros:06}"));
    }
    s.push('Z');
    s
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// > days_from_civil / civil_from_days: Howard Hinnant, "chrono-Compatible Low-Level Date
// > Algorithms" (proleptic Gregorian, day 0 = 1970-01-01).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lemmy_shapes() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-10-06T07:36:06.551719Z"),
            Some(1_791_272_166_551_719)
        );
        assert_eq!(
            parse_rfc3339("2026-10-06T07:36:06.551Z"),
            Some(1_791_272_166_551_000)
        );
        assert_eq!(
            parse_rfc3339("2026-10-14T01:51:38Z"),
            Some(1_791_942_698_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-10-14T03:51:38.5+02:00"),
            Some(1_791_942_698_500_000)
        );
        assert_eq!(
            parse_rfc3339("2026-10-14T01:51:38.123456789Z"),
            Some(1_791_942_698_123_456)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000_000)
        );
        for bad in [
            "",
            "2026-10-14",
            "2026-10-14T01:51:38",
            "2026-10-14T01:51:38.Z",
            "2026-13-14T01:51:38Z",
            "2025-02-29T01:51:38Z",
            "2026-10-14T24:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-10-14T01:51:38Zjunk",
            "2026-10-14T01:51:38+0200",
            "２０２６-10-14T01:51:38Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        assert_eq!(
            format_rfc3339(1_791_272_166_551_719),
            "2026-10-06T07:36:06.551719Z"
        );
        assert_eq!(
            format_rfc3339(1_791_272_166_551_000),
            "2026-10-06T07:36:06.551Z"
        );
        assert_eq!(
            format_rfc3339(1_791_942_698_000_000),
            "2026-10-14T01:51:38Z"
        );
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
    }

    proptest! {
        #[test]
        fn format_then_parse(us in 0u64..253_402_300_800_000_000) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(us)), Some(us));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_rfc3339(&s);
        }
    }
}
