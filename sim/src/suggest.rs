//! "Did you mean …?" for misspelt keys and names: serde's messages for unknown fields and
//! variants (`unknown field `symetric`, expected one of `beta`, `symmetric`, …`) get the closest
//! expected name appended, so a typo in a config, a preset, a suite, a study or a netlist names
//! its fix. Every file format of the project (TOML and JSON, in every crate) goes through
//! [`did_you_mean`].

/// `message` with "; did you mean `x`?" appended when it reports an unknown field or variant and
/// one expected name is close to it (Levenshtein distance at most a third of its length, and at
/// most 3); `message` unchanged otherwise.
pub fn did_you_mean(message: &str) -> String {
    let Some((got, expected)) = unknown_and_expected(message) else {
        return message.to_string();
    };
    match closest(&got, &expected) {
        Some(best) => {
            // Keep the hint on the line of the serde message (TOML errors span several lines).
            let (head, tail) = match message.find(&format!("`{got}`, expected")) {
                Some(i) => {
                    let end = message[i..].find('\n').map_or(message.len(), |j| i + j);
                    (&message[..end], &message[end..])
                }
                None => (message, ""),
            };
            format!("{head}; did you mean `{best}`?{tail}")
        }
        None => message.to_string(),
    }
}

/// The name closest to `got` among `candidates`, if close enough to be a typo of it.
pub fn closest<'a>(got: &str, candidates: &'a [String]) -> Option<&'a str> {
    let limit = (got.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (levenshtein(&got.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.as_str())
}

/// The unknown name and the expected ones of a serde "unknown field/variant" message.
fn unknown_and_expected(message: &str) -> Option<(String, Vec<String>)> {
    let start = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|p| message.find(p).map(|i| i + p.len()))?;
    let rest = &message[start..];
    let end = rest.find('`')?;
    let got = rest[..end].to_string();
    let after = &rest[end + 1..];
    let list = after.strip_prefix(", expected ")?;
    let list = list.lines().next().unwrap_or_default();
    let expected: Vec<String> = list
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect();
    (!expected.is_empty()).then_some((got, expected))
}

/// Edit distance (insertions, deletions, substitutions) between `a` and `b`, by characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_name_is_suggested_on_the_message_line() {
        let m = "TOML parse error at line 3, column 1\n  |\n3 | symetric = false\n  | ^^^^^^^^\nunknown field `symetric`, expected one of `beta`, `symmetric`, `random_sign`\n";
        let got = did_you_mean(m);
        assert!(
            got.contains("`random_sign`; did you mean `symmetric`?\n"),
            "{got}"
        );
        let j = "unknown variant `anderon`, expected `plain` or `anderson` at line 1 column 20";
        assert!(
            did_you_mean(j).contains("did you mean `anderson`?"),
            "{}",
            did_you_mean(j)
        );
    }

    #[test]
    fn far_names_and_other_messages_are_left_alone() {
        let m = "unknown field `zzz`, expected one of `beta`, `symmetric`";
        assert_eq!(did_you_mean(m), m);
        let m = "invalid type: string \"a\", expected f64";
        assert_eq!(did_you_mean(m), m);
    }

    #[test]
    fn levenshtein_counts_edits() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("same", "same"), 0);
        assert_eq!(levenshtein("symetric", "symmetric"), 1);
    }
}
