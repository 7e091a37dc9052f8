/*
 * auth/jwt.c - an OpenID provider's signing keys (JWK Sets, RFC 7517/7518)
 * and the verification of its ID tokens (compact JWS, RFC 7515/7519;
 * OpenID Connect Core 1.0 section 3.1.3.7). Declared in auth/oidc.h.
 *
 * Only RS256 and ES256 exist here: the algorithm comes from the token, so
 * anything else (above all "none" and HS256, where a public key would be
 * taken for a shared secret) is refused before a key is looked at, and a
 * key is only ever used with the one algorithm its type fits. Keys become
 * OpenSSL public keys once, when the set is parsed.
 */
#include "auth/oidc.h"

#include <jansson.h>
#include <math.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/signed.h"
#include "util/xmalloc.h"

#define RSA_MIN_BITS 2048 /* RFC 7518 section 3.3: 2048 or larger */
#define RSA_MAX_BITS 8192 /* larger moduli only cost time */
#define RSA_MAX_BYTES (RSA_MAX_BITS / 8)
#define RSA_E_MAX_BYTES 8   /* 65537 in practice */
#define P256_COORD_BYTES 32 /* x, y, r and s of P-256 */
#define KID_MAX 256         /* longest key id kept; longer ones make the key unusable */
#define SUB_MAX 255         /* Core 1.0 section 2: sub is at most 255 ASCII characters */
#define CLAIM_MAX 1024      /* longer optional claims (email, name) are dropped */
#define QUOTE_MAX 80        /* outside text quoted in a message */

enum key_type { KEY_RSA, KEY_EC };

struct oidc_jwk {
    enum key_type type;
    char *kid; /* NULL when the JWK has none */
    EVP_PKEY *pkey;
};

struct oidc_jwks {
    size_t n;
    struct oidc_jwk *keys;
};

/* ------------------------------------------------------------- JWKS */

void
oidc_jwks_free(struct oidc_jwks *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->n; i++) {
        free(k->keys[i].kid);
        EVP_PKEY_free(k->keys[i].pkey);
    }
    free(k->keys);
    free(k);
}

size_t
oidc_jwks_count(const struct oidc_jwks *k)
{
    return k ? k->n : 0;
}

/* Decodes the base64url string member `name` of jwk into out (at most
 * max bytes); -1 if it is missing, not a string or not base64url. */
static long
b64_member(json_t *jwk, const char *name, unsigned char *out, size_t max)
{
    json_t *v = json_object_get(jwk, name);

    if (!json_is_string(v))
        return -1;
    return auth_b64url_decode(json_string_value(v), json_string_length(v), out, max);
}

/* Builds an RSA public key from big-endian n and e. NULL with *why saying
 * what is wrong with the key, or with *why NULL when OpenSSL failed. */
static EVP_PKEY *
rsa_key(const unsigned char *n, size_t n_len, const unsigned char *e, size_t e_len,
        const char **why)
{
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL);
    BIGNUM *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;

    *why = NULL;
    if (bn_n == NULL || bn_e == NULL || bld == NULL)
        goto out;
    if (BN_num_bits(bn_n) < RSA_MIN_BITS || BN_num_bits(bn_n) > RSA_MAX_BITS) {
        *why = "RSA modulus is not 2048 to 8192 bits";
        goto out;
    }
    if (!BN_is_odd(bn_e) || BN_is_one(bn_e) || !BN_is_odd(bn_n)) {
        *why = "RSA key is not valid";
        goto out;
    }
    if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
        *why = "RSA key is not valid";
    }
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    ERR_clear_error();
    return pkey;
}

/* Builds a P-256 public key from its coordinates, checked to be a point
 * of the curve (of the right order, not infinity). NULL as rsa_key(). */
