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

#endif
