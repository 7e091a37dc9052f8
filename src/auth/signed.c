/*
 * auth/signed.c - host cookies, sign-in tickets and share links: a payload of
 * '\n'-separated text fields, base64url-encoded, followed by an HMAC-SHA256
 * of the purpose letter and the payload. Verification reads strings from the
 * internet, so it checks every length before it copies and refuses anything
 * that is not exactly what the make functions produce.
 */
#include "auth/signed.h"

/* SHA256_Init/Update/Final: deprecated in OpenSSL 3 in favour of EVP, whose
 * per-call set-up is what makes HMAC() slow; they are kept in OpenSSL 3. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "util/err.h"

#define PURPOSE_COOKIE 'c'
#define PURPOSE_TICKET 't'
#define PURPOSE_LINK 'l'
#define FORMAT_VERSION '1'
#define MAC_BYTES 32
#define MAC_B64_LEN 43 /* 32 bytes in base64url without padding */
#define NONCE_BYTES 16 /* 32 hex digits */
#define MAX_FIELDS 5   /* a ticket's, a link cookie's */
#define INT64_DIGITS 19

/* The longest payload that can fit: "<p>1." + payload + "." + MAC in
 * AUTH_SIGNED_MAX - 1 characters, 3 bytes per 4 characters. */
#define PAYLOAD_MAX ((AUTH_SIGNED_MAX - 1 - 3 - 1 - MAC_B64_LEN) / 4 * 3 + 2)

/* ------------------------------------------------------------- helpers */

/*
 * HMAC-SHA256 (RFC 2104) on the SHA-256 primitive: the gateway verifies a
 * host cookie on every request, and OpenSSL 3's one-shot HMAC() costs about
 * 11 us a call (it fetches the digest and builds a context each time), this
 * about 1 us. The hash states after the key's inner and outer pads are kept
 * for the most used key (the server's: one per process), so a MAC is the
 * data's blocks plus two.
 */
#define HMAC_BLOCK 64

struct hmac_pads {
    unsigned char key[HMAC_BLOCK]; /* the key, zero-padded (keys <= one block) */
    size_t key_len;
    SHA256_CTX inner, outer; /* after the ipad and opad blocks */
};

/* Set once (the first key of at most one block), then only read. */
static _Atomic(struct hmac_pads *) cached_pads;

static void
hmac_pads_init(struct hmac_pads *hp, const unsigned char *key, size_t key_len)
{
    unsigned char pad[HMAC_BLOCK];

    memset(hp, 0, sizeof(*hp));
    memcpy(hp->key, key, key_len);
    hp->key_len = key_len;
    for (size_t i = 0; i < HMAC_BLOCK; i++)
        pad[i] = hp->key[i] ^ 0x36;
    SHA256_Init(&hp->inner);
    SHA256_Update(&hp->inner, pad, sizeof(pad));
    for (size_t i = 0; i < HMAC_BLOCK; i++)
        pad[i] = hp->key[i] ^ 0x5c;
    SHA256_Init(&hp->outer);
    SHA256_Update(&hp->outer, pad, sizeof(pad));
    OPENSSL_cleanse(pad, sizeof(pad));
}

