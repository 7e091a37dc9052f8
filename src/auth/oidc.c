/*
 * auth/oidc.c - OpenID Connect's plumbing around the ID token: discovery
 * documents, PKCE, the authorization URL, and the blocking HTTP calls
 * (libcurl) that fetch discovery and keys and trade a code for tokens.
 * The HTTP helper is shared with auth/github.c. Keys and ID tokens are in
 * auth/jwt.c.
 *
 * Outside text (a provider's JSON, URLs) only reaches error messages
 * through oidc__printable(); client secrets and codes never do.
 */
#include "auth/oidc.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>
#include <strings.h>

#include "auth/signed.h"
#include "util/buf.h"
#include "util/xmalloc.h"

#define HTTP_TIMEOUT_MS 10000        /* the whole request, connect included */
#define HTTP_CONNECT_TIMEOUT_MS 5000 /* TCP and TLS handshakes */
#define URL_MAX 2048                 /* longest endpoint URL taken from a discovery document */
#define QUOTE_MAX 120                /* outside text quoted in a message, "..." included */
#define WELL_KNOWN "/.well-known/openid-configuration"
#define DEFAULT_SCOPES "openid email profile"

/* ------------------------------------------------------------- text helpers */

void
oidc__printable(const char *s, char *out, size_t out_size)
{
    size_t len = strlen(s);
    size_t n = len < out_size - 1 ? len : out_size - 1;

    EPH_ASSERT(out_size >= 4);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        out[i] = (c < 0x20 || c >= 0x7f || c == '\'') ? '?' : (char)c;
    }
    out[n] = '\0';
    if (n < len)
        memcpy(out + n - 3, "...", 3);
}

void
oidc__append_encoded(char **dst, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t old = *dst ? strlen(*dst) : 0;
    size_t o = old;
    char *p;

    p = xrealloc(*dst, old + 3 * strlen(s) + 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            p[o++] = (char)c;
        } else {
            p[o++] = '%';
            p[o++] = hex[c >> 4];
            p[o++] = hex[c & 15];
        }
    }
    p[o] = '\0';
    *dst = p;
}

/* Appends a literal string to *dst (malloc'd or NULL). */
static void
append(char **dst, const char *s)
{
    size_t old = *dst ? strlen(*dst) : 0;
    size_t n = strlen(s);
    char *p = xrealloc(*dst, old + n + 1);

    memcpy(p + old, s, n + 1);
    *dst = p;
}

/* An absolute http(s) URL with a host, no fragment, nothing outside
 * printable ASCII (no blanks), at most URL_MAX bytes. */
static bool
is_http_url(const char *s)
{
    size_t len = strlen(s);
    const char *host;

    if (len > URL_MAX)
        return false;
    if (strncasecmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return false;
    if (*host == '\0' || *host == '/' || *host == '?' || *host == '#' || *host == ':' ||
        *host == '@')
        return false;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;

        if (c <= 0x20 || c >= 0x7f || c == '#' || c == '\\')
            return false;
    }
    return true;
}

/* ------------------------------------------------------------- discovery */

void
oidc_discovery_release(struct oidc_discovery *d)
{
    free(d->issuer);
    free(d->authorization_endpoint);
    free(d->token_endpoint);
    free(d->jwks_uri);
    free(d->userinfo_endpoint);
    free(d->end_session_endpoint);
    memset(d, 0, sizeof(*d));
}

/* Copies the required endpoint `name` of doc into *out. */
static int
required_url(json_t *doc, const char *name, char **out, struct eph_err *err)
{
    json_t *v = json_object_get(doc, name);
    char q[QUOTE_MAX];

    if (v == NULL || json_is_null(v))
        return eph_err_set(err, EPH_EINVAL, "discovery document has no '%s'", name);
    if (!json_is_string(v))
        return eph_err_set(err, EPH_EINVAL, "discovery document's '%s' is not a string", name);
    if (!is_http_url(json_string_value(v))) {
        oidc__printable(json_string_value(v), q, sizeof(q));
        return eph_err_set(err, EPH_EINVAL, "discovery document's '%s' is not an http(s) URL: '%s'",
                           name, q);
    }
    *out = xstrdup(json_string_value(v));
    return 0;
}

/* An optional endpoint: NULL when absent, null, or not a usable URL (it is
 * only ever used if present, so a bad one is as good as none). */
static char *
optional_url(json_t *doc, const char *name)
{
    json_t *v = json_object_get(doc, name);

    if (!json_is_string(v) || !is_http_url(json_string_value(v)))
        return NULL;
    return xstrdup(json_string_value(v));
}

