//! The peer's config file: one seed `IP:PORT` a line; blank lines and `#` comments ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why the config file cannot be used. Each names the file (and the line).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: '{text}' is not a seed address IP:PORT ({reason})")]
    BadLine {
        path: PathBuf,
        line: usize,
        text: String,
        reason: String,
    },
    #[error("{path}: no seed addresses (one IP:PORT a line)")]
    Empty { path: PathBuf },
}

/// Reads the seed list from `path`.
pub fn read_seeds(path: &Path) -> Result<Vec<SocketAddr>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_seeds(&text, path)
}

/// Parses config text; `path` only names the file in errors. Duplicates are dropped.
pub fn parse_seeds(text: &str, path: &Path) -> Result<Vec<SocketAddr>, ConfigError> {
    let mut seeds: Vec<SocketAddr> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let addr: SocketAddr =
            line.parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::BadLine {
                    path: path.to_owned(),
                    line: i + 1,
                    text: line.to_owned(),
                    reason: e.to_string(),
                })?;
        if !seeds.contains(&addr) {
            seeds.push(addr);
        }
    }
    if seeds.is_empty() {
        return Err(ConfigError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SocketAddr>, ConfigError> {
        parse_seeds(text, Path::new("config.txt"))
    }

    #[test]
    fn comments_blank_lines_and_duplicates_are_skipped() {
        let seeds =
            parse("# seeds\n\n127.0.0.1:9000  # first\n127.0.0.1:9001\n127.0.0.1:9000\n").unwrap();
        assert_eq!(seeds.len(), 2);
    }

    #[test]
    fn a_bad_line_is_named_with_file_and_line_number() {
        let err = parse("127.0.0.1:9000\nlocalhost:9001\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config.txt:2: 'localhost:9001'"), "{err}");
    }

    #[test]
    fn a_file_without_seeds_is_an_error() {
        assert!(matches!(
            parse("# nothing\n"),
            Err(ConfigError::Empty { .. })
        ));
    }

    #[test]
    fn ipv6_seeds_are_accepted() {
        assert_eq!(parse("[::1]:9000").unwrap().len(), 1);
    }
}
