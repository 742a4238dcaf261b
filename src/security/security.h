/* thaw's security primitives: API keys and scopes, envelope encryption,
 * rate/concurrency/quota limiters, a PII redactor, audit hash chains and the
 * instance sandbox. Self-contained building blocks; the gateway, store and
 * instance manager decide where to call them. Thread-safe unless noted. */
#ifndef THAW_SECURITY_H
#define THAW_SECURITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

/* Initialises libsodium exactly once (safe to call from any thread, any
 * number of times; every function below calls it itself). Returns 0, or
 * THAW_EUNSUPPORTED when libsodium cannot initialise. */
int security_init(void);

/* ---------------------------------------------------------------- keys --
 * An API key reads `thaw_<id>_<secret>`:
 *   id     16 lowercase hex characters (64 random bits), public: it names the
 *          key in the store, logs and the audit trail;
 *   secret 43 characters of unpadded url-safe base64 (A-Z a-z 0-9 - _) of 32
 *          random bytes. Parsing accepts 32..128 such characters so longer
 *          secrets stay valid later.
 * Only a keyed hash of the secret is stored: BLAKE2b-256 keyed with a node
 * "pepper" (32 secret bytes kept outside the store) over id || secret. The
 * secret already carries 256 bits of entropy, so a slow password hash
 * (crypto_pwhash, ~100 ms) would add nothing against guessing and would cost
 * every request; the pepper means a stolen database alone cannot even check
 * guesses offline, and hashing the id in binds a hash to its own row. */
#define SECURITY_KEY_ID_LEN     16
#define SECURITY_KEY_SECRET_LEN 43
#define SECURITY_KEY_SECRET_MIN 32
#define SECURITY_KEY_SECRET_MAX 128
/* Buffer size for a generated key string, NUL included. */
#define SECURITY_KEY_STR_SIZE (5 + SECURITY_KEY_ID_LEN + 1 + SECURITY_KEY_SECRET_LEN + 1)
#define SECURITY_KEY_HASH_LEN 32
#define SECURITY_PEPPER_LEN   32

/* A parsed key. `secret` points into the string that was parsed (borrowed,
 * not NUL-terminated); `id` is a NUL-terminated copy. */
struct security_apikey {
    char id[SECURITY_KEY_ID_LEN + 1];
    const char *secret;
    size_t secret_len;
};

/* Writes a fresh random key into out (SECURITY_KEY_STR_SIZE bytes, NUL
 * terminated) and its id into out_id (may be NULL). Returns 0 or a negative
 * code. The caller shows the key once and should sodium_memzero it after. */
int security_apikey_generate(char out[SECURITY_KEY_STR_SIZE], char out_id[SECURITY_KEY_ID_LEN + 1],
                             struct thaw_err *err);

/* Parses s[0..len) strictly. Returns 0 and fills *out, or THAW_EINVAL with a
 * message naming what is wrong (prefix, id length or character, separator,
 * secret length or character, position). Messages never contain the secret.
 * Leading/trailing whitespace is an error, not trimmed. */
int security_apikey_parse(const char *s, size_t len, struct security_apikey *out,
                          struct thaw_err *err);

/* Parses an Authorization header value: "Bearer " (scheme case-insensitive,
 * one or more spaces) then a key as security_apikey_parse wants it; the key
 * points into header. THAW_EINVAL with a message for a missing header, another
 * scheme, or a malformed key (never echoing the secret). */
int security_apikey_from_authorization(const char *header, size_t len, struct security_apikey *out,
                                       struct thaw_err *err);

/* Computes the stored hash of a parsed key under the pepper. Returns 0. */
int security_apikey_hash(const unsigned char pepper[SECURITY_PEPPER_LEN],
                         const struct security_apikey *key,
                         unsigned char out[SECURITY_KEY_HASH_LEN]);

/* Checks a parsed key against a stored hash in constant time (sodium_memcmp).
 * Returns 0 on a match, THAW_EDENIED otherwise. */
int security_apikey_verify(const unsigned char pepper[SECURITY_PEPPER_LEN],
                           const struct security_apikey *key,
                           const unsigned char stored[SECURITY_KEY_HASH_LEN]);

/* Scopes as a bitmask. admin implies every scope; deploy implies read;
 * invoke and read imply nothing else. */
