//! Access in time: a group's usage window (a weekly schedule in a named time zone, with dates
//! that are closed) and the spans of an absence.
//!
//! Everything here is pure (a moment in, an answer out), so the reconciler's plan can ask
//! "open at this second, and until when?" and be tested with a virtual clock across the
//! daylight-saving changes.
//!
//! The schedule is written the way an admin says it: `Mon-Fri 06:00-20:00; Sat 08:00-12:00`
//! (German day names such as `Mo-Fr` are read too). A window whose end is not after its
//! start runs past midnight (`22:00-06:00`, a night shift); `24:00` ends at midnight. Times
//! are wall-clock times in the window's zone: across a daylight-saving change a window
//! `06:00-20:00` still opens at 06:00 local time. A time that does not exist on the spring
//! day (02:30 in Berlin) is read as the moment after the gap (03:30), one that exists twice on
//! the autumn day as the first (the "compatible" rule of RFC 5545 and Temporal). A closed date
//! (a public holiday) cancels the windows that *start* on it; a night shift that began the
//! evening before ends as planned.

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use std::fmt;

/// The zone a window is in unless it names another.
pub const DEFAULT_TIME_ZONE: &str = "Europe/Berlin";

/// Why a window or an absence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("{0:?} is not a time zone name such as Europe/Berlin")]
    Zone(String),
    #[error("{0:?} is not a schedule entry such as \"Mon-Fri 06:00-20:00\"")]
    Entry(String),
    #[error("{0:?} is not a day such as Mon or Mo, or a range such as Mon-Fri")]
    Day(String),
    #[error("{0:?} is not a time range such as 06:00-20:00")]
    Range(String),
    #[error("{0:?} starts and ends at the same time; use 00:00-24:00 for the whole day")]
    Empty(String),
    #[error("a schedule may have at most {max} time ranges", max = UsageWindow::MAX_RANGES)]
    TooManyRanges,
    #[error("a schedule or list of dates may be at most {max} characters long", max = UsageWindow::MAX_TEXT)]
    TooLong,
    #[error("a schedule needs at least one day and time range, such as \"Mon-Fri 06:00-20:00\"")]
    NoRanges,
    #[error("{0:?} is not a date such as 2026-12-24")]
    Date(String),
    #[error("a schedule may close at most {max} dates; this one closes {0}", max = UsageWindow::MAX_CLOSED)]
    TooManyClosed(usize),
    #[error("{0:?} is neither a date (2027-01-04), a local time (2027-01-04T08:00) nor a moment with an offset")]
    Moment(String),
    #[error("an absence must end after it starts")]
    Backwards,
}

/// One time range on one weekday, in minutes after local midnight; `end <= start` runs into
/// the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    day: Weekday,
    start: u16,
    end: u16,
}

/// A time range as minutes after midnight: start, end.
type Minutes = (u16, u16);

/// A weekly schedule in a named zone, with closed dates. Valid by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageWindow {
    zone_name: String,
    zone: TimeZone,
    ranges: Vec<Range>,
    closed: Vec<Date>,
}

/// Where a window stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub open: bool,
    /// The next moment (Unix seconds) the window opens or closes; `None` when it never
    /// changes again (open all week, nothing closed ahead).
    pub until: Option<i64>,
    /// Whether `until` is a change; false when it is only when to look again (the change lies
    /// beyond the weeks searched), which people are not shown.
    pub exact: bool,
}

const DAYS: [(Weekday, &str, &str); 7] = [
    (Weekday::Monday, "Mon", "Mo"),
    (Weekday::Tuesday, "Tue", "Di"),
    (Weekday::Wednesday, "Wed", "Mi"),
    (Weekday::Thursday, "Thu", "Do"),
    (Weekday::Friday, "Fri", "Fr"),
    (Weekday::Saturday, "Sat", "Sa"),
    (Weekday::Sunday, "Sun", "So"),
];

