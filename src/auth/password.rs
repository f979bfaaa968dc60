//! Salted password hashes, in the formats of Mosquitto password files.
//!
//! Every hash is `$`-separated text; salts and digests are standard base64 (padding written,
//! optional when read):
//!
//! | form | meaning | written? |
//! | --- | --- | --- |
//! | `$7$<iterations>$<salt>$<hash>` | PBKDF2-HMAC-SHA512 of the password, 64-byte hash (`mosquitto_passwd` 2.x) | yes: 101 iterations, 12-byte random salt, like `mosquitto_passwd` |
//! | `$6$<salt>$<hash>` | SHA-512 over the password bytes followed by the salt bytes (`mosquitto_passwd` ≤ 1.6) | no |
//! | `$md5$<salt>$<hex>` | MD5 over the password bytes followed by the salt bytes, as 32 hex digits; the salt is the text between the `$`s, taken as is (not base64) | no |
//!
//! The `$md5$` form carries users over from the original push-server design, which stored
//! MD5 + salt; it is verified so they can log in, and never written: re-set the password (or run
//! `shardmq passwd -b`) to move a user to `$7$`. `$6$` is read for files made by old
//! `mosquitto_passwd`. Mosquitto reads only 12-byte salts; any non-empty salt is accepted here.
//!
//! Why Mosquitto's format: operators can keep their password files and tools, and switch
//! brokers either way. Why only 101 PBKDF2 iterations (far below what is advised for stored
//! login passwords): every CONNECT with a password pays for one derivation, and the broker must
//! accept tens of thousands of CONNECTs a second; `-I` raises it per entry where that matters.
//!
//! Digests are compared in constant time (`subtle`), so the comparison does not leak how many
//! leading bytes matched. The password is the raw bytes of the CONNECT password field.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use md5::{Digest as _, Md5};
use sha2::Sha512;
use subtle::ConstantTimeEq;

/// PBKDF2 iterations written by default: `mosquitto_passwd`'s.
pub const DEFAULT_ITERATIONS: u32 = 101;

/// Salt length written by default, in bytes: `mosquitto_passwd`'s.
pub const SALT_LEN: usize = 12;

/// Length of a SHA-512 digest and of the PBKDF2 output, in bytes.
const SHA512_LEN: usize = 64;

/// Length of an MD5 digest, in bytes.
const MD5_LEN: usize = 16;

/// Standard base64; pads when writing, accepts padded or unpadded input.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a stored hash could not be parsed.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum HashParseError {
    /// The text does not start with `$`: a plain-text password, or garbage.
    #[error(
        "not a password hash (plain-text passwords are not accepted: convert the file with \
         `shardmq passwd -U`)"
    )]
    NotAHash,
    /// The scheme between the first two `$` is not `7`, `6` or `md5`.
    #[error("unknown hash scheme `${0}$` (expected `$7$`, `$6$` or `$md5$`)")]
    UnknownScheme(String),
    /// A `$`-separated field is missing.
    #[error("missing {0}")]
    MissingField(&'static str),
    /// More `$`-separated fields than the scheme has.
    #[error("unexpected `$` after the hash")]
    ExtraField,
    /// The `$7$` iteration count is not a number from 1 to 2^32-1.
    #[error("invalid iteration count `{0}`")]
    Iterations(String),
    /// A salt or hash field is not base64.
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    /// The salt is empty.
    #[error("empty salt")]
    EmptySalt,
    /// The hash has the wrong length for its scheme.
    #[error("hash is {found} bytes, expected {expected}")]
    HashLength {
        /// Decoded length.
        found: usize,
        /// Length the scheme produces.
        expected: usize,
    },
    /// The `$md5$` digest is not 32 hex digits.
    #[error("md5 hash is not 32 hex digits")]
    Hex,
}

/// Why a new hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The OS random source failed, so there is no salt.
    #[error("cannot read random bytes for the salt: {0}")]
    Random(getrandom::Error),
}

/// A parsed password hash; `Display` writes it back in its file form.
#[derive(Clone, Eq, PartialEq)]
pub enum PasswordHash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        /// PBKDF2 iteration count (at least 1).
        iterations: u32,
        /// Salt bytes.
        salt: Box<[u8]>,
        /// Derived key.
        hash: [u8; SHA512_LEN],
    },
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512 {
        /// Salt bytes.
        salt: Box<[u8]>,
        /// Digest.
        hash: [u8; SHA512_LEN],
    },
    /// `$md5$`: MD5(password ‖ salt), legacy, verified only.
    SaltedMd5 {
        /// Salt text, used as its bytes.
        salt: Box<str>,
        /// Digest.
        hash: [u8; MD5_LEN],
    },
}