static EVP_PKEY *
p256_key(const unsigned char x[P256_COORD_BYTES], const unsigned char y[P256_COORD_BYTES],
         const char **why)
{
    unsigned char point[1 + 2 * P256_COORD_BYTES];
    char group[] = "prime256v1";
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *pkey = NULL;

    point[0] = 0x04; /* uncompressed: 04 || x || y (SEC 1 section 2.3.3) */
    memcpy(point + 1, x, P256_COORD_BYTES);
    memcpy(point + 1 + P256_COORD_BYTES, y, P256_COORD_BYTES);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point));
    params[2] = OSSL_PARAM_construct_end();
    *why = "EC point is not on P-256";
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto fail;
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (check == NULL || EVP_PKEY_public_check(check) != 1)
        goto fail;
    goto out;
fail:
    EVP_PKEY_free(pkey);
    pkey = NULL;
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    return pkey;
}

/* True if the optional string member `name` is absent or equals want. */
static bool
absent_or(json_t *jwk, const char *name, const char *want)
{
    json_t *v = json_object_get(jwk, name);

    return v == NULL || (json_is_string(v) && strcmp(json_string_value(v), want) == 0);
}

/* True unless key_ops is present and lacks "verify" (RFC 7517 section 4.3). */
static bool
ops_allow_verify(json_t *jwk)
{
    json_t *ops = json_object_get(jwk, "key_ops");
    size_t i;

    if (ops == NULL)
        return true;
    if (!json_is_array(ops))
        return false;
    for (i = 0; i < json_array_size(ops); i++) {
        json_t *op = json_array_get(ops, i);

        if (json_is_string(op) && strcmp(json_string_value(op), "verify") == 0)
            return true;
    }
    return false;
}

/*
 * Turns the JWK at `index` into *out. Returns 1 (kept), 0 (skipped: not a
 * signing key of ours) or a negative error with *err set.
 */
static int
parse_jwk(json_t *jwk, size_t index, struct oidc_jwk *out, struct eph_err *err)
{
    json_t *kty = json_object_get(jwk, "kty");
    json_t *kid = json_object_get(jwk, "kid");
    const char *why = NULL;
    EVP_PKEY *pkey = NULL;
    enum key_type type;

    if (!json_is_object(jwk) || !json_is_string(kty))
        return 0;
    if (!absent_or(jwk, "use", "sig") || !ops_allow_verify(jwk))
        return 0;
    if (kid != NULL && (!json_is_string(kid) || json_string_length(kid) > KID_MAX))
        return eph_err_set(err, EPH_EINVAL,
                           "JWKS key %zu: 'kid' is not a string of at most %d bytes", index,
                           KID_MAX);

    if (strcmp(json_string_value(kty), "RSA") == 0) {
        unsigned char n[RSA_MAX_BYTES + 1], e[RSA_E_MAX_BYTES];
        long n_len, e_len;
        size_t skip = 0;

        if (!absent_or(jwk, "alg", "RS256"))
            return 0;
        type = KEY_RSA;
        n_len = b64_member(jwk, "n", n, sizeof(n));
        e_len = b64_member(jwk, "e", e, sizeof(e));
        if (n_len <= 0 || e_len <= 0)
            return eph_err_set(err, EPH_EINVAL,
                               "JWKS key %zu: RSA 'n' or 'e' is missing, not base64url or too long",
                               index);
        while (skip < (size_t)n_len && n[skip] == 0)
            skip++; /* RFC 7518 forbids leading zeros; some encoders add one */
        pkey = rsa_key(n + skip, (size_t)n_len - skip, e, (size_t)e_len, &why);
    } else if (strcmp(json_string_value(kty), "EC") == 0) {
        unsigned char x[P256_COORD_BYTES], y[P256_COORD_BYTES];

        if (!absent_or(jwk, "crv", "P-256") || json_object_get(jwk, "crv") == NULL ||
            !absent_or(jwk, "alg", "ES256"))
            return 0;
        type = KEY_EC;
        if (b64_member(jwk, "x", x, sizeof(x)) != P256_COORD_BYTES ||
            b64_member(jwk, "y", y, sizeof(y)) != P256_COORD_BYTES)
            return eph_err_set(
                err, EPH_EINVAL,
                "JWKS key %zu: P-256 'x' or 'y' is missing or not 32 base64url bytes", index);
        pkey = p256_key(x, y, &why);
    } else {
        return 0; /* "oct", "OKP", ...: not ours */
    }
    if (pkey == NULL && why == NULL)
        return eph_err_set(err, EPH_EINTERNAL, "JWKS key %zu: OpenSSL failed", index);
    if (pkey == NULL)
        return eph_err_set(err, EPH_EINVAL, "JWKS key %zu: %s", index, why);
    out->type = type;
    out->kid = kid ? xstrdup(json_string_value(kid)) : NULL;
    out->pkey = pkey;
    return 1;
}

