//! Signal names and numbers, as `kill` accepts them (`KILL`, `SIGKILL`, `9`, `SIGRTMIN+3`).

use thiserror::Error;

/// A signal name or number that does not exist.
#[derive(Debug, Error)]
#[error("{0:?} is not a signal: use a name such as TERM, SIGKILL or a number from 1 to 64")]
pub struct SignalError(pub String);

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGIOT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The kernel's SIGRTMIN (glibc reserves two below its own SIGRTMIN; the kernel's is 32).
const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// Parses a signal given by name (with or without `SIG`, any case) or by number.
pub fn parse(input: &str) -> Result<i32, SignalError> {
    let bad = || SignalError(input.to_string());
    if let Ok(n) = input.parse::<i32>() {
        return if (1..=RTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        };
    }
    let upper = input.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(&(_, n)) = NAMES.iter().find(|(s, _)| *s == name) {
        return Ok(n);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Result<i32, SignalError> {
        if rest.is_empty() {
            return Ok(base);
        }
        let off: i32 = rest.parse().map_err(|_| bad())?;
        let n = base + sign * off;
        if (RTMIN..=RTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return match rest.strip_prefix('+') {
            Some(r) => rt(RTMIN, r, 1),
            None if rest.is_empty() => Ok(RTMIN),
            None => Err(bad()),
        };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return match rest.strip_prefix('-') {
            Some(r) => rt(RTMAX, r, -1),
            None if rest.is_empty() => Ok(RTMAX),
            None => Err(bad()),
        };
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").ok(), Some(9));
        assert_eq!(parse("sigterm").ok(), Some(15));
        assert_eq!(parse("SIGUSR1").ok(), Some(10));
        assert_eq!(parse("9").ok(), Some(9));
        assert_eq!(parse("SIGRTMIN+3").ok(), Some(37));
        assert_eq!(parse("RTMAX-1").ok(), Some(63));
        for bad in ["", "NOPE", "SIGFOO", "0", "65", "-1", "RTMIN+40", "RTMINX"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.to_string().contains("is not a signal"));
        }
    }
}