fn day_name(d: Weekday) -> &'static str {
    DAYS[usize::from(d.to_monday_zero_offset().unsigned_abs())].1
}

fn parse_day(s: &str) -> Option<Weekday> {
    DAYS.iter()
        .find(|(_, en, de)| s.eq_ignore_ascii_case(en) || s.eq_ignore_ascii_case(de))
        .map(|(d, _, _)| *d)
}

/// `Mon-Fri`, `Sa`, `Mon,Wed,Fri` (ranges wrap: `Fri-Mon`).
fn parse_days(s: &str) -> Result<Vec<Weekday>, WindowError> {
    let bad = || WindowError::Day(s.chars().take(40).collect());
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (
                    parse_day(a.trim()).ok_or_else(bad)?,
                    parse_day(b.trim()).ok_or_else(bad)?,
                );
                let mut d = a;
                loop {
                    out.push(d);
                    if d == b {
                        break;
                    }
                    d = d.next();
                }
            }
            None => out.push(parse_day(part).ok_or_else(bad)?),
        }
    }
    Ok(out)
}

/// `HH:MM`, 00:00 to 24:00, in minutes.
fn parse_time(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let minutes = h * 60 + m;
    (m < 60 && minutes <= 24 * 60).then_some(minutes)
}

fn time_text(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A zone by its IANA name, from the tz database compiled into heimweg, never the host's
/// `/usr/share/zoneinfo`: every gateway of a cluster must open and close a window at the same
/// moment, whatever tzdata version its host has, and know the same names.
pub fn time_zone(name: &str) -> Result<TimeZone, WindowError> {
    let name = name.trim();
    let bad = || WindowError::Zone(name.chars().take(64).collect());
    if name.is_empty() || name.len() > 64 {
        return Err(bad());
    }
    let zone = jiff::tz::TimeZoneDatabase::bundled()
        .get(name)
        .map_err(|_| bad())?;
    if zone.is_unknown() {
        return Err(bad());
    }
    Ok(zone)
}

impl UsageWindow {
    /// Enough for a week of split shifts per day; a bound keeps every plan cheap.
    pub const MAX_RANGES: usize = 64;
    /// Public holidays and closing days for a year or two.
    pub const MAX_CLOSED: usize = 400;
    /// Enough text for any of the above; a bound before any parsing.
    pub const MAX_TEXT: usize = 8_000;
    /// How far ahead [`UsageWindow::at`] looks for the next change; past it, the answer is
    /// "ask again then".
    const MAX_SEARCH_DAYS: usize = 120;

    /// A window from its text parts: the weekly schedule, the zone (empty: Europe/Berlin),
    /// the closed dates (separated by commas, semicolons or spaces).
    pub fn new(schedule: &str, zone: &str, closed: &str) -> Result<UsageWindow, WindowError> {
        if schedule.len() > Self::MAX_TEXT || closed.len() > Self::MAX_TEXT {
            return Err(WindowError::TooLong);
        }
        let zone_name = match zone.trim() {
            "" => DEFAULT_TIME_ZONE,
            z => z,
        };
        let tz = time_zone(zone_name)?;
        // The database's spelling (`europe/berlin` is found too).
        let zone_name = tz.iana_name().unwrap_or(zone_name);
        let mut ranges = Vec::new();
        for entry in schedule
            .split([';', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let bad = || WindowError::Entry(entry.chars().take(80).collect());
            let (days, times) = entry.split_once(char::is_whitespace).ok_or_else(bad)?;
            let days = parse_days(days)?;
            let times: Vec<&str> = times
                .split([',', ' '])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            if times.is_empty() {
                return Err(bad());
            }
            for t in times {
                let range = || WindowError::Range(t.chars().take(40).collect());
                let (a, b) = t.split_once('-').ok_or_else(range)?;
                let (start, end) = (
                    parse_time(a.trim()).ok_or_else(range)?,
                    parse_time(b.trim()).ok_or_else(range)?,
                );
                if start == 24 * 60 {
                    return Err(range());
                }
                if start == end {
                    return Err(WindowError::Empty(t.to_string()));
                }
                for &day in &days {
                    let r = Range { day, start, end };
                    if !ranges.contains(&r) {
                        // Checked as it grows: a long list never costs more than the bound.
                        if ranges.len() == Self::MAX_RANGES {
                            return Err(WindowError::TooManyRanges);
                        }
                        ranges.push(r);
                    }
                }
            }
        }
        if ranges.is_empty() {
            return Err(WindowError::NoRanges);
        }
        ranges.sort_by_key(|r| (r.day.to_monday_zero_offset(), r.start, r.end));
        let mut dates = Vec::new();
        for d in closed
            .split([',', ';', ' ', '\n'])
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            let date: Date = d
                .parse()
                .map_err(|_| WindowError::Date(d.chars().take(40).collect()))?;
            if d.len() != 10 {
                return Err(WindowError::Date(d.to_string()));
            }
            dates.push(date);
        }
        dates.sort();
        dates.dedup();
        if dates.len() > Self::MAX_CLOSED {
            return Err(WindowError::TooManyClosed(dates.len()));
        }
        Ok(UsageWindow {
            zone_name: zone_name.to_string(),
            zone: tz,
            ranges,
            closed: dates,
        })
    }

    /// The zone's name, as given.
    pub fn time_zone(&self) -> &str {
        &self.zone_name
    }

    /// The weekly schedule, normalised: days in order, English names, one entry per day
    /// and range set (`Mon-Fri 06:00-20:00; Sat 08:00-12:00`). Reading it back gives the
    /// same window.
    pub fn schedule(&self) -> String {
        // Group days that share the same ranges, then write consecutive days as a range.
        let mut per_day: Vec<(Weekday, Vec<Minutes>)> = Vec::new();
        for r in &self.ranges {
            match per_day.last_mut() {
                Some((d, times)) if *d == r.day => times.push((r.start, r.end)),
                _ => per_day.push((r.day, vec![(r.start, r.end)])),
            }
        }
        let mut entries: Vec<(Vec<Weekday>, &Vec<Minutes>)> = Vec::new();
        for (day, times) in &per_day {
            match entries.iter_mut().find(|(_, t)| *t == times) {
                Some((days, _)) => days.push(*day),
                None => entries.push((vec![*day], times)),
            }
        }
        entries
            .iter()
            .map(|(days, times)| {
                let times: Vec<String> = times
                    .iter()
                    .map(|(a, b)| format!("{}-{}", time_text(*a), time_text(*b)))
                    .collect();
                format!("{} {}", days_text(days), times.join(","))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The closed dates, in order.
    pub fn closed_dates(&self) -> &[Date] {
        &self.closed
    }

    /// The closed dates as text (`2026-12-24, 2026-12-25`).
    pub fn closed_text(&self) -> String {
        self.closed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The moment a local time on `date` is, by the compatible rule (see the module).
    fn moment(&self, date: Date, minutes: u16) -> Option<i64> {
        let (date, minutes) = if minutes == 24 * 60 {
            (date.tomorrow().ok()?, 0)
        } else {
            (date, minutes)
        };
        let dt: DateTime = date.at((minutes / 60) as i8, (minutes % 60) as i8, 0, 0);
        self.zone
            .to_ambiguous_timestamp(dt)
            .compatible()
            .ok()
            .map(Timestamp::as_second)
    }

    /// The open spans that start on `date`, in order of their start.
    fn spans_on(&self, date: Date) -> impl Iterator<Item = (i64, i64)> + '_ {
        let closed = self.closed.binary_search(&date).is_ok();
        let weekday = date.weekday();
        self.ranges
            .iter()
            .filter(move |r| !closed && r.day == weekday)
            .filter_map(move |r| {
                let start = self.moment(date, r.start)?;
                let end_day = if r.end <= r.start {
                    date.tomorrow().ok()?
                } else {
                    date
                };
                let end = self.moment(end_day, r.end)?;
                // Whatever a clock change does to the two ends, never a span that ends
                // before it starts.
                (end > start).then_some((start, end))
            })
    }

    /// Whether the window is open at `at` (Unix seconds; open from a span's start to just
    /// before its end), and until when.
    pub fn at(&self, at: i64) -> WindowState {
        let Ok(ts) = Timestamp::from_second(at) else {
            return WindowState {
                open: false,
                until: None,
                exact: true,
            };
        };
        let today = self.zone.to_datetime(ts).date();
        // A span that started yesterday may still run (a night shift).
        let Ok(mut day) = today.yesterday() else {
            return WindowState {
                open: false,
                until: None,
                exact: true,
            };
        };
        // Each closed date ahead can cancel a whole week of a one-day-a-week schedule: look
        // a week past all of them, within a bound.
        let closed_ahead = self.closed.len() - self.closed.partition_point(|d| *d < day);
        let horizon = (8 + 7 * closed_ahead).min(Self::MAX_SEARCH_DAYS);
        let mut current: Option<(i64, i64)> = None;
        for _ in 0..horizon {
            // In order of their start: a range moved by the spring gap may start after one
            // written later.
            let mut spans: Vec<(i64, i64)> = self.spans_on(day).collect();
            spans.sort_unstable();
            for (start, end) in spans {
                current = match current {
                    // Overlapping or touching spans are one: the window does not close
                    // at midnight between two whole days.
                    Some((s, e)) if start <= e => Some((s, e.max(end))),
                    Some((s, e)) if s <= at && at < e => {
                        return WindowState {
                            open: true,
                            until: Some(e),
                            exact: true,
                        }
                    }
                    Some((s, _)) if at < s => {
                        return WindowState {
                            open: false,
                            until: Some(s),
                            exact: true,
                        }
                    }
                    _ => Some((start, end)),
                };
            }
            match day.tomorrow() {
                Ok(d) => day = d,
                Err(_) => break,
            }
        }
        // The search ended without a change. Open through all of it with nothing closed
        // ahead: open all week, for good. Otherwise the next change lies beyond the
        // search: ask again where it ended.
        let searched = self.horizon_end(day);
        match current {
            Some((s, e)) if s <= at && at < e => {
                let (until, exact) = if e < searched {
                    (Some(e), true)
                } else if closed_ahead == 0 {
                    (None, true)
                } else {
                    (Some(searched), false)
                };
                WindowState {
                    open: true,
                    until,
                    exact,
                }
            }
            Some((s, _)) if at < s => WindowState {
                open: false,
                until: Some(s),
                exact: true,
            },
            _ => WindowState {
                open: false,
                until: Some(searched),
                exact: false,
            },
        }
    }

    /// The start of `day` in the zone, for telling a span cut by the search horizon from a
    /// real end.
    fn horizon_end(&self, day: Date) -> i64 {
        self.moment(day, 0).unwrap_or(i64::MAX)
    }

    /// A local date and time in the window's zone, for people ("Mon 2027-03-29 06:00").
    pub fn local(&self, at: i64) -> String {
        match Timestamp::from_second(at) {
            Ok(ts) => {
                let dt = self.zone.to_datetime(ts);
                format!(
                    "{} {} {:02}:{:02}",
                    day_name(dt.date().weekday()),
                    dt.date(),
                    dt.hour(),
                    dt.minute()
                )
            }
            Err(_) => at.to_string(),
        }
    }
}

fn days_text(days: &[Weekday]) -> String {
    // Consecutive runs of three or more read as a range (Mon-Fri); two stay a list.
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let mut j = i;
        while j + 1 < days.len() && days[j + 1] == days[j].next() {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}-{}", day_name(days[i]), day_name(days[j])));
        } else {
            parts.extend(days[i..=j].iter().map(|d| day_name(*d).to_string()));
        }
        i = j + 1;
    }
    parts.join(",")
}

impl fmt::Display for UsageWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.schedule(), self.zone_name)?;
        if !self.closed.is_empty() {
            write!(f, ", closed {}", self.closed_text())?;
        }
        Ok(())
    }
}

