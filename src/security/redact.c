/* The PII redactor: hand-written scanners for emails, phones, cards, IBANs,
 * IP addresses, bearer tokens and thaw keys in free text (see security.h for
 * what each matches). One pass; at each word start the scanners are tried in
 * priority order and the first match is replaced by its tag. */
#include "security/security.h"

#include <pthread.h>
#include <string.h>

/* Byte classes. */
enum {
    C_DIGIT = 1 << 0,
    C_UPPER = 1 << 1,
    C_LOWER = 1 << 2,
    C_HEX = 1 << 3,
    C_LOCAL = 1 << 4,  /* email local part: alnum . _ % + - and non-ASCII */
    C_DOMAIN = 1 << 5, /* email domain label: alnum - and non-ASCII */
    C_TOK = 1 << 6,    /* bearer token (RFC 6750 b64token): alnum - . _ ~ + / = */
    C_KEY = 1 << 7,    /* thaw key secret: alnum - _ */
};
#define C_ALPHA (C_UPPER | C_LOWER)
#define C_ALNUM (C_ALPHA | C_DIGIT)

static unsigned char cls[256];

static void init_classes(void)
{
    for (int c = 0; c < 256; c++) {
        unsigned char f = 0;
        if (c >= '0' && c <= '9') f |= C_DIGIT | C_HEX;
        if (c >= 'A' && c <= 'Z') f |= C_UPPER;
        if (c >= 'a' && c <= 'z') f |= C_LOWER;
        if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) f |= C_HEX;
        if ((f & (C_DIGIT | C_UPPER | C_LOWER)) || c >= 0x80 || (c && strchr("._%+-", c)))
            f |= C_LOCAL;
        if ((f & (C_DIGIT | C_UPPER | C_LOWER)) || c >= 0x80 || c == '-') f |= C_DOMAIN;
        if ((f & (C_DIGIT | C_UPPER | C_LOWER)) || (c && strchr("-._~+/=", c))) f |= C_TOK;
        if ((f & (C_DIGIT | C_UPPER | C_LOWER)) || c == '-' || c == '_') f |= C_KEY;
        cls[c] = f;
    }
}

/* The text being scanned; reads past n see a NUL-like "nothing" byte. */
struct text {
    const unsigned char *s;
    size_t n;
};

static inline unsigned char at(const struct text *t, size_t i)
{
    return i < t->n ? t->s[i] : 0;
}

static inline int is(const struct text *t, size_t i, unsigned char c)
{
    return i < t->n && (cls[t->s[i]] & c);
}

/* Length of the Unicode space or punctuation character at p (NBSP, « » ·,
 * U+2000-U+206F general punctuation with curly quotes and dashes, CJK
 * space/comma/full stop/brackets, fullwidth punctuation), else 0. Other
 * non-ASCII characters count as letters. */
static size_t uni_punct(const struct text *t, size_t p)
{
    unsigned char a = at(t, p), b = at(t, p + 1), c = at(t, p + 2);
    if (a == 0xc2) return (b == 0xa0 || b == 0xab || b == 0xbb || b == 0xb7) ? 2 : 0;
    if ((b & 0xc0) != 0x80 || (c & 0xc0) != 0x80) return 0;
    if (a == 0xe2) return (b == 0x80 || b == 0x81) ? 3 : 0;
    if (a == 0xe3) return (b == 0x80 && (c <= 0x82 || (c >= 0x88 && c <= 0x91))) ? 3 : 0;
    if (a == 0xef)
        return (b == 0xbc && ((c >= 0x81 && c <= 0x8f) || (c >= 0x9a && c <= 0x9f))) ? 3 : 0;
    return 0;
}

/* Whether the character starting at p is part of a word (ASCII letter or
 * digit, or a non-ASCII character that is not punctuation). */
static int word_at(const struct text *t, size_t p)
{
    if (p >= t->n) return 0;
    if (t->s[p] < 0x80) return (cls[t->s[p]] & C_ALNUM) != 0;
    return uni_punct(t, p) == 0;
}

/* Whether the character ending just before i is part of a word. */
static int word_before(const struct text *t, size_t i)
{
    if (i == 0) return 0;
    if (t->s[i - 1] < 0x80) return (cls[t->s[i - 1]] & C_ALNUM) != 0;
    size_t j = i - 1;
    while (j > 0 && i - j < 4 && (t->s[j] & 0xc0) == 0x80)
        j--;
    return uni_punct(t, j) != i - j;
}