enum security_scope {
    SECURITY_SCOPE_ADMIN = 1u << 0,
    SECURITY_SCOPE_DEPLOY = 1u << 1,
    SECURITY_SCOPE_INVOKE = 1u << 2,
    SECURITY_SCOPE_READ = 1u << 3,
};
#define SECURITY_SCOPE_ALL 0xfu

/* Parses "invoke,read" (spaces around items allowed) or a JSON array string
 * '["invoke","read"]'. Returns 0 and sets *out (never 0: an empty list is an
 * error), or THAW_EINVAL naming the unknown, empty or duplicated item. */
int security_scopes_parse(const char *s, unsigned *out, struct thaw_err *err);

/* Writes the scopes in canonical order ("admin,deploy,invoke,read"), or as a
 * JSON array when json is true, into out[0..n). Returns the length written
 * (excluding NUL), THAW_ERANGE if it does not fit, THAW_EINVAL for bits that
 * are not scopes. */
int security_scopes_format(unsigned mask, bool json, char *out, size_t n);

/* The mask with implied scopes added (admin -> all, deploy -> read). */
unsigned security_scopes_effective(unsigned mask);

/* True when a key holding `have` may do what needs every scope in `need`. */
bool security_scopes_allow(unsigned have, unsigned need);

/* Parses a 32-byte secret written as 64 hex digits or base64 (standard or
 * url-safe, padded or not); surrounding whitespace (a trailing newline in a
 * file) is ignored. Used for the KEK and the key pepper. Returns 0 or
 * THAW_EINVAL saying which form was expected; never echoes the input. */
int security_secret32_parse(const char *text, size_t len, unsigned char out[32],
                            struct thaw_err *err);

/* ---------------------------------------------------- envelope crypto --
 * Per-tenant data keys (DEKs, 32 random bytes) encrypt data with
 * XChaCha20-Poly1305 (random 192-bit nonces, so no nonce bookkeeping). DEKs
 * are stored only wrapped (encrypted) by the node's key-encryption key (KEK),
 * which comes from a file or an environment variable and is never stored
 * beside the data. Key material is zeroed (sodium_memzero) when freed.
 *
 * Sealed data, all integers big-endian:
 *   0   2  magic "ts"
 *   2   1  format version (1)
 *   3   1  algorithm (1 = XChaCha20-Poly1305-IETF)
 *   4   4  DEK version that sealed it
 *   8  24  nonce
 *  32   n  ciphertext
 *  32+n 16 tag
 * Associated data = those 32 header bytes, then tenant, purpose and record id
 * each as u32 length + bytes, so a ciphertext moved to another record,
 * tenant or purpose (or with an edited header) fails to open.
 *
 * Wrapped DEK (SECURITY_WRAPPED_DEK_LEN bytes):
 *   0 2 magic "tk" | 2 1 format (1) | 3 1 algorithm (1) | 4 4 KEK id |
 *   8 4 DEK version | 12 24 nonce | 36 32 encrypted key | 68 16 tag
 * Associated data = the first 12 bytes, then the tenant id (u32 length +
 * bytes): a wrapped key only unwraps for its own tenant and version. */
#define SECURITY_WRAPPED_DEK_LEN 84
#define SECURITY_SEAL_HEADER_LEN 32
#define SECURITY_SEAL_OVERHEAD   (SECURITY_SEAL_HEADER_LEN + 16)

struct security_kek; /* opaque */
struct security_dek; /* opaque */

/* Makes a KEK from the text of an environment variable or file (see
 * security_secret32_parse for the accepted forms) and the id it is known by
 * (recorded in every key it wraps, so the right KEK can be picked after a KEK
 * rotation). *out is the caller's; free with security_kek_free. Returns 0,
 * THAW_EINVAL or THAW_ENOMEM. */
int security_kek_from_text(const char *text, size_t len, uint32_t id, struct security_kek **out,
                           struct thaw_err *err);
/* Same, reading the text from a regular file of at most 4 KiB. Errors name
 * the path (never the contents): -errno for open/read, THAW_EINVAL. */
int security_kek_load_file(const char *path, uint32_t id, struct security_kek **out,
                           struct thaw_err *err);
