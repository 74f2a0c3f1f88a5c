//! Image references as runtimes record them (`registry[:port]/repo[:tag][@digest]`,
//! the grammar of distribution's `reference` package:
//! <https://github.com/distribution/reference/blob/main/reference.go>), split
//! into `container.image.name` and `container.image.tags`.

/// `(name, tags)`: the reference without tag and digest, and its tag (none
/// when the reference names no tag; a digest is not a tag).
pub fn split_image(reference: &str) -> (String, Vec<String>) {
    let reference = reference.trim();
    // A digest follows the only `@`.
    let without_digest = reference.split('@').next().unwrap_or(reference);
    // A tag is after the last `:` that comes after the last `/`; a `:` before
    // the last `/` is a registry port (`host:5000/x`).
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            let tag = &without_digest[at + 1..];
            let name = without_digest[..at].to_string();
            let tags = if tag.is_empty() {
                Vec::new()
            } else {
                vec![tag.to_string()]
            };
            (name, tags)
        }
        None => (without_digest.to_string(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::split_image;

    #[test]
    fn references_of_every_shape() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("localhost/bb:1.0", "localhost/bb", &["1.0"]),
            ("nginx", "nginx", &[]),
            ("nginx:1.25", "nginx", &["1.25"]),
            (
                "docker.io/library/nginx:1.25",
                "docker.io/library/nginx",
                &["1.25"],
            ),
            ("host:5000/x", "host:5000/x", &[]),
            ("host:5000/team/x:2", "host:5000/team/x", &["2"]),
            ("nginx@sha256:0123abcd", "nginx", &[]),
            (
                "registry.k8s.io/pause:3.9@sha256:0123abcd",
                "registry.k8s.io/pause",
                &["3.9"],
            ),
            ("host:5000/x@sha256:0123abcd", "host:5000/x", &[]),
        ];
        for (reference, name, tags) in cases {
            let (n, t) = split_image(reference);
            assert_eq!(n, *name, "{reference}");
            assert_eq!(
                t,
                tags.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{reference}"
            );
        }
    }
}
