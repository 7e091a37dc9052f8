/*
 * tests/unit/auth/test_oidc.c - the OpenID Connect client's pure parts:
 * ID tokens signed here with fresh RSA-2048 and P-256 keys (published to
 * the module as a JWKS built here too) are accepted, and every forgery or
 * stale token is refused with the message that names its fault; JWKS and
 * discovery parsing; PKCE against RFC 7636's example; the authorization
 * URL; the token endpoint's answers. No network.
 */
#include "auth/oidc.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#include "auth/signed.h"
#include "util/err.h"
#include "util/xmalloc.h"

#define NOW 1700000000LL
#define LEEWAY 60
#define ISS "https://id.example.com"
#define CLIENT "eph"
#define NONCE "n-0123456789abcdef"

static EVP_PKEY *rsa_key;
static EVP_PKEY *ec_key;
static char *jwks_json;        /* both public keys: kid "rsa1" and "ec1" */
static struct oidc_jwks *jwks; /* parsed from jwks_json */

/* ------------------------------------------------------------- helpers */

static char *
b64(const void *data, size_t len)
{
    char *out = xmalloc(len / 3 * 4 + 5);

    auth_b64url_encode(data, len, out);
    return out;
}

static char *
b64s(const char *s)
{
    return b64(s, strlen(s));
}

/* A big-number parameter of key, big-endian, left-padded to pad bytes (0: none). */
static char *
bn_param_b64(EVP_PKEY *key, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char raw[1024];
    int n;
    char *out;

    cr_assert_eq(EVP_PKEY_get_bn_param(key, name, &bn), 1);
    n = pad ? BN_bn2binpad(bn, raw, pad) : BN_bn2bin(bn, raw);
    cr_assert_gt(n, 0);
    out = b64(raw, (size_t)n);
    BN_free(bn);
    return out;
}

static void
make_keys(void)
{
    char *n, *e, *x, *y;
    struct eph_err err = {0};

    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    cr_assert(rsa_key && ec_key);
    n = bn_param_b64(rsa_key, OSSL_PKEY_PARAM_RSA_N, 0);
    e = bn_param_b64(rsa_key, OSSL_PKEY_PARAM_RSA_E, 0);
    x = bn_param_b64(ec_key, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    y = bn_param_b64(ec_key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    jwks_json = xasprintf(
        "{\"keys\": ["
        "{\"kty\": \"oct\", \"kid\": \"rsa1\", \"k\": \"c2VjcmV0\"},"
        "{\"kty\": \"RSA\", \"kid\": \"rsa1\", \"use\": \"sig\", \"alg\": \"RS256\", "
        "\"n\": \"%s\", \"e\": \"%s\"},"
        "{\"kty\": \"RSA\", \"kid\": \"enc1\", \"use\": \"enc\", \"n\": \"%s\", \"e\": \"%s\"},"
        "{\"kty\": \"OKP\", \"kid\": \"ed1\", \"crv\": \"Ed25519\", \"x\": \"AAAA\"},"
        "{\"kty\": \"EC\", \"kid\": \"ec1\", \"crv\": \"P-256\", \"x\": \"%s\", \"y\": \"%s\"}"
        "]}",
        n, e, n, e, x, y);
    cr_assert_eq(oidc_jwks_parse(jwks_json, strlen(jwks_json), &jwks, &err), 0, "%s", err.msg);
    free(n);
    free(e);
    free(x);
    free(y);
}

static void
free_keys(void)
{
    oidc_jwks_free(jwks);
    free(jwks_json);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(ec_key);
}

TestSuite(oidc, .init = make_keys, .fini = free_keys, .timeout = 60);

/* The JWS signature of `input` with key (RS256, or ES256 as raw r||s). */
static char *
sign(EVP_PKEY *key, const char *input)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t sig_len = sizeof(sig);

    cr_assert_eq(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL), 1);
    cr_assert_eq(EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    if (EVP_PKEY_is_a(key, "EC")) { /* DER -> r || s, 32 bytes each */
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
        unsigned char raw[64];

        cr_assert_not_null(es);
        cr_assert_eq(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32), 32);
        cr_assert_eq(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32), 32);
        ECDSA_SIG_free(es);
        return b64(raw, sizeof(raw));
    }
    return b64(sig, sig_len);
}