int
oidc_jwks_parse(const char *json, size_t len, struct oidc_jwks **out, struct eph_err *err)
{
    struct oidc_jwks *k = NULL;
    json_t *doc = NULL;
    json_t *keys;
    size_t i;
    int rc = 0;

    *out = NULL;
    if (len > OIDC_MAX_RESPONSE_BYTES)
        return eph_err_set(err, EPH_ETOOBIG, "JWKS is larger than %d bytes",
                           OIDC_MAX_RESPONSE_BYTES);
    doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL || !json_is_object(doc)) {
        rc = eph_err_set(err, EPH_EPARSE, "JWKS is not a JSON object");
        goto out;
    }
    keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        rc = eph_err_set(err, EPH_EINVAL, "JWKS has no 'keys' array");
        goto out;
    }
    if (json_array_size(keys) > OIDC_MAX_JWKS_KEYS) {
        rc = eph_err_set(err, EPH_EINVAL, "JWKS holds more than %d keys", OIDC_MAX_JWKS_KEYS);
        goto out;
    }
    k = xcalloc(1, sizeof(*k));
    k->keys = xcalloc(json_array_size(keys) + 1, sizeof(*k->keys));
    for (i = 0; i < json_array_size(keys); i++) {
        json_t *jwk = json_array_get(keys, i);

        rc = parse_jwk(jwk, i, &k->keys[k->n], err);
        if (rc < 0)
            goto out;
        if (rc == 1)
            k->n++;
        rc = 0;
    }
    if (k->n == 0) {
        rc = eph_err_set(err, EPH_EINVAL, "JWKS holds no RS256 or ES256 signing key");
        goto out;
    }
    *out = k;
    k = NULL;
out:
    oidc_jwks_free(k);
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------------- claims */

void
oidc_claims_release(struct oidc_claims *c)
{
    free(c->sub);
    free(c->email);
    free(c->name);
    free(c->preferred_username);
    memset(c, 0, sizeof(*c));
}

/* A NumericDate (RFC 7519 section 2): an integer or a finite real,
 * truncated to whole seconds. False if absent or anything else. */
static bool
numeric_date(json_t *claims, const char *name, int64_t *out)
{
    json_t *v = json_object_get(claims, name);

    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);

        if (!isfinite(d) || d < -9.0e18 || d > 9.0e18)
            return false;
        *out = (int64_t)d;
        return true;
    }
    return false;
}

/* A copy of the optional string claim `name`, or NULL when absent, not a
 * string, empty or longer than max bytes. */
static char *
string_claim(json_t *claims, const char *name, size_t max)
{
    json_t *v = json_object_get(claims, name);

    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
        return NULL;
    return xstrdup(json_string_value(v));
}

/* True if aud names client_id, alone or in an array; *several says whether
 * the array had more than one entry. */
static bool
audience_ok(json_t *aud, const char *client_id, bool *several)
{
    size_t i;
    bool found = false;

    *several = false;
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), client_id) == 0;
    if (!json_is_array(aud))
        return false;
    *several = json_array_size(aud) > 1;
    for (i = 0; i < json_array_size(aud); i++) {
        json_t *v = json_array_get(aud, i);

        if (json_is_string(v) && strcmp(json_string_value(v), client_id) == 0)
            found = true;
    }
    return found;
}

