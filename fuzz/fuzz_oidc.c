/*
 * fuzz/fuzz_oidc.c - what the sign-in clients take from identity providers
 * (auth/oidc.h, auth/github.h): JWK Sets, discovery documents, ID tokens,
 * token endpoint answers and GitHub's JSON. Whatever comes in, nothing may
 * crash or leak, and what is accepted must keep the headers' promises
 * (checked here: a broken one aborts, and libFuzzer keeps the input).
 *
 *   make build/fuzz/fuzz_oidc && \
 *   build/fuzz/fuzz_oidc -max_total_time=60 fuzz/corpus/oidc
 *
 * Each input goes to every parser as it is. ID tokens are also verified
 * against a fixed JWKS (an RSA and a P-256 key, below); an input is almost
 * never a validly signed token, so the input is also signed here, as an ID
 * token's payload and as its header, with the P-256 key whose private half
 * is below: that way the header and claims checks behind the signature are
 * reached too. The corpus holds tokens signed with both fixed keys (for
 * NOW below) and one example of each other document.
 */
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/github.h"
#include "auth/oidc.h"
#include "auth/signed.h"
#include "util/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000LL
#define LEEWAY 60
#define ISS "https://id.example.com"
#define CLIENT "eph"
#define NONCE "fuzz-nonce"
#define FORGE_MAX 4096 /* inputs signed as a token part when at most this long */

/* The public halves of the two test keys (kid "rsa1" and "ec1"). */
static const char fixed_jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"rsa1\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"h"
    "cBIM6xKGZ85Uk67HNnLmrSMAd-unZXbyVOHaCICFICRwPBeC_nGJr19AzaEE64qKzdJakEe9jcL5zySJU10PYqNy"
    "2RjH-_yDV4WLUyYCBxvMUhOb841onQ27m_a7iuUuXY_9nZyBVO98pAN1ZlQqv1i252IknWbKtJSO2ZCalmcu1i_e"
    "KiXST-B2CYletlFhCcqD6ifT8Tv3ukhD7OR5GT9GCKRRu32yPoCre-WujYLn4NrwFemTz8HAzDLJVSzcRtaOzoBC"
    "MRp-QM_jpuTNqc7ZEbhQVz57rRuxGnIO47qnstHD1AH37GKIYe2xGm2LJiBBzFJiKg4ZYC_-ewmiQ\",\"e\":\""
    "AQAB\"},{\"kty\":\"EC\",\"kid\":\"ec1\",\"crv\":\"P-256\",\"x\":\"ZxfG5CpRtWDrM3o5_77fen"
    "d2a4l9HjccX1wYG3SnCxw\",\"y\":\"4f09i5EDTYltmyJOn5yNZt62jqJSDLozqr911cfss7s\"}]}";

/* The private half of "ec1": a test key made for this target, nothing else. */
static const char ec1_private_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgh7n1W6Ijgq8Lb+Ed\n"
    "IckHShuFwG2WHmDef9lMz63+sZWhRANCAARnF8bkKlG1YOszejn/vt96d3ZriX0e\n"
    "NxxfXBgbdKcLHOH9PYuRA02JbZsiTp+cjWbeto6iUgy6M6q/ddXH7LO7\n"
    "-----END PRIVATE KEY-----\n";

static const char forge_header[] = "{\"alg\":\"ES256\",\"kid\":\"ec1\"}";
static const char forge_payload[] =
    "{\"iss\":\"" ISS "\",\"aud\":\"" CLIENT "\",\"sub\":\"alice\",\"nonce\":\"" NONCE "\","
    "\"exp\":1700003600,\"iat\":1699999995}";

static struct oidc_jwks *keys;
static EVP_PKEY *ec1;

static void
setup(void)
{
    BIO *bio = BIO_new_mem_buf(ec1_private_pem, -1);

    if (oidc_jwks_parse(fixed_jwks, strlen(fixed_jwks), &keys, NULL) != 0 ||
        oidc_jwks_count(keys) != 2)
        abort();
    ec1 = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (ec1 == NULL)
        abort();
}

static bool
printable(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    }
    return true;
}

/* Verifies a token and checks what an accepted one promises. */
static void
check_token(const char *jwt, size_t len)
{
    struct oidc_claims c;
    struct eph_err err = {0};
    int rc = oidc_id_token_verify(jwt, len, keys, ISS, CLIENT, NONCE, NOW, LEEWAY, &c, &err);

    if (rc == 0) {
        if (c.sub == NULL || c.sub[0] == '\0' || strlen(c.sub) > 255)
            abort();
        if (c.exp_s <= NOW - LEEWAY || c.iat_s > NOW + LEEWAY)
            abort();
    } else {
        if (c.sub != NULL || c.email != NULL || err.msg[0] == '\0' || err.code != rc)
            abort();
        if (rc != EPH_EUNAUTH && rc != EPH_ENOTFOUND && rc != EPH_EINTERNAL)
            abort();
    }
    oidc_claims_release(&c);
}