int
oidc_discovery_parse(const char *json, size_t len, const char *expected_issuer,
                     struct oidc_discovery *out, struct eph_err *err)
{
    json_error_t jerr;
    json_t *doc = NULL;
    json_t *iss;
    char q_got[QUOTE_MAX], q_want[QUOTE_MAX];
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (len > OIDC_MAX_RESPONSE_BYTES)
        return eph_err_set(err, EPH_ETOOBIG, "discovery document is larger than %d bytes",
                           OIDC_MAX_RESPONSE_BYTES);
    doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL || !json_is_object(doc)) {
        rc = eph_err_set(err, EPH_EPARSE, "discovery document is not a JSON object");
        goto out;
    }
    iss = json_object_get(doc, "issuer");
    if (!json_is_string(iss)) {
        rc = eph_err_set(err, EPH_EINVAL, "discovery document has no 'issuer'");
        goto out;
    }
    if (strcmp(json_string_value(iss), expected_issuer) != 0) {
        oidc__printable(json_string_value(iss), q_got, sizeof(q_got));
        oidc__printable(expected_issuer, q_want, sizeof(q_want));
        rc = eph_err_set(err, EPH_EINVAL, "discovery document names issuer '%s', not '%s'", q_got,
                         q_want);
        goto out;
    }
    out->issuer = xstrdup(expected_issuer);
    rc = required_url(doc, "authorization_endpoint", &out->authorization_endpoint, err);
    if (rc == 0)
        rc = required_url(doc, "token_endpoint", &out->token_endpoint, err);
    if (rc == 0)
        rc = required_url(doc, "jwks_uri", &out->jwks_uri, err);
    if (rc < 0)
        goto out;
    out->userinfo_endpoint = optional_url(doc, "userinfo_endpoint");
    out->end_session_endpoint = optional_url(doc, "end_session_endpoint");
out:
    if (rc < 0)
        oidc_discovery_release(out);
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------------- PKCE and the authorization URL */

void
oidc_pkce_challenge(const char *verifier, char challenge[OIDC_PKCE_MAX])
{
    unsigned char digest[32];
    unsigned int n = 0;

    /* SHA-256 over memory we own cannot fail; a failing OpenSSL is our bug. */
    EPH_ASSERT(EVP_Digest(verifier, strlen(verifier), digest, &n, EVP_sha256(), NULL) == 1);
    EPH_ASSERT(n == sizeof(digest));
    auth_b64url_encode(digest, sizeof(digest), challenge); /* 43 characters */
}

int
oidc_pkce_make(char verifier[OIDC_PKCE_MAX], char challenge[OIDC_PKCE_MAX])
{
    unsigned char raw[32]; /* RFC 7636 section 4.1: 32 octets, 43 characters */

    verifier[0] = challenge[0] = '\0';
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return EPH_EINTERNAL;
    auth_b64url_encode(raw, sizeof(raw), verifier);
    OPENSSL_cleanse(raw, sizeof(raw));
    oidc_pkce_challenge(verifier, challenge);
    return 0;
}

char *
oidc_authorize_url(const struct oidc_discovery *d, const char *client_id, const char *redirect_uri,
                   const char *scopes, const char *state, const char *nonce, const char *challenge)
{
    char *url = xstrdup(d->authorization_endpoint);

    append(&url, strchr(url, '?') ? "&" : "?");
    append(&url, "response_type=code&client_id=");
    oidc__append_encoded(&url, client_id);
    append(&url, "&redirect_uri=");
    oidc__append_encoded(&url, redirect_uri);
    append(&url, "&scope=");
    oidc__append_encoded(&url, scopes ? scopes : DEFAULT_SCOPES);
    append(&url, "&state=");
    oidc__append_encoded(&url, state);
    if (nonce) {
        append(&url, "&nonce=");
        oidc__append_encoded(&url, nonce);
    }
    append(&url, "&code_challenge=");
    oidc__append_encoded(&url, challenge);
    append(&url, "&code_challenge_method=S256");
    return url;
}

/* ------------------------------------------------------------- HTTP */

struct sink {
    struct buf body;
    bool too_big; /* the body crossed OIDC_MAX_RESPONSE_BYTES */
};

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;

    if (buf_append(&s->body, data, size * n) < 0) {
        s->too_big = true;
        return 0; /* libcurl stops with CURLE_WRITE_ERROR */
    }
    return size * n;
}