/* header.payload.signature, signed with key (NULL: empty signature). */
static char *
token(const char *header, const char *payload, EVP_PKEY *key)
{
    char *h = b64s(header), *p = b64s(payload);
    char *input = xasprintf("%s.%s", h, p);
    char *sig = key ? sign(key, input) : xstrdup("");
    char *out = xasprintf("%s.%s", input, sig);

    free(h);
    free(p);
    free(input);
    free(sig);
    return out;
}

/* Claims with fields that a test can change: NULL leaves a claim out. */
struct claims {
    const char *iss, *aud, *azp, *nonce, *sub;
    long long exp, iat;
};

static const struct claims good = {
    .iss = "\"" ISS "\"",
    .aud = "\"" CLIENT "\"",
    .nonce = "\"" NONCE "\"",
    .sub = "\"alice\"",
    .exp = NOW + 300,
    .iat = NOW - 10,
};

static char *
payload(const struct claims *c)
{
    char *s = xasprintf("{\"exp\": %lld, \"iat\": %lld, \"email\": \"alice@example.com\", "
                        "\"email_verified\": true, \"name\": \"Alice A.\", "
                        "\"preferred_username\": \"al\"",
                        c->exp, c->iat);
    const char *names[] = {"iss", "aud", "azp", "nonce", "sub"};
    const char *values[] = {c->iss, c->aud, c->azp, c->nonce, c->sub};

    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        if (values[i]) {
            char *t = xasprintf("%s, \"%s\": %s", s, names[i], values[i]);

            free(s);
            s = t;
        }
    }
    {
        char *t = xasprintf("%s}", s);

        free(s);
        s = t;
    }
    return s;
}

static int
verify(const char *jwt, struct oidc_claims *c, struct eph_err *err)
{
    return oidc_id_token_verify(jwt, strlen(jwt), jwks, ISS, CLIENT, NONCE, NOW, LEEWAY, c, err);
}

/* ------------------------------------------------------------- accepted tokens */

Test(oidc, accepts_an_rs256_token_and_returns_its_claims)
{
    char *p = payload(&good);
    char *t = token("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"typ\":\"JWT\"}", p, rsa_key);
    struct oidc_claims c;
    struct eph_err err = {0};

    cr_assert_eq(verify(t, &c, &err), 0, "%s", err.msg);
    cr_expect_str_eq(c.sub, "alice");
    cr_expect_str_eq(c.email, "alice@example.com");
    cr_expect(c.email_verified);
    cr_expect_str_eq(c.name, "Alice A.");
    cr_expect_str_eq(c.preferred_username, "al");
    cr_expect_eq(c.exp_s, NOW + 300);
    cr_expect_eq(c.iat_s, NOW - 10);
    oidc_claims_release(&c);
    cr_expect_null(c.sub);
    free(p);
    free(t);
}

Test(oidc, accepts_an_es256_token)
{
    /* Many signatures: some r or s have their top bit set (DER adds a zero
     * byte) or a leading zero byte (DER drops it); all must verify. */
    for (int i = 0; i < 16; i++) {
        struct claims cl = good;
        char *p, *t;
        struct oidc_claims c;
        struct eph_err err = {0};

        cl.iat = NOW - i;
        p = payload(&cl);
        t = token("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", p, ec_key);
        cr_assert_eq(verify(t, &c, &err), 0, "round %d: %s", i, err.msg);
        cr_expect_str_eq(c.sub, "alice");
        oidc_claims_release(&c);
        free(p);
        free(t);
    }
}

Test(oidc, accepts_an_audience_array_that_names_the_client_with_azp)
{
    struct claims cl = good;
    struct oidc_claims c;
    struct eph_err err = {0};
    char *p, *t;

    cl.aud = "[\"other\", \"" CLIENT "\"]";
    cl.azp = "\"" CLIENT "\"";
    p = payload(&cl);
    t = token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, rsa_key);
    cr_expect_eq(verify(t, &c, &err), 0, "%s", err.msg);
    oidc_claims_release(&c);
    free(p);
    free(t);

    cl.aud = "[\"" CLIENT "\"]"; /* one audience: no azp needed */
    cl.azp = NULL;
    p = payload(&cl);
    t = token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, rsa_key);
    cr_expect_eq(verify(t, &c, &err), 0, "%s", err.msg);
    oidc_claims_release(&c);
    free(p);
    free(t);
}

Test(oidc, accepts_a_token_without_kid_when_one_key_fits)
{
    char *p = payload(&good);
    char *t = token("{\"alg\":\"ES256\"}", p, ec_key);
    struct oidc_claims c;
    struct eph_err err = {0};

    cr_expect_eq(verify(t, &c, &err), 0, "%s", err.msg);
    oidc_claims_release(&c);
    free(p);
    free(t);
}