impl PasswordHash {
    /// A fixed `$7$` hash with the default cost. An unknown user's password is checked against
    /// it, so the answer takes as long as for a known user with a wrong password and does not
    /// tell which user names exist.
    pub fn dummy() -> &'static PasswordHash {
        static DUMMY: OnceLock<PasswordHash> = OnceLock::new();
        DUMMY.get_or_init(|| PasswordHash::pbkdf2_with_salt(b"", &[0; 12], DEFAULT_ITERATIONS))
    }

    /// Parses a stored hash in any of the forms in the module doc.
    pub fn parse(encoded: &str) -> Result<PasswordHash, HashParseError> {
        let rest = encoded.strip_prefix('$').ok_or(HashParseError::NotAHash)?;
        let mut fields = rest.split('$');
        let scheme = fields.next().unwrap_or_default();
        let mut next = |name: &'static str| fields.next().ok_or(HashParseError::MissingField(name));
        let parsed = match scheme {
            "7" => {
                let iterations_text = next("iteration count")?;
                let iterations = iterations_text
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| HashParseError::Iterations(iterations_text.to_string()))?;
                let salt = decode_salt(next("salt")?)?;
                let hash = decode_sha512(next("hash")?)?;
                PasswordHash::Pbkdf2Sha512 {
                    iterations,
                    salt,
                    hash,
                }
            }
            "6" => {
                let salt = decode_salt(next("salt")?)?;
                let hash = decode_sha512(next("hash")?)?;
                PasswordHash::Sha512 { salt, hash }
            }
            "md5" => {
                let salt = next("salt")?;
                if salt.is_empty() {
                    return Err(HashParseError::EmptySalt);
                }
                let hash = decode_hex_md5(next("hash")?)?;
                PasswordHash::SaltedMd5 {
                    salt: salt.into(),
                    hash,
                }
            }
            other => return Err(HashParseError::UnknownScheme(other.to_string())),
        };
        if fields.next().is_some() {
            return Err(HashParseError::ExtraField);
        }
        Ok(parsed)
    }

    /// A new `$7$` hash of `password` with `iterations` and a fresh random salt.
    pub fn new_pbkdf2(password: &[u8], iterations: u32) -> Result<PasswordHash, HashError> {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(HashError::Random)?;
        Ok(PasswordHash::pbkdf2_with_salt(password, &salt, iterations))
    }

    /// A `$7$` hash of `password` with the given salt (tests and known-answer checks; use
    /// [`PasswordHash::new_pbkdf2`] for real entries).
    pub fn pbkdf2_with_salt(password: &[u8], salt: &[u8], iterations: u32) -> PasswordHash {
        PasswordHash::Pbkdf2Sha512 {
            iterations,
            salt: salt.into(),
            hash: pbkdf2(password, salt, iterations),
        }
    }

    /// True if `password` is the one this hash was made from. Takes time independent of where
    /// the digests differ.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => pbkdf2(password, salt, *iterations).ct_eq(hash).into(),
            PasswordHash::Sha512 { salt, hash } => {
                let digest = Sha512::new()
                    .chain_update(password)
                    .chain_update(salt)
                    .finalize();
                digest.as_slice().ct_eq(hash).into()
            }
            PasswordHash::SaltedMd5 { salt, hash } => {
                let digest = Md5::new()
                    .chain_update(password)
                    .chain_update(salt.as_bytes())
                    .finalize();
                digest.as_slice().ct_eq(hash).into()
            }
        }
    }

    /// True for the forms kept only for migration (`$6$`, `$md5$`): such a user should be
    /// given a new `$7$` hash.
    pub fn is_legacy(&self) -> bool {
        !matches!(self, PasswordHash::Pbkdf2Sha512 { .. })
    }
}

impl FromStr for PasswordHash {
    type Err = HashParseError;

    fn from_str(encoded: &str) -> Result<PasswordHash, HashParseError> {
        PasswordHash::parse(encoded)
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$7${iterations}${}${}",
                BASE64.encode(salt),
                BASE64.encode(hash)
            ),
            PasswordHash::Sha512 { salt, hash } => {
                write!(f, "$6${}${}", BASE64.encode(salt), BASE64.encode(hash))
            }
            PasswordHash::SaltedMd5 { salt, hash } => {
                write!(f, "$md5${salt}$")?;
                hash.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
            }
        }
    }
}