int
oidc__http(const struct oidc__http_req *req, long *status, char **body_out, size_t *len_out,
           struct eph_err *err)
{
    struct sink sink = {.too_big = false};
    struct curl_slist *headers = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    char q_url[QUOTE_MAX];
    bool post = req->body != NULL;
    CURL *c = NULL;
    CURLcode cc;
    int rc = 0;

    *status = 0;
    *body_out = NULL;
    *len_out = 0;
    buf_init(&sink.body, OIDC_MAX_RESPONSE_BYTES);
    oidc__printable(req->url, q_url, sizeof(q_url));
    if (!is_http_url(req->url)) {
        rc = eph_err_set(err, EPH_EINVAL, "%s URL '%s' is not an http(s) URL", req->what, q_url);
        goto out;
    }
    c = curl_easy_init();
    if (c == NULL) {
        rc = eph_err_set(err, EPH_EINTERNAL, "cannot start an HTTP request: libcurl failed");
        goto out;
    }
    for (const char *const *h = req->headers; h && *h; h++) {
        EPH_ASSERT(strpbrk(*h, "\r\n") == NULL); /* our callers check what they put in */
        headers = curl_slist_append(headers, *h);
        EPH_ASSERT(headers != NULL);
    }
    if (post) {
        headers = curl_slist_append(headers, "Expect:"); /* no 100-continue round trip */
        EPH_ASSERT(headers != NULL);
    }
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");       /* never an *_proxy from the environment */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* a redirect would carry credentials off */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);       /* we run on a thread pool */
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)HTTP_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)HTTP_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)OIDC_MAX_RESPONSE_BYTES);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ephemera");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    if (post) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(req->body));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    cc = curl_easy_perform(c);
    if (sink.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
        rc = eph_err_set(err, EPH_ETOOBIG, "%s at '%s' answered more than %d bytes", req->what,
                         q_url, OIDC_MAX_RESPONSE_BYTES);
        goto out;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        rc = eph_err_set(err, EPH_ETIMEDOUT, "%s at '%s' did not answer in time: %s", req->what,
                         q_url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    if (cc != CURLE_OK) {
        rc = eph_err_set(err, -EIO, "cannot reach the %s at '%s': %s", req->what, q_url,
                         errbuf[0] ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    *len_out = sink.body.len;
    *body_out = sink.body.data ? buf_steal(&sink.body) : xstrdup("");
out:
    buf_release(&sink.body);
    curl_slist_free_all(headers);
    if (c)
        curl_easy_cleanup(c);
    return rc;
}

/* GETs url as `what` and insists on HTTP 200. */
static int
get_200(const char *url, const char *what, char **body, size_t *len, struct eph_err *err)
{
    static const char *const headers[] = {"Accept: application/json", NULL};
    struct oidc__http_req req = {.url = url, .headers = headers, .what = what};
    char q_url[QUOTE_MAX];
    long status;
    int rc = oidc__http(&req, &status, body, len, err);

    if (rc < 0)
        return rc;
    if (status != 200) {
        oidc__printable(url, q_url, sizeof(q_url));
        free(*body);
        *body = NULL;
        return eph_err_set(err, EPH_EINVAL, "%s at '%s' answered HTTP %ld", what, q_url, status);
    }
    return 0;
}

/* ------------------------------------------------------------- network */

int
oidc_fetch_discovery(const char *issuer, struct oidc_discovery *out, struct eph_err *err)
{
    size_t n = strlen(issuer);
    char *url, *body = NULL;
    size_t len;
    int rc;

    memset(out, 0, sizeof(*out));
    while (n > 0 && issuer[n - 1] == '/')
        n--;
    url = xasprintf("%.*s%s", (int)n, issuer, WELL_KNOWN);
    rc = get_200(url, "OpenID provider's discovery document", &body, &len, err);
    if (rc == 0)
        rc = oidc_discovery_parse(body, len, issuer, out, err);
    free(body);
    free(url);
    return rc;
}

int
oidc_fetch_jwks(const char *jwks_uri, struct oidc_jwks **out, struct eph_err *err)
{
    char *body = NULL;
    size_t len;
    int rc;

    *out = NULL;
    rc = get_200(jwks_uri, "OpenID provider's JWKS", &body, &len, err);
    if (rc == 0)
        rc = oidc_jwks_parse(body, len, out, err);
    free(body);
    return rc;
}

/* True if s holds only the characters of a compact JWS. */
static bool
is_jws_text(const char *s)
{
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") ==
           strlen(s);
}

int
oidc_parse_token_response(long status, const char *json, size_t len, char **id_token_out,
                          struct eph_err *err)
{
    json_t *doc = NULL;
    json_t *v;
    char q_error[64], q_desc[QUOTE_MAX];
    int rc = 0;

    *id_token_out = NULL;
    if (len <= OIDC_MAX_RESPONSE_BYTES)
        doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        doc = NULL;
    }
    /* RFC 6749 section 5.2: {"error": "invalid_grant", "error_description": ...} */
    v = json_object_get(doc, "error");
    if (json_is_string(v)) {
        json_t *desc = json_object_get(doc, "error_description");

        oidc__printable(json_string_value(v), q_error, sizeof(q_error));
        if (json_is_string(desc)) {
            oidc__printable(json_string_value(desc), q_desc, sizeof(q_desc));
            rc = eph_err_set(err, EPH_EUNAUTH, "token endpoint refused the code: %s (%s)", q_error,
                             q_desc);
        } else {
            rc = eph_err_set(err, EPH_EUNAUTH, "token endpoint refused the code: %s", q_error);
        }
        goto out;
    }
    if (status != 200) {
        rc = eph_err_set(err, -EIO, "token endpoint answered HTTP %ld", status);
        goto out;
    }
    if (doc == NULL) {
        rc = eph_err_set(err, EPH_EPARSE, "token endpoint's answer is not a JSON object");
        goto out;
    }
    v = json_object_get(doc, "id_token");
    if (!json_is_string(v) || json_string_length(v) == 0) {
        rc = eph_err_set(err, EPH_EUNAUTH, "token endpoint's answer holds no ID token");
        goto out;
    }
    if (json_string_length(v) > OIDC_MAX_ID_TOKEN_BYTES || !is_jws_text(json_string_value(v))) {
        rc = eph_err_set(err, EPH_EUNAUTH, "token endpoint's ID token is not a compact JWS");
        goto out;
    }
    *id_token_out = xstrdup(json_string_value(v));
out:
    json_decref(doc);
    return rc;
}

/* "Authorization: Basic base64(enc(id):enc(secret))", RFC 6749 section
 * 2.3.1. The caller wipes and frees it: it holds the secret. */
static char *
basic_auth_header(const char *client_id, const char *client_secret)
{
    static const char prefix[] = "Authorization: Basic ";
    char *pair = NULL;
    char *header;
    size_t n;

    oidc__append_encoded(&pair, client_id);
    append(&pair, ":");
    oidc__append_encoded(&pair, client_secret);
    n = strlen(pair);
    header = xmalloc(sizeof(prefix) + (n + 2) / 3 * 4 + 1);
    memcpy(header, prefix, sizeof(prefix) - 1);
    EVP_EncodeBlock((unsigned char *)header + sizeof(prefix) - 1, (const unsigned char *)pair,
                    (int)n); /* NUL-terminates */
    OPENSSL_cleanse(pair, n);
    free(pair);
    return header;
}

int
oidc_exchange_code(const struct oidc_discovery *d, const char *client_id, const char *client_secret,
                   const char *code, const char *redirect_uri, const char *verifier,
                   char **id_token_out, struct eph_err *err)
{
    const char *headers[4] = {"Accept: application/json",
                              "Content-Type: application/x-www-form-urlencoded", NULL, NULL};
    struct oidc__http_req req = {
        .url = d->token_endpoint, .headers = headers, .what = "token endpoint"};
    bool basic = client_secret != NULL && client_secret[0] != '\0';
    char *auth = NULL, *body = NULL, *answer = NULL;
    size_t len;
    long status;
    int rc;

    *id_token_out = NULL;
    append(&body, "grant_type=authorization_code&code=");
    oidc__append_encoded(&body, code);
    append(&body, "&redirect_uri=");
    oidc__append_encoded(&body, redirect_uri);
    append(&body, "&code_verifier=");
    oidc__append_encoded(&body, verifier);
    if (basic) {
        auth = basic_auth_header(client_id, client_secret);
        headers[2] = auth;
    } else {
        append(&body, "&client_id=");
        oidc__append_encoded(&body, client_id);
    }
    req.body = body;
    rc = oidc__http(&req, &status, &answer, &len, err);
    if (rc == 0)
        rc = oidc_parse_token_response(status, answer, len, id_token_out, err);
    if (auth) {
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
    }
    OPENSSL_cleanse(body, strlen(body)); /* the code and verifier */
    free(body);
    if (answer) {
        OPENSSL_cleanse(answer, len); /* the tokens */
        free(answer);
    }
    return rc;
}
