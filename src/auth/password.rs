//! Salted password hashes, in the formats of Mosquitto password files.
//!
//! Every hash is `$`-separated text; salts and digests are standard base64 (padding written,
//! optional when read; Argon2 fields are written without padding, as PHC strings are):
//!
//! | form | meaning | written? |
//! | --- | --- | --- |
//! | `$7$<iterations>$<salt>$<hash>` | PBKDF2-HMAC-SHA512 of the password, 64-byte hash (`mosquitto_passwd` 2.x) | yes: 101 iterations, 12-byte random salt, like `mosquitto_passwd` |
//! | `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash>` | Argon2id (RFC 9106) in the PHC string format, as libargon2 encodes it (`mosquitto_passwd` 2.1 writes `m=47104,t=1,p=1` with 64-byte salt and hash) | no |
//! | `$6$<salt>$<hash>` | SHA-512 over the password bytes followed by the salt bytes (`mosquitto_passwd` ≤ 1.6) | no |
//! | `$md5$<salt>$<hex>` | MD5 over the password bytes followed by the salt bytes, as 32 hex digits; the salt is the text between the `$`s, taken as is (not base64) | no |
//!
//! The `$md5$` form carries users over from the original push-server design, which stored
//! MD5 + salt; it is verified so they can log in, and never written: re-set the password (or run
//! `shardmq passwd -b`) to move a user to `$7$`. `$6$` is read for files made by old
//! `mosquitto_passwd`; it is one SHA-512, not glibc's sha512-crypt, so it has no rounds to
//! bound, and a sha512-crypt line (`$6$rounds=...`) is refused as such. Mosquitto reads only
//! 12- or 64-byte salts; any non-empty salt is accepted here.
//!
//! Why Mosquitto's format: operators can keep their password files and tools, and switch
//! brokers either way. Why only 101 PBKDF2 iterations (far below what is advised for stored
//! login passwords): every CONNECT with a password pays for one derivation, and the broker must
//! accept tens of thousands of CONNECTs a second; `-I` raises it per entry where that matters.
//!
//! # Bounded cost
//!
//! The cost of a check is written in the hash itself, and one thread (the control core) checks
//! every CONNECT: a `$7$4000000000$...` entry would hold it for hours, and an Argon2 entry with
//! `m=4294967295` would ask for 4 TiB. [`PasswordHash::verify`] therefore refuses, without
//! computing anything, a hash whose parameters exceed [`MAX_PBKDF2_ITERATIONS`] or the Argon2
//! limits ([`MAX_ARGON2_MEMORY_KIB`], [`MAX_ARGON2_PASSES`], [`MAX_ARGON2_LANES`],
//! [`MAX_ARGON2_WORK`]). Such an entry still parses, so a password file holding one loads and
//! `shardmq passwd` can rewrite it; its user cannot log in, and the broker says so, naming the
//! user. Each limit sits well above what `mosquitto_passwd` writes; at the limits one check
//! holds the control core for seconds, not hours (measured on one x86-64 core: 10,000,000
//! PBKDF2 iterations take about 4.6 s, Argon2 at 256 MiB × 4 passes about 1.5 s).
//!
//! # Timing
//!
//! Digests are compared in constant time (`subtle`), so the comparison does not leak how many
//! leading bytes matched. An unknown user is checked against [`PasswordHash::dummy`] of a real
//! user's hash (same scheme, same parameters, same lengths), so the answer takes as long as for
//! a wrong password. The password is the raw bytes of the CONNECT password field.

use std::fmt;
use std::str::FromStr;

use argon2::{Algorithm, Argon2, Params, Version};
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

/// Most PBKDF2 iterations a `$7$` hash may ask for: about five seconds of one core. Mosquitto
/// writes 101 (2.0) or 1,000 (2.1); OWASP advises 210,000 for PBKDF2-HMAC-SHA512.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// Most memory an Argon2 hash may ask for, in KiB (256 MiB; Mosquitto 2.1 writes 47,104).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;

/// Most passes (`t`) an Argon2 hash may ask for.
pub const MAX_ARGON2_PASSES: u32 = 64;