/* Same, from the environment variable `name`; THAW_ENOTFOUND when unset. */
int security_kek_from_env(const char *name, uint32_t id, struct security_kek **out,
                          struct thaw_err *err);
/* The id given when the KEK was made. */
uint32_t security_kek_id(const struct security_kek *kek);
/* Zeroes and frees; NULL is a no-op. */
void security_kek_free(struct security_kek *kek);

/* Makes a fresh random DEK with the given version number (>= 1). */
int security_dek_generate(uint32_t version, struct security_dek **out, struct thaw_err *err);
/* The DEK's version number. */
uint32_t security_dek_version(const struct security_dek *dek);
/* Zeroes and frees; NULL is a no-op. */
void security_dek_free(struct security_dek *dek);

/* Wraps dek for `tenant` under kek into out. Returns 0 or a negative code. */
int security_dek_wrap(const struct security_kek *kek, const struct security_dek *dek,
                      const char *tenant, unsigned char out[SECURITY_WRAPPED_DEK_LEN],
                      struct thaw_err *err);
/* Unwraps; *out is the caller's. THAW_EFORMAT for a malformed blob,
 * THAW_EINVAL when it names another KEK id than kek's, THAW_EDENIED when
 * authentication fails (wrong KEK, wrong tenant, tampered bytes). */
int security_dek_unwrap(const struct security_kek *kek, const char *tenant,
                        const unsigned char *wrapped, size_t len, struct security_dek **out,
                        struct thaw_err *err);
/* Reads the KEK id and DEK version from a wrapped key without unwrapping,
 * so the caller can pick the KEK. Returns 0 or THAW_EFORMAT. */
int security_wrapped_info(const unsigned char *wrapped, size_t len, uint32_t *kek_id,
                          uint32_t *dek_version, struct thaw_err *err);
/* KEK rotation: unwraps `in` with old_kek and wraps the same DEK (same
 * version) under new_kek into out. The DEK itself does not change, so data
 * sealed under it needs no re-encryption. */
int security_dek_rewrap(const struct security_kek *old_kek, const struct security_kek *new_kek,
                        const char *tenant, const unsigned char *in, size_t len,
                        unsigned char out[SECURITY_WRAPPED_DEK_LEN], struct thaw_err *err);

/* What a ciphertext is bound to. NULL strings count as empty. */
struct security_ad {
    const char *tenant;
    const char *purpose; /* e.g. "job.payload", "result", "cache" */
    const char *record;  /* e.g. the job id */
};

/* Seals pt[0..len) under dek and appends the sealed form (len +
 * SECURITY_SEAL_OVERHEAD bytes) to out. Returns 0 or a negative code; on
 * error out is unchanged. */
int security_seal(const struct security_dek *dek, const struct security_ad *ad, const void *pt,
                  size_t len, struct buf *out, struct thaw_err *err);
/* Opens sealed data and appends the plaintext to out (the caller should
 * sodium_memzero it when done if it is sensitive). Returns 0, THAW_EFORMAT
 * (too short, bad magic), THAW_EUNSUPPORTED (unknown format or algorithm),
 * THAW_EINVAL (sealed by another DEK version than dek's) or THAW_EDENIED
 * (authentication failed: tampered, wrong key or wrong associated data). On
 * error out is unchanged and no plaintext is released. */
int security_open(const struct security_dek *dek, const struct security_ad *ad, const void *ct,
                  size_t len, struct buf *out, struct thaw_err *err);
/* Reads the DEK version from sealed data. Returns 0 or THAW_EFORMAT. */
int security_sealed_version(const void *ct, size_t len, uint32_t *dek_version,
                            struct thaw_err *err);

/* A tenant's DEKs by version; the highest is current and seals new data,
 * older ones still open old data. Thread-safe (a read-write lock; seal and
 * open take it shared). */
struct security_keyset; /* opaque */

/* Makes an empty keyset for `tenant` (copied). */
int security_keyset_new(const char *tenant, struct security_keyset **out, struct thaw_err *err);
/* Zeroes every key and frees; NULL is a no-op. */
void security_keyset_free(struct security_keyset *ks);
/* Unwraps a stored DEK (with kek, which must be the KEK it names) and adds
 * it. THAW_EEXIST when that version is already present. */
int security_keyset_add_wrapped(struct security_keyset *ks, const struct security_kek *kek,
                                const unsigned char *wrapped, size_t len, struct thaw_err *err);