/// Shows the scheme and parameters only: digests stay out of logs.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Pbkdf2Sha512 { iterations, .. } => f
                .debug_struct("Pbkdf2Sha512")
                .field("iterations", iterations)
                .finish_non_exhaustive(),
            PasswordHash::Sha512 { .. } => f.debug_struct("Sha512").finish_non_exhaustive(),
            PasswordHash::SaltedMd5 { .. } => f.debug_struct("SaltedMd5").finish_non_exhaustive(),
        }
    }
}

/// A new `$7$` hash of `password`, in file form, with the default iterations and a random salt.
#[cfg(test)]
pub fn hash_password(password: &str) -> Result<String, HashError> {
    Ok(PasswordHash::new_pbkdf2(password.as_bytes(), DEFAULT_ITERATIONS)?.to_string())
}

fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> [u8; SHA512_LEN] {
    let mut out = [0u8; SHA512_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

fn decode_salt(text: &str) -> Result<Box<[u8]>, HashParseError> {
    let salt = BASE64
        .decode(text)
        .map_err(|_| HashParseError::Base64("salt"))?;
    if salt.is_empty() {
        return Err(HashParseError::EmptySalt);
    }
    Ok(salt.into_boxed_slice())
}

fn decode_sha512(text: &str) -> Result<[u8; SHA512_LEN], HashParseError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| HashParseError::Base64("hash"))?;
    <[u8; SHA512_LEN]>::try_from(bytes.as_slice()).map_err(|_| HashParseError::HashLength {
        found: bytes.len(),
        expected: SHA512_LEN,
    })
}

