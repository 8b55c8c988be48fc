//! Size settings from the environment, read and checked the same way by every backend.

/// Parses a size: a whole number with an optional `k`, `m` or `g` suffix (KiB, MiB, GiB), in
/// either case, spaces around it ignored. `None` when it is not one, or when it overflows `usize`.
///
/// ```
/// use cspnet_core::parse_size;
/// assert_eq!(parse_size("4096"), Some(4096));
/// assert_eq!(parse_size(" 64k "), Some(64 << 10));
/// assert_eq!(parse_size("2M"), Some(2 << 20));
/// assert_eq!(parse_size("1g"), Some(1 << 30));
/// assert_eq!(parse_size("abc"), None);
/// assert_eq!(parse_size("-1"), None);
/// assert_eq!(parse_size(""), None);
/// assert_eq!(parse_size("99999999999999999999g"), None);
/// ```
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits.trim().parse::<usize>().ok()?.checked_mul(unit)
}

/// The size setting in the environment variable `var`, or `default` when it is unset. A value
/// that is not a size ([`parse_size`]) or is below `min` is not used: `default` is, after a
/// one-line warning on stderr that names `who` (the crate), the variable, its value and what is
/// used instead.
///
/// ```
/// use cspnet_core::env_size;
/// // Unset: the default, with no warning. (Tests of the warning run a child process with the
/// // variable set: changing the environment of a running test is not thread-safe.)
/// assert_eq!(env_size("doc", "CSPNET_DOC_UNSET_SIZE", 1024, 7), 7);
/// ```
pub fn env_size(who: &str, var: &str, min: usize, default: usize) -> usize {
    let Some(raw) = std::env::var_os(var) else {
        return default;
    };
    let raw = raw.to_string_lossy();
    match parse_size(&raw) {
        Some(n) if n >= min => n,
        _ => {
            eprintln!(
                "{who}: ignoring {var}={raw:?}: expected a number >= {min} (k/m/g suffixes \
                 allowed); using {default}"
            );
            default
        }
    }
}