/* Generates DEK version current+1 (1 for an empty set), makes it current and
 * writes its wrapped form to out_wrapped for the caller to persist. */
int security_keyset_rotate(struct security_keyset *ks, const struct security_kek *kek,
                           uint32_t *out_version,
                           unsigned char out_wrapped[SECURITY_WRAPPED_DEK_LEN],
                           struct thaw_err *err);
/* The current DEK version, 0 when empty. */
uint32_t security_keyset_current(struct security_keyset *ks);
/* Seal under the current DEK (THAW_ESTATE when the set is empty) / open with
 * whichever version sealed it (THAW_ENOTFOUND when that version is absent).
 * Both bind the keyset's tenant, `purpose` and `record`; see security_seal
 * and security_open for results and ownership. */
int security_keyset_seal(struct security_keyset *ks, const char *purpose, const char *record,
                         const void *pt, size_t len, struct buf *out, struct thaw_err *err);
int security_keyset_open(struct security_keyset *ks, const char *purpose, const char *record,
                         const void *ct, size_t len, struct buf *out, struct thaw_err *err);

/* ------------------------------------------------------------- limits --
 * In-process limiters keyed by strings (a tenant or key id, at most
 * SECURITY_LIMIT_KEY_MAX bytes). Time is always a parameter so callers (and
 * tests) decide the clock: now_ns from time_now_ns(), wall seconds for daily
 * quotas. Every table has a fixed entry budget, sharded locks and a keyed
 * (SipHash) index so chosen keys cannot degrade it. */
#define SECURITY_LIMIT_KEY_MAX 256

/* What a GCRA decision tells the client. limit is the burst: the requests a
 * client may send at once; the sustained rate is the configured one. */
struct security_rate_result {
    bool allowed;
    uint32_t limit;          /* x-ratelimit-limit */
    uint32_t remaining;      /* x-ratelimit-remaining: requests allowed right now */
    uint64_t reset_ns;       /* until the bucket is full again */
    uint32_t reset_s;        /* x-ratelimit-reset: reset_ns in seconds, rounded up */
    uint64_t retry_after_ns; /* when denied: until this request would pass; else 0 */
    uint32_t retry_after_s;  /* Retry-After: rounded up, at least 1 when denied */
};

/* GCRA (generic cell rate algorithm) on one caller-held state word *tat
 * (theoretical arrival time in ns; 0 for a new key), for stores that keep the
 * state themselves. rate is requests per second (> 0, up to 1e9), burst >= 1
 * and 1 <= cost <= burst. Updates *tat only when allowed. Returns 0 and
 * fills *out, or THAW_EINVAL for parameters that cannot be honoured. */
int security_gcra(uint64_t *tat, double rate, uint32_t burst, uint32_t cost, uint64_t now_ns,
                  struct security_rate_result *out);

/* A table of GCRA states. Idle keys (whose bucket is full again) carry no
 * information and are dropped first when the table is full; if none is idle,
 * the key closest to idle is dropped (it gets a fresh bucket a little early). */
struct security_ratelimiter; /* opaque */
/* Makes a table for at most max_entries keys (about 100 bytes each plus the
 * key); *out is the caller's. Returns 0, THAW_EINVAL (0 entries) or
 * THAW_ENOMEM. The conclimiter and quota constructors work the same way. */
int security_ratelimiter_new(size_t max_entries, struct security_ratelimiter **out,
                             struct thaw_err *err);
/* Frees the table; NULL is a no-op. */
void security_ratelimiter_free(struct security_ratelimiter *rl);
/* Checks one request of weight cost for key under (rate, burst). rate and
 * burst may differ per call (a tenant's limit changed). Returns 0 and fills
 * *out; THAW_EINVAL for bad parameters or key; THAW_ENOMEM. */
int security_ratelimit_check(struct security_ratelimiter *rl, const char *key, double rate,
                             uint32_t burst, uint32_t cost, uint64_t now_ns,
                             struct security_rate_result *out);
/* Number of keys held (for tests and metrics). */
size_t security_ratelimiter_size(struct security_ratelimiter *rl);

/* Concurrency limiter: in-flight counters per key. A key exists only while
 * its count is above zero, so memory follows what is in flight. */