/// Most lanes (`p`) an Argon2 hash may ask for. Lanes are computed one after another here, so
/// they add no work; the limit only keeps the parameters sane.
pub const MAX_ARGON2_LANES: u32 = 64;

/// Most Argon2 work, memory × passes in KiB: 1 GiB of blocks filled, about 1.5 s of one core
/// (four passes over the largest memory, or 22 over Mosquitto's).
pub const MAX_ARGON2_WORK: u64 = 1024 * 1024;

/// Longest Argon2 salt and hash accepted, in bytes (Mosquitto writes 64 of each).
const MAX_ARGON2_FIELD: usize = 1024;

/// Shortest Argon2 salt (RFC 9106, section 3.1).
const MIN_ARGON2_SALT: usize = 8;

/// Shortest Argon2 hash (RFC 9106, section 3.1).
const MIN_ARGON2_HASH: usize = 4;

/// Standard base64; pads when writing, accepts padded or unpadded input.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard base64 without padding, as PHC strings (Argon2) write it.
const BASE64_UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
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
    /// The scheme between the first two `$` is not `7`, `argon2id`, `6` or `md5`.
    #[error("unknown hash scheme `${0}$` (expected `$7$`, `$argon2id$`, `$6$` or `$md5$`)")]
    UnknownScheme(String),
    /// A `$6$rounds=` line: glibc's sha512-crypt, which Mosquitto's `$6$` is not.
    #[error("`$6$rounds=` is sha512-crypt (crypt(3)), not a Mosquitto `$6$` hash")]
    Sha512Crypt,
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
    /// The Argon2 version field is not `v=19` or `v=16`.
    #[error("invalid Argon2 version `{0}` (expected `v=19` or `v=16`)")]
    Argon2Version(String),
    /// The Argon2 parameters are not `m=<KiB>,t=<passes>,p=<lanes>` with valid numbers.
    #[error("invalid Argon2 parameters `{0}` (expected `m=<KiB>,t=<passes>,p=<lanes>`)")]
    Argon2Params(String),
    /// An Argon2 salt or hash is shorter or longer than Argon2 allows (or than is sane).
    #[error("Argon2 {field} is {found} bytes, expected {min} to {max}")]
    Argon2Length {
        /// `salt` or `hash`.
        field: &'static str,
        /// Decoded length.
        found: usize,
        /// Shortest allowed.
        min: usize,
        /// Longest allowed.
        max: usize,
    },
}

/// Why a hash is refused without being computed: its parameters ask for more work than one
/// login may cost (see "Bounded cost" in the module doc).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
pub enum CostError {
    /// Too many PBKDF2 iterations.
    #[error("{0} PBKDF2 iterations exceed the limit of {MAX_PBKDF2_ITERATIONS}")]
    Iterations(u32),
    /// Too much Argon2 memory.
    #[error("Argon2 memory of {0} KiB exceeds the limit of {MAX_ARGON2_MEMORY_KIB} KiB")]
    Memory(u32),
    /// Too many Argon2 passes.
    #[error("{0} Argon2 passes exceed the limit of {MAX_ARGON2_PASSES}")]
    Passes(u32),
    /// Too many Argon2 lanes.
    #[error("{0} Argon2 lanes exceed the limit of {MAX_ARGON2_LANES}")]
    Lanes(u32),
    /// Memory × passes too large.
    #[error("Argon2 work of {0} KiB (memory × passes) exceeds the limit of {MAX_ARGON2_WORK} KiB")]
    Work(u64),
}

/// The cost parameters of an Argon2 hash, as in its PHC string.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct Argon2Params {
    /// Algorithm version: `0x13` (`v=19`, current) or `0x10` (`v=16`).
    pub version: u32,
    /// Memory in KiB (`m`).
    pub memory_kib: u32,
    /// Passes over the memory (`t`).
    pub passes: u32,
    /// Lanes (`p`).
    pub lanes: u32,
}

/// Why a new hash could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The OS random source failed, so there is no salt.
    #[error("cannot read random bytes for the salt: {0}")]
    Random(getrandom::Error),
}