fn decode_hex_md5(text: &str) -> Result<[u8; MD5_LEN], HashParseError> {
    let digits = text.as_bytes();
    if digits.len() != 2 * MD5_LEN {
        return Err(HashParseError::Hex);
    }
    let mut out = [0u8; MD5_LEN];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = hex_value(pair[0]).ok_or(HashParseError::Hex)?;
        let low = hex_value(pair[1]).ok_or(HashParseError::Hex)?;
        *byte = high << 4 | low;
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries written by Debian's `mosquitto_passwd` 2.0.11 (`-b`, `-H sha512`, `-I 1000`).
    const MOSQUITTO_ENTRIES: &[(&str, &str)] = &[
        (
            "secret",
            "$7$101$gpQgGDHjUhTtOFv1$vKhxZ3O143abpGPbffl7fWCfZOey8QKE9uIY47tuWdWni+YgiaOeJ8A6TMzl\
             u+yH4qdBU77XYqOVDd4ZbJpMSw==",
        ),
        (
            "p@ss word:x",
            "$7$101$d/N714e1kxp+9igi$9TUH/4gRRfEIMllsx8ZT0PJBbQe3ItM5bwZgd5c2itqXg6DWRSvwPbU0HQsR\
             0p2I/SX6hPCqwFeUzChB9SR++A==",
        ),
        (
            "пароль",
            "$7$101$84Ng+SQpLytKp7du$7KOUIkXlSOeVB/noh/nqF9ttikzNlAZbKddVEIAz8Z63pqCywc4qojrYCAd4\
             4uzYQQCodbau9QV0r8AT8yEcrQ==",
        ),
        (
            "dave-pw",
            "$7$1000$67CafJ4zdKRd7is3$gdwIpPdKzOof+5MYQlgEZzUtafDhlXElLzssQf6USXhmGjrSNrSY6ti/nvo\
             Xh1/9i1s4ohXQHrU4xrZokfKiyQ==",
        ),
        (
            "",
            "$7$101$Dmn8oak+FpSBDWPh$P8+45ganPTV8EPpMrOIZK7ntKiWYDXjVyxV0yL7ZjTXgGFiC9fIiVygTEzoj\
             GTQcDU1HeSrK3ci9+Y8dTuh8ZQ==",
        ),
        (
            "hunter2",
            "$6$EzFCTj8NM5NHczhq$sgGBnvatk0pmmByizO3NhONRbwl0XnnZOf8ZQ5bPC7XJ9bLhhVK1/0YNPLoBL22s\
             e9vPY5aiIrXgO+iBrGju2w==",
        ),
    ];

    #[test]
    fn verifies_mosquitto_passwd_entries() {
        for (password, encoded) in MOSQUITTO_ENTRIES {
            let hash = PasswordHash::parse(encoded).expect(encoded);
            assert!(hash.verify(password.as_bytes()), "{encoded}");
            assert!(!hash.verify(b"wrong"), "{encoded}");
            assert!(!hash.verify(format!("{password}x").as_bytes()), "{encoded}");
            // Round trip: we write back exactly what mosquitto_passwd wrote.
            assert_eq!(hash.to_string(), *encoded);
        }
    }

    #[test]
    fn sha512_is_password_then_salt() {
        // The `$6$` entry above verifies only with this byte order; check the other fails.
        let hash = PasswordHash::parse(MOSQUITTO_ENTRIES[5].1).expect("valid");
        let PasswordHash::Sha512 { salt, .. } = &hash else {
            panic!("not $6$");
        };
        let mut salt_first = salt.to_vec();
        salt_first.extend_from_slice(b"hunter2");
        assert!(!hash.verify(&salt_first));
        assert!(hash.is_legacy());
    }

    #[test]
    fn new_hashes_are_pbkdf2_and_salted() {
        let a = hash_password("correct horse").expect("random");
        let b = hash_password("correct horse").expect("random");
        assert_ne!(a, b, "fresh salt each time");
        assert!(a.starts_with("$7$101$"));
        for encoded in [&a, &b] {
            let hash = PasswordHash::parse(encoded).expect("own output parses");
            assert!(!hash.is_legacy());
            let PasswordHash::Pbkdf2Sha512 { salt, .. } = &hash else {
                panic!("not $7$");
            };
            assert_eq!(salt.len(), SALT_LEN);
            assert!(hash.verify(b"correct horse"));
            assert!(!hash.verify(b"correct horse "));
        }
    }

    #[test]
    fn known_answer_pbkdf2() {
        // Same salt and iterations as the first mosquitto entry gives the same text.
        let salt = BASE64.decode("gpQgGDHjUhTtOFv1").expect("base64");
        let hash = PasswordHash::pbkdf2_with_salt(b"secret", &salt, 101);
        assert_eq!(hash.to_string(), MOSQUITTO_ENTRIES[0].1);
    }

    #[test]
    fn legacy_salted_md5() {
        // md5("secret" ‖ "NaCl") = b7ac67b360c24baef6ed28a919ddb6d5 (python hashlib).
        let encoded = "$md5$NaCl$b7ac67b360c24baef6ed28a919ddb6d5";
        let hash = PasswordHash::parse(encoded).expect("valid");
        assert!(hash.verify(b"secret"));
        assert!(!hash.verify(b"NaClsecret"));
        assert!(hash.is_legacy());
        assert_eq!(hash.to_string(), encoded);
        let upper = PasswordHash::parse("$md5$NaCl$B7AC67B360C24BAEF6ED28A919DDB6D5").expect("ok");
        assert!(upper.verify(b"secret"));
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let padded = MOSQUITTO_ENTRIES[0].1;
        let unpadded = padded.trim_end_matches('=');
        let hash = PasswordHash::parse(unpadded).expect("valid");
        assert!(hash.verify(b"secret"));
    }

    #[test]
    fn parse_errors_are_typed() {
        use HashParseError as E;
        let cases: &[(&str, HashParseError)] = &[
            ("secret", E::NotAHash),
            ("", E::NotAHash),
            ("$5$abc$def", E::UnknownScheme("5".into())),
            ("$7$", E::Iterations(String::new())),
            ("$7$0$AAAA$AAAA", E::Iterations("0".into())),
            ("$7$x$AAAA$AAAA", E::Iterations("x".into())),
            ("$7$101", E::MissingField("salt")),
            ("$7$101$AAAA", E::MissingField("hash")),
            ("$7$101$!!!!$AAAA", E::Base64("salt")),
            ("$7$101$$AAAA", E::EmptySalt),
            (
                "$7$101$AAAA$AAAA",
                E::HashLength {
                    found: 3,
                    expected: 64,
                },
            ),
            ("$6$AAAA", E::MissingField("hash")),
            ("$md5$$b7ac67b360c24baef6ed28a919ddb6d5", E::EmptySalt),
            ("$md5$NaCl$b7ac", E::Hex),
            ("$md5$NaCl$b7ac67b360c24baef6ed28a919ddb6dg", E::Hex),
        ];
        for (text, want) in cases {
            assert_eq!(PasswordHash::parse(text).as_ref(), Err(want), "{text:?}");
        }
        let extra = format!("{}$x", MOSQUITTO_ENTRIES[0].1);
        assert_eq!(PasswordHash::parse(&extra), Err(E::ExtraField));
    }

    #[test]
    fn debug_hides_digests() {
        let hash = PasswordHash::parse(MOSQUITTO_ENTRIES[0].1).expect("valid");
        let shown = format!("{hash:?}");
        assert!(shown.contains("101") && !shown.contains("vKhx"), "{shown}");
    }
}
