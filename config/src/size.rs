//! Byte sizes in config: a number of bytes or a string with an IEC unit such as
//! `"256KiB"`, `"4MiB"`. `KB`/`MB`/`GB` are refused with a hint: EMQX reads them as
//! powers of 1024, other tools as powers of 1000, so they would mean two things.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    fn parse(text: &str) -> Result<ByteSize, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(split);
        let number: u64 = digits.parse().map_err(|_| not_a_size(text))?;
        let unit = unit.trim();
        let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "k" | "kb" | "m" | "mb" | "g" | "gb" => {
                let iec = match unit.chars().next().map(|c| c.to_ascii_uppercase()) {
                    Some('K') => "KiB",
                    Some('M') => "MiB",
                    _ => "GiB",
                };
                return Err(format!(
                    "{text:?}: {unit} is ambiguous (1000 or 1024?); write \"{number}{iec}\" for powers of 1024 or the number of bytes"
                ));
            }
            _ => return Err(not_a_size(text)),
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

fn not_a_size(text: &str) -> String {
    format!("{text:?} is not a size like 1024, \"64KiB\", \"4MiB\" or \"1GiB\"")
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n != 0 && n.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", n >> 20)
        } else if n != 0 && n.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}")
        }
    }
}

/// A config value written as a plain number or as text with a unit.
pub(crate) fn number_or_text<'de, D, T>(
    deserializer: D,
    from_number: fn(u64) -> T,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Number(n) => Ok(from_number(n)),
        Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        number_or_text(deserializer, ByteSize, ByteSize::parse)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn parses_units() {
        assert_eq!(ByteSize::parse("256KiB"), Ok(ByteSize(262_144)));
        assert_eq!(ByteSize::parse("4 MiB"), Ok(ByteSize(4 << 20)));
        assert_eq!(ByteSize::parse("17"), Ok(ByteSize(17)));
        assert!(ByteSize::parse("lots").is_err());
        assert!(ByteSize::parse("12XB").is_err());
        let hint = ByteSize::parse("256 KB").unwrap_err();
        assert!(hint.contains("256KiB"), "{hint}");
    }
}