/// A parsed password hash; `Display` writes it back in its file form.
#[derive(Clone, Eq, Hash, PartialEq)]
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
    /// `$argon2id$`: Argon2id.
    Argon2id {
        /// Version, memory, passes, lanes.
        params: Argon2Params,
        /// Salt bytes.
        salt: Box<[u8]>,
        /// Derived hash (its length is the output length).
        hash: Box<[u8]>,
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
            "argon2id" => {
                let version = next("Argon2 version")?;
                let version = match version {
                    "v=19" => 0x13,
                    "v=16" => 0x10,
                    other => return Err(HashParseError::Argon2Version(other.to_string())),
                };
                let params = parse_argon2_params(next("Argon2 parameters")?, version)?;
                let salt = decode_argon2_field("salt", next("salt")?, MIN_ARGON2_SALT)?;
                let hash = decode_argon2_field("hash", next("hash")?, MIN_ARGON2_HASH)?;
                PasswordHash::Argon2id { params, salt, hash }
            }
            "6" => {
                let salt_text = next("salt")?;
                if salt_text.starts_with("rounds=") {
                    return Err(HashParseError::Sha512Crypt);
                }
                let salt = decode_salt(salt_text)?;
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

    /// The default dummy: a `$7$` hash with the iterations and salt length `shardmq passwd`
    /// writes, for a backend that has no user hash to imitate yet.
    pub fn default_dummy() -> PasswordHash {
        PasswordHash::Pbkdf2Sha512 {
            iterations: DEFAULT_ITERATIONS,
            salt: vec![0; SALT_LEN].into(),
            hash: [0; SHA512_LEN],
        }
    }

    /// A hash of the same scheme, parameters and lengths as this one, with zeroed salt and
    /// digest: checking a password against it costs what checking against `self` costs, and
    /// finding a password that matches it is as hard as inverting the hash. Unknown users are
    /// checked against one, so that the time of the answer does not tell which users exist.
    pub fn dummy(&self) -> PasswordHash {
        match self {
            PasswordHash::Pbkdf2Sha512 {
                iterations, salt, ..
            } => PasswordHash::Pbkdf2Sha512 {
                iterations: *iterations,
                salt: vec![0; salt.len()].into(),
                hash: [0; SHA512_LEN],
            },
            PasswordHash::Argon2id { params, salt, hash } => PasswordHash::Argon2id {
                params: *params,
                salt: vec![0; salt.len()].into(),
                hash: vec![0; hash.len()].into(),
            },
            PasswordHash::Sha512 { salt, .. } => PasswordHash::Sha512 {
                salt: vec![0; salt.len()].into(),
                hash: [0; SHA512_LEN],
            },
            PasswordHash::SaltedMd5 { salt, .. } => PasswordHash::SaltedMd5 {
                salt: "0".repeat(salt.len()).into(),
                hash: [0; MD5_LEN],
            },
        }
    }

    /// Whether checking a password against this hash stays within the limits in the module
    /// doc ("Bounded cost").
    pub fn check_cost(&self) -> Result<(), CostError> {
        match self {
            PasswordHash::Pbkdf2Sha512 { iterations, .. } => {
                if *iterations > MAX_PBKDF2_ITERATIONS {
                    return Err(CostError::Iterations(*iterations));
                }
            }
            PasswordHash::Argon2id { params, .. } => {
                if params.memory_kib > MAX_ARGON2_MEMORY_KIB {
                    return Err(CostError::Memory(params.memory_kib));
                }
                if params.passes > MAX_ARGON2_PASSES {
                    return Err(CostError::Passes(params.passes));
                }
                if params.lanes > MAX_ARGON2_LANES {
                    return Err(CostError::Lanes(params.lanes));
                }
                let work = u64::from(params.memory_kib) * u64::from(params.passes);
                if work > MAX_ARGON2_WORK {
                    return Err(CostError::Work(work));
                }
            }
            PasswordHash::Sha512 { .. } | PasswordHash::SaltedMd5 { .. } => {}
        }
        Ok(())
    }

    /// `Ok(true)` if `password` is the one this hash was made from. Takes time independent of
    /// where the digests differ. A hash whose cost exceeds the limits is refused before any
    /// work is done.
    pub fn verify(&self, password: &[u8]) -> Result<bool, CostError> {
        self.check_cost()?;
        Ok(match self {
            PasswordHash::Pbkdf2Sha512 {
                iterations,
                salt,
                hash,
            } => pbkdf2(password, salt, *iterations).ct_eq(hash).into(),
            PasswordHash::Argon2id { params, salt, hash } => {
                argon2id(password, salt, *params, hash.len())
                    .is_some_and(|derived| bool::from(derived.as_slice().ct_eq(hash)))
            }
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
        })
    }

    /// True for the forms kept only for migration (`$6$`, `$md5$`): such a user should be
    /// given a new `$7$` hash.
    pub fn is_legacy(&self) -> bool {
        !matches!(
            self,
            PasswordHash::Pbkdf2Sha512 { .. } | PasswordHash::Argon2id { .. }
        )
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
            PasswordHash::Argon2id { params, salt, hash } => write!(
                f,
                "$argon2id$v={}$m={},t={},p={}${}${}",
                params.version,
                params.memory_kib,
                params.passes,
                params.lanes,
                BASE64_UNPADDED.encode(salt),
                BASE64_UNPADDED.encode(hash)
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
            PasswordHash::Argon2id { params, .. } => f
                .debug_struct("Argon2id")
                .field("params", params)
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

/// Argon2id of `password`, `len` bytes long; `None` if the parameters are refused (they were
/// checked when parsed and against the limits, so only a password longer than 2^32 - 1 bytes
/// could be, and MQTT's are at most 65,535).
fn argon2id(password: &[u8], salt: &[u8], params: Argon2Params, len: usize) -> Option<Vec<u8>> {
    let version = if params.version == 0x10 {
        Version::V0x10
    } else {
        Version::V0x13
    };
    let params = Params::new(params.memory_kib, params.passes, params.lanes, Some(len)).ok()?;
    let mut out = vec![0; len];
    Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into(password, salt, &mut out)
        .ok()?;
    Some(out)
}

/// Parses `m=<KiB>,t=<passes>,p=<lanes>` (in that order, as libargon2 requires) and checks the
/// values against Argon2's own bounds (RFC 9106, section 3.1); the cost limits are checked
/// later, by [`PasswordHash::check_cost`].
fn parse_argon2_params(text: &str, version: u32) -> Result<Argon2Params, HashParseError> {
    let invalid = || HashParseError::Argon2Params(text.to_string());
    let mut values = text.split(',');
    let mut value = |name: &str| {
        values
            .next()
            .and_then(|field| field.strip_prefix(name))
            .and_then(|digits| digits.parse::<u32>().ok())
            .ok_or_else(invalid)
    };
    let memory_kib = value("m=")?;
    let passes = value("t=")?;
    let lanes = value("p=")?;
    if values.next().is_some() {
        return Err(invalid());
    }
    // At least one pass and lane, fewer than 2^24 lanes, and 8 KiB of memory per lane.
    let sane = passes >= 1
        && (1..1 << 24).contains(&lanes)
        && u64::from(memory_kib) >= 8 * u64::from(lanes);
    if !sane {
        return Err(invalid());
    }
    Ok(Argon2Params {
        version,
        memory_kib,
        passes,
        lanes,
    })
}

fn decode_argon2_field(
    field: &'static str,
    text: &str,
    min: usize,
) -> Result<Box<[u8]>, HashParseError> {
    let bytes = BASE64_UNPADDED
        .decode(text)
        .map_err(|_| HashParseError::Base64(field))?;
    if !(min..=MAX_ARGON2_FIELD).contains(&bytes.len()) {
        return Err(HashParseError::Argon2Length {
            field,
            found: bytes.len(),
            min,
            max: MAX_ARGON2_FIELD,
        });
    }
    Ok(bytes.into_boxed_slice())
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

    /// The verdict of a hash within the cost limits.
    fn checks(hash: &PasswordHash, password: &[u8]) -> bool {
        hash.verify(password).expect("within the cost limits")
    }

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
            assert!(checks(&hash, password.as_bytes()), "{encoded}");
            assert!(!checks(&hash, b"wrong"), "{encoded}");
            assert!(
                !checks(&hash, format!("{password}x").as_bytes()),
                "{encoded}"
            );
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
        assert!(!checks(&hash, &salt_first));
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
            assert!(checks(&hash, b"correct horse"));
            assert!(!checks(&hash, b"correct horse "));
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
        assert!(checks(&hash, b"secret"));
        assert!(!checks(&hash, b"NaClsecret"));
        assert!(hash.is_legacy());
        assert_eq!(hash.to_string(), encoded);
        let upper = PasswordHash::parse("$md5$NaCl$B7AC67B360C24BAEF6ED28A919DDB6D5").expect("ok");
        assert!(checks(&upper, b"secret"));
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let padded = MOSQUITTO_ENTRIES[0].1;
        let unpadded = padded.trim_end_matches('=');
        let hash = PasswordHash::parse(unpadded).expect("valid");
        assert!(checks(&hash, b"secret"));
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

    /// Argon2id PHC strings made by argon2-cffi 25.1.0 (libargon2), `hash_secret(..., type=ID)`:
    /// the first with Mosquitto 2.1's parameters (`t=1, m=47104, p=1`, 64-byte salt and hash),
    /// the second with argon2-cffi's defaults (`t=3, m=65536, p=4`, 16-byte salt, 32-byte hash).
    const ARGON2_ENTRIES: &[(&str, &str)] = &[
        (
            "argon-pw",
            "$argon2id$v=19$m=47104,t=1,p=1$AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJyg\
             pKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw$sPEIinca8RYJDxlc8jKe8jHjzxdTavdKcP76J1S7ooh3DLbwJDJDDG1\
             g0m72j5JdJsuYN3v4eY69IUNv3kZWEA",
        ),
        (
            "pässword",
            "$argon2id$v=19$m=65536,t=3,p=4$c2hhcmRtcS1zYWx0LTE2Yg$wxVvDPlVr8lEvSk0rgheL/mv2R9rPdbzC\
             X8PoXNB9VE",
        ),
    ];

    #[test]
    fn verifies_argon2id_phc_strings() {
        for (password, encoded) in ARGON2_ENTRIES {
            let hash = PasswordHash::parse(encoded).expect(encoded);
            assert!(checks(&hash, password.as_bytes()), "{encoded}");
            assert!(!checks(&hash, b"wrong"), "{encoded}");
            assert!(!hash.is_legacy());
            // Written back exactly as libargon2 wrote it (unpadded base64).
            assert_eq!(hash.to_string(), *encoded);
        }
        let PasswordHash::Argon2id { params, salt, hash } =
            PasswordHash::parse(ARGON2_ENTRIES[0].1).expect("valid")
        else {
            panic!("not $argon2id$");
        };
        assert_eq!(
            (
                params.version,
                params.memory_kib,
                params.passes,
                params.lanes
            ),
            (0x13, 47104, 1, 1)
        );
        assert_eq!((salt.len(), hash.len()), (64, 64));
    }

    #[test]
    fn argon2id_parse_errors_are_typed() {
        use HashParseError as E;
        let tail = "$c2hhcmRtcS1zYWx0LTE2Yg$wxVvDPlVr8lEvSk0rgheL/mv2R9rPdbzCX8PoXNB9VE";
        let cases: Vec<(String, HashParseError)> = vec![
            (
                format!("$argon2id$v=20$m=65536,t=3,p=4{tail}"),
                E::Argon2Version("v=20".into()),
            ),
            (
                format!("$argon2id$m=65536,t=3,p=4{tail}"),
                E::Argon2Version("m=65536,t=3,p=4".into()),
            ),
            (
                format!("$argon2id$v=19$t=3,m=65536,p=4{tail}"),
                E::Argon2Params("t=3,m=65536,p=4".into()),
            ),
            (
                format!("$argon2id$v=19$m=65536,t=0,p=4{tail}"),
                E::Argon2Params("m=65536,t=0,p=4".into()),
            ),
            (
                format!("$argon2id$v=19$m=31,t=1,p=4{tail}"),
                E::Argon2Params("m=31,t=1,p=4".into()),
            ),
            (
                format!("$argon2id$v=19$m=65536,t=3,p=4,x=1{tail}"),
                E::Argon2Params("m=65536,t=3,p=4,x=1".into()),
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$wxVvDPlVr8lEvSk0rgheL/mv2R9rPdbzCX8PoXNB9VE"
                    .into(),
                E::Argon2Length {
                    field: "salt",
                    found: 4,
                    min: 8,
                    max: 1024,
                },
            ),
            (
                "$argon2id$v=19$m=64,t=1,p=1$c2hhcmRtcS1zYWx0LTE2Yg".into(),
                E::MissingField("hash"),
            ),
            (
                "$argon2i$v=19$m=64,t=1,p=1$c2hhcmRtcS1zYWx0LTE2Yg$AAAA".into(),
                E::UnknownScheme("argon2i".into()),
            ),
        ];
        for (text, want) in &cases {
            assert_eq!(PasswordHash::parse(text).as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn sha512_crypt_is_not_mosquitto_sha512() {
        assert_eq!(
            PasswordHash::parse("$6$rounds=5000$saltsalt$AAAA"),
            Err(HashParseError::Sha512Crypt)
        );
    }

    #[test]
    fn costly_hashes_parse_but_are_refused_unverified() {
        // The digest of the first Mosquitto entry with an absurd iteration count: parsed (the
        // file stays loadable and rewritable) but never computed.
        let (_, rest) = MOSQUITTO_ENTRIES[0].1.split_at("$7$101".len());
        let hash = PasswordHash::parse(&format!("$7$4000000000{rest}")).expect("parses");
        assert_eq!(hash.check_cost(), Err(CostError::Iterations(4_000_000_000)));
        assert_eq!(
            hash.verify(b"secret"),
            Err(CostError::Iterations(4_000_000_000))
        );
        let at_limit = PasswordHash::pbkdf2_with_salt(b"x", b"salt", 1).to_string();
        let at_limit = at_limit.replacen("$7$1$", &format!("$7${MAX_PBKDF2_ITERATIONS}$"), 1);
        assert_eq!(
            PasswordHash::parse(&at_limit).expect("ok").check_cost(),
            Ok(())
        );

        let argon2 = |params: &str| {
            let encoded = format!("$argon2id$v=19${params}$c2hhcmRtcS1zYWx0LTE2Yg$AAAAAAAAAAA");
            PasswordHash::parse(&encoded).expect(&encoded).check_cost()
        };
        assert_eq!(argon2("m=47104,t=1,p=1"), Ok(()));
        assert_eq!(argon2("m=262144,t=4,p=64"), Ok(()), "every limit at once");
        assert_eq!(
            argon2("m=4294967295,t=1,p=1"),
            Err(CostError::Memory(u32::MAX))
        );
        assert_eq!(argon2("m=65536,t=65,p=1"), Err(CostError::Passes(65)));
        assert_eq!(argon2("m=65536,t=1,p=65"), Err(CostError::Lanes(65)));
        assert_eq!(
            argon2("m=262144,t=5,p=1"),
            Err(CostError::Work(5 * 262_144))
        );
    }

    #[test]
    fn dummies_cost_what_their_model_costs_and_match_nothing() {
        let mut models: Vec<PasswordHash> = MOSQUITTO_ENTRIES
            .iter()
            .chain(ARGON2_ENTRIES)
            .map(|(_, encoded)| PasswordHash::parse(encoded).expect("valid"))
            .collect();
        models.push(PasswordHash::parse("$md5$NaCl$b7ac67b360c24baef6ed28a919ddb6d5").expect("ok"));
        for model in &models {
            let dummy = model.dummy();
            assert_eq!(
                format!("{dummy:?}"),
                format!("{model:?}"),
                "same scheme and cost"
            );
            assert_eq!(
                dummy.to_string().len(),
                model.to_string().len(),
                "same lengths"
            );
            assert_eq!(dummy.dummy(), dummy);
            assert_ne!(&dummy, model);
        }
        for model in &models {
            assert!(!checks(&model.dummy(), b""), "{model:?}");
        }
        let default = PasswordHash::default_dummy();
        assert_eq!(
            default,
            PasswordHash::pbkdf2_with_salt(b"", &[0; SALT_LEN], DEFAULT_ITERATIONS).dummy()
        );
    }
}
