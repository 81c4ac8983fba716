//! Parsing of the chunked transfer coding's framing lines
//! (RFC 9112 section 7.1).

/// Longest chunk-size line accepted, extensions included.
pub(crate) const MAX_CHUNK_LINE_BYTES: usize = 4096;

/// What the start of a buffer holds where a chunk-size line is expected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChunkLine {
    /// A whole line: the chunk's size and the bytes the line used.
    Size { size: u64, line_bytes: usize },
    /// The line has not fully arrived yet.
    Incomplete,
}

/// Parses `chunk-size [ chunk-ext ] CRLF` at the start of `bytes`.
///
/// Extensions are checked for stray control bytes and then ignored.
pub(crate) fn parse_chunk_line(bytes: &[u8]) -> Result<ChunkLine, String> {
    let Some(newline) = bytes.iter().position(|&b| b == b'\n') else {
        if bytes.len() > MAX_CHUNK_LINE_BYTES {
            return Err("chunk size line is too long".to_owned());
        }
        return Ok(ChunkLine::Incomplete);
    };
    if newline + 1 > MAX_CHUNK_LINE_BYTES {
        return Err("chunk size line is too long".to_owned());
    }
    if newline == 0 || bytes[newline - 1] != b'\r' {
        return Err("chunk size line does not end in CRLF".to_owned());
    }
    let line = &bytes[..newline - 1];

    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err("chunk size is not a hexadecimal number".to_owned());
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let value = u64::from(hex_value(b));
        size = size
            .checked_mul(16)
            .and_then(|size| size.checked_add(value))
            .ok_or_else(|| "chunk size overflows".to_owned())?;
    }

    check_extensions(&line[digits..])?;
    Ok(ChunkLine::Size {
        size,
        line_bytes: newline + 1,
    })
}

/// Whether a trailer section line is well formed: `name: value`, or the
/// empty line that ends the section.
pub(crate) fn check_trailer_line(line: &[u8]) -> Result<(), String> {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return Err("trailer line does not end in CRLF".to_owned());
    };
    if body.is_empty() {
        return Ok(());
    }
    let Some(colon) = body.iter().position(|&b| b == b':') else {
        return Err("trailer line has no colon".to_owned());
    };
    let name_ok = colon > 0
        && body[..colon]
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b':');
    let value_ok = body[colon + 1..].iter().all(|&b| is_field_byte(b));
    if name_ok && value_ok {
        Ok(())
    } else {
        Err("trailer line is malformed".to_owned())
    }
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, checked loosely:
/// it must start with `;` after optional whitespace and hold no control
/// bytes other than tab.
fn check_extensions(rest: &[u8]) -> Result<(), String> {
    let trimmed: &[u8] = {
        let skip = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        &rest[skip..]
    };
    if trimmed.is_empty() {
        return Ok(());
    }
    if trimmed[0] != b';' || !trimmed.iter().all(|&b| is_field_byte(b)) {
        return Err("chunk extension is malformed".to_owned());
    }
    Ok(())
}

fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lines_parse_as_the_table_says() {
        let size = |size, line_bytes| Some(ChunkLine::Size { size, line_bytes });
        // `None` marks input that must be refused.
        let table: &[(&[u8], Option<ChunkLine>)] = &[
            (b"0\r\n", size(0, 3)),
            (b"a\r\n", size(10, 3)),
            (b"FF\r\nxx", size(255, 4)),
            (b"0010;name=value\r\n", size(16, 17)),
            (b"5 ; ext\r\n", size(5, 9)),
            (b"5;a=\"q s\"\r\n", size(5, 11)),
            (b"ffffffffffffffff\r\n", size(u64::MAX, 18)),
            (b"5", Some(ChunkLine::Incomplete)),
            (b"", Some(ChunkLine::Incomplete)),
            (b"5\r", Some(ChunkLine::Incomplete)),
            (b"\r\n", None),
            (b"x\r\n", None),
            (b"-5\r\n", None),
            (b"5\n", None),
            (b"5 x\r\n", None),
            (b"5;\x01\r\n", None),
            (b"10000000000000000\r\n", None),
        ];
        for (input, expected) in table {
            let got = parse_chunk_line(input).ok();
            let shown = String::from_utf8_lossy(input);
            assert_eq!(&got, expected, "input {shown:?}");
        }
    }

    #[test]
    fn overlong_chunk_line_is_refused_before_its_end_arrives() {
        let mut line = b"5;".to_vec();
        line.resize(MAX_CHUNK_LINE_BYTES + 1, b'a');
        assert!(parse_chunk_line(&line).is_err());
    }

    #[test]
    fn trailer_lines_are_checked() {
        assert!(check_trailer_line(b"\r\n").is_ok());
        assert!(check_trailer_line(b"X-Sum: abc\r\n").is_ok());
        assert!(check_trailer_line(b"X-Sum abc\r\n").is_err());
        assert!(check_trailer_line(b": abc\r\n").is_err());
        assert!(check_trailer_line(b"X: a\x00b\r\n").is_err());
        assert!(check_trailer_line(b"X: a\n").is_err());
    }
}