/* Scans a run of bytes of class c, where non-ASCII characters count unless
 * they are punctuation. Returns the end. */
static size_t scan_run(const struct text *t, size_t p, unsigned char c)
{
    while (p < t->n) {
        unsigned char b = t->s[p];
        if (b < 0x80 ? !(cls[b] & c) : uni_punct(t, p) != 0) break;
        p++;
    }
    return p;
}

/* A finding: `keep` bytes copied as they are, then `len` bytes replaced. */
struct match {
    size_t keep, len;
    int kind;
};

/* ------------------------------------------------------------ thaw key -- */

static size_t scan_thaw_key(const struct text *t, size_t i)
{
    if (i + 23 > t->n || memcmp(t->s + i, "thaw_", 5) != 0) return 0;
    size_t p = i + 5;
    for (int k = 0; k < SECURITY_KEY_ID_LEN; k++, p++)
        if (!(at(t, p) >= '0' && at(t, p) <= '9') && !(at(t, p) >= 'a' && at(t, p) <= 'f'))
            return 0;
    if (at(t, p) != '_' || !is(t, p + 1, C_KEY)) return 0;
    p++;
    while (is(t, p, C_KEY))
        p++;
    return p - i;
}

/* No word-boundary rule: a key glued to other text is still a secret. */
static int det_thaw_key(const struct text *t, size_t i, struct match *m)
{
    size_t n = scan_thaw_key(t, i);
    if (!n) return 0;
    *m = (struct match){0, n, SECURITY_REDACT_THAW_KEY};
    return 1;
}

/* -------------------------------------------------------------- tokens -- */

/* Case-insensitive match of the lowercase word w (length n) at i. */
static int word_ieq(const struct text *t, size_t i, const char *w, size_t n)
{
    if (i + n > t->n) return 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = t->s[i + k];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        if (c != (unsigned char)w[k]) return 0;
    }
    return 1;
}

/* The credential at p: a thaw key, or a b64token of at least 8 characters
 * that does not read like an English word (has a digit or symbol, or is
 * long). Returns its length and sets *kind. */
static size_t scan_credential(const struct text *t, size_t p, int *kind)
{
    size_t k = scan_thaw_key(t, p);
    if (k) {
        *kind = SECURITY_REDACT_THAW_KEY;
        return k;
    }
    size_t q = p;
    int odd = 0;
    while (is(t, q, C_TOK)) {
        if (!(cls[t->s[q]] & C_ALPHA)) odd = 1;
        q++;
    }
    size_t n = q - p;
    if (n < 8 || (!odd && n < 20)) return 0;
    *kind = SECURITY_REDACT_TOKEN;
    return n;
}

static int det_bearer(const struct text *t, size_t i, struct match *m)
{
    if (!word_ieq(t, i, "bearer", 6)) return 0;
    size_t p = i + 6;
    if (at(t, p) != ' ' && at(t, p) != '\t') return 0;
    while (p < i + 16 && (at(t, p) == ' ' || at(t, p) == '\t'))
        p++;
    int kind;
    size_t n = scan_credential(t, p, &kind);
    if (!n) return 0;
    *m = (struct match){p - i, n, kind};
    return 1;
}

static size_t skip_blanks(const struct text *t, size_t p, size_t limit)
{
    while (p < limit && (at(t, p) == ' ' || at(t, p) == '\t'))
        p++;
    return p;
}

/* Header and field names whose value is a credential. */
static const char *const secret_fields[] = {
    "authorization", "x-api-key",    "api-key",       "api_key",       "apikey",
    "password",      "access_token", "refresh_token", "client_secret",
};

static size_t field_name(const struct text *t, size_t i)
{
    unsigned char first = at(t, i) | 0x20;
    for (size_t k = 0; k < sizeof(secret_fields) / sizeof(secret_fields[0]); k++) {
        const char *f = secret_fields[k];
        if ((unsigned char)f[0] != first) continue;
        size_t n = strlen(f);
        if (word_ieq(t, i, f, n) && !is(t, i + n, C_KEY)) return n;
    }
    return 0;
}

/* A credential field name ("Authorization", "x-api-key", "password"...),
 * an optional closing quote, ':' or '=', and the value: up to the matching
 * quote if quoted, else to the end of the line (header form) or to the next
 * & ; , or blank (query/form style). In the header and quoted forms a
 * leading scheme word ("Bearer ", "Basic ") is kept. */
