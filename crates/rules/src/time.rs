//! A tiny UTC time formatter for `format_time`, so the crate needs no date library.
//!
//! Supported: `%Y` `%m` `%d` `%H` `%M` `%S` `%f` (milliseconds, 3 digits) `%s` (Unix seconds)
//! `%%`; any other character is copied.

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The default format: RFC 3339 in UTC with milliseconds.
pub(crate) const RFC3339: &str = "%Y-%m-%dT%H:%M:%S.%fZ";

/// Formats `ms` (Unix milliseconds) with `fmt`; `None` outside years 0..=9999.
pub(crate) fn format_ms(ms: i64, fmt: &str) -> Option<String> {
    // Years 0 and 9999 bound the range so the arithmetic below cannot overflow.
    const MIN: i64 = -62_167_219_200_000;
    const MAX: i64 = 253_402_300_799_999;
    if !(MIN..=MAX).contains(&ms) {
        return None;
    }
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        use std::fmt::Write;
        let _ = match chars.next() {
            Some('Y') => write!(out, "{y:04}"),
            Some('m') => write!(out, "{m:02}"),
            Some('d') => write!(out, "{d:02}"),
            Some('H') => write!(out, "{:02}", sod / 3600),
            Some('M') => write!(out, "{:02}", sod % 3600 / 60),
            Some('S') => write!(out, "{:02}", sod % 60),
            Some('f') => write!(out, "{millis:03}"),
            Some('s') => write!(out, "{secs}"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    Some(out)
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_ms(0, RFC3339).unwrap(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_ms(1_700_000_000_123, RFC3339).unwrap(),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            format_ms(951_782_400_000, "%Y/%m/%d").unwrap(),
            "2000/02/29"
        );
        assert_eq!(format_ms(-1, RFC3339).unwrap(), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_ms(1000, "%s %% %q").unwrap(), "1 % %q");
        assert!(format_ms(i64::MAX, RFC3339).is_none());
    }
}
