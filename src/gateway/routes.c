/*
 * gateway/routes.c - the route snapshot: Host header -> upstream.
 *
 * Tables are immutable; a request keeps the table it started with, so a
 * route change never tears a request in half. The hash is open addressing
 * over (service, env) with at most half the slots used, so a lookup is one
 * hash of the two names and, almost always, one comparison.
 */
#include "gateway/routes.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xmalloc.h"

/* ------------------------------------------------------------- hashing */

/* FNV-1a over the lower-cased bytes of service, a separator, then env. */
static uint64_t
route_hash(const char *service, size_t service_len, const char *env, size_t env_len)
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < service_len; i++) {
        h ^= (unsigned char)tolower((unsigned char)service[i]);
        h *= 1099511628211ULL;
    }
    h ^= 0xff; /* a byte no name holds: "ab"+"c" and "a"+"bc" differ */
    h *= 1099511628211ULL;
    for (size_t i = 0; i < env_len; i++) {
        h ^= (unsigned char)tolower((unsigned char)env[i]);
        h *= 1099511628211ULL;
    }
    return h;
}

/* True if name (lower-case, NUL-terminated) equals s[0..len) ignoring case. */
static bool
name_eq(const char *name, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '\0' || name[i] != tolower((unsigned char)s[i]))
            return false;
    }
    return name[len] == '\0';
}

static int
compare_env_names(const void *a, const void *b)
{
    return strcmp(((const struct gw_route_env *)a)->name, ((const struct gw_route_env *)b)->name);
}

/* ------------------------------------------------------------- tables */

struct gw_routes *
gw_routes_build(const struct gw_route_env_in *envs, size_t n_envs, uint64_t version)
{
    struct gw_routes *r = xcalloc(1, sizeof(*r));
    size_t n_routes = 0;

    atomic_init(&r->refs, 1);
    r->version = version;
    r->n_envs = n_envs;
    r->envs = xcalloc(n_envs + 1, sizeof(*r->envs));
    for (size_t i = 0; i < n_envs; i++) {
        const struct gw_route_env_in *in = &envs[i];
        struct gw_route_env *e = &r->envs[i];

        e->id = in->id;
        e->name = xstrdup(in->name);
        e->owner = xstrdup(in->owner ? in->owner : "");
        e->visibility = in->visibility;
        e->links_since_ms = in->links_since_ms;
        e->phase = in->phase;
        e->reason = xstrdup(in->reason);
        e->hold_requests = in->hold_requests;
        e->asleep_message = xstrdup(in->asleep_message); /* NULL stays NULL */
        e->services = xcalloc(in->n_services + 1, sizeof(*e->services));
        for (size_t j = 0; j < in->n_services; j++) {
            const struct gw_route_service_in *si = &in->services[j];
            struct gw_route_service *s;

            if (!si->expose)
                continue;
            s = &e->services[e->n_services++];
            s->name = xstrdup(si->name);
            s->upstream_host = xstrdup(si->upstream_host ? si->upstream_host : "127.0.0.1");
            s->upstream_port = si->upstream_port;
            snprintf(s->upstream_key, sizeof(s->upstream_key), "%s:%d", s->upstream_host,
                     s->upstream_port);
            s->state = si->state;
            s->routable = si->state == SVC_STATE_HEALTHY && si->upstream_port > 0;
        }
        n_routes += e->n_services;
    }
    /* Sorted by name for listings; services point at their env only after
     * the sort has put the envs in their final places. */
    qsort(r->envs, n_envs, sizeof(*r->envs), compare_env_names);
    r->n_slots = 16;
    while (r->n_slots < n_routes * 2)
        r->n_slots *= 2;
    r->slots = xcalloc(r->n_slots, sizeof(*r->slots));
    for (size_t i = 0; i < n_envs; i++) {
        struct gw_route_env *e = &r->envs[i];
        for (size_t j = 0; j < e->n_services; j++) {
            struct gw_route_service *s = &e->services[j];
            size_t slot;

            s->env = e;
            s->env_name = e->name;
            slot = route_hash(s->name, strlen(s->name), e->name, strlen(e->name)) &
                   (r->n_slots - 1);
            while (r->slots[slot] != NULL)
                slot = (slot + 1) & (r->n_slots - 1);
            r->slots[slot] = s;
        }
    }
    return r;
}