static int det_secret_field(const struct text *t, size_t i, struct match *m)
{
    size_t name = field_name(t, i);
    if (!name) return 0;
    size_t p = i + name;
    if (at(t, p) == '"' || at(t, p) == '\'') p++;
    p = skip_blanks(t, p, p + 8);
    unsigned char sep = at(t, p);
    if (sep != ':' && sep != '=') return 0;
    p = skip_blanks(t, p + 1, p + 9);
    unsigned char quote = (at(t, p) == '"' || at(t, p) == '\'') ? at(t, p) : 0;
    if (quote) p++;
    int form = !quote && sep == '=';
    size_t scheme = p;
    while (!form && scheme < p + 16 && is(t, scheme, C_ALPHA))
        scheme++;
    if (scheme > p && at(t, scheme) == ' ') {
        size_t after = skip_blanks(t, scheme, scheme + 8);
        unsigned char c = at(t, after);
        if (after < t->n && c != '\r' && c != '\n' && (!quote || c != quote)) p = after;
    }
    size_t q = p;
    while (q < t->n) {
        unsigned char c = t->s[q];
        if (c == '\n' || c == '\r' || (quote && c == quote)) break;
        if (form && (c == '&' || c == ';' || c == ',' || c == ' ' || c == '\t')) break;
        q++;
    }
    if (q == p) return 0;
    size_t key = scan_thaw_key(t, p);
    int kind = key && p + key == q ? SECURITY_REDACT_THAW_KEY : SECURITY_REDACT_TOKEN;
    *m = (struct match){p - i, q - p, kind};
    return 1;
}

/* --------------------------------------------------------------- email -- */

static int det_email(const struct text *t, size_t i, struct match *m)
{
    if (i > 0 && t->s[i - 1] < 0x80 && ((cls[t->s[i - 1]] & C_LOCAL) || t->s[i - 1] == '@'))
        return 0;
    if (word_before(t, i) || t->s[i] == '.' || uni_punct(t, i)) return 0;
    /* The whole run is read even past 64 bytes: positions inside it never
     * start an email, so this stays linear, and an over-long local part
     * does not let the address through. */
    size_t p = scan_run(t, i, C_LOCAL);
    if (p == i || at(t, p) != '@') return 0;
    size_t d = ++p, labels = 0, last_start = p;
    for (;;) {
        size_t l = p;
        p = scan_run(t, p, C_DOMAIN);
        if (p == l || p - l > 63 || p - d > 253) return 0;
        labels++;
        last_start = l;
        if (at(t, p) == '.' && scan_run(t, p + 1, C_DOMAIN) > p + 1) {
            p++;
            continue;
        }
        break;
    }
    if (labels < 2 || p - last_start < 2) return 0;
    for (size_t k = last_start; k < p; k++)
        if (!(cls[t->s[k]] & C_ALPHA) && t->s[k] < 0x80) return 0;
    if (at(t, p) == '@') return 0;
    *m = (struct match){0, p - i, SECURITY_REDACT_EMAIL};
    return 1;
}

/* ---------------------------------------------------------------- IBAN -- */

static int iban_mod97(const unsigned char *c, size_t n)
{
    unsigned r = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = c[(k + 4) % n];
        if (ch >= '0' && ch <= '9')
            r = (r * 10 + (ch - '0')) % 97;
        else
            r = (r * 100 + (unsigned)(ch - 'A' + 10)) % 97;
    }
    return r == 1;
}

/* Collects up to 34 characters, either unbroken or in groups of four split
 * by single spaces, noting where the IBAN could end; the longest candidate
 * that passes mod-97 wins (so a trailing word is not swallowed). */