Test(oidc, accepts_an_expired_token_within_the_leeway)
{
    struct claims cl = good;
    char *p, *t;
    struct oidc_claims c;
    struct eph_err err = {0};

    cl.exp = NOW - LEEWAY + 1;
    cl.iat = NOW + LEEWAY;
    p = payload(&cl);
    t = token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, rsa_key);
    cr_expect_eq(verify(t, &c, &err), 0, "%s", err.msg);
    oidc_claims_release(&c);
    free(p);
    free(t);
}

/* ------------------------------------------------------------- refused tokens */

Test(oidc, refuses_stale_or_foreign_claims_with_their_reason)
{
    static const struct {
        struct claims c;
        const char *want;
    } bad[] = {
        {{.iss = "\"" ISS "\"",
          .aud = "\"eph\"",
          .nonce = "\"" NONCE "\"",
          .sub = "\"a\"",
          .exp = NOW - LEEWAY,
          .iat = NOW - 600},
         "ID token expired"},
        {{.iss = "\"" ISS "\"",
          .aud = "\"other\"",
          .nonce = "\"" NONCE "\"",
          .sub = "\"a\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token audience is not this client"},
        {{.iss = "\"" ISS "\"",
          .aud = "[\"other\"]",
          .nonce = "\"" NONCE "\"",
          .sub = "\"a\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token audience is not this client"},
        {{.iss = "\"" ISS "\"",
          .aud = "[\"eph\", \"other\"]",
          .nonce = "\"" NONCE "\"",
          .sub = "\"a\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token authorized party is not this client"},
        {{.iss = "\"" ISS "\"",
          .aud = "\"eph\"",
          .azp = "\"other\"",
          .nonce = "\"" NONCE "\"",
          .sub = "\"a\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token authorized party is not this client"},
        {{.iss = "\"https://evil.example.com\"",
          .aud = "\"eph\"",
          .nonce = "\"" NONCE "\"",
          .sub = "\"a\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token issuer 'https://evil.example.com' is not 'https://id.example.com'"},
        {{.iss = "\"" ISS "/\"",
          .aud = "\"eph\"",
          .nonce = "\"" NONCE "\"",
          .sub = "\"a\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token issuer 'https://id.example.com/' is not 'https://id.example.com'"},
        {{.iss = "\"" ISS "\"",
          .aud = "\"eph\"",
          .nonce = "\"n-other\"",
          .sub = "\"a\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token nonce does not match"},
        {{.iss = "\"" ISS "\"", .aud = "\"eph\"", .sub = "\"a\"", .exp = NOW + 300, .iat = NOW},
         "ID token nonce does not match"},
        {{.iss = "\"" ISS "\"",
          .aud = "\"eph\"",
          .nonce = "\"" NONCE "\"",
          .sub = "\"a\"",
          .exp = NOW + 300,
          .iat = NOW + LEEWAY + 1},
         "ID token was issued in the future"},
        {{.iss = "\"" ISS "\"",
          .aud = "\"eph\"",
          .nonce = "\"" NONCE "\"",
          .sub = "\"\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token has no valid subject"},
        {{.iss = "\"" ISS "\"",
          .aud = "\"eph\"",
          .nonce = "\"" NONCE "\"",
          .exp = NOW + 300,
          .iat = NOW},
         "ID token has no valid subject"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char *p = payload(&bad[i].c);
        char *t = token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, rsa_key);
        struct oidc_claims c;
        struct eph_err err = {0};

        cr_expect_eq(verify(t, &c, &err), EPH_EUNAUTH, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        cr_expect_null(c.sub, "case %zu", i);
        free(p);
        free(t);
    }
}

Test(oidc, refuses_claims_that_are_not_what_they_should_be)
{
    static const struct {
        const char *payload, *want;
    } bad[] = {
        {"{\"iss\": \"" ISS "\", \"aud\": \"eph\", \"nonce\": \"" NONCE "\", \"sub\": \"a\", "
         "\"iat\": 1}",
         "ID token has no expiry time"},
        {"{\"iss\": \"" ISS "\", \"aud\": \"eph\", \"nonce\": \"" NONCE "\", \"sub\": \"a\", "
         "\"exp\": \"9999999999\", \"iat\": 1}",
         "ID token has no expiry time"},
        {"{\"iss\": \"" ISS "\", \"aud\": \"eph\", \"nonce\": \"" NONCE "\", \"sub\": \"a\", "
         "\"exp\": 9999999999}",
         "ID token has no issue time"},
        {"{\"iss\": \"" ISS "\", \"aud\": \"eph\", \"nonce\": \"" NONCE "\", \"sub\": \"a\", "
         "\"exp\": 9999999999, \"iat\": 1, \"nbf\": 9999999999}",
         "ID token is not valid yet"},
        {"{\"iss\": \"" ISS "\", \"aud\": 7, \"nonce\": \"" NONCE "\", \"sub\": \"a\", "
         "\"exp\": 9999999999, \"iat\": 1}",
         "ID token audience is not this client"},
        {"{\"iss\": \"" ISS "\", \"aud\": \"eph\", \"nonce\": 5, \"sub\": \"a\", "
         "\"exp\": 9999999999, \"iat\": 1}",
         "ID token nonce does not match"},
        {"{\"iss\": \"" ISS "\", \"iss\": \"" ISS "\", \"aud\": \"eph\"}",
         "ID token is malformed: payload is not base64url JSON"},
        {"[1, 2]", "ID token is malformed: payload is not base64url JSON"},
        {"{\"iss\": ", "ID token is malformed: payload is not base64url JSON"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char *t = token("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", bad[i].payload, ec_key);
        struct oidc_claims c;
        struct eph_err err = {0};

        cr_expect_eq(verify(t, &c, &err), EPH_EUNAUTH, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        free(t);
    }
}

Test(oidc, refuses_algorithms_other_than_rs256_and_es256)
{
    char *p = payload(&good);
    char *none = token("{\"alg\":\"none\"}", p, NULL);
    char *none_kid = token("{\"alg\":\"none\",\"kid\":\"rsa1\"}", p, NULL);
    char *ps256 = token("{\"alg\":\"PS256\",\"kid\":\"rsa1\"}", p, rsa_key);
    char *no_alg = token("{\"kid\":\"rsa1\"}", p, rsa_key);
    char *pem = NULL;
    char *hs256;
    struct oidc_claims c;
    struct eph_err err = {0};

    cr_expect_eq(verify(none, &c, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token algorithm 'none' is not allowed");
    cr_expect_eq(verify(none_kid, &c, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token algorithm 'none' is not allowed");
    cr_expect_eq(verify(ps256, &c, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token algorithm 'PS256' is not allowed");
    cr_expect_eq(verify(no_alg, &c, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token header has no algorithm");

    /* The classic confusion: HMAC-SHA256 keyed with the RSA public key that
     * anyone can fetch, hoping the verifier takes the key as a secret. */
    {
        BIO *bio = BIO_new(BIO_s_mem());
        char *mem;
        long n;
        char *h = b64s("{\"alg\":\"HS256\",\"kid\":\"rsa1\"}"), *pl = b64s(p);
        char *input = xasprintf("%s.%s", h, pl);
        unsigned char mac[32];
        char *mac_b64;

        cr_assert_eq(PEM_write_bio_PUBKEY(bio, rsa_key), 1);
        n = BIO_get_mem_data(bio, &mem);
        pem = xstrndup(mem, (size_t)n);
        BIO_free(bio);
        auth_hmac_sha256(pem, strlen(pem), input, strlen(input), mac);
        mac_b64 = b64(mac, sizeof(mac));
        hs256 = xasprintf("%s.%s", input, mac_b64);
        free(h);
        free(pl);
        free(input);
        free(mac_b64);
    }
    cr_expect_eq(verify(hs256, &c, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token algorithm 'HS256' is not allowed");

    free(pem);
    free(hs256);
    free(none);
    free(none_kid);
    free(ps256);
    free(no_alg);
    free(p);
}

Test(oidc, reports_an_unknown_key_id_as_not_found)
{
    char *p = payload(&good);
    char *t = token("{\"alg\":\"RS256\",\"kid\":\"rotated\"}", p, rsa_key);
    char *enc = token("{\"alg\":\"RS256\",\"kid\":\"enc1\"}", p, rsa_key); /* use: enc */
    struct oidc_claims c;
    struct eph_err err = {0};

    cr_expect_eq(verify(t, &c, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "ID token signed by an unknown key");
    cr_expect_eq(verify(enc, &c, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "ID token signed by an unknown key");
    free(p);
    free(t);
    free(enc);
}

Test(oidc, refuses_a_key_of_the_wrong_type_for_the_algorithm)
{
    char *p = payload(&good);
    char *t = token("{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", p, ec_key);
    struct oidc_claims c;
    struct eph_err err = {0};

    cr_expect_eq(verify(t, &c, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token key does not fit its algorithm");
    free(p);
    free(t);
}

/* Replaces the character at `at` of s with another base64url character. */
static void
flip(char *s, size_t at)
{
    s[at] = s[at] == 'A' ? 'B' : 'A';
}

Test(oidc, refuses_tampered_tokens)
{
    struct claims evil = good;
    char *p = payload(&good);
    char *pe;
    char *rs = token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, rsa_key);
    char *es = token("{\"alg\":\"ES256\",\"kid\":\"ec1\"}", p, ec_key);
    char *forged_payload;
    struct oidc_claims c;
    struct eph_err err = {0};

    evil.sub = "\"admin\"";
    pe = payload(&evil);
    /* the payload swapped for another, the signature kept */
    {
        char *dot1 = strchr(rs, '.'), *dot2 = strchr(dot1 + 1, '.');
        char *pb = b64s(pe);

        forged_payload = xasprintf("%.*s.%s%s", (int)(dot1 - rs), rs, pb, dot2);
        free(pb);
    }
    cr_expect_eq(verify(forged_payload, &c, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token signature is invalid");

    /* one signature character changed, in the middle (the last one may
     * only differ in bits base64url leaves unused) */
    for (int k = 0; k < 2; k++) {
        char *t = k ? es : rs;
        char *sig = strrchr(t, '.') + 1;

        flip(sig, strlen(sig) / 2);
        cr_expect_eq(verify(t, &c, &err), EPH_EUNAUTH, "%s", k ? "es256" : "rs256");
        cr_expect_str_eq(err.msg, "ID token signature is invalid");
    }
    free(forged_payload);
    free(rs);
    free(es);
    free(p);
    free(pe);
}

Test(oidc, refuses_an_es256_signature_in_der_form)
{
    char *h = b64s("{\"alg\":\"ES256\",\"kid\":\"ec1\"}");
    char *p = payload(&good);
    char *pb = b64s(p);
    char *input = xasprintf("%s.%s", h, pb);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t der_len = sizeof(der);
    char *sig, *t;
    struct oidc_claims c;
    struct eph_err err = {0};

    cr_assert_eq(EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, ec_key, NULL), 1);
    cr_assert_eq(EVP_DigestSign(md, der, &der_len, (unsigned char *)input, strlen(input)), 1);
    EVP_MD_CTX_free(md);
    sig = b64(der, der_len);
    t = xasprintf("%s.%s", input, sig);
    cr_expect_eq(verify(t, &c, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token signature is invalid");
    free(h);
    free(p);
    free(pb);
    free(input);
    free(sig);
    free(t);
}

Test(oidc, refuses_malformed_tokens)
{
    char *p = payload(&good);
    char *good_token = token("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", p, rsa_key);
    char *hdr_array = token("[\"RS256\"]", p, rsa_key);
    char *crit = token("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"]}", p, rsa_key);
    char *kid_num = token("{\"alg\":\"RS256\",\"kid\":7}", p, rsa_key);
    char *four = xasprintf("%s.e30", good_token);
    char *bad_sig = xasprintf("%s!", good_token);
    char *no_sig = xstrndup(good_token, (size_t)(strrchr(good_token, '.') + 1 - good_token));
    const struct {
        const char *jwt, *want;
    } bad[] = {
        {"", "ID token is malformed: not three dot-separated parts"},
        {"abc", "ID token is malformed: not three dot-separated parts"},
        {"a.b", "ID token is malformed: not three dot-separated parts"},
        {".e30.sig", "ID token is malformed: not three dot-separated parts"},
        {"e30..sig", "ID token is malformed: not three dot-separated parts"},
        {four, "ID token is malformed: not three dot-separated parts"},
        {"!!!!.e30.c2ln", "ID token is malformed: header is not base64url JSON"},
        {"bm90IGpzb24.e30.c2ln", "ID token is malformed: header is not base64url JSON"},
        {hdr_array, "ID token is malformed: header is not base64url JSON"},
        {crit, "ID token header has critical extensions"},
        {kid_num, "ID token is malformed: key id is not a string"},
        {bad_sig, "ID token is malformed: signature is not base64url"},
        {no_sig, "ID token signature is invalid"},
    };
    struct oidc_claims c;
    struct eph_err err = {0};

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        cr_expect_eq(verify(bad[i].jwt, &c, &err), EPH_EUNAUTH, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
    }
    /* bytes past len are not part of the token */
    cr_expect_eq(oidc_id_token_verify(good_token, strlen(good_token) - 5, jwks, ISS, CLIENT, NONCE,
                                      NOW, LEEWAY, &c, &err),
                 EPH_EUNAUTH);
    cr_expect_eq(oidc_id_token_verify(good_token, strlen(good_token), NULL, ISS, CLIENT, NONCE, NOW,
                                      LEEWAY, &c, &err),
                 EPH_ENOTFOUND);
    free(p);
    free(good_token);
    free(hdr_array);
    free(crit);
    free(kid_num);
    free(four);
    free(bad_sig);
    free(no_sig);
}

/* ------------------------------------------------------------- JWKS */

Test(oidc, keeps_only_rs256_and_es256_signing_keys)
{
    cr_expect_eq(oidc_jwks_count(jwks), 2); /* of oct, RSA sig, RSA enc, OKP, EC */
}

Test(oidc, refuses_a_token_without_kid_when_several_keys_fit)
{
    char *n = bn_param_b64(rsa_key, OSSL_PKEY_PARAM_RSA_N, 0);
    char *json = xasprintf("{\"keys\": [{\"kty\": \"RSA\", \"kid\": \"a\", \"n\": \"%s\", "
                           "\"e\": \"AQAB\"}, {\"kty\": \"RSA\", \"kid\": \"b\", \"n\": \"%s\", "
                           "\"e\": \"AQAB\"}]}",
                           n, n);
    struct oidc_jwks *two = NULL;
    char *p = payload(&good);
    char *t = token("{\"alg\":\"RS256\"}", p, rsa_key);
    struct oidc_claims c;
    struct eph_err err = {0};

    cr_assert_eq(oidc_jwks_parse(json, strlen(json), &two, &err), 0, "%s", err.msg);
    cr_expect_eq(oidc_id_token_verify(t, strlen(t), two, ISS, CLIENT, NONCE, NOW, LEEWAY, &c, &err),
                 EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "ID token names no key id and the provider has several keys");
    oidc_jwks_free(two);
    free(n);
    free(json);
    free(p);
    free(t);
}

Test(oidc, refuses_bad_key_sets)
{
    /* 1024-bit modulus: an odd number of that size is enough to be refused */
    unsigned char small[128];
    char *small_b64, *small_json;
    const char *zero32 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    char *off_curve;
    const struct {
        const char *json;
        int rc;
        const char *want;
    } * c, bad[] = {
               {"", EPH_EPARSE, "JWKS is not a JSON object"},
               {"[]", EPH_EPARSE, "JWKS is not a JSON object"},
               {"{\"keys\": {}}", EPH_EINVAL, "JWKS has no 'keys' array"},
               {"{\"keys\": []}", EPH_EINVAL, "JWKS holds no RS256 or ES256 signing key"},
               {"{\"keys\": [{\"kty\": \"oct\", \"k\": \"c2VjcmV0\"}, 1, \"x\"]}", EPH_EINVAL,
                "JWKS holds no RS256 or ES256 signing key"},
               {"{\"keys\": [{\"kty\": \"RSA\", \"n\": \"!!\", \"e\": \"AQAB\"}]}", EPH_EINVAL,
                "JWKS key 0: RSA 'n' or 'e' is missing, not base64url or too long"},
               {"{\"keys\": [{\"kty\": \"RSA\", \"e\": \"AQAB\"}]}", EPH_EINVAL,
                "JWKS key 0: RSA 'n' or 'e' is missing, not base64url or too long"},
               {"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-384\", \"x\": \"AA\", \"y\": \"AA\"}]}",
                EPH_EINVAL, "JWKS holds no RS256 or ES256 signing key"},
               {"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"AAAA\", \"y\": "
                "\"AAAA\"}]}",
                EPH_EINVAL, "JWKS key 0: P-256 'x' or 'y' is missing or not 32 base64url bytes"},
               {"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"kid\": 3}]}", EPH_EINVAL,
                "JWKS key 0: 'kid' is not a string of at most 256 bytes"},
               {NULL, EPH_EINVAL, "JWKS key 0: RSA modulus is not 2048 to 8192 bits"},
               {NULL, EPH_EINVAL, "JWKS key 0: EC point is not on P-256"},
           };
    struct eph_err err = {0};
    struct oidc_jwks *k;

    memset(small, 0xab, sizeof(small));
    small_b64 = b64(small, sizeof(small));
    small_json =
        xasprintf("{\"keys\": [{\"kty\": \"RSA\", \"n\": \"%s\", \"e\": \"AQAB\"}]}", small_b64);
    off_curve = xasprintf("{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"%s\", "
                          "\"y\": \"%s\"}]}",
                          zero32, zero32);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        const char *json = bad[i].json;

        c = &bad[i];
        if (json == NULL)
            json = i == ARRAY_LEN(bad) - 2 ? small_json : off_curve;
        k = (struct oidc_jwks *)1;
        cr_expect_eq(oidc_jwks_parse(json, strlen(json), &k, &err), c->rc, "case %zu", i);
        cr_expect_str_eq(err.msg, c->want, "case %zu", i);
        cr_expect_null(k, "case %zu", i);
    }
    free(small_b64);
    free(small_json);
    free(off_curve);
}

/* ------------------------------------------------------------- discovery */

#define DISCOVERY                                                                                  \
    "{\"issuer\": \"https://id.example.com\", "                                                    \
    "\"authorization_endpoint\": \"https://id.example.com/auth\", "                                \
    "\"token_endpoint\": \"https://id.example.com/token\", "                                       \
    "\"jwks_uri\": \"https://id.example.com/jwks\", "                                              \
    "\"userinfo_endpoint\": \"https://id.example.com/me\", "                                       \
    "\"response_types_supported\": [\"code\"]}"

Test(oidc, parses_a_discovery_document)
{
    struct oidc_discovery d;
    struct eph_err err = {0};

    cr_assert_eq(oidc_discovery_parse(DISCOVERY, strlen(DISCOVERY), ISS, &d, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(d.issuer, ISS);
    cr_expect_str_eq(d.authorization_endpoint, ISS "/auth");
    cr_expect_str_eq(d.token_endpoint, ISS "/token");
    cr_expect_str_eq(d.jwks_uri, ISS "/jwks");
    cr_expect_str_eq(d.userinfo_endpoint, ISS "/me");
    cr_expect_null(d.end_session_endpoint);
    oidc_discovery_release(&d);
    cr_expect_null(d.issuer);
}

Test(oidc, refuses_bad_discovery_documents)
{
    static const struct {
        const char *json, *issuer;
        int rc;
        const char *want;
    } bad[] = {
        {DISCOVERY, ISS "/", EPH_EINVAL,
         "discovery document names issuer 'https://id.example.com', not 'https://id.example.com/'"},
        {DISCOVERY, "https://ID.example.com", EPH_EINVAL,
         "discovery document names issuer 'https://id.example.com', not 'https://ID.example.com'"},
        {"{\"issuer\": \"" ISS "\"}", ISS, EPH_EINVAL,
         "discovery document has no 'authorization_endpoint'"},
        {"{\"issuer\": \"" ISS "\", \"authorization_endpoint\": \"" ISS "/a\", "
         "\"token_endpoint\": \"" ISS "/t\", \"jwks_uri\": \"file:///etc/passwd\"}",
         ISS, EPH_EINVAL,
         "discovery document's 'jwks_uri' is not an http(s) URL: 'file:///etc/passwd'"},
        {"{\"issuer\": \"" ISS "\", \"authorization_endpoint\": \"" ISS "/a#x\", "
         "\"token_endpoint\": \"" ISS "/t\", \"jwks_uri\": \"" ISS "/j\"}",
         ISS, EPH_EINVAL,
         "discovery document's 'authorization_endpoint' is not an http(s) URL: "
         "'https://id.example.com/a#x'"},
        {"{\"issuer\": \"" ISS "\", \"authorization_endpoint\": \"" ISS "/a\", "
         "\"token_endpoint\": 5, \"jwks_uri\": \"" ISS "/j\"}",
         ISS, EPH_EINVAL, "discovery document's 'token_endpoint' is not a string"},
        {"{\"authorization_endpoint\": \"" ISS "/a\"}", ISS, EPH_EINVAL,
         "discovery document has no 'issuer'"},
        {"<html>", ISS, EPH_EPARSE, "discovery document is not a JSON object"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct oidc_discovery d;
        struct eph_err err = {0};

        cr_expect_eq(
            oidc_discovery_parse(bad[i].json, strlen(bad[i].json), bad[i].issuer, &d, &err),
            bad[i].rc, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        cr_expect_null(d.issuer, "case %zu", i);
        cr_expect_null(d.authorization_endpoint, "case %zu", i);
    }
}

/* ------------------------------------------------------------- PKCE and URLs */

Test(oidc, computes_the_pkce_challenge_of_rfc_7636_appendix_b)
{
    char challenge[OIDC_PKCE_MAX];

    oidc_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", challenge);
    cr_expect_str_eq(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

Test(oidc, makes_a_random_pkce_pair)
{
    char v1[OIDC_PKCE_MAX], c1[OIDC_PKCE_MAX], v2[OIDC_PKCE_MAX], c2[OIDC_PKCE_MAX];
    char again[OIDC_PKCE_MAX];

    cr_assert_eq(oidc_pkce_make(v1, c1), 0);
    cr_assert_eq(oidc_pkce_make(v2, c2), 0);
    cr_expect_eq(strlen(v1), 43);
    cr_expect_eq(strlen(c1), 43);
    cr_expect_eq(strspn(v1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                 43);
    cr_expect_str_neq(v1, v2);
    oidc_pkce_challenge(v1, again);
    cr_expect_str_eq(c1, again);
}

Test(oidc, builds_the_authorization_url_with_encoded_values)
{
    struct oidc_discovery d = {.authorization_endpoint = "https://id.example.com/auth"};
    char *url =
        oidc_authorize_url(&d, "my app", "https://eph.example.com/auth/oidc/corp/callback", NULL,
                           "st&=ate", "n+1", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");

    cr_expect_str_eq(url,
                     "https://id.example.com/auth?response_type=code&client_id=my%20app"
                     "&redirect_uri=https%3A%2F%2Feph.example.com%2Fauth%2Foidc%2Fcorp%2Fcallback"
                     "&scope=openid%20email%20profile&state=st%26%3Date&nonce=n%2B1"
                     "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
                     "&code_challenge_method=S256");
    free(url);

    d.authorization_endpoint = "https://id.example.com/oauth2/authorize?tenant=x";
    url = oidc_authorize_url(&d, "eph", "http://127.0.0.1:8080/cb", "openid groups", "s", "n", "c");
    cr_expect_str_eq(url, "https://id.example.com/oauth2/authorize?tenant=x&response_type=code"
                          "&client_id=eph&redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fcb"
                          "&scope=openid%20groups&state=s&nonce=n&code_challenge=c"
                          "&code_challenge_method=S256");
    free(url);
}

/* ------------------------------------------------------------- the token endpoint's answers */

Test(oidc, takes_the_id_token_from_the_token_response)
{
    const char *ok = "{\"access_token\": \"at\", \"token_type\": \"Bearer\", "
                     "\"id_token\": \"eyJh.eyJz.c2ln\", \"expires_in\": 3600}";
    char *id = NULL;
    struct eph_err err = {0};

    cr_assert_eq(oidc_parse_token_response(200, ok, strlen(ok), &id, &err), 0, "%s", err.msg);
    cr_expect_str_eq(id, "eyJh.eyJz.c2ln");
    free(id);
}

Test(oidc, names_the_error_of_a_refused_code)
{
    static const struct {
        long status;
        const char *body;
        int rc;
        const char *want;
    } bad[] = {
        {400, "{\"error\": \"invalid_grant\", \"error_description\": \"grant request is invalid\"}",
         EPH_EUNAUTH, "token endpoint refused the code: invalid_grant (grant request is invalid)"},
        {401, "{\"error\": \"invalid_client\"}", EPH_EUNAUTH,
         "token endpoint refused the code: invalid_client"},
        {400, "{\"error\": \"x\\ny'z\"}", EPH_EUNAUTH, "token endpoint refused the code: x?y?z"},
        {502, "<html>bad gateway</html>", -EIO, "token endpoint answered HTTP 502"},
        {200, "<html>", EPH_EPARSE, "token endpoint's answer is not a JSON object"},
        {200, "{\"access_token\": \"at\"}", EPH_EUNAUTH,
         "token endpoint's answer holds no ID token"},
        {200, "{\"id_token\": \"a.b c.d\"}", EPH_EUNAUTH,
         "token endpoint's ID token is not a compact JWS"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        char *id = (char *)"x";
        struct eph_err err = {0};

        cr_expect_eq(
            oidc_parse_token_response(bad[i].status, bad[i].body, strlen(bad[i].body), &id, &err),
            bad[i].rc, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        cr_expect_null(id, "case %zu", i);
    }
}

Test(oidc, refuses_to_fetch_from_urls_that_are_not_http)
{
    struct oidc_jwks *k = NULL;
    struct eph_err err = {0};

    cr_expect_eq(oidc_fetch_jwks("file:///etc/passwd", &k, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg,
                     "OpenID provider's JWKS URL 'file:///etc/passwd' is not an http(s) URL");
    cr_expect_null(k);
}
