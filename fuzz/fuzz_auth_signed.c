/*
 * fuzz/fuzz_auth_signed.c - the strings auth takes back from the internet:
 * host cookies, tickets and share links (auth/signed.c), Host headers
 * (auth_host_normalize) and control-host session cookies (auth/index.c).
 * Whatever comes in, nothing may crash, and what is accepted must keep the
 * headers' promises (checked here: a broken one aborts, and libFuzzer keeps
 * the input).
 *
 *   make build/fuzz/fuzz_auth_signed && \
 *   build/fuzz/fuzz_auth_signed -max_total_time=60 fuzz/corpus/auth_signed
 *
 * Each input is tried twice: as it is (almost always refused by the MAC),
 * and as the payload of a string this target signs with its own key for
 * each purpose, so that the field checks behind the MAC are reached too.
 * The corpus holds strings made with that key (see fuzz_key below).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/index.h"
#include "auth/signed.h"
#include "util/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000000LL
#define HOST "shop-1.preview.example.com"
#define SID "0123456789abcdef0123456789abcdef"
#define SECRET "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

/* Bytes 1, 2, ... 32: the seeds in fuzz/corpus/auth_signed use it too. */
static struct auth_key fuzz_key;
static struct auth_index *ix;

static void
setup(void)
{
    char hash[AUTH_HASH_HEX];
    struct auth_user_rec u = {.name = "alice", .email = "a@example.com", .role = ROLE_MEMBER};
    struct auth_session_rec s = {.id = SID,
                                 .secret_hash = hash,
                                 .user = "alice",
                                 .created_ms = NOW - 1000,
                                 .last_seen_ms = NOW,
                                 .expires_ms = NOW + 3600000};

    for (int i = 0; i < AUTH_KEY_BYTES; i++)
        fuzz_key.bytes[i] = (unsigned char)(i + 1);
    ix = auth_index_new(7200000);
    auth_index_put_user(ix, &u);
    auth_token_hash(SECRET, hash);
    auth_index_put_session(ix, &s);
}

static bool
is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* A normalized host: fits, allowed characters only, and normalizing it
 * again changes nothing. */
static void
check_host(const char *in, size_t len)
{
    char out[AUTH_HOST_MAX];
    char again[AUTH_HOST_MAX];
    size_t n;

    if (!auth_host_normalize(in, len, out))
        return;
    n = strnlen(out, AUTH_HOST_MAX);
    if (n == 0 || n >= AUTH_HOST_MAX ||
        strspn(out, "abcdefghijklmnopqrstuvwxyz0123456789.-[]:") != n)
        abort();
    if (!auth_host_normalize(out, n, again) || strcmp(out, again) != 0)
        abort();
}

/* Runs the three verifiers on `value` and checks what they accept. */
static void
check_verifiers(const char *value, size_t len, const char *host, size_t host_len)
{
    struct auth_grant g;
    struct auth_ticket t;
    struct auth_link l;

    if (auth_host_cookie_verify(&fuzz_key, value, len, host, host_len, NOW, &g)) {
        size_t n = strnlen(g.subject, AUTH_ID_MAX);

        if (n == 0 || n >= AUTH_ID_MAX || g.expires_ms <= NOW)
            abort();
        if (g.kind != AUTH_GRANT_SESSION && g.kind != AUTH_GRANT_LINK)
            abort();
        if (g.kind == AUTH_GRANT_LINK && strspn(g.subject, "0123456789") != n)
            abort();
        if (g.issued_ms < 0 || (g.kind == AUTH_GRANT_SESSION && g.issued_ms != 0))
            abort();
    }
    if (auth_ticket_verify(&fuzz_key, value, len, host, host_len, NOW, &t)) {
        size_t rd_len = strnlen(t.rd, AUTH_RD_MAX);

        if (rd_len == 0 || rd_len >= AUTH_RD_MAX || t.rd[0] != '/' || t.rd[1] == '/' ||
            strchr(t.rd, '\\') != NULL || t.expires_ms <= NOW)
            abort();
        for (size_t i = 0; i < rd_len; i++) {
            if ((unsigned char)t.rd[i] < 0x20 || t.rd[i] == 0x7f)
                abort();
        }
        if (strnlen(t.nonce, sizeof(t.nonce)) != 32 || !is_lower_hex(t.nonce, 32))
            abort();
        if (strnlen(t.session_id, AUTH_ID_MAX) == 0 || strnlen(t.host, AUTH_HOST_MAX) == 0)
            abort();
    }
    if (auth_link_verify(&fuzz_key, value, len, NOW, &l)) {
        if (l.env_id < 0 || l.issued_ms < 0 || l.expires_ms <= NOW || strnlen(l.env_name, sizeof(l.env_name)) == 0 ||
            strnlen(l.env_name, sizeof(l.env_name)) >= sizeof(l.env_name))
            abort();
    }
}

/* Signs `payload` for `purpose` the way signed.c does, into out (4096 bytes). */
static size_t
forge(char purpose, const uint8_t *payload, size_t n, char *out)
{
    unsigned char mac[32];
    uint8_t *msg = xmalloc(n + 2);
    size_t o;

    msg[0] = (uint8_t)purpose;
    msg[1] = '\n';
    memcpy(msg + 2, payload, n);
    auth_hmac_sha256(fuzz_key.bytes, sizeof(fuzz_key.bytes), msg, n + 2, mac);
    free(msg);
    out[0] = purpose;
    out[1] = '1';
    out[2] = '.';
    o = 3 + auth_b64url_encode(payload, n, out + 3);
    out[o++] = '.';
    o += auth_b64url_encode(mac, sizeof(mac), out + o);
    return o;
}

static void
check_index(const uint8_t *data, size_t size)
{
    struct auth_who who;
    char *z = xstrndup((const char *)data, size); /* cut at the first NUL */

    if (auth_index_check_session_cookie(ix, (const char *)data, size, NOW, &who)) {
        if (size != strlen(SID "." SECRET) || memcmp(data, SID "." SECRET, size) != 0 ||
            strcmp(who.user, "alice") != 0)
            abort();
    }
    if (auth_index_check_session_id(ix, z, NOW, &who) && strcmp(z, SID) != 0)
        abort();
    if (auth_index_check_token(ix, z, NOW, &who))
        abort(); /* the index holds no token */
    (void)auth_index_ticket_claim(ix, z, NOW + 1000, NOW);
    free(z);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char purposes[] = "ctl";
    const char *value = (const char *)data;
    const uint8_t *nl;
    char forged[4096];

    if (ix == NULL)
        setup();
    check_host(value, size);
    check_verifiers(value, size, HOST, strlen(HOST));
    /* The request's Host could be anything too: the part after the first
     * newline, if there is one. */
    nl = memchr(data, '\n', size);
    if (nl != NULL)
        check_verifiers(value, (size_t)(nl - data), (const char *)nl + 1,
                        size - (size_t)(nl - data) - 1);
    check_index(data, size);

    if (size <= 1000) {
        for (int i = 0; i < 3; i++) {
            size_t n = forge(purposes[i], data, size, forged);

            check_verifiers(forged, n, HOST, strlen(HOST));
        }
    }
    return 0;
}
