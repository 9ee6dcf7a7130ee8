//! Resource quantities compared by value (`0.5` and `500m`, `1Gi` and `1024Mi` are equal): the
//! API server writes a pod's quantities in canonical form, a custom resource's as given.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a quantity in billionths (nano-units), when it parses.
pub fn nanos(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (negative, number) = match number.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.len() > 9 {
        return None;
    }
    let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: i128 = format!("{frac:0<9}").parse().ok()?;
    let base = int.checked_mul(1_000_000_000)?.checked_add(frac)?;
    let (mul, div): (i128, i128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        s => {
            let exp: u32 = s.strip_prefix(['e', 'E'])?.parse().ok()?;
            (10i128.checked_pow(exp)?, 1)
        }
    };
    let v = base.checked_mul(mul)? / div;
    Some(if negative { -v } else { v })
}

fn same_quantity(a: &Quantity, b: &Quantity) -> bool {
    match (nanos(&a.0), nanos(&b.0)) {
        (Some(x), Some(y)) => x == y,
        _ => a.0 == b.0,
    }
}

fn same_map(
    a: Option<&BTreeMap<String, Quantity>>,
    b: Option<&BTreeMap<String, Quantity>>,
) -> bool {
    let empty = BTreeMap::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter()
            .all(|(k, q)| b.get(k).is_some_and(|p| same_quantity(q, p)))
}

/// True when both ask for the same requests and limits, by value.
pub fn same_resources(a: &ResourceRequirements, b: &ResourceRequirements) -> bool {
    same_map(a.requests.as_ref(), b.requests.as_ref())
        && same_map(a.limits.as_ref(), b.limits.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_by_value() {
        assert_eq!(nanos("0.7"), nanos("700m"));
        assert_eq!(nanos("1Gi"), nanos("1024Mi"));
        assert_eq!(nanos("1200Mi"), Some(1200 * (1 << 20) * 1_000_000_000));
        assert_eq!(nanos("2"), Some(2_000_000_000));
        assert_eq!(nanos("1e3"), nanos("1k"));
        assert_ne!(nanos("1M"), nanos("1Mi"));
        assert_eq!(nanos("abc"), None);
        assert_eq!(nanos("1Xi"), None);
    }
}