struct security_conclimiter; /* opaque */
int security_conclimiter_new(size_t max_entries, struct security_conclimiter **out,
                             struct thaw_err *err);
/* Frees the table; NULL is a no-op. */
void security_conclimiter_free(struct security_conclimiter *cl);
/* Takes one slot for key if fewer than limit are taken. Returns 0, or
 * THAW_EBUSY (at the limit, or the table is full), THAW_EINVAL, THAW_ENOMEM.
 * *in_flight (may be NULL) gets the count after the call. Every 0 must be
 * paired with one security_conc_release. */
int security_conc_acquire(struct security_conclimiter *cl, const char *key, uint32_t limit,
                          uint32_t *in_flight);
/* Gives a slot back. Returns 0, or THAW_ENOTFOUND when key holds none. */
int security_conc_release(struct security_conclimiter *cl, const char *key);
/* Slots key holds now (0 for an unknown or invalid key). */
uint32_t security_conc_in_flight(struct security_conclimiter *cl, const char *key);

/* Daily quotas: a counter per key per UTC day (wall_s / 86400). Counts from
 * an earlier day are dropped lazily. Persisting counts across restarts is
 * the store's business; this is the in-process cache of them. */
struct security_quota_result {
    bool allowed;
    uint64_t limit;
    uint64_t used;      /* after this call */
    uint64_t remaining; /* limit - used, 0 when over */
    uint32_t reset_s;   /* seconds until the next UTC midnight */
};
struct security_quota; /* opaque */
int security_quota_new(size_t max_entries, struct security_quota **out, struct thaw_err *err);
/* Frees the table; NULL is a no-op. */
void security_quota_free(struct security_quota *q);
/* Adds amount to key's count for today if that stays within limit; otherwise
 * counts nothing and reports allowed = false. amount 0 just reads. Returns 0,
 * THAW_EINVAL, THAW_ENOMEM, or THAW_EBUSY when the table is full of keys
 * that are live today (never evicted: that would hand out fresh quota). */
int security_quota_consume(struct security_quota *q, const char *key, uint64_t limit,
                           uint64_t amount, int64_t wall_s, struct security_quota_result *out);
/* Adds amount unconditionally (for usage known only afterwards, such as
 * generated tokens); the count may pass the limit. Same returns. */
int security_quota_add(struct security_quota *q, const char *key, uint64_t limit, uint64_t amount,
                       int64_t wall_s, struct security_quota_result *out);

/* ------------------------------------------------------------ redactor --
 * Masks personal data and credentials in free text before it can reach a
 * log: each finding is replaced by a tag.
 *   EMAIL     local@domain.tld                                   [EMAIL]
 *   PHONE     +CC and 7-15 digits with separators; national forms with
 *             separators and 9-11 digits ((555) 123-4567, 020 7946 0958,
 *             06 12 34 56 78). Bare digit runs are left alone    [PHONE]
 *   CARD      13-19 digits, optional single spaces or dashes, first digit
 *             2-6, Luhn-valid (others are left alone)            [CARD]
 *   IBAN      country letters + check digits + 11-30 alphanumerics, plain or
 *             in groups of four, mod-97 valid                    [IBAN]
 *   IP        IPv4 dotted quads and IPv6 (with :: and embedded IPv4) [IP]
 *   TOKEN     the credential after "Bearer " or after an Authorization
 *             header/field name; the scheme word is kept      Bearer [TOKEN]
 *   THAW_KEY  thaw_<16 hex>_<secret>                             [THAW_KEY]
 * Hand-written scanners, no regular expressions: linear time (each scanner
 * looks ahead a bounded distance unless it consumes what it read), never
 * splits a UTF-8 sequence (matches start on ASCII and end on a character
 * boundary), so valid UTF-8 in means valid UTF-8 out. Known trade-offs: a
 * four-part version number looks like an IPv4 address and is masked; a
 * ten-digit phone number written with no separators is not. */
enum security_redact_kind {
    SECURITY_REDACT_EMAIL,
    SECURITY_REDACT_PHONE,
    SECURITY_REDACT_CARD,
    SECURITY_REDACT_IBAN,
    SECURITY_REDACT_IP,
    SECURITY_REDACT_TOKEN,
    SECURITY_REDACT_THAW_KEY,
    SECURITY_REDACT_N_KINDS
};
/* Bit (1u << kind) enables a kind; this enables all. */
#define SECURITY_REDACT_ALL ((1u << SECURITY_REDACT_N_KINDS) - 1)