struct gw_routes *
gw_routes_ref(struct gw_routes *r)
{
    if (r)
        atomic_fetch_add(&r->refs, 1);
    return r;
}

void
gw_routes_unref(struct gw_routes *r)
{
    if (r == NULL || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    for (size_t i = 0; i < r->n_envs; i++) {
        struct gw_route_env *e = &r->envs[i];
        for (size_t j = 0; j < e->n_services; j++) {
            free(e->services[j].name);
            free(e->services[j].upstream_host);
        }
        free(e->services);
        free(e->name);
        free(e->owner);
        free(e->reason);
        free(e->asleep_message);
    }
    free(r->envs);
    free(r->slots);
    free(r);
}

const struct gw_route_service *
gw_routes_find(const struct gw_routes *r, const char *service, size_t service_len,
               const char *env, size_t env_len)
{
    size_t slot;

    if (r == NULL || r->n_slots == 0)
        return NULL;
    slot = route_hash(service, service_len, env, env_len) & (r->n_slots - 1);
    for (const struct gw_route_service *s; (s = r->slots[slot]) != NULL;
         slot = (slot + 1) & (r->n_slots - 1)) {
        if (name_eq(s->name, service, service_len) && name_eq(s->env_name, env, env_len))
            return s;
    }
    return NULL;
}

const struct gw_route_env *
gw_routes_find_env(const struct gw_routes *r, const char *env, size_t env_len)
{
    size_t lo = 0, hi = r ? r->n_envs : 0;
    char key[ENV_NAME_MAX + 1];

    if (env_len > ENV_NAME_MAX)
        return NULL;
    for (size_t i = 0; i < env_len; i++)
        key[i] = (char)tolower((unsigned char)env[i]);
    key[env_len] = '\0';
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->envs[mid].name, key);
        if (c == 0)
            return &r->envs[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ------------------------------------------------------------- host patterns */

/* Replaces every "{domain}" in pattern by domain (free()). */
static char *
substitute_domain(const char *pattern, const char *domain)
{
    size_t dlen = strlen(domain);
    size_t cap = strlen(pattern) * (dlen + 1) + 1;
    char *out = xmalloc(cap);
    size_t o = 0;

    for (const char *p = pattern; *p;) {
        if (strncmp(p, "{domain}", 8) == 0) {
            memcpy(out + o, domain, dlen);
            o += dlen;
            p += 8;
        } else {
            out[o++] = (char)tolower((unsigned char)*p++);
        }
    }
    out[o] = '\0';
    return out;
}

int
gw_host_pattern_init(struct gw_host_pattern *p, const char *pattern, const char *domain,
                     struct eph_err *err)
{
    char *full;
    char *svc, *env;
    int rc = 0;

    memset(p, 0, sizeof(*p));
    if (domain == NULL || *domain == '\0' || strchr(domain, '{'))
        return eph_err_set(err, EPH_EINVAL, "domain: must be a host name such as 'localhost'");
    full = substitute_domain(pattern, domain);
    svc = strstr(full, "{service}");
    env = strstr(full, "{env}");
    if (svc == NULL || env == NULL || strstr(svc + 1, "{service}") ||
        strstr(env + 1, "{env}") || strchr(full, '{') != (svc < env ? svc : env)) {
        rc = eph_err_set(err, EPH_EINVAL,
                         "host_pattern: '%s' must hold {service} and {env} once each "
                         "(and may hold {domain})",
                         pattern);
        goto out;
    }
    p->service_first = svc < env;
    char *first = p->service_first ? svc : env;
    char *second = p->service_first ? env : svc;
    size_t first_len = p->service_first ? 9 : 5;
    size_t second_len = p->service_first ? 5 : 9;
    if (first + first_len == second) {
        rc = eph_err_set(err, EPH_EINVAL,
                         "host_pattern: '%s' needs a separator between {service} and {env}",
                         pattern);
        goto out;
    }
    p->prefix = xstrndup(full, (size_t)(first - full));
    p->middle = xstrndup(first + first_len, (size_t)(second - first - first_len));
    p->suffix = xstrdup(second + second_len);
    if (strchr(p->middle, '{') || strchr(p->suffix, '{') || strchr(p->prefix, '{')) {
        rc = eph_err_set(err, EPH_EINVAL, "host_pattern: '%s' holds an unknown {placeholder}",
                         pattern);
        goto out;
    }
    p->pattern = xstrdup(pattern);
    p->domain = xstrdup(domain);
out:
    free(full);
    if (rc < 0)
        gw_host_pattern_release(p);
    return rc;
}

void
gw_host_pattern_release(struct gw_host_pattern *p)
{
    free(p->pattern);
    free(p->domain);
    free(p->prefix);
    free(p->middle);
    free(p->suffix);
    memset(p, 0, sizeof(*p));
}

static bool
ieq_prefix(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);

    if (n > len)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (tolower((unsigned char)s[i]) != lit[i])
            return false;
    }
    return true;
}