/* The ES256 signature of input, as JWS wants it (raw r || s), base64url. */
static void
es256_sign(const char *input, char out[90])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[80], raw[64];
    size_t der_len = sizeof(der);
    const unsigned char *p = der;
    ECDSA_SIG *sig;

    if (EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, ec1, NULL) != 1 ||
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)input, strlen(input)) != 1)
        abort();
    EVP_MD_CTX_free(md);
    sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (sig == NULL || BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) != 32 ||
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) != 32)
        abort();
    ECDSA_SIG_free(sig);
    auth_b64url_encode(raw, sizeof(raw), out);
}

/* Signs header.payload (raw bytes, base64url-encoded here) and verifies it. */
static void
forge(const uint8_t *header, size_t h_len, const uint8_t *payload, size_t p_len)
{
    char *input = xmalloc((h_len + p_len) / 3 * 4 + 16 + 90);
    char sig[90];
    size_t o;

    o = auth_b64url_encode(header, h_len, input);
    input[o++] = '.';
    o += auth_b64url_encode(payload, p_len, input + o);
    es256_sign(input, sig);
    input[o++] = '.';
    memcpy(input + o, sig, strlen(sig) + 1);
    check_token(input, strlen(input));
    free(input);
}

static void
check_jwks(const char *in, size_t size)
{
    struct oidc_jwks *k = NULL;
    int rc = oidc_jwks_parse(in, size, &k, NULL);

    if ((rc == 0) != (k != NULL))
        abort();
    if (rc == 0 && (oidc_jwks_count(k) == 0 || oidc_jwks_count(k) > OIDC_MAX_JWKS_KEYS))
        abort();
    oidc_jwks_free(k);
}

static void
check_discovery(const char *in, size_t size)
{
    struct oidc_discovery d;
    struct eph_err err = {0};
    char *url;

    if (oidc_discovery_parse(in, size, ISS, &d, &err) != 0) {
        if (d.issuer != NULL || d.jwks_uri != NULL || !printable(err.msg))
            abort();
        return;
    }
    if (strcmp(d.issuer, ISS) != 0 || d.token_endpoint == NULL || d.jwks_uri == NULL ||
        d.authorization_endpoint == NULL || !printable(d.authorization_endpoint))
        abort();
    url = oidc_authorize_url(&d, CLIENT, "https://eph.example.com/cb", NULL, "st", NONCE, "ch");
    if (strncmp(url, d.authorization_endpoint, strlen(d.authorization_endpoint)) != 0 ||
        !printable(url))
        abort();
    free(url);
    oidc_discovery_release(&d);
}

static void
check_token_response(const char *in, size_t size)
{
    static const long statuses[] = {200, 400, 500};

    for (size_t i = 0; i < 3; i++) {
        char *id = NULL;
        struct eph_err err = {0};
        int rc = oidc_parse_token_response(statuses[i], in, size, &id, &err);

        if ((rc == 0) != (id != NULL) || !printable(err.msg))
            abort();
        if (id && (id[0] == '\0' || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
                                               "vwxyz0123456789-_.") != strlen(id)))
            abort();
        free(id);
    }
}

static void
check_github(const char *in, size_t size)
{
    struct github_user u;
    struct eph_err err = {0};
    char *s = NULL;
    bool active;

    if (github_parse_token(in, size, &s, &err) == 0) {
        if (s == NULL || s[0] == '\0' || strpbrk(s, " \r\n\t:") != NULL)
            abort();
    } else if (s != NULL || !printable(err.msg)) {
        abort();
    }
    free(s);
    s = NULL;
    if (github_parse_user(in, size, &u, &err) == 0) {
        if (u.login == NULL || u.id <= 0 || strpbrk(u.login, "/?#%: ") != NULL ||
            strcmp(u.login, "..") == 0)
            abort();
    } else if (u.login != NULL || !printable(err.msg)) {
        abort();
    }
    github_user_release(&u);
    if (github_parse_emails(in, size, &s, &err) != 0 && s != NULL)
        abort();
    free(s);
    (void)github_parse_membership(in, size, &active, &err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;

    if (keys == NULL)
        setup();
    check_jwks(in, size);
    check_discovery(in, size);
    check_token(in, size);
    check_token_response(in, size);
    check_github(in, size);
    if (size <= FORGE_MAX) {
        forge((const uint8_t *)forge_header, strlen(forge_header), data, size);
        forge(data, size, (const uint8_t *)forge_payload, strlen(forge_payload));
    }
    return 0;
}
