/*
 * auth/github.h - the client side of signing in with GitHub (an OAuth app,
 * on github.com or GitHub Enterprise Server): the authorization URL, the
 * code exchange, who the user is, and whether they belong to the
 * organisations or teams the server admits. No HTTP server here: the API's
 * sign-in handlers drive these functions.
 *
 * web_url is where people sign in ("https://github.com", or the Enterprise
 * host; NULL or "" mean github.com); api_url is the REST API
 * ("https://api.github.com", or "https://HOST/api/v3"; NULL or "" mean
 * api.github.com). A trailing '/' on either is ignored.
 *
 * The network functions make blocking libcurl calls with the limits of
 * auth/oidc.h (10 s, no proxy from the environment, 1 MiB answers): run
 * them on libuv's thread pool. The parse functions are pure and exist so
 * that GitHub's answers can be tested and fuzzed. Any thread. Nothing here
 * logs; access tokens and client secrets never reach a message.
 */
#ifndef EPH_AUTH_GITHUB_H
#define EPH_AUTH_GITHUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define GITHUB_TOKEN_MAX 1024 /* longest access token accepted from GitHub */

/*
 * web_url + "/login/oauth/authorize?client_id=..&redirect_uri=..&state=..
 * &scope=read:org%20user:email", values percent-encoded. read:org lets
 * github_check_membership() see private memberships; user:email lets
 * github_fetch_user() see a private primary email. Returns a string to free().
 */
char *github_authorize_url(const char *web_url, const char *client_id, const char *redirect_uri,
                           const char *state);

/*
 * POSTs the code to web_url + "/login/oauth/access_token" (client_id,
 * client_secret, code, redirect_uri; Accept: application/json). Returns 0
 * and the access token in *token_out (a string to free(); wipe it first
 * if you like); EPH_EUNAUTH when GitHub refuses ("GitHub refused the
 * code: bad_verification_code (...)"); -EIO, EPH_ETIMEDOUT, EPH_ETOOBIG
 * for the network; EPH_EPARSE for an answer that is not JSON.
 */
int github_exchange_code(const char *web_url, const char *client_id, const char *client_secret,
                         const char *code, const char *redirect_uri, char **token_out,
                         struct eph_err *err);

/* A GitHub account; strings owned. */
struct github_user {
    char *login; /* the account name: letters, digits, '-', '_' and '.' only (checked) */
    char *email; /* public email, else the primary verified one; NULL if none is visible */
    char *name;  /* display name; NULL if unset */
    int64_t id;  /* GitHub's numeric id: stays when the login is renamed; > 0 */
};

/* Frees the strings and zeroes *u; a zeroed struct is fine. */
void github_user_release(struct github_user *u);

/*
 * GETs api_url + "/user" (Authorization: Bearer token, Accept:
 * application/vnd.github+json, User-Agent: ephemera) into *out; when it
 * shows no email, the primary verified one from api_url + "/user/emails"
 * (a token without the user:email scope leaves it NULL). Returns 0 (the
 * caller releases *out), EPH_EUNAUTH (GitHub refuses the token), EPH_EINVAL
 * (a bad token or answer, another HTTP status), or the network errors.
 */
int github_fetch_user(const char *api_url, const char *token, struct github_user *out,
                      struct eph_err *err);

/*
 * Sets *ok when the user is an active member of one of `orgs` (GET
 * api_url/user/memberships/orgs/{org}, state "active") or of one of
 * `teams` ("org/team-slug": GET api_url/orgs/{org}/teams/{team}/memberships/
 * {login}, state "active"). Both lists empty: *ok without asking. 404 or a
 * "pending" state means not a member. Stops at the first membership found.
 * Returns 0 with *ok set either way; an error only when no membership was
 * found and some question could not be answered (EPH_EPERM: GitHub refused
 * to tell, e.g. an organisation that restricts OAuth apps; EPH_EINVAL: a
 * team not written "org/team"; network errors), *ok false then.
 */
int github_check_membership(const char *api_url, const char *token, const char *login,
                            const char *const *orgs, size_t n_orgs, const char *const *teams,
                            size_t n_teams, bool *ok, struct eph_err *err);

/* ------------------------------------------------------------- GitHub's answers (pure) */

/* The access token endpoint's JSON. GitHub answers errors with HTTP 200 and
 * {"error": "bad_verification_code", "error_description": ...}: EPH_EUNAUTH.
 * 0 and *token_out (free()) or EPH_EPARSE / EPH_EUNAUTH, *token_out NULL. */
int github_parse_token(const char *json, size_t len, char **token_out, struct eph_err *err);

/* GET /user's JSON: login (checked), id, name, email. 0 and *out (release
 * it) or EPH_EPARSE / EPH_EINVAL, *out zeroed. */
int github_parse_user(const char *json, size_t len, struct github_user *out, struct eph_err *err);

/* GET /user/emails's JSON array: the address that is both primary and
 * verified into *email_out (free()), or NULL when there is none. 0, or
 * EPH_EPARSE when it is not an array. */
int github_parse_emails(const char *json, size_t len, char **email_out, struct eph_err *err);

/* A membership's JSON (org or team): *active when its "state" is "active".
 * 0, or EPH_EPARSE when it is not an object with a string "state". */
int github_parse_membership(const char *json, size_t len, bool *active, struct eph_err *err);

#endif
