/*
 * auth/oidc.h - the client side of OpenID Connect sign-in (authorization
 * code flow with PKCE): discovery, the provider's keys (JWKS), the
 * authorization URL, the code exchange and the ID token's verification.
 * No HTTP server here: the API's sign-in handlers drive these functions.
 *
 * Pure functions (parsing, verification, URLs, PKCE) touch no network and
 * may run on any thread. The network functions make blocking libcurl calls
 * (10 s in all, 5 s to connect, no proxy taken from the environment, no
 * redirects followed, responses above OIDC_MAX_RESPONSE_BYTES refused):
 * run them on libuv's thread pool (uv_queue_work), never on a loop. Any
 * thread; the process should have called curl_global_init() at start-up.
 *
 * Implemented in auth/oidc.c (discovery, URLs, PKCE, HTTP) and auth/jwt.c
 * (JWKS, ID tokens). Nothing here logs; secrets and tokens never reach an
 * error message.
 */
#ifndef EPH_AUTH_OIDC_H
#define EPH_AUTH_OIDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define OIDC_MAX_RESPONSE_BYTES (1024 * 1024) /* any provider response: discovery, JWKS, token */
#define OIDC_MAX_ID_TOKEN_BYTES (64 * 1024)   /* room for big groups claims; longer is refused */
#define OIDC_MAX_JWKS_KEYS 64                 /* entries of "keys" looked at; more is refused */
#define OIDC_PKCE_MAX 64                      /* verifier or challenge: 43 characters and a NUL */

/* ------------------------------------------------------------- discovery */

/* What <issuer>/.well-known/openid-configuration says; strings owned. */
struct oidc_discovery {
    char *issuer;                 /* equal to the issuer configured, byte for byte */
    char *authorization_endpoint; /* http(s) URL; may carry a query of its own */
    char *token_endpoint;         /* http(s) URL */
    char *jwks_uri;               /* http(s) URL */
    char *userinfo_endpoint;      /* http(s) URL, or NULL when absent or unusable */
    char *end_session_endpoint;   /* http(s) URL (RP-initiated logout), or NULL likewise */
};

/*
 * Parses a discovery document (len bytes of JSON, not NUL-terminated) into
 * *out. Its "issuer" must equal expected_issuer exactly: OpenID Connect
 * Discovery 1.0 section 4.3 leaves no room for a differing trailing slash
 * or case. The three required endpoints must be absolute http or https
 * URLs without fragment. Returns 0 (the caller releases *out with
 * oidc_discovery_release()), EPH_EPARSE (not a JSON object) or EPH_EINVAL
 * (wrong issuer, missing or bad endpoint), with *out zeroed.
 */
int oidc_discovery_parse(const char *json, size_t len, const char *expected_issuer,
                         struct oidc_discovery *out, struct eph_err *err);
/* Frees the strings and zeroes *d; a zeroed struct is fine. */
void oidc_discovery_release(struct oidc_discovery *d);

/* ------------------------------------------------------------- keys */

/* A provider's parsed signing keys (OpenSSL public keys); immutable once
 * made, so one set may be shared by threads that only read it. */
struct oidc_jwks;

/*
 * Parses a JWK Set (RFC 7517) into *out. Kept: RSA keys (kty "RSA", n, e;
 * 2048 to 8192 bits) and EC P-256 keys (kty "EC", crv "P-256", x, y; the
 * point must be on the curve). Skipped: keys with a "use" other than
 * "sig", an "alg" other than RS256 (RSA) or ES256 (EC), key_ops without
 * "verify", other curves and other key types (symmetric "oct" keys among
 * them: a public document's shared secret is no secret). A kept type with
 * bad members, more than OIDC_MAX_JWKS_KEYS entries, or no key left at all
 * refuses the whole set: EPH_EPARSE (not JSON) or EPH_EINVAL, *out NULL.
 * On 0 the caller frees *out with oidc_jwks_free().
 */
int oidc_jwks_parse(const char *json, size_t len, struct oidc_jwks **out, struct eph_err *err);
void oidc_jwks_free(struct oidc_jwks *k); /* NULL does nothing */
/* How many keys were kept. */
size_t oidc_jwks_count(const struct oidc_jwks *k);

/* ------------------------------------------------------------- ID tokens */

/* What an accepted ID token says about the person; strings owned. */
struct oidc_claims {
    char *sub;                /* the provider's id for the person: never empty, <= 255 bytes */
    char *email;              /* NULL if absent */
    char *name;               /* NULL if absent */
    char *preferred_username; /* NULL if absent */
    bool email_verified;      /* false if absent; true for JSON true (or the string "true") */
    int64_t exp_s, iat_s;     /* wall clock, seconds since the epoch */
};

/* Frees the strings and zeroes *c; a zeroed struct is fine. */
void oidc_claims_release(struct oidc_claims *c);

/*
 * Verifies a compact JWS ID token (len bytes, not NUL-terminated) as OpenID
 * Connect Core 1.0 section 3.1.3.7 asks:
 *   - alg RS256 or ES256 only: "none", HS* (which would make a public key
 *     an HMAC secret) and anything else are refused, as is a "crit" header;
 *   - the key is the one whose kid the header names (and of the type the
 *     alg needs), or, without a kid, the only key of that type;
 *   - the signature (ES256: JWS's raw 64-byte r||s, RFC 7518 section 3.4);
 *   - iss == issuer; aud == client_id, or an array holding it (then, with
 *     several audiences, azp == client_id; azp, when present, always must
 *     be client_id); exp > now_s - leeway_s; iat <= now_s + leeway_s (and
 *     nbf, if present, likewise); nonce == nonce, compared in constant
 *     time (a NULL nonce skips this: the request carried none); sub present.
 * Returns 0 and fills *out (release it with oidc_claims_release());
 * EPH_ENOTFOUND "ID token signed by an unknown key" when no key has the
 * token's kid (or none has the type, without a kid): the caller fetches
 * the JWKS again once, as the provider may have rotated its keys;
 * EPH_EUNAUTH for every other refusal, with a message saying which check
 * failed ("ID token expired", "ID token audience is not this client",
 * "ID token nonce does not match", "ID token signature is invalid",
 * "ID token algorithm 'none' is not allowed", ...); EPH_EINTERNAL if
 * OpenSSL fails. On failure *out is zeroed. Never trusts any part of the
 * token: any bytes at all are safe to pass.
 */
