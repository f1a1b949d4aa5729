//! Docker's multiplexed stream framing: an 8-byte header `[stream, 0, 0, 0, length as u32 big-endian]` before
//! each chunk of output. Stream 1 is stdout, 2 stderr (with a terminal all output is stream 1).

/// The header size.
pub const HEADER_LEN: usize = 8;

/// Which output a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout (and all of a terminal's output).
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    /// The stream byte of the frame header.
    pub fn id(self) -> u8 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }

    /// The json-file log's `stream` value.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The header of a frame carrying `len` bytes of `stream`. Chunks are at most a read buffer long, far below
/// 4 GiB; a longer one is clamped (the caller never passes one).
pub fn header(stream: Stream, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [stream.id(), 0, 0, 0, len[0], len[1], len[2], len[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        assert_eq!(header(Stream::Stdout, 5), [1, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(header(Stream::Stderr, 0x0102_0304), [2, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(Stream::Stderr.name(), "stderr");
    }
}