/// A moment as an admin writes the start or end of an absence: a date (`2027-01-04`, its
/// midnight in `zone`; as an end, the midnight after it, so that `2027-01-04` to `2027-01-08`
/// is the whole working week), a local time (`2027-01-04T08:00`), or a moment with an offset
/// (`2027-01-04T08:00:00+01:00`, `…Z`).
pub fn moment(text: &str, zone: &TimeZone, as_end: bool) -> Result<i64, WindowError> {
    let t = text.trim();
    let bad = || WindowError::Moment(t.chars().take(60).collect());
    if t.len() == 10 {
        let date: Date = t.parse().map_err(|_| bad())?;
        let date = if as_end {
            date.tomorrow().map_err(|_| bad())?
        } else {
            date
        };
        return zone
            .to_ambiguous_timestamp(date.at(0, 0, 0, 0))
            .compatible()
            .map(Timestamp::as_second)
            .map_err(|_| bad());
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(ts.as_second());
    }
    let dt: DateTime = t.parse().map_err(|_| bad())?;
    zone.to_ambiguous_timestamp(dt)
        .compatible()
        .map(Timestamp::as_second)
        .map_err(|_| bad())
}

/// An absence's span from its two texts (see [`moment`]): start inclusive, end exclusive.
pub fn absence_span(from: &str, until: &str, zone: &TimeZone) -> Result<(i64, i64), WindowError> {
    let start = moment(from, zone, false)?;
    let end = moment(until, zone, true)?;
    if end <= start {
        return Err(WindowError::Backwards);
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a moment written with its offset.
    fn at(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn office() -> UsageWindow {
        UsageWindow::new("Mon-Fri 06:00-20:00", "Europe/Berlin", "").unwrap()
    }

    #[test]
    fn a_working_day_window_opens_and_closes_at_local_times() {
        let w = office();
        // Friday 2027-01-08, winter time (+01:00).
        let s = w.at(at("2027-01-08T12:00:00+01:00"));
        assert!(s.open);
        assert_eq!(s.until, Some(at("2027-01-08T20:00:00+01:00")));
        // At 20:00 sharp it is closed, and opens again on Monday.
        let s = w.at(at("2027-01-08T20:00:00+01:00"));
        assert!(!s.open);
        assert_eq!(s.until, Some(at("2027-01-11T06:00:00+01:00")));
        let s = w.at(at("2027-01-11T05:59:59+01:00"));
        assert!(!s.open);
        assert!(w.at(at("2027-01-11T06:00:00+01:00")).open);
    }

    #[test]
    fn spring_forward_in_berlin_keeps_the_local_opening_hour() {
        let w = office();
        // Friday before the change (2027-03-28, 02:00 → 03:00): 06:00 is 05:00 UTC.
        assert_eq!(
            w.at(at("2027-03-26T21:00:00Z")).until,
            Some(at("2027-03-29T04:00:00Z")),
            "Monday after the change: 06:00 summer time is 04:00 UTC"
        );
        assert!(!w.at(at("2027-03-29T03:59:59Z")).open);
        assert!(w.at(at("2027-03-29T04:00:00Z")).open);
        assert_eq!(
            w.at(at("2027-03-29T04:00:00Z")).until,
            Some(at("2027-03-29T18:00:00Z"))
        );
    }

    #[test]
    fn fall_back_in_berlin_keeps_the_local_closing_hour() {
        let w = office();
        // Friday before the change (2027-10-31, 03:00 → 02:00): 20:00 is 18:00 UTC.
        assert_eq!(
            w.at(at("2027-10-29T12:00:00Z")).until,
            Some(at("2027-10-29T18:00:00Z"))
        );
        // Monday after it: 20:00 winter time is 19:00 UTC.
        let monday = w.at(at("2027-11-01T10:00:00Z"));
        assert!(monday.open);
        assert_eq!(monday.until, Some(at("2027-11-01T19:00:00Z")));
    }

    #[test]
    fn a_night_window_over_the_clock_changes_is_an_hour_shorter_or_longer() {
        let w = UsageWindow::new("Sun 01:00-04:00", "Europe/Berlin", "").unwrap();
        // Spring: 01:00 +01:00 to 04:00 +02:00 is two hours.
        let s = w.at(at("2027-03-28T00:00:00Z"));
        assert!(s.open);
        assert_eq!(s.until, Some(at("2027-03-28T02:00:00Z")));
        // Autumn: 01:00 +02:00 to 04:00 +01:00 is four hours.
        let s = w.at(at("2027-10-30T23:00:00Z"));
        assert!(s.open);
        assert_eq!(s.until, Some(at("2027-10-31T03:00:00Z")));
    }

    #[test]
    fn times_in_the_gap_and_the_fold_follow_the_compatible_rule() {
        // 02:30 does not exist on 2027-03-28 in Berlin: it is read as 03:30 summer time.
        let w = UsageWindow::new("Sun 02:30-05:00", "Europe/Berlin", "").unwrap();
        assert_eq!(
            w.at(at("2027-03-27T12:00:00Z")).until,
            Some(at("2027-03-28T03:30:00+02:00"))
        );
        // 02:30 exists twice on 2027-10-31: the first (summer time) counts.
        assert_eq!(
            w.at(at("2027-10-30T12:00:00Z")).until,
            Some(at("2027-10-31T02:30:00+02:00"))
        );
        // A range wholly inside the gap moves by the gap's hour, both ends alike.
        let gap = UsageWindow::new("Sun 02:10-02:50", "Europe/Berlin", "").unwrap();
        let opens = gap.at(at("2027-03-27T12:00:00Z"));
        assert_eq!(opens.until, Some(at("2027-03-28T03:10:00+02:00")));
        assert_eq!(
            gap.at(at("2027-03-28T03:10:00+02:00")).until,
            Some(at("2027-03-28T03:50:00+02:00"))
        );
    }

    #[test]
    fn closed_dates_cancel_the_windows_that_start_on_them() {
        let w = UsageWindow::new(
            "Mon-Fri 06:00-20:00; Thu 22:00-06:00",
            "",
            "2026-12-24, 2026-12-25",
        )
        .unwrap();
        assert_eq!(w.time_zone(), "Europe/Berlin");
        // Wednesday 23rd after hours: next opening is Monday 28th, not the 24th or 25th...
        // except Thursday's night shift, which starts on the closed 24th: cancelled too.
        let s = w.at(at("2026-12-23T20:30:00+01:00"));
        assert!(!s.open);
        assert_eq!(s.until, Some(at("2026-12-28T06:00:00+01:00")));
        // A night shift that began on an open day ends as planned on a closed one.
        let w = UsageWindow::new("Wed 22:00-06:00", "", "2026-12-24").unwrap();
        let s = w.at(at("2026-12-24T01:00:00+01:00"));
        assert!(s.open);
        assert_eq!(s.until, Some(at("2026-12-24T06:00:00+01:00")));
    }

    #[test]
    fn whole_days_join_and_a_window_open_all_week_never_changes() {
        let w = UsageWindow::new("Mon-Sun 00:00-24:00", "UTC", "").unwrap();
        let s = w.at(at("2027-01-08T12:00:00Z"));
        assert!(s.open);
        assert_eq!(s.until, None);
        // Two whole days: open from Saturday 00:00 to Monday 00:00 in one span.
        let w = UsageWindow::new("Sa,So 00:00-24:00", "UTC", "").unwrap();
        let s = w.at(at("2027-01-09T10:00:00Z"));
        assert!(s.open);
        assert_eq!(s.until, Some(at("2027-01-11T00:00:00Z")));
        // Closing one date of an open week makes it change.
        let w = UsageWindow::new("Mon-Sun 00:00-24:00", "UTC", "2027-01-10").unwrap();
        assert_eq!(
            w.at(at("2027-01-08T12:00:00Z")).until,
            Some(at("2027-01-10T00:00:00Z"))
        );
        assert_eq!(
            w.at(at("2027-01-10T00:00:00Z")),
            WindowState {
                open: false,
                until: Some(at("2027-01-11T00:00:00Z")),
                exact: true,
            }
        );
    }

    #[test]
    fn the_schedule_text_is_normalised_and_reads_back_the_same() {
        let w = UsageWindow::new(
            " mo-fr 06:00-12:00,13:00-20:00 ;Sa 08:00-12:00; Mi 06:00-12:00",
            "Europe/Berlin",
            "2026-12-25 2026-12-24 2026-12-24",
        )
        .unwrap();
        assert_eq!(
            w.schedule(),
            "Mon-Fri 06:00-12:00,13:00-20:00; Sat 08:00-12:00"
        );
        assert_eq!(w.closed_text(), "2026-12-24, 2026-12-25");
        let again = UsageWindow::new(&w.schedule(), w.time_zone(), &w.closed_text()).unwrap();
        assert_eq!(again, w);
        assert_eq!(
            UsageWindow::new("Mon,Wed 08:00-09:00", "UTC", "")
                .unwrap()
                .schedule(),
            "Mon,Wed 08:00-09:00"
        );
        assert_eq!(
            w.to_string(),
            "Mon-Fri 06:00-12:00,13:00-20:00; Sat 08:00-12:00 (Europe/Berlin), closed 2026-12-24, 2026-12-25"
        );
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        let bad = |s: &str, z: &str, c: &str| UsageWindow::new(s, z, c).unwrap_err();
        assert!(matches!(bad("Mon-Fri 6-20", "", ""), WindowError::Range(_)));
        assert!(matches!(
            bad("Moon 06:00-20:00", "", ""),
            WindowError::Day(_)
        ));
        assert!(matches!(bad("Mon-Fri", "", ""), WindowError::Entry(_)));
        assert!(matches!(bad("", "", ""), WindowError::NoRanges));
        assert!(matches!(
            bad("Mon 08:00-08:00", "", ""),
            WindowError::Empty(_)
        ));
        assert!(matches!(
            bad("Mon 24:00-08:00", "", ""),
            WindowError::Range(_)
        ));
        assert!(matches!(
            bad("Mon 08:60-09:00", "", ""),
            WindowError::Range(_)
        ));
        assert!(matches!(
            bad("Mon 25:00-26:00", "", ""),
            WindowError::Range(_)
        ));
        assert!(matches!(
            bad("Mon 08:00-09:00", "Mars/Olympus", ""),
            WindowError::Zone(_)
        ));
        assert!(matches!(
            bad("Mon 08:00-09:00", "../../etc/passwd", ""),
            WindowError::Zone(_)
        ));
        assert!(matches!(
            bad("Mon 08:00-09:00", "", "2026-02-30"),
            WindowError::Date(_)
        ));
        assert!(matches!(
            bad("Mon 08:00-09:00", "", "2026-1-3"),
            WindowError::Date(_)
        ));
        let many: Vec<String> = (0..70)
            .map(|i| {
                format!(
                    "Mon {:02}:{:02}-{:02}:{:02}",
                    i / 4,
                    (i % 4) * 15,
                    i / 4,
                    (i % 4) * 15 + 5
                )
            })
            .collect();
        assert!(matches!(
            bad(&many.join(";"), "", ""),
            WindowError::TooManyRanges
        ));
        // Repeated day lists cost no more than the bound, and long text is refused unread.
        let repeated = format!("{} 08:00-09:00", vec!["Mon-Sun"; 1_000].join(","));
        assert!(matches!(bad(&repeated, "", ""), WindowError::TooLong));
        let repeated = format!("{} 08:00-09:00", vec!["Mon-Sun"; 300].join(","));
        assert!(
            UsageWindow::new(&repeated, "", "").is_ok(),
            "seven ranges after all"
        );
        assert!(matches!(
            bad("Mon 08:00-09:00", "Etc/Unknown", ""),
            WindowError::Zone(_)
        ));
    }

    #[test]
    fn absences_are_whole_days_in_the_zone_or_exact_moments() {
        let berlin = time_zone("Europe/Berlin").unwrap();
        let (a, b) = absence_span("2027-03-26", "2027-03-29", &berlin).unwrap();
        assert_eq!(a, at("2027-03-26T00:00:00+01:00"));
        assert_eq!(b, at("2027-03-30T00:00:00+02:00"), "the last day included");
        let (a, b) = absence_span("2027-01-04T08:00", "2027-01-04T12:30:00Z", &berlin).unwrap();
        assert_eq!(a, at("2027-01-04T07:00:00Z"));
        assert_eq!(b, at("2027-01-04T12:30:00Z"));
        assert_eq!(
            absence_span("2027-01-05", "2027-01-04", &berlin),
            Err(WindowError::Backwards)
        );
        assert!(matches!(
            absence_span("next week", "2027-01-04", &berlin),
            Err(WindowError::Moment(_))
        ));
    }

    #[test]
    fn local_times_read_as_people_say_them() {
        let w = office();
        assert_eq!(w.local(at("2027-03-29T04:00:00Z")), "Mon 2027-03-29 06:00");
    }

    #[test]
    fn closed_dates_far_apart_never_leave_the_window_without_a_next_change() {
        // One day a week, four Saturdays of the summer closed: the next opening is five weeks
        // ahead, beyond a week per closed date of the old bound.
        let w = UsageWindow::new(
            "Sat 08:00-12:00",
            "Europe/Berlin",
            "2027-07-10, 2027-07-17, 2027-07-24, 2027-07-31",
        )
        .unwrap();
        let s = w.at(at("2027-07-05T12:00:00+02:00"));
        assert!(!s.open);
        assert_eq!(s.until, Some(at("2027-08-07T08:00:00+02:00")));
        // Open every day but three closed days weeks ahead: it closes then.
        let w = UsageWindow::new(
            "Mon-Sun 00:00-24:00",
            "Europe/Berlin",
            "2027-12-24 2027-12-25 2027-12-26",
        )
        .unwrap();
        let s = w.at(at("2027-12-01T12:00:00+01:00"));
        assert!(s.open);
        assert_eq!(s.until, Some(at("2027-12-24T00:00:00+01:00")));
        // A closed date beyond the search: the answer says when to ask again, never "never".
        let w = UsageWindow::new("Mon-Sun 00:00-24:00", "UTC", "2029-01-01").unwrap();
        let s = w.at(at("2027-01-01T00:00:00Z"));
        assert!(s.open);
        let again = s.until.expect("a time to look again");
        assert!(!s.exact, "not a change to show");
        assert!(again > at("2027-01-08T00:00:00Z") && again < at("2029-01-01T00:00:00Z"));
        assert_eq!(
            w.at(again).until,
            Some(again + (again - at("2027-01-01T00:00:00Z")))
        );
    }

    #[test]
    fn ranges_moved_by_the_spring_gap_stay_in_order() {
        // 02:30 moves to 03:30, after the 03:00 range written second: both stay spans of
        // their own, and 03:05 is open.
        let w = UsageWindow::new("Sun 02:30-02:45,03:00-03:10", "Europe/Berlin", "").unwrap();
        let s = w.at(at("2027-03-28T03:05:00+02:00"));
        assert!(s.open, "{s:?}");
        assert_eq!(s.until, Some(at("2027-03-28T03:10:00+02:00")));
    }

    #[test]
    fn zone_names_come_from_the_bundled_database_in_its_spelling() {
        let w = UsageWindow::new("Mon 08:00-09:00", "europe/berlin", "").unwrap();
        assert_eq!(w.time_zone(), "Europe/Berlin");
    }
}