int oidc_id_token_verify(const char *jwt, size_t len, const struct oidc_jwks *keys,
                         const char *issuer, const char *client_id, const char *nonce,
                         int64_t now_s, int64_t leeway_s, struct oidc_claims *out,
                         struct eph_err *err);

/* ------------------------------------------------------------- the authorization request */

/*
 * PKCE S256 (RFC 7636): fills verifier with 43 base64url characters (32
 * random bytes) and challenge with base64url(SHA-256(verifier)). The
 * verifier stays on the server until the code exchange; the challenge goes
 * in the authorization URL. 0, or EPH_EINTERNAL if randomness fails.
 */
int oidc_pkce_make(char verifier[OIDC_PKCE_MAX], char challenge[OIDC_PKCE_MAX]);
/* The S256 challenge of an existing verifier (any length). */
void oidc_pkce_challenge(const char *verifier, char challenge[OIDC_PKCE_MAX]);

/*
 * The URL to send the browser to: d->authorization_endpoint plus
 * response_type=code, client_id, redirect_uri, scope (NULL: "openid email
 * profile"), state, nonce, code_challenge and code_challenge_method=S256,
 * every value percent-encoded (RFC 3986 unreserved characters kept), after
 * '&' when the endpoint has a query already. Returns a string to free().
 */
char *oidc_authorize_url(const struct oidc_discovery *d, const char *client_id,
                         const char *redirect_uri, const char *scopes, const char *state,
                         const char *nonce, const char *challenge);

/* ------------------------------------------------------------- network (thread pool) */

/*
 * GETs issuer + "/.well-known/openid-configuration" (a trailing '/' of the
 * issuer dropped first, as Discovery section 4 says) and parses it against
 * `issuer` as given. 0 and *out to release, or: -EIO (cannot connect,
 * TLS, protocol), EPH_ETIMEDOUT, EPH_ETOOBIG, EPH_EINVAL (HTTP status other
 * than 200, or a bad document), EPH_EPARSE; *err says what and where.
 */
int oidc_fetch_discovery(const char *issuer, struct oidc_discovery *out, struct eph_err *err);

/* GETs jwks_uri and parses it (errors as above); on 0 *out is the caller's. */
int oidc_fetch_jwks(const char *jwks_uri, struct oidc_jwks **out, struct eph_err *err);

/*
 * Trades an authorization code for tokens at d->token_endpoint (POST,
 * grant_type=authorization_code with code, redirect_uri and code_verifier).
 * The client authenticates with client_secret_basic (HTTP Basic of the
 * form-encoded id and secret, RFC 6749 section 2.3.1) when client_secret
 * is non-empty, else it only names itself with client_id in the body.
 * Returns 0 and the ID token in *id_token_out (a string to free(); wipe
 * it first if you like), or the network errors above, or EPH_EUNAUTH when
 * the provider refuses ("token endpoint refused the code: invalid_grant
 * (...)") or answers without an ID token.
 */
int oidc_exchange_code(const struct oidc_discovery *d, const char *client_id,
                       const char *client_secret, const char *code, const char *redirect_uri,
                       const char *verifier, char **id_token_out, struct eph_err *err);

/*
 * The token endpoint's answer (HTTP `status`, len bytes of JSON) to the ID
 * token: what oidc_exchange_code() does after the request, split out to be
 * tested and fuzzed. Same returns, plus EPH_EPARSE for a body that is not
 * JSON, when status is 200.
 */
int oidc_parse_token_response(long status, const char *json, size_t len, char **id_token_out,
                              struct eph_err *err);

/* ------------------------------------------------------------- shared with auth/github.c */

/* One HTTP request for oidc__http(): a POST when body is set, else a GET. */
struct oidc__http_req {
    const char *url;            /* http or https only */
    const char *const *headers; /* "Name: value" lines, NULL-terminated; may be NULL */
    const char *body;           /* POST body, NUL-terminated; NULL for GET */
    const char *what;           /* names the peer in messages: "token endpoint" */
};

/*
 * Makes the request with the limits above. Returns 0 with the HTTP status
 * in *status and the body in *body_out (NUL-terminated, *len_out bytes,
 * free() it) whatever the status; -EIO, EPH_ETIMEDOUT or EPH_ETOOBIG
 * otherwise, with *body_out NULL. Header values must not hold CR or LF.
 */
int oidc__http(const struct oidc__http_req *req, long *status, char **body_out, size_t *len_out,
               struct eph_err *err);

/* Percent-encodes s (RFC 3986: unreserved characters kept) onto the end of
 * *dst, a malloc'd string or NULL, which is reallocated. */
void oidc__append_encoded(char **dst, const char *s);

/* Copies at most out_size-1 bytes of s into out with every byte outside
 * printable ASCII (and '\'') turned into '?', and "..." at the end when
 * cut: outside text fit to quote in an error message. */
void oidc__printable(const char *s, char *out, size_t out_size);

#endif