/* Findings per kind, added to by each call (for metrics). */
struct security_redact_counts {
    uint64_t n[SECURITY_REDACT_N_KINDS];
};

/* A static lowercase name for a kind ("email", "thaw_key"), for metric
 * labels; "unknown" for anything else. */
const char *security_redact_kind_name(int kind);

/* The most bytes security_redact can append for len input bytes. */
size_t security_redact_bound(size_t len);

/* Appends the redacted form of in[0..len) to out (which stays
 * NUL-terminated) and adds the findings to *counts (may be NULL). kinds is a
 * mask of (1u << kind) bits. Returns the number of findings, or THAW_ENOMEM
 * (out unchanged). Embedded NUL bytes are copied like any other byte. */
int security_redact(const char *in, size_t len, unsigned kinds, struct buf *out,
                    struct security_redact_counts *counts);

/* --------------------------------------------------------------- audit --
 * Hash chain for the append-only audit log. Each entry's hash covers the
 * previous entry's hash and its own fields in this canonical encoding (all
 * integers big-endian, every string length-prefixed so no two different
 * entries encode alike):
 *   "thaw.audit.v1" | prev_hash[32] | u64 seq | i64 time_ms |
 *   u32 len | actor | u32 len | action | u32 len | target |
 *   u32 len | outcome | u32 len | details
 * NULL strings encode as empty ones. The hash is SHA-256, or HMAC-SHA256
 * under an audit key when one is given: without a key, someone who can
 * rewrite the log could recompute every later hash, so keep either a key
 * outside the store or an anchor (the seq and hash of a recent entry,
 * logged or stored elsewhere) to catch that; an anchor also catches entries
 * cut off the end, which a chain alone cannot. Storage is the store's job;
 * these functions work on entries in memory. */
#define SECURITY_AUDIT_HASH_LEN 32

struct security_audit_entry {
    uint64_t seq; /* 1, 2, 3, ... with no gaps */
    int64_t time_ms;
    const char *actor; /* key id of who did it (borrowed) */
    const char *action;
    const char *target;
    const char *outcome;
    const char *details;
    unsigned char prev_hash[SECURITY_AUDIT_HASH_LEN]; /* as recorded */
    unsigned char hash[SECURITY_AUDIT_HASH_LEN];      /* as recorded */
};

/* Computes the hash of e chained to prev (key may be NULL, key_len 0 for
 * plain SHA-256). e->prev_hash and e->hash are not read. Returns 0. */
int security_audit_hash(const unsigned char *key, size_t key_len,
                        const unsigned char prev[SECURITY_AUDIT_HASH_LEN],
                        const struct security_audit_entry *e,
                        unsigned char out[SECURITY_AUDIT_HASH_LEN]);

/* Fills e->prev_hash from prev (NULL: 32 zero bytes, for the first entry)
 * and e->hash; call before storing a new entry. Returns 0. */
int security_audit_seal(const unsigned char *key, size_t key_len,
                        const unsigned char prev[SECURITY_AUDIT_HASH_LEN],
                        struct security_audit_entry *e);

enum security_audit_problem {
    SECURITY_AUDIT_OK,
    SECURITY_AUDIT_CHANGED,   /* an entry's contents or hash were edited */
    SECURITY_AUDIT_INSERTED,  /* an entry appears that does not belong */
    SECURITY_AUDIT_REMOVED,   /* entries are missing (a seq gap) */
    SECURITY_AUDIT_TRUNCATED, /* entries before the anchor are missing at the end */
};

/* Optional trusted checkpoint: entry `seq` must have hash `hash`. */
struct security_audit_anchor {
    uint64_t seq;
    unsigned char hash[SECURITY_AUDIT_HASH_LEN];
};

/* What verification found: the first problem only. */
struct security_audit_report {
    enum security_audit_problem problem;
    uint64_t seq;     /* the seq the problem is about */
    size_t index;     /* position in the sequence given (0-based) */
    size_t n_checked; /* entries that verified before the problem */
    char msg[256];
};