static int det_iban(const struct text *t, size_t i, struct match *m)
{
    if (!is(t, i, C_UPPER) || !is(t, i + 1, C_UPPER) || !is(t, i + 2, C_DIGIT) ||
        !is(t, i + 3, C_DIGIT))
        return 0;
    unsigned char chars[34];
    size_t ends[34]; /* ends[k]: input offset just past the (k+1)th char */
    int can_end[34] = {0};
    size_t n = 0, p = i;
    int grouped = at(t, i + 4) == ' ';
    while (n < 34 && (is(t, p, C_UPPER) || is(t, p, C_DIGIT))) {
        chars[n] = t->s[p++];
        ends[n++] = p;
        if (grouped && n % 4 == 0) {
            can_end[n - 1] = !is(t, p, C_ALNUM);
            if (at(t, p) == ' ' && (is(t, p + 1, C_UPPER) || is(t, p + 1, C_DIGIT)))
                p++;
            else
                break;
        }
    }
    if (n > 0) can_end[n - 1] = !word_at(t, ends[n - 1]);
    for (size_t k = n; k >= 15; k--) {
        if (!can_end[k - 1] || !iban_mod97(chars, k)) continue;
        *m = (struct match){0, ends[k - 1] - i, SECURITY_REDACT_IBAN};
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- card -- */

static int luhn(const unsigned char *d, size_t n)
{
    unsigned sum = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned v = d[n - 1 - k];
        if (k & 1) v = v * 2 > 9 ? v * 2 - 9 : v * 2;
        sum += v;
    }
    return sum % 10 == 0;
}

/* A number continues past p if a digit, or a decimal/thousands mark and a
 * digit, follows. */
static int number_goes_on(const struct text *t, size_t p)
{
    if (word_at(t, p)) return 1;
    unsigned char c = at(t, p);
    return (c == '.' || c == ',') && is(t, p + 1, C_DIGIT);
}

static int det_card(const struct text *t, size_t i, struct match *m)
{
    if (i > 0 && (t->s[i - 1] == '.' || t->s[i - 1] == ',')) return 0;
    if (t->s[i] < '2' || t->s[i] > '6') return 0;
    unsigned char d[20];
    size_t n = 0, p = i;
    while (n < 20 && is(t, p, C_DIGIT)) {
        d[n++] = (unsigned char)(t->s[p++] - '0');
        unsigned char c = at(t, p);
        if ((c == ' ' || c == '-') && is(t, p + 1, C_DIGIT)) p++;
    }
    if (n < 13 || n > 19 || number_goes_on(t, p) || !luhn(d, n)) return 0;
    *m = (struct match){0, p - i, SECURITY_REDACT_CARD};
    return 1;
}

/* ------------------------------------------------------------------ IP -- */

/* One dotted quad at p; returns its length or 0. */
static size_t scan_ipv4(const struct text *t, size_t p)
{
    size_t s = p;
    for (int o = 0; o < 4; o++) {
        if (o && at(t, p++) != '.') return 0;
        size_t q = p;
        unsigned v = 0;
        while (q - p < 3 && is(t, q, C_DIGIT))
            v = v * 10 + (unsigned)(t->s[q++] - '0');
        if (q == p || v > 255 || (q - p > 1 && t->s[p] == '0') || is(t, q, C_DIGIT)) return 0;
        p = q;
    }
    return p - s;
}

static int det_ipv4(const struct text *t, size_t i, struct match *m)
{
    if (i > 0 && t->s[i - 1] == '.') return 0;
    size_t n = scan_ipv4(t, i);
    if (!n || number_goes_on(t, i + n)) return 0;
    *m = (struct match){0, n, SECURITY_REDACT_IP};
    return 1;
}

/* Groups of 1-4 hex digits split by ':', at most one '::', optionally ending
 * in a dotted quad; eight groups, or fewer with '::'. */
static int det_ipv6(const struct text *t, size_t i, struct match *m)
{
    if (i > 0 && (t->s[i - 1] == ':' || t->s[i - 1] == '.')) return 0;
    size_t p = i;
    int groups = 0, dbl = 0;
    if (at(t, p) == ':') {
        if (at(t, p + 1) != ':') return 0;
        dbl = 1;
        p += 2;
    }
    while (groups < 8) {
        size_t q = p;
        while (q - p < 5 && is(t, q, C_HEX))
            q++;
        if (q == p) break;
        if (at(t, q) == '.' && is(t, q + 1, C_DIGIT)) {
            size_t v4 = scan_ipv4(t, p);
            if (!v4 || groups > 6) return 0;
            groups += 2;
            p += v4;
            break;
        }
        if (q - p > 4) return 0;
        groups++;
        p = q;
        if (at(t, p) == ':' && at(t, p + 1) == ':') {
            if (dbl) return 0;
            dbl = 1;
            p += 2;
        } else if (at(t, p) == ':' && is(t, p + 1, C_HEX)) {
            p++;
        } else {
            break;
        }
    }
    if (groups == 0 || (dbl ? groups > 7 : groups != 8)) return 0;
    if (word_at(t, p) || at(t, p) == ':' || (at(t, p) == '.' && is(t, p + 1, C_DIGIT))) return 0;
    *m = (struct match){0, p - i, SECURITY_REDACT_IP};
    return 1;
}

/* --------------------------------------------------------------- phone -- */

struct phone_scan {
    size_t end;
    int digits, groups, last_group, first_group, all_two, paren;
    unsigned char sep; /* the first separator seen; 0 for none */
    int mixed;         /* separators differ (besides ") ") */
};

/* Digit groups split by single separators (space, '-', '.'), where a group
 * may be wrapped in parentheses ("(555) 123-4567", "+44 (0)20 7946 0958").
 * The separator after a parenthesised group does not count towards
 * consistency. Stops before anything else. */
static void scan_phone_groups(const struct text *t, size_t p, struct phone_scan *ps)
{
    memset(ps, 0, sizeof(*ps));
    ps->all_two = 1;
    for (;;) {
        int open = at(t, p) == '(';
        size_t g = p + open, q = g;
        while (q - g < 16 && is(t, q, C_DIGIT))
            q++;
        if (q == g || q - g > 15 || (open && at(t, q) != ')')) break;
        int len = (int)(q - g);
        ps->digits += len;
        if (ps->groups == 0) ps->first_group = len;
        ps->groups++;
        ps->last_group = len;
        if (len != 2) ps->all_two = 0;
        ps->paren |= open;
        p = q + open;
        ps->end = p;
        if (ps->digits > 15) break;
        unsigned char c = at(t, p);
        if ((open && is(t, p, C_DIGIT)) || (c == '(' && is(t, p + 1, C_DIGIT))) continue;
        if (c != ' ' && c != '-' && c != '.') break;
        size_t next = p + 1;
        if (!(is(t, next, C_DIGIT) || (at(t, next) == '(' && is(t, next + 1, C_DIGIT)))) break;
        if (!open) {
            if (!ps->sep)
                ps->sep = c;
            else if (c != ps->sep)
                ps->mixed = 1;
        }
        p = next;
    }
}

static int det_phone(const struct text *t, size_t i, struct match *m)
{
    if (i > 0 && (t->s[i - 1] == '+' || t->s[i - 1] == '.' || t->s[i - 1] == ',' ||
                  t->s[i - 1] == '-' || t->s[i - 1] == '/'))
        return 0;
    struct phone_scan ps;
    if (t->s[i] == '+') {
        if (!is(t, i + 1, C_DIGIT)) return 0;
        scan_phone_groups(t, i + 1, &ps);
        if (ps.digits < 7 || ps.digits > 15) return 0;
    } else {
        /* Not the tail of a longer run of digit groups (an IBAN, an id). */
        if (i >= 2 && strchr(" -.", t->s[i - 1]) && is(t, i - 2, C_DIGIT)) return 0;
        scan_phone_groups(t, i, &ps);
        if (ps.digits < 9 || ps.digits > 11 || ps.groups < 2 || ps.mixed) return 0;
        /* ISO dates and plain lists of short numbers are not phones. */
        if (ps.first_group == 4 && ps.sep == '-' && !ps.paren) return 0;
        if (ps.sep == '.' && !(ps.groups == 3 && ps.first_group == 3 && ps.last_group == 4))
            return 0;
        int shaped =
            ps.last_group >= 4 || (ps.all_two && ps.groups >= 5) || ps.paren || t->s[i] == '0';
        if (!shaped) return 0;
    }
    if (number_goes_on(t, ps.end)) return 0;
    *m = (struct match){0, ps.end - i, SECURITY_REDACT_PHONE};
    return 1;
}

/* ---------------------------------------------------------------- main -- */

static const char *const tags[SECURITY_REDACT_N_KINDS] = {
    "[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[IP]", "[TOKEN]", "[THAW_KEY]",
};

static const unsigned char tag_len[SECURITY_REDACT_N_KINDS] = {7, 7, 6, 6, 4, 7, 10};

static const char *const names[SECURITY_REDACT_N_KINDS] = {
    "email", "phone", "card", "iban", "ip", "token", "thaw_key",
};

const char *security_redact_kind_name(int kind)
{
    return kind >= 0 && kind < SECURITY_REDACT_N_KINDS ? names[kind] : "unknown";
}

size_t security_redact_bound(size_t len)
{
    return len + len / 2 + 16;
}

/* Which scanners to try, in priority order, and the kind each can report
 * (the bearer scanner may report a thaw key inside it). */
static const struct {
    int (*fn)(const struct text *t, size_t i, struct match *m);
    unsigned kinds;
} detectors[] = {
    {det_bearer, 1u << SECURITY_REDACT_TOKEN | 1u << SECURITY_REDACT_THAW_KEY},
    {det_secret_field, 1u << SECURITY_REDACT_TOKEN | 1u << SECURITY_REDACT_THAW_KEY},
    {det_email, 1u << SECURITY_REDACT_EMAIL},
    {det_iban, 1u << SECURITY_REDACT_IBAN},
    {det_ipv6, 1u << SECURITY_REDACT_IP},
    {det_ipv4, 1u << SECURITY_REDACT_IP},
    {det_card, 1u << SECURITY_REDACT_CARD},
    {det_phone, 1u << SECURITY_REDACT_PHONE},
};

#define N_DETECTORS (sizeof(detectors) / sizeof(detectors[0]))

/* starts[c]: the detectors (bit d for detectors[d]) whose finding can begin
 * with byte c; most bytes start none, a lowercase letter two or three. */
static uint16_t starts[256];

static int can_start(int d, int c)
{
    int (*fn)(const struct text *, size_t, struct match *) = detectors[d].fn;
    if (fn == det_bearer) return c == 'b' || c == 'B';
    if (fn == det_secret_field) return c && strchr("axprcAXPRC", c);
    if (fn == det_email) return (cls[c] & C_LOCAL) && c != '.';
    if (fn == det_iban) return (cls[c] & C_UPPER) != 0;
    if (fn == det_ipv6) return (cls[c] & C_HEX) || c == ':';
    if (fn == det_ipv4) return (cls[c] & C_DIGIT) != 0;
    if (fn == det_card) return c >= '2' && c <= '6';
    return (cls[c] & C_DIGIT) || c == '+' || c == '('; /* det_phone */
}

static void init_tables(void)
{
    init_classes();
    for (int c = 0; c < 256; c++)
        for (size_t d = 0; d < N_DETECTORS; d++)
            if (can_start((int)d, c)) starts[c] |= (uint16_t)(1u << d);
}

static int find_at(const struct text *t, size_t i, unsigned kinds, struct match *m)
{
    unsigned todo = starts[t->s[i]];
    while (todo) {
        int d = __builtin_ctz(todo);
        todo &= todo - 1;
        if (!(detectors[d].kinds & kinds)) continue;
        if (!detectors[d].fn(t, i, m)) continue;
        /* A thaw key behind "Bearer" is still a token when only tokens are
         * masked. */
        if (m->kind == SECURITY_REDACT_THAW_KEY && !(kinds & (1u << m->kind)))
            m->kind = SECURITY_REDACT_TOKEN;
        if (kinds & (1u << m->kind)) return 1;
    }
    return 0;
}

int security_redact(const char *in, size_t len, unsigned kinds, struct buf *out,
                    struct security_redact_counts *counts)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_tables);
    if (len > (SIZE_MAX - 64) / 2) return THAW_ENOMEM;
    if (buf_reserve(out, security_redact_bound(len))) return THAW_ENOMEM;
    struct text t = {(const unsigned char *)in, len};
    char *o = out->data + out->len;
    int found = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = t.s[i];
        struct match m;
        int found_here;
        if (c == 't' && (kinds & (1u << SECURITY_REDACT_THAW_KEY)) && det_thaw_key(&t, i, &m))
            found_here = 1;
        else
            found_here = starts[c] && !word_before(&t, i) && find_at(&t, i, kinds, &m);
        if (!found_here) {
            *o++ = (char)c;
            i++;
            /* The rest of an ASCII word cannot start a finding (every scanner
             * wants a word boundary), except a glued thaw key at a 't'. */
            if (cls[c] & C_ALNUM)
                while (i < len && (cls[t.s[i]] & C_ALNUM) && t.s[i] != 't')
                    *o++ = (char)t.s[i++];
            continue;
        }
        memcpy(o, in + i, m.keep);
        o += m.keep;
        size_t tl = tag_len[m.kind];
        memcpy(o, tags[m.kind], tl);
        o += tl;
        i += m.keep + m.len;
        if (counts) counts->n[m.kind]++;
        found++;
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return found;
}
