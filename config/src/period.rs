//! Time periods in config, as Mosquitto writes them: seconds, or a number with
//! `s`, `m`, `h`, `d`, `w` or `y` (`"2h"`, `"14d"`). `0` means "never".

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(pub u64);

impl Period {
    /// `None` for 0 ("never").
    pub fn duration(self) -> Option<Duration> {
        (self.0 > 0).then(|| Duration::from_secs(self.0))
    }

    fn parse(text: &str) -> Option<Period> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits.parse().ok()?;
        let multiplier: u64 = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            _ => return None,
        };
        number.checked_mul(multiplier).map(Period)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, secs) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60)] {
            if n != 0 && n.is_multiple_of(secs) {
                return write!(f, "{}{unit}", n / secs);
            }
        }
        write!(f, "{n}s")
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::size::number_or_text(deserializer, Period, |text| {
            Period::parse(text).ok_or_else(|| {
                    format!("{text:?} is not a period like 3600, \"90s\", \"15m\", \"2h\", \"14d\" or \"1w\"")
                })
        })
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Period;

    #[test]
    fn parses_mosquitto_periods() {
        assert_eq!(Period::parse("2h"), Some(Period(7_200)));
        assert_eq!(Period::parse("14d"), Some(Period(14 * 86_400)));
        assert_eq!(Period::parse("90"), Some(Period(90)));
        assert_eq!(Period::parse("soon"), None);
        assert_eq!(Period(0).duration(), None);
        assert_eq!(Period(86_400).to_string(), "1d");
    }
}