/* Streaming verifier state; fields are private. */
struct security_audit_verifier {
    const unsigned char *key;
    size_t key_len;
    const struct security_audit_anchor *anchor;
    unsigned char prev[SECURITY_AUDIT_HASH_LEN];
    uint64_t last_seq;
    size_t index;
    bool have_prev, anchor_seen, done;
    struct security_audit_report *rep;
};

/* Starts verifying a run of entries. first_seq: the seq the run must start
 * with (0: whatever the first entry says); genesis: the hash the first entry
 * must chain to (NULL: zeros when first_seq is 1, else trust the first
 * entry's recorded prev_hash). key and anchor may be NULL; key, anchor and
 * rep are borrowed until the end call. */
void security_audit_verify_begin(struct security_audit_verifier *v, const unsigned char *key,
                                 size_t key_len, uint64_t first_seq,
                                 const unsigned char genesis[SECURITY_AUDIT_HASH_LEN],
                                 const struct security_audit_anchor *anchor,
                                 struct security_audit_report *rep);
/* Feeds the next entry (in stored order). Returns 0 while all is well,
 * THAW_EFORMAT once a problem is found (then rep says which; later calls
 * return THAW_EFORMAT and check nothing). */
int security_audit_verify_next(struct security_audit_verifier *v,
                               const struct security_audit_entry *e);
/* Finishes: checks the anchor was reached. Returns 0 or THAW_EFORMAT. */
int security_audit_verify_end(struct security_audit_verifier *v);

/* The whole thing over an array. Returns 0 or THAW_EFORMAT (see *rep). */
int security_audit_verify(const unsigned char *key, size_t key_len,
                          const struct security_audit_entry *entries, size_t n, uint64_t first_seq,
                          const unsigned char genesis[SECURITY_AUDIT_HASH_LEN],
                          const struct security_audit_anchor *anchor,
                          struct security_audit_report *rep);

/* ------------------------------------------------------------- sandbox --
 * Confinement for an instance, applied in the child after fork and before
 * it serves or execs. In order: namespaces (each tried on its own, failures
 * reported, not fatal), rlimits (core dumps always off), an optional switch
 * to another uid/gid, PR_SET_NO_NEW_PRIVS, Landlock filesystem rules when
 * directories are given, and last a seccomp filter. Denied system calls
 * fail with EPERM (ENOSYS for clone3, so libc falls back to clone, whose
 * flags can be checked); nothing is killed, so a hostile function gets an
 * error and the node keeps running.
 *
 * Both seccomp profiles deny: ptrace, process_vm_readv/writev, mount and the
 * new mount API, umount2, pivot_root, chroot, swapon/off, reboot, kexec_*,
 * module loading, bpf, perf_event_open, keyctl/add_key/request_key, setns,
 * unshare and clone with namespace flags, userfaultfd, open_by_handle_at,
 * name_to_handle_at, syslog, acct, clock/time setting, iopl/ioperm, quotactl,
 * fanotify_init, kcmp, pidfd_getfd, process_madvise and io_uring (whose
 * operations would bypass the filter).
 *   builtin: also execve/execveat and socket() of any family; socketpair
 *            only AF_UNIX. Sockets already open (the node's socketpair) work.
 *   exec:    execve only with the exact filename pointer cfg->exec_path (the
 *            one the caller passes to execve right after) unless
 *            allow_exec_children; execveat denied; socket() only AF_UNIX,
 *            plus AF_INET, AF_INET6 and AF_NETLINK (for name resolution) when
 *            allow_network.
 * Everything else is allowed: the profiles are deny-lists because the
 * runtimes' exact system-call needs (libc, threads, sanitizers) are not
 * pinned down yet. */
enum security_seccomp_profile {
    SECURITY_SECCOMP_NONE,
    SECURITY_SECCOMP_BUILTIN,
    SECURITY_SECCOMP_EXEC,
};

enum security_ns {
    SECURITY_NS_USER = 1u << 0,  /* maps the current uid/gid to themselves */
    SECURITY_NS_MOUNT = 1u << 1, /* private propagation; /proc remounted with PID */
    SECURITY_NS_PID = 1u << 2,   /* forks twice: see security_sandbox_apply */
    SECURITY_NS_NET = 1u << 3,   /* no interfaces but a down loopback */
};
#define SECURITY_NS_ALL 0xfu

