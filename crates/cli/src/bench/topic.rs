//! Topic patterns: `%i` in a topic or filter stands for the index of the client that uses it, so
//! one pattern gives each publisher (or pair) its own topic. `%%` is a literal `%`; any other `%`
//! sequence is kept as written.

/// Expands `pattern` for each of `clients` clients, numbered from 0.
pub fn expand_each(pattern: &str, clients: usize) -> Vec<String> {
    (0..clients).map(|i| expand(pattern, i)).collect()
}

/// Expands `pattern` for the client numbered `index`.
pub fn expand(pattern: &str, index: usize) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('i') => {
                chars.next();
                out.push_str(&index.to_string());
            }
            Some('%') => {
                chars.next();
                out.push('%');
            }
            _ => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_i_becomes_the_client_index() {
        assert_eq!(expand("bench/%i", 0), "bench/0");
        assert_eq!(expand("bench/%i/x%i", 12), "bench/12/x12");
    }

    #[test]
    fn pattern_without_placeholder_is_unchanged() {
        assert_eq!(expand("bench/fanout", 7), "bench/fanout");
    }

    #[test]
    fn double_percent_is_a_literal_percent() {
        assert_eq!(expand("a/%%i/%i", 3), "a/%i/3");
    }

    #[test]
    fn other_percent_sequences_are_kept() {
        assert_eq!(expand("a/%x/%", 1), "a/%x/%");
        assert_eq!(expand("ünï/%i", 2), "ünï/2");
    }
}
