//! Byte sizes in config: a number of bytes or a string such as `"256KiB"`, `"4MB"`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    fn parse(text: &str) -> Option<ByteSize> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits.parse().ok()?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            _ => return None,
        };
        number.checked_mul(multiplier).map(ByteSize)
    }
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
    parse: fn(&str) -> Option<T>,
    examples: &str,
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
        Raw::Text(text) => parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not {examples}"))),
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        number_or_text(
            deserializer,
            ByteSize,
            ByteSize::parse,
            "a size like 1024, \"64KiB\", \"4MiB\" or \"1MB\"",
        )
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
        assert_eq!(ByteSize::parse("256KiB"), Some(ByteSize(262_144)));
        assert_eq!(ByteSize::parse("4MB"), Some(ByteSize(4_000_000)));
        assert_eq!(ByteSize::parse("17"), Some(ByteSize(17)));
        assert_eq!(ByteSize::parse("lots"), None);
        assert_eq!(ByteSize::parse("12XB"), None);
    }
}
