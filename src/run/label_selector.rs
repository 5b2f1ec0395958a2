//! The text form of a Kubernetes label selector (`team=a,tier in (gold,silver),!legacy`), read
//! into kube's [`Selector`] for a flag whose selector the operator matches itself.

use kube::core::{Expression, Selector};
use std::collections::BTreeSet;

/// Reads `text` with the API server's syntax: `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
/// `k notin (a,b)`, `k`, `!k`, joined by commas. The error names the requirement at fault.
pub fn parse(text: &str) -> Result<Selector, String> {
    let mut expressions = Vec::new();
    for requirement in split_top_level(text)? {
        let requirement = requirement.trim();
        if requirement.is_empty() {
            return Err(format!(
                "{text:?}: an empty requirement (two commas, or a trailing one)"
            ));
        }
        expressions.push(expression(requirement)?);
    }
    Ok(Selector::from_iter(expressions))
}

/// The requirements: `text` split at the commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("{text:?}: a ')' without its '('"))?;
            }
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("{text:?}: a '(' without its ')'"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn expression(requirement: &str) -> Result<Expression, String> {
    let word = |w: &str| -> Result<String, String> {
        let w = w.trim();
        let ok = !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        ok.then(|| w.to_owned())
            .ok_or_else(|| format!("{requirement:?}: {w:?} is not a label key or value"))
    };
    if let Some(key) = requirement.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(word(key)?));
    }
    if let Some((key, value)) = requirement.split_once("!=") {
        return Ok(Expression::NotEqual(word(key)?, word(value)?));
    }
    if let Some((key, value)) = requirement
        .split_once("==")
        .or_else(|| requirement.split_once('='))
    {
        return Ok(Expression::Equal(word(key)?, word(value)?));
    }
    if let Some(open) = requirement.find('(') {
        let Some(inner) = requirement[open + 1..].strip_suffix(')') else {
            return Err(format!("{requirement:?}: text after ')'"));
        };
        let mut head = requirement[..open].split_whitespace();
        let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
            return Err(format!(
                "{requirement:?}: expected `key in (a,b)` or `key notin (a,b)`"
            ));
        };
        let values = inner
            .split(',')
            .map(word)
            .collect::<Result<BTreeSet<String>, String>>()?;
        return match op {
            "in" => Ok(Expression::In(word(key)?, values)),
            "notin" => Ok(Expression::NotIn(word(key)?, values)),
            other => Err(format!("{requirement:?}: {other:?} is not `in` or `notin`")),
        };
    }
    Ok(Expression::Exists(word(requirement)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::SelectorExt;
    use std::collections::BTreeMap;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_requirement_form_matches_as_the_api_server_does() {
        let s = parse("tenant=yes, tier in (gold, silver),!legacy,env!=dev,team").unwrap();
        let gold = labels(&[("tenant", "yes"), ("tier", "gold"), ("team", "a")]);
        assert!(s.matches(&gold));
        let mut legacy = gold.clone();
        legacy.insert("legacy".into(), "1".into());
        assert!(!s.matches(&legacy));
        let mut dev = gold.clone();
        dev.insert("env".into(), "dev".into());
        assert!(!s.matches(&dev));
        let mut bronze = gold.clone();
        bronze.insert("tier".into(), "bronze".into());
        assert!(!s.matches(&bronze));
        assert!(!s.matches(&labels(&[("tenant", "yes"), ("tier", "gold")])));
        assert!(parse("a==b").unwrap().matches(&labels(&[("a", "b")])));
        assert!(
            parse("tier notin (x)")
                .unwrap()
                .matches(&labels(&[("tier", "y")]))
        );
    }

    #[test]
    fn a_malformed_selector_names_what_is_wrong() {
        for (text, says) in [
            ("a=b,", "empty requirement"),
            ("a in (b", "'('"),
            ("a=b c", "\"b c\""),
            ("a within (b)", "\"within\""),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