static bool
ieq(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && ieq_prefix(s, len, lit);
}

/* A DNS label: [a-z0-9-], not starting or ending with '-', 1..63 bytes. */
static bool
is_label(const char *s, size_t len)
{
    if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = (char)tolower((unsigned char)s[i]);
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

static bool
is_ip_literal(const char *s, size_t len)
{
    if (len > 0 && s[0] == '[')
        return s[len - 1] == ']';
    for (size_t i = 0; i < len; i++) {
        if (!(isdigit((unsigned char)s[i]) || s[i] == '.'))
            return false;
    }
    return len > 0;
}

enum gw_host_kind
gw_host_classify(const struct gw_host_pattern *p, const char *host, size_t host_len,
                 const char **service, size_t *service_len, const char **env, size_t *env_len)
{
    size_t len = host_len;
    size_t plen, slen, mlen;
    const char *rest;
    size_t rest_len;
    const char *mid = NULL;

    /* Drop the port: after the last ':' unless inside an IPv6 literal. */
    for (size_t i = host_len; i > 0; i--) {
        if (host[i - 1] == ':') {
            len = i - 1;
            break;
        }
        if (host[i - 1] == ']' || !isdigit((unsigned char)host[i - 1]))
            break;
    }
    if (len > 0 && host[len - 1] == '.') /* a fully qualified name's root dot */
        len--;
    if (len == 0)
        return GW_HOST_UNKNOWN;
    if (ieq(host, len, p->domain) || ieq(host, len, "localhost") || is_ip_literal(host, len))
        return GW_HOST_CONTROL;

    plen = strlen(p->prefix);
    slen = strlen(p->suffix);
    mlen = strlen(p->middle);
    if (len < plen + slen + mlen + 2 || !ieq_prefix(host, len, p->prefix) ||
        !ieq(host + len - slen, slen, p->suffix))
        return GW_HOST_UNKNOWN;
    rest = host + plen;
    rest_len = len - plen - slen;
    /* The first occurrence of the separator splits the two names. */
    for (size_t i = 1; i + mlen < rest_len; i++) {
        if (ieq_prefix(rest + i, rest_len - i, p->middle)) {
            mid = rest + i;
            break;
        }
    }
    if (mid == NULL)
        return GW_HOST_UNKNOWN;
    const char *a = rest, *b = mid + mlen;
    size_t a_len = (size_t)(mid - rest), b_len = rest_len - a_len - mlen;
    if (!is_label(a, a_len) || !is_label(b, b_len))
        return GW_HOST_UNKNOWN;
    *service = p->service_first ? a : b;
    *service_len = p->service_first ? a_len : b_len;
    *env = p->service_first ? b : a;
    *env_len = p->service_first ? b_len : a_len;
    return GW_HOST_SERVICE;
}

void
gw_host_url(const struct gw_host_pattern *p, const char *service, const char *env, int port,
            char *out, size_t out_size)
{
    const char *first = p->service_first ? service : env;
    const char *second = p->service_first ? env : service;

    if (port == 80)
        snprintf(out, out_size, "http://%s%s%s%s%s/", p->prefix, first, p->middle, second,
                 p->suffix);
    else
        snprintf(out, out_size, "http://%s%s%s%s%s:%d/", p->prefix, first, p->middle, second,
                 p->suffix, port);
}