/* Checks the claims of a token whose signature holds; fills *out. */
static int
check_claims(json_t *claims, const char *issuer, const char *client_id, const char *nonce,
             int64_t now_s, int64_t leeway_s, struct oidc_claims *out, struct eph_err *err)
{
    json_t *iss = json_object_get(claims, "iss");
    json_t *azp = json_object_get(claims, "azp");
    json_t *got_nonce = json_object_get(claims, "nonce");
    json_t *sub = json_object_get(claims, "sub");
    json_t *ev = json_object_get(claims, "email_verified");
    char q_got[QUOTE_MAX], q_want[QUOTE_MAX];
    int64_t exp_s, iat_s, nbf_s;
    bool several;

    if (!json_is_string(iss) || strcmp(json_string_value(iss), issuer) != 0) {
        oidc__printable(json_is_string(iss) ? json_string_value(iss) : "", q_got, sizeof(q_got));
        oidc__printable(issuer, q_want, sizeof(q_want));
        return eph_err_set(err, EPH_EUNAUTH, "ID token issuer '%s' is not '%s'", q_got, q_want);
    }
    if (!audience_ok(json_object_get(claims, "aud"), client_id, &several))
        return eph_err_set(err, EPH_EUNAUTH, "ID token audience is not this client");
    if ((several || azp != NULL) &&
        (!json_is_string(azp) || strcmp(json_string_value(azp), client_id) != 0))
        return eph_err_set(err, EPH_EUNAUTH, "ID token authorized party is not this client");
    if (!numeric_date(claims, "exp", &exp_s))
        return eph_err_set(err, EPH_EUNAUTH, "ID token has no expiry time");
    if (exp_s <= now_s - leeway_s)
        return eph_err_set(err, EPH_EUNAUTH, "ID token expired");
    if (!numeric_date(claims, "iat", &iat_s))
        return eph_err_set(err, EPH_EUNAUTH, "ID token has no issue time");
    if (iat_s > now_s + leeway_s)
        return eph_err_set(err, EPH_EUNAUTH, "ID token was issued in the future");
    if (json_object_get(claims, "nbf") != NULL &&
        (!numeric_date(claims, "nbf", &nbf_s) || nbf_s > now_s + leeway_s))
        return eph_err_set(err, EPH_EUNAUTH, "ID token is not valid yet");
    if (nonce != NULL && (!json_is_string(got_nonce) ||
                          !auth_equal_ct(json_string_value(got_nonce),
                                         json_string_length(got_nonce), nonce, strlen(nonce))))
        return eph_err_set(err, EPH_EUNAUTH, "ID token nonce does not match");
    if (!json_is_string(sub) || json_string_length(sub) == 0 || json_string_length(sub) > SUB_MAX)
        return eph_err_set(err, EPH_EUNAUTH, "ID token has no valid subject");

    out->sub = xstrdup(json_string_value(sub));
    out->email = string_claim(claims, "email", CLAIM_MAX);
    out->name = string_claim(claims, "name", CLAIM_MAX);
    out->preferred_username = string_claim(claims, "preferred_username", CLAIM_MAX);
    /* Some providers send the string "true": it means the same. */
    out->email_verified =
        json_is_true(ev) || (json_is_string(ev) && strcmp(json_string_value(ev), "true") == 0);
    out->exp_s = exp_s;
    out->iat_s = iat_s;
    return 0;
}

/* ------------------------------------------------------------- signatures */

/* Checks sig over data with SHA-256 and pkey. 1 valid, 0 invalid, <0 OpenSSL failed. */
static int
digest_verify(EVP_PKEY *pkey, const unsigned char *data, size_t len, const unsigned char *sig,
              size_t sig_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = -1;

    if (md != NULL && EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1)
        ok = EVP_DigestVerify(md, sig, sig_len, data, len) == 1 ? 1 : 0;
    EVP_MD_CTX_free(md);
    ERR_clear_error(); /* a refused signature leaves errors on this thread's queue */
    return ok;
}

