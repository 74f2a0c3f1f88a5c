//! `did you mean "NAME"?` for misspelt keys, types and ids.

/// The candidate closest to `given`, when it is close enough to be a typo of
/// it: a Damerau-Levenshtein distance (case ignored) of at most a third of the
/// longer name, and at least one character kept.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != given)
        .map(|c| {
            let distance = strsim::damerau_levenshtein(&given_lower, &c.to_lowercase());
            (distance, c)
        })
        .filter(|(distance, c)| {
            let longer = given.chars().count().max(c.chars().count());
            *distance <= (longer / 3).max(1) && *distance < given.chars().count()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// `; did you mean "NAME"?`, or nothing when no candidate is close.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(given, candidates)
        .map(|c| format!("; did you mean {c:?}?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_name_and_strangers_find_none() {
        let types = ["filelog", "file_log", "kmsg", "memory", "oom", "otlp"];
        assert_eq!(closest("filelogs", types), Some("filelog"));
        assert_eq!(closest("memroy", types), Some("memory"));
        assert_eq!(closest("OTLP", types), Some("otlp"));
        assert_eq!(closest("kmgs", types), Some("kmsg"));
        assert_eq!(closest("prometheus", types), None);
        assert_eq!(closest("x", types), None);
        // The name itself is no suggestion.
        assert_eq!(closest("oom", types), None);
        assert_eq!(
            did_you_mean("endpiont", ["endpoint", "tls"]),
            "; did you mean \"endpoint\"?"
        );
        assert_eq!(did_you_mean("zzz", ["endpoint", "tls"]), "");
    }
}