void
auth_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                 unsigned char mac[32])
{
    struct hmac_pads local, *hp = atomic_load_explicit(&cached_pads, memory_order_acquire);
    unsigned char inner[SHA256_DIGEST_LENGTH];
    SHA256_CTX c;

    if (key_len > HMAC_BLOCK) { /* a long key is hashed first: not ours, not cached */
        unsigned int mac_len = 0;

        EPH_ASSERT(key_len <= INT_MAX);
        EPH_ASSERT(HMAC(EVP_sha256(), key, (int)key_len, data, len, mac, &mac_len) != NULL);
        EPH_ASSERT(mac_len == 32);
        return;
    }
    if (hp == NULL || hp->key_len != key_len || CRYPTO_memcmp(hp->key, key, key_len) != 0) {
        struct hmac_pads *mine = NULL;

        hmac_pads_init(&local, key, key_len);
        if (hp == NULL) { /* the first key: keep it for everyone */
            mine = malloc(sizeof(*mine));
            if (mine != NULL) {
                *mine = local;
                if (!atomic_compare_exchange_strong(&cached_pads, &hp, mine)) {
                    OPENSSL_cleanse(mine, sizeof(*mine));
                    free(mine);
                }
            }
        }
        hp = &local;
    }
    c = hp->inner;
    SHA256_Update(&c, data, len);
    SHA256_Final(inner, &c);
    c = hp->outer;
    SHA256_Update(&c, inner, sizeof(inner));
    SHA256_Final(mac, &c);
    OPENSSL_cleanse(&c, sizeof(c));
    OPENSSL_cleanse(inner, sizeof(inner));
    if (hp == &local)
        OPENSSL_cleanse(&local, sizeof(local));
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t
auth_b64url_encode(const void *data, size_t len, char *out)
{
    const unsigned char *in = data;
    size_t o = 0;
    size_t i = 0;

    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)in[i] << 16;

        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;

        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

/* One more than the 6-bit value of each base64url character; 0 for any
 * other byte. */
static const unsigned char b64_values[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7,
    ['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
    ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
    ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
    ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
    ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
    ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
    ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['-'] = 63,
    ['_'] = 64,
};

long
auth_b64url_decode(const char *in, size_t len, void *out, size_t out_size)
{
    const unsigned char *s = (const unsigned char *)in;
    unsigned char *o = out;
    size_t n_out = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    size_t i = 0, w = 0;
    unsigned acc = 0, bad = 0;
    int bits = 0;

    if (len % 4 == 1 || n_out > out_size || n_out > (size_t)0x7fffffff)
        return -1;
    /* Whole quads first (four characters, three bytes), then the tail. */
    for (; i + 4 <= len; i += 4) {
        unsigned a = b64_values[s[i]], b = b64_values[s[i + 1]];
        unsigned c = b64_values[s[i + 2]], d = b64_values[s[i + 3]];
        unsigned v = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6 | (d - 1);

        bad |= (a - 1) | (b - 1) | (c - 1) | (d - 1); /* 0 - 1: all bits set */
        o[w++] = (unsigned char)(v >> 16);
        o[w++] = (unsigned char)(v >> 8);
        o[w++] = (unsigned char)v;
    }
    if (bad & ~63u)
        return -1;
    for (; i < len; i++) {
        unsigned v = b64_values[s[i]];

        if (v-- == 0)
            return -1;
        acc = (acc << 6 | v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[w++] = (unsigned char)(acc >> bits);
        }
    }
    /* The bits left over must be zero: otherwise two strings would decode to
     * the same bytes, and a changed character could pass for the original. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)w;
}

/* A control character: C0, DEL. Bytes from 0x80 up (UTF-8) are text. */
static bool
is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

static bool
has_ctl(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (is_ctl((unsigned char)s[i]))
            return true;
    }
    return false;
}

/* A field we can put in a payload: 1 to max-1 bytes, no control character.
 * *len gets its length. */
static bool
field_ok(const char *s, size_t max, size_t *len)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strnlen(s, max);
    if (n == 0 || n >= max || has_ctl(s, n))
        return false;
    *len = n;
    return true;
}

/* Strict decimal: 1 to 19 digits, no sign, no leading zero, no overflow. */
static bool
parse_i64(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;

    if (len == 0 || len > INT64_DIGITS || (len > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++) {
        int d;

        if (s[i] < '0' || s[i] > '9')
            return false;
        d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A return path that stays on the host: "/...", never "//..." (another host,
 * scheme-relative), no backslash (browsers read "/\" as "//"), no control. */
static bool
rd_ok(const char *rd, size_t len)
{
    if (len == 0 || rd[0] != '/' || (len > 1 && (rd[1] == '/' || rd[1] == '\\')))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (is_ctl((unsigned char)rd[i]) || rd[i] == '\\')
            return false;
    }
    return true;
}

static bool
is_lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

bool
auth_host_normalize(const char *host, size_t len, char out[AUTH_HOST_MAX])
{
    size_t end = len; /* where the host ends and ":port" begins */
    size_t port_from;

    out[0] = '\0';
    if (host == NULL || len == 0)
        return false;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', len);

        if (close == NULL)
            return false;
        end = (size_t)(close - host) + 1;
        if (end == 2)
            return false; /* "[]" */
        if (end < len && host[end] != ':')
            return false; /* "[::1]x" */
    } else {
        const char *colon = memchr(host, ':', len);

        if (colon != NULL)
            end = (size_t)(colon - host);
    }
    /* The port, if any: decimal digits only (RFC 3986 allows none at all). */
    port_from = end < len ? end + 1 : len;
    if (len - port_from > 5)
        return false;
    for (size_t i = port_from; i < len; i++) {
        if (host[i] < '0' || host[i] > '9')
            return false;
    }
    if (end == 0 || end >= AUTH_HOST_MAX)
        return false;
    for (size_t i = 0; i < end; i++) {
        char c = host[i];
        bool bracket = host[0] == '[';

        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-') {
            out[i] = c;
        } else if (bracket && ((c == '[' && i == 0) || (c == ']' && i == end - 1) || c == ':')) {
            out[i] = c;
        } else {
            out[0] = '\0';
            return false;
        }
    }
    out[end] = '\0';
    return true;
}

/* ------------------------------------------------------------- the envelope */

/* A payload being built: "<purpose>\n" then the fields, the first two bytes
 * MAC'd but not encoded. */
struct payload {
    char buf[2 + PAYLOAD_MAX + 1];
    size_t len;
    bool overflow;
};

static void
payload_start(struct payload *p, char purpose)
{
    p->buf[0] = purpose;
    p->buf[1] = '\n';
    p->len = 2;
    p->overflow = false;
}

static void
payload_add(struct payload *p, const char *s, size_t n)
{
    size_t sep = p->len > 2 ? 1 : 0;

    if (p->overflow || p->len + sep + n > sizeof(p->buf) - 1) {
        p->overflow = true;
        return;
    }
    if (sep)
        p->buf[p->len++] = '\n';
    memcpy(p->buf + p->len, s, n);
    p->len += n;
}

static void
payload_add_i64(struct payload *p, int64_t v)
{
    char digits[INT64_DIGITS + 1];
    size_t n = sizeof(digits);

    EPH_ASSERT(v >= 0); /* the make functions refuse negative numbers */
    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    payload_add(p, digits + n, sizeof(digits) - n);
}

/* Encodes "<purpose>1.<b64 payload>.<b64 mac>" into out. 0 or EPH_EINVAL if
 * it does not fit. */
static int
seal(const struct auth_key *k, struct payload *p, char out[AUTH_SIGNED_MAX])
{
    size_t body = p->len - 2;
    size_t enc = body / 3 * 4 + (body % 3 == 0 ? 0 : body % 3 + 1);
    size_t need = 3 + enc + 1 + MAC_B64_LEN + 1;
    unsigned char mac[MAC_BYTES];
    size_t o;

    out[0] = '\0';
    if (p->overflow || need > AUTH_SIGNED_MAX)
        return EPH_EINVAL;
    auth_hmac_sha256(k->bytes, sizeof(k->bytes), p->buf, p->len, mac);
    out[0] = p->buf[0];
    out[1] = FORMAT_VERSION;
    out[2] = '.';
    o = 3 + auth_b64url_encode(p->buf + 2, body, out + 3);
    out[o++] = '.';
    o += auth_b64url_encode(mac, sizeof(mac), out + o);
    EPH_ASSERT(o < AUTH_SIGNED_MAX);
    OPENSSL_cleanse(p->buf, sizeof(p->buf));
    return 0;
}

/* The fields of a verified payload: pointers into it, not NUL-terminated. */
struct fields {
    const char *at[MAX_FIELDS];
    size_t len[MAX_FIELDS];
};

/*
 * Checks the envelope of `value` for `purpose`: version, lengths, base64,
 * MAC, then splits the payload into at most `max_fields` fields, none with a
 * control character. The fields point into p->buf. Returns how many there
 * are (the caller checks that count), or 0 if anything fails.
 */
static size_t
open_sealed(const struct auth_key *k, char purpose, const char *value, size_t len,
            size_t max_fields, struct payload *p, struct fields *f)
{
    const char *enc;
    const char *dot;
    size_t enc_len;
    unsigned char mac_got[MAC_BYTES];
    unsigned char mac_want[MAC_BYTES];
    long body;
    size_t start;
    size_t n = 0;

    EPH_ASSERT(max_fields <= MAX_FIELDS);
    if (k == NULL || value == NULL || len < 3 + 1 + MAC_B64_LEN || len >= AUTH_SIGNED_MAX)
        return 0;
    if (value[0] != purpose || value[1] != FORMAT_VERSION || value[2] != '.')
        return 0;
    enc = value + 3;
    dot = memchr(enc, '.', len - 3);
    if (dot == NULL)
        return 0;
    enc_len = (size_t)(dot - enc);
    if (len - 3 - enc_len - 1 != MAC_B64_LEN)
        return 0;
    if (auth_b64url_decode(dot + 1, MAC_B64_LEN, mac_got, sizeof(mac_got)) != MAC_BYTES)
        return 0;
    payload_start(p, purpose);
    body = auth_b64url_decode(enc, enc_len, p->buf + 2, PAYLOAD_MAX);
    if (body <= 0)
        return 0;
    p->len = 2 + (size_t)body;
    auth_hmac_sha256(k->bytes, sizeof(k->bytes), p->buf, p->len, mac_want);
    if (CRYPTO_memcmp(mac_got, mac_want, MAC_BYTES) != 0)
        return 0;

    /* Signed by us; still parsed as carefully as if it were not. */
    start = 2;
    for (size_t i = 2; i <= p->len; i++) {
        if (i < p->len && p->buf[i] != '\n') {
            if (is_ctl((unsigned char)p->buf[i]))
                return 0;
            continue;
        }
        if (n == max_fields)
            return 0;
        f->at[n] = p->buf + start;
        f->len[n] = i - start;
        n++;
        start = i + 1;
    }
    return n;
}

/* Copies a field into a buffer of `max` bytes with its NUL; false if it is
 * empty or does not fit. */
static bool
copy_field(char *dst, size_t max, const char *s, size_t len)
{
    if (len == 0 || len >= max)
        return false;
    memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/* ------------------------------------------------------------- host cookies */

int
auth_host_cookie_make(const struct auth_key *k, const struct auth_grant *g, const char *host,
                      char out[AUTH_SIGNED_MAX])
{
    struct payload p;
    char norm[AUTH_HOST_MAX];
    char kind;
    size_t subject_len;
    int64_t unused;

    out[0] = '\0';
    if (g == NULL || host == NULL || (g->kind != AUTH_GRANT_SESSION && g->kind != AUTH_GRANT_LINK))
        return EPH_EINVAL;
    if (!field_ok(g->subject, AUTH_ID_MAX, &subject_len) || g->expires_ms < 0)
        return EPH_EINVAL;
    if (g->kind == AUTH_GRANT_LINK &&
        (!parse_i64(g->subject, subject_len, &unused) || g->issued_ms < 0))
        return EPH_EINVAL;
    if (!auth_host_normalize(host, strlen(host), norm))
        return EPH_EINVAL;
    kind = (char)g->kind;
    payload_start(&p, PURPOSE_COOKIE);
    payload_add(&p, &kind, 1);
    payload_add(&p, g->subject, subject_len);
    payload_add_i64(&p, g->expires_ms);
    payload_add(&p, norm, strlen(norm));
    if (g->kind == AUTH_GRANT_LINK)
        payload_add_i64(&p, g->issued_ms);
    return seal(k, &p, out);
}

bool
auth_host_cookie_verify(const struct auth_key *k, const char *value, size_t len, const char *host,
                        size_t host_len, int64_t now_ms, struct auth_grant *out)
{
    struct payload p;
    struct fields f;
    struct auth_grant g;
    char norm[AUTH_HOST_MAX];
    int64_t unused;
    size_t n;
    bool ok = false;

    memset(&g, 0, sizeof(g));
    n = open_sealed(k, PURPOSE_COOKIE, value, len, 5, &p, &f);
    if (n < 4 || f.len[0] != 1)
        goto out;
    /* A session's cookie has four fields, a link's five (its issued_ms). */
    if (!(f.at[0][0] == AUTH_GRANT_SESSION && n == 4) && !(f.at[0][0] == AUTH_GRANT_LINK && n == 5))
        goto out;
    g.kind = (enum auth_grant_kind)f.at[0][0];
    if (!copy_field(g.subject, sizeof(g.subject), f.at[1], f.len[1]))
        goto out;
    if (g.kind == AUTH_GRANT_LINK &&
        (!parse_i64(f.at[1], f.len[1], &unused) || !parse_i64(f.at[4], f.len[4], &g.issued_ms)))
        goto out;
    if (!parse_i64(f.at[2], f.len[2], &g.expires_ms) || g.expires_ms <= now_ms)
        goto out;
    if (!auth_host_normalize(host, host_len, norm))
        goto out;
    if (f.len[3] != strlen(norm) || memcmp(f.at[3], norm, f.len[3]) != 0)
        goto out;
    ok = true;
out:
    /* Not wiped: a cookie's payload (a session's public id, an expiry, a
     * host) is no secret, and this runs on every request. */
    if (out != NULL) {
        if (ok)
            *out = g;
        else
            memset(out, 0, sizeof(*out));
    }
    return ok;
}

/* ------------------------------------------------------------- tickets */

int
auth_ticket_make(const struct auth_key *k, struct auth_ticket *t, char out[AUTH_SIGNED_MAX])
{
    struct payload p;
    char norm[AUTH_HOST_MAX];
    size_t sid_len;
    size_t rd_len;
    size_t host_len;

    out[0] = '\0';
    if (t == NULL || t->expires_ms < 0 || !field_ok(t->session_id, sizeof(t->session_id), &sid_len))
        return EPH_EINVAL;
    rd_len = strnlen(t->rd, sizeof(t->rd));
    if (rd_len == sizeof(t->rd) || !rd_ok(t->rd, rd_len))
        return EPH_EINVAL;
    host_len = strnlen(t->host, sizeof(t->host));
    if (host_len == sizeof(t->host) || !auth_host_normalize(t->host, host_len, norm))
        return EPH_EINVAL;
    if (auth_random_hex(NONCE_BYTES, t->nonce) != 0)
        return EPH_EINTERNAL;
    memcpy(t->host, norm, strlen(norm) + 1);
    payload_start(&p, PURPOSE_TICKET);
    payload_add(&p, t->session_id, sid_len);
    payload_add(&p, t->host, strlen(t->host));
    payload_add(&p, t->rd, rd_len);
    payload_add(&p, t->nonce, strlen(t->nonce));
    payload_add_i64(&p, t->expires_ms);
    return seal(k, &p, out);
}

bool
auth_ticket_verify(const struct auth_key *k, const char *value, size_t len, const char *host,
                   size_t host_len, int64_t now_ms, struct auth_ticket *out)
{
    struct payload p;
    struct fields f;
    struct auth_ticket t;
    char norm[AUTH_HOST_MAX];
    bool ok = false;

    memset(&t, 0, sizeof(t));
    if (open_sealed(k, PURPOSE_TICKET, value, len, 5, &p, &f) != 5)
        goto out;
    if (!copy_field(t.session_id, sizeof(t.session_id), f.at[0], f.len[0]))
        goto out;
    if (!auth_host_normalize(host, host_len, norm))
        goto out;
    if (f.len[1] != strlen(norm) || memcmp(f.at[1], norm, f.len[1]) != 0)
        goto out;
    memcpy(t.host, norm, strlen(norm) + 1);
    if (!copy_field(t.rd, sizeof(t.rd), f.at[2], f.len[2]) || !rd_ok(t.rd, f.len[2]))
        goto out;
    if (f.len[3] != 2 * NONCE_BYTES || !is_lower_hex(f.at[3], f.len[3]))
        goto out;
    memcpy(t.nonce, f.at[3], f.len[3]);
    t.nonce[f.len[3]] = '\0';
    if (!parse_i64(f.at[4], f.len[4], &t.expires_ms) || t.expires_ms <= now_ms)
        goto out;
    ok = true;
out:
    OPENSSL_cleanse(&p, sizeof(p));
    if (out != NULL) {
        if (ok)
            *out = t;
        else
            memset(out, 0, sizeof(*out));
    }
    return ok;
}

/* ------------------------------------------------------------- share links */

int
auth_link_make(const struct auth_key *k, const struct auth_link *l, char out[AUTH_SIGNED_MAX])
{
    struct payload p;
    size_t name_len;

    out[0] = '\0';
    if (l == NULL || l->env_id < 0 || l->expires_ms < 0 || l->issued_ms < 0 ||
        !field_ok(l->env_name, sizeof(l->env_name), &name_len))
        return EPH_EINVAL;
    payload_start(&p, PURPOSE_LINK);
    payload_add_i64(&p, l->env_id);
    payload_add(&p, l->env_name, name_len);
    payload_add_i64(&p, l->expires_ms);
    payload_add_i64(&p, l->issued_ms);
    return seal(k, &p, out);
}

bool
auth_link_verify(const struct auth_key *k, const char *value, size_t len, int64_t now_ms,
                 struct auth_link *out)
{
    struct payload p;
    struct fields f;
    struct auth_link l;
    bool ok = false;

    memset(&l, 0, sizeof(l));
    if (open_sealed(k, PURPOSE_LINK, value, len, 4, &p, &f) != 4)
        goto out;
    if (!parse_i64(f.at[0], f.len[0], &l.env_id))
        goto out;
    if (!copy_field(l.env_name, sizeof(l.env_name), f.at[1], f.len[1]))
        goto out;
    if (!parse_i64(f.at[2], f.len[2], &l.expires_ms) || l.expires_ms <= now_ms)
        goto out;
    if (!parse_i64(f.at[3], f.len[3], &l.issued_ms))
        goto out;
    ok = true;
out:
    OPENSSL_cleanse(&p, sizeof(p));
    if (out != NULL) {
        if (ok)
            *out = l;
        else
            memset(out, 0, sizeof(*out));
    }
    return ok;
}