/* The DER form OpenSSL wants of a JWS ES256 signature (r || s, 32 bytes
 * each, RFC 7518 section 3.4) into der (at most der_size); its length, or
 * -1 if OpenSSL fails. */
static int
es256_der(const unsigned char raw[2 * P256_COORD_BYTES], unsigned char *der, size_t der_size)
{
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, P256_COORD_BYTES, NULL);
    BIGNUM *sv = BN_bin2bn(raw + P256_COORD_BYTES, P256_COORD_BYTES, NULL);
    int n = -1;

    if (s == NULL || r == NULL || sv == NULL || ECDSA_SIG_set0(s, r, sv) != 1) {
        BN_free(r);
        BN_free(sv);
        goto out;
    }
    /* s owns r and sv now */
    n = i2d_ECDSA_SIG(s, NULL);
    if (n <= 0 || (size_t)n > der_size) {
        n = -1;
        goto out;
    }
    n = i2d_ECDSA_SIG(s, &der);
out:
    ECDSA_SIG_free(s);
    return n;
}

/* 1 valid, 0 invalid, <0 OpenSSL failed. */
static int
signature_ok(const struct oidc_jwk *key, const unsigned char *data, size_t len,
             const unsigned char *sig, size_t sig_len)
{
    unsigned char der[80]; /* SEQUENCE of two INTEGERs of at most 33 bytes: 72 at most */
    int der_len;

    if (key->type == KEY_RSA) {
        if ((int)sig_len != EVP_PKEY_get_size(key->pkey))
            return 0;
        return digest_verify(key->pkey, data, len, sig, sig_len);
    }
    if (sig_len != 2 * P256_COORD_BYTES)
        return 0;
    der_len = es256_der(sig, der, sizeof(der));
    if (der_len < 0)
        return -1;
    return digest_verify(key->pkey, data, len, der, (size_t)der_len);
}

/* ------------------------------------------------------------- ID tokens */