struct security_sandbox_report {
    unsigned ns_applied, ns_failed; /* SECURITY_NS_* bits */
    bool proc_remounted;
    bool no_new_privs, landlock, seccomp;
    char msg[512]; /* what was skipped and why; "" when all applied */
};

struct security_sandbox {
    uint64_t max_address_space; /* bytes (RLIMIT_AS); 0 leaves it */
    uint64_t max_open_files;    /* RLIMIT_NOFILE; 0 leaves it */
    uint64_t max_cpu_seconds;   /* RLIMIT_CPU: SIGXCPU at n, SIGKILL at n+1 */
    uint64_t max_processes;     /* RLIMIT_NPROC (per uid; root ignores it) */
    uint64_t max_file_size;     /* RLIMIT_FSIZE */
    bool set_ids;               /* switch to uid/gid, dropping groups (in a user namespace only the
                                 * caller's own ids are mapped, so only they can be chosen) */
    unsigned uid, gid;
    enum security_seccomp_profile profile;
    bool allow_network;       /* exec profile */
    bool allow_exec_children; /* exec profile */
    const char *exec_path;    /* exec profile: the pointer given to execve */
    unsigned namespaces;      /* SECURITY_NS_* wanted */
    /* Landlock (NULL-terminated lists, borrowed): with write_dirs, file
     * writes and creation are allowed only beneath them (and /dev/null);
     * with read_dirs too, reads and exec are limited to read_dirs and
     * write_dirs. require_landlock makes an unsupported kernel an error
     * instead of a line in the report. */
    const char *const *write_dirs;
    const char *const *read_dirs;
    bool require_landlock;
    struct security_sandbox_report *report; /* optional; filled */
    /* Optional: the seccomp filter compiled before fork (see
     * security_seccomp_compile). Building a filter allocates, and after a
     * fork from a threaded process only glibc's malloc is safe to use (a
     * sanitizer's allocator can deadlock): with it the child allocates
     * nothing. */
    const struct security_seccomp_prog *compiled;
};

/* A seccomp filter compiled to BPF for cfg's profile (exec_path included),
 * to pass as cfg->compiled to a child. Free with security_seccomp_prog_free. */
struct security_seccomp_prog;
int security_seccomp_compile(const struct security_sandbox *cfg, struct security_seccomp_prog **out,
                             struct thaw_err *err);
void security_seccomp_prog_free(struct security_seccomp_prog *p);

/* An instance's private scratch directory: creates base/<prefix>.XXXXXX
 * with mode 0700 and writes its path (NUL-terminated) into out[0..n).
 * Returns 0, THAW_ERANGE (out too small) or -errno, with err. */
int security_tmpdir_create(const char *base, const char *prefix, char *out, size_t n,
                           struct thaw_err *err);

/* Removes dir and everything in it as left by a possibly hostile instance:
 * never follows symlinks (they are unlinked, not their targets), never
 * crosses into another filesystem (-EXDEV), fixes permissions it needs,
 * and handles trees deeper than the descriptor budget by hoisting deep
 * subtrees to the top. Returns 0 or a negative code with err; a missing dir
 * is success. */
int security_tmpdir_remove(const char *dir, struct thaw_err *err);

/* Applies cfg to the calling process; irreversible. Call it in a
 * single-threaded child (user namespaces refuse threaded callers). Returns
 * 0, or a negative code with err naming the step that failed (a limit that
 * cannot be set, a filter that cannot load, required Landlock missing); the
 * caller should then _exit rather than run unconfined.
 * With SECURITY_NS_PID the process forks twice: the returning process is
 * PID 2 of a new namespace; PID 1 is a small init that reaps orphans and
 * forwards the signals the function cannot have got through its process
 * group; the original process never returns: it stays outside as a relay,
 * keeps stdin/stdout/stderr open, ignores SIGTERM/SIGINT/SIGHUP/SIGQUIT/
 * SIGUSR1/SIGUSR2 (they reach the function through the group, which all
 * three share) and exits with the function's exact status (re-raising its
 * signal), so the parent still sees one process with the right status, and
 * its socket closes only once that status is there. SIGKILL of the group
 * kills the init and so everything in the namespace. */
int security_sandbox_apply(const struct security_sandbox *cfg, struct thaw_err *err);

#endif