/* Decodes base64url JSON (len bytes) into an object; NULL if it is not one. */
static json_t *
b64_json_object(const char *in, size_t len)
{
    size_t max = len / 4 * 3 + 3;
    char *raw = xmalloc(max);
    long n = auth_b64url_decode(in, len, raw, max);
    json_t *v = NULL;

    if (n > 0)
        v = json_loadb(raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (v != NULL && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* The key for a token of `type` naming `kid` (NULL: none). Returns 0 and
 * *out, or ENOTFOUND / EUNAUTH with *err set. */
static int
find_key(const struct oidc_jwks *keys, enum key_type type, const char *kid,
         const struct oidc_jwk **out, struct eph_err *err)
{
    const struct oidc_jwk *match = NULL;
    bool other_type = false;
    size_t count = 0;

    *out = NULL;
    for (size_t i = 0; keys != NULL && i < keys->n; i++) {
        const struct oidc_jwk *k = &keys->keys[i];

        if (kid != NULL && (k->kid == NULL || strcmp(k->kid, kid) != 0))
            continue;
        if (k->type != type) {
            other_type = true;
            continue;
        }
        match = k;
        count++;
    }
    if (count == 0 && kid != NULL && other_type)
        return eph_err_set(err, EPH_EUNAUTH, "ID token key does not fit its algorithm");
    if (count == 0)
        return eph_err_set(err, EPH_ENOTFOUND, "ID token signed by an unknown key");
    if (count > 1 && kid == NULL)
        return eph_err_set(err, EPH_EUNAUTH,
                           "ID token names no key id and the provider has several keys");
    if (count > 1) /* two keys of one type under one kid: which one is meant? */
        return eph_err_set(err, EPH_EUNAUTH, "ID token key id is ambiguous");
    *out = match;
    return 0;
}

int
oidc_id_token_verify(const char *jwt, size_t len, const struct oidc_jwks *keys, const char *issuer,
                     const char *client_id, const char *nonce, int64_t now_s, int64_t leeway_s,
                     struct oidc_claims *out, struct eph_err *err)
{
    const char *dot1, *dot2;
    const char *sig_b64;
    size_t sig_b64_len;
    json_t *header = NULL, *claims = NULL;
    json_t *alg, *kid;
    const struct oidc_jwk *key;
    unsigned char *sig = NULL;
    long sig_len;
    enum key_type type;
    char q[QUOTE_MAX];
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (len > OIDC_MAX_ID_TOKEN_BYTES)
        return eph_err_set(err, EPH_EUNAUTH, "ID token is longer than %d bytes",
                           OIDC_MAX_ID_TOKEN_BYTES);
    dot1 = len ? memchr(jwt, '.', len) : NULL;
    dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - jwt)) : NULL;
    /* An empty signature is left to the checks below: "alg": "none" tokens
     * have one, and deserve the message that names the algorithm. */
    if (dot1 == NULL || dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - jwt)) ||
        dot1 == jwt || dot2 == dot1 + 1)
        return eph_err_set(err, EPH_EUNAUTH,
                           "ID token is malformed: not three dot-separated parts");

    header = b64_json_object(jwt, (size_t)(dot1 - jwt));
    if (header == NULL) {
        rc = eph_err_set(err, EPH_EUNAUTH, "ID token is malformed: header is not base64url JSON");
        goto out;
    }
    alg = json_object_get(header, "alg");
    if (!json_is_string(alg)) {
        rc = eph_err_set(err, EPH_EUNAUTH, "ID token header has no algorithm");
        goto out;
    }
    if (strcmp(json_string_value(alg), "RS256") == 0) {
        type = KEY_RSA;
    } else if (strcmp(json_string_value(alg), "ES256") == 0) {
        type = KEY_EC;
    } else {
        oidc__printable(json_string_value(alg), q, sizeof(q));
        rc = eph_err_set(err, EPH_EUNAUTH, "ID token algorithm '%s' is not allowed", q);
        goto out;
    }
    if (json_object_get(header, "crit") != NULL) { /* RFC 7515 section 4.1.11 */
        rc = eph_err_set(err, EPH_EUNAUTH, "ID token header has critical extensions");
        goto out;
    }
    kid = json_object_get(header, "kid");
    if (kid != NULL && !json_is_string(kid)) {
        rc = eph_err_set(err, EPH_EUNAUTH, "ID token is malformed: key id is not a string");
        goto out;
    }
    rc = find_key(keys, type, kid ? json_string_value(kid) : NULL, &key, err);
    if (rc < 0)
        goto out;

    sig_b64 = dot2 + 1;
    sig_b64_len = len - (size_t)(sig_b64 - jwt);
    sig = xmalloc(sig_b64_len / 4 * 3 + 3);
    sig_len = auth_b64url_decode(sig_b64, sig_b64_len, sig, sig_b64_len / 4 * 3 + 3);
    if (sig_len < 0) {
        rc = eph_err_set(err, EPH_EUNAUTH, "ID token is malformed: signature is not base64url");
        goto out;
    }
    rc = signature_ok(key, (const unsigned char *)jwt, (size_t)(dot2 - jwt), sig, (size_t)sig_len);
    if (rc < 0) {
        rc = eph_err_set(err, EPH_EINTERNAL,
                         "cannot check the ID token's signature: OpenSSL failed");
        goto out;
    }
    if (rc == 0) {
        rc = eph_err_set(err, EPH_EUNAUTH, "ID token signature is invalid");
        goto out;
    }
    claims = b64_json_object(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (claims == NULL) {
        rc = eph_err_set(err, EPH_EUNAUTH, "ID token is malformed: payload is not base64url JSON");
        goto out;
    }
    rc = check_claims(claims, issuer, client_id, nonce, now_s, leeway_s, out, err);
out:
    if (rc < 0)
        oidc_claims_release(out);
    free(sig);
    json_decref(claims);
    json_decref(header);
    return rc;
}
