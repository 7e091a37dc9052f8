/*
 * gateway/pages.c - the answers the gateway gives itself rather than an
 * upstream: 404 listing an environment's services (or the environments),
 * 503 while a service is not ready (its phase and state, Retry-After), the
 * "waking up" page of a held browser navigation, and the errors of the
 * proxy (400, 408, 431, 502, 504 ...). HTML for browsers (Accept:
 * text/html), JSON in the API's error shape for everyone else.
 *
 * Pure formatting into a buffer: a whole response, head and body.
 */
#include "gateway/proxy_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/env.h"

/* Entries on one listing page; a gateway with more environments lists the
 * first ones by name and says how many it left out. */
#define GW_PAGE_MAX_ENTRIES 500
/* Ceiling of a page body (the listing above stays well below). */
#define GW_PAGE_MAX_BYTES (512 * 1024)

static const char *
status_code_name(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "timeout";
    case 413:
    case 431: return "too_large";
    case 501: return "not_implemented";
    case 502: return "bad_gateway";
    case 503: return "unavailable";
    case 504: return "gateway_timeout";
    case 505: return "http_version";
    default: return "error";
    }
}

static const char *
reason_phrase(int status)
{
    const char *r = http_status_str((enum http_status)status);

    return strcmp(r, "<unknown>") == 0 ? "Status" : r;
}

bool
gw__accepts_html(const char *accept, size_t len)
{
    static const char want[] = "text/html";

    if (accept == NULL)
        return false;
    for (size_t i = 0; i + sizeof(want) - 1 <= len; i++) {
        if (strncasecmp(accept + i, want, sizeof(want) - 1) == 0)
            return true;
    }
    return false;
}

/* Appends s[0..len) as the inside of a JSON string. */
static void
json_text(struct buf *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            buf_append(b, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            buf_printf(b, "\\u%04x", c);
        } else {
            buf_append(b, &s[i], 1);
        }
    }
}

static void
json_str(struct buf *b, const char *s)
{
    buf_puts(b, "\"");
    if (s)
        json_text(b, s, strlen(s));
    buf_puts(b, "\"");
}

/* Appends s[0..len) escaped for HTML text and attribute values. */
static void
html_text(struct buf *b, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '<': buf_puts(b, "&lt;"); break;
        case '>': buf_puts(b, "&gt;"); break;
        case '&': buf_puts(b, "&amp;"); break;
        case '"': buf_puts(b, "&quot;"); break;
        case '\'': buf_puts(b, "&#39;"); break;
        default: buf_append(b, &s[i], 1); break;
        }
    }
}

static void
html_str(struct buf *b, const char *s)
{
    if (s)
        html_text(b, s, strlen(s));
}

static void
html_open(struct buf *b, int status, const char *message)
{
    buf_printf(b,
               "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%d %s</title>"
               "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
               "li{margin:.3em 0}.state{color:#777}</style></head><body>\n"
               "<h1>%d %s</h1>\n<p>",
               status, reason_phrase(status), status, reason_phrase(status));
    html_str(b, message);
    buf_puts(b, "</p>\n");
}

static void
html_close(struct buf *b)
{
    buf_puts(b, "<hr><p class=\"state\">ephemera gateway</p>\n</body></html>\n");
}

static void
json_error_open(struct buf *b, int status, const char *message)
{
    buf_printf(b, "{\"error\": {\"code\": \"%s\", \"message\": ", status_code_name(status));
    json_str(b, message);
    buf_puts(b, "}");
}

/* Writes the whole response: head, then body unless HEAD was asked. */
static void
respond(struct buf *out, const struct gw_page_req *pr, int status, const char *extra_headers,
        const struct buf *body)
{
    buf_reset(out);
    buf_printf(out,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\n%s%s\r\n",
               status, reason_phrase(status),
               pr->html ? "text/html; charset=utf-8" : "application/json", body->len,
               extra_headers ? extra_headers : "", pr->keep_alive ? "" : "Connection: close\r\n");
    if (!pr->head_only && body->len > 0)
        buf_append(out, body->data, body->len);
}

static void
service_url(const struct gw_page_req *pr, const struct gw_route_service *s, char *url, size_t size)
{
    if (pr->pattern)
        gw_host_url(pr->pattern, s->name, s->env_name, pr->port, url, size);
    else
        snprintf(url, size, "%s", "");
}

static void
list_services_json(struct buf *b, const struct gw_page_req *pr, const struct gw_route_env *e)
{
    char url[512];

    buf_puts(b, "[");
    for (size_t j = 0; j < e->n_services; j++) {
        const struct gw_route_service *s = &e->services[j];

        service_url(pr, s, url, sizeof(url));
        buf_puts(b, j ? ", {\"name\": " : "{\"name\": ");
        json_str(b, s->name);
        buf_puts(b, ", \"url\": ");
        json_str(b, url);
        buf_puts(b, ", \"state\": ");
        json_str(b, svc_state_name(s->state));
        buf_printf(b, ", \"ready\": %s}", s->routable ? "true" : "false");
    }
    buf_puts(b, "]");
}

static void
list_services_html(struct buf *b, const struct gw_page_req *pr, const struct gw_route_env *e)
{
    char url[512];

    buf_puts(b, "<ul>\n");
    for (size_t j = 0; j < e->n_services; j++) {
        const struct gw_route_service *s = &e->services[j];

        service_url(pr, s, url, sizeof(url));
        buf_puts(b, "<li><a href=\"");
        html_str(b, url);
        buf_puts(b, "\">");
        html_str(b, s->name);
        buf_puts(b, "</a> <span class=\"state\">");
        html_str(b, svc_state_name(s->state));
        buf_puts(b, "</span></li>\n");
    }
    if (e->n_services == 0)
        buf_puts(b, "<li class=\"state\">no services with a URL</li>\n");
    buf_puts(b, "</ul>\n");
}

void
gw__page_not_found(struct buf *out, const struct gw_page_req *pr, const struct gw_routes *routes,
                   const struct gw_route_env *env, const char *host, size_t host_len)
{
    struct buf body;
    char message[400];
    size_t n_envs = routes ? routes->n_envs : 0;
    size_t shown = n_envs < GW_PAGE_MAX_ENTRIES ? n_envs : GW_PAGE_MAX_ENTRIES;

    if (host_len > 255)
        host_len = 255;
    if (env)
        snprintf(message, sizeof(message), "no such service in environment '%s' (host '%.*s')",
                 env->name, (int)host_len, host ? host : "");
    else if (host && host_len)
        snprintf(message, sizeof(message), "no environment serves host '%.*s'", (int)host_len,
                 host);
    else
        snprintf(message, sizeof(message), "no environment serves this request");
    buf_init(&body, GW_PAGE_MAX_BYTES);
    if (pr->html) {
        html_open(&body, 404, message);
        if (env) {
            buf_puts(&body, "<h2>Services of ");
            html_str(&body, env->name);
            buf_puts(&body, " <span class=\"state\">");
            html_str(&body, env_phase_name(env->phase));
            buf_puts(&body, "</span></h2>\n");
            list_services_html(&body, pr, env);
        } else {
            buf_puts(&body, "<h2>Environments</h2>\n<ul>\n");
            for (size_t i = 0; i < shown; i++) {
                const struct gw_route_env *e = &routes->envs[i];

                buf_puts(&body, "<li>");
                html_str(&body, e->name);
                buf_puts(&body, " <span class=\"state\">");
                html_str(&body, env_phase_name(e->phase));
                buf_puts(&body, "</span>\n");
                list_services_html(&body, pr, e);
                buf_puts(&body, "</li>\n");
            }
            if (n_envs == 0)
                buf_puts(&body, "<li class=\"state\">no environments</li>\n");
            else if (shown < n_envs)
                buf_printf(&body, "<li class=\"state\">and %zu more</li>\n", n_envs - shown);
            buf_puts(&body, "</ul>\n");
        }
        html_close(&body);
    } else {
        json_error_open(&body, 404, message);
        if (env) {
            buf_puts(&body, ", \"environment\": ");
            json_str(&body, env->name);
            buf_puts(&body, ", \"phase\": ");
            json_str(&body, env_phase_name(env->phase));
            buf_puts(&body, ", \"services\": ");
            list_services_json(&body, pr, env);
        } else {
            buf_puts(&body, ", \"environments\": [");
            for (size_t i = 0; i < shown; i++) {
                const struct gw_route_env *e = &routes->envs[i];

                buf_puts(&body, i ? ", {\"name\": " : "{\"name\": ");
                json_str(&body, e->name);
                buf_puts(&body, ", \"phase\": ");
                json_str(&body, env_phase_name(e->phase));
                buf_puts(&body, ", \"services\": ");
                list_services_json(&body, pr, e);
                buf_puts(&body, "}");
            }
            buf_printf(&body, "], \"total\": %zu", n_envs);
        }
        buf_puts(&body, "}\n");
    }
    respond(out, pr, 404, NULL, &body);
    buf_release(&body);
}

void
gw__page_unavailable(struct buf *out, const struct gw_page_req *pr,
                     const struct gw_route_service *svc)
{
    const struct gw_route_env *e = svc->env;
    const char *phase = env_phase_name(e->phase);
    const char *state = svc_state_name(svc->state);
    struct buf body;
    char message[300];

    snprintf(message, sizeof(message), "service '%s' of environment '%s' is not ready", svc->name,
             e->name);
    buf_init(&body, GW_PAGE_MAX_BYTES);
    if (pr->html) {
        html_open(&body, 503, message);
        buf_puts(&body, "<p>Environment <b>");
        html_str(&body, e->name);
        buf_puts(&body, "</b> is <b>");
        html_str(&body, phase);
        buf_puts(&body, "</b>; service <b>");
        html_str(&body, svc->name);
        buf_puts(&body, "</b> is <b>");
        html_str(&body, state);
        buf_puts(&body, "</b>.</p>\n");
        if (e->reason) {
            buf_puts(&body, "<p class=\"state\">");
            html_str(&body, e->reason);
            buf_puts(&body, "</p>\n");
        }
        buf_puts(&body, "<p class=\"state\">This page reloads by itself.</p>\n"
                        "<script>setTimeout(function(){location.reload()},2000)</script>\n");
        html_close(&body);
    } else {
        json_error_open(&body, 503, message);
        buf_puts(&body, ", \"environment\": ");
        json_str(&body, e->name);
        buf_puts(&body, ", \"phase\": ");
        json_str(&body, phase);
        buf_puts(&body, ", \"service\": ");
        json_str(&body, svc->name);
        buf_puts(&body, ", \"state\": ");
        json_str(&body, state);
        if (e->reason) {
            buf_puts(&body, ", \"reason\": ");
            json_str(&body, e->reason);
        }
        buf_puts(&body, "}\n");
    }
    respond(out, pr, 503, "Retry-After: 2\r\n", &body);
    buf_release(&body);
}

void
gw__page_error(struct buf *out, const struct gw_page_req *pr, int status, const char *message)
{
    struct buf body;

    buf_init(&body, GW_PAGE_MAX_BYTES);
    if (pr->html) {
        html_open(&body, status, message);
        html_close(&body);
    } else {
        json_error_open(&body, status, message);
        buf_puts(&body, "}\n");
    }
    respond(out, pr, status, status == 503 ? "Retry-After: 2\r\n" : NULL, &body);
    buf_release(&body);
}

void
gw__page_waking(struct buf *out, const struct gw_page_req *pr, const struct gw_route_service *svc)
{
    const struct gw_route_env *e = svc->env;
    struct buf body;
    char message[300];

    snprintf(message, sizeof(message), "waking up %s\u2026", e->name);
    buf_init(&body, GW_PAGE_MAX_BYTES);
    if (pr->html) {
        /* Not html_open(): this one refreshes itself and is no error. */
        buf_puts(&body, "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
                        "<meta http-equiv=\"refresh\" content=\"1\"><title>");
        html_str(&body, message);
        buf_puts(&body, "</title><style>body{font-family:system-ui,sans-serif;margin:2em;"
                        "color:#222}.state{color:#777}</style></head><body>\n<h1>");
        html_str(&body, message);
        buf_puts(&body, "</h1>\n<p>Environment <b>");
        html_str(&body, e->name);
        buf_puts(&body, "</b> was asleep and is starting again; service <b>");
        html_str(&body, svc->name);
        buf_puts(&body, "</b> is <b>");
        html_str(&body, svc_state_name(svc->state));
        buf_puts(&body, "</b>.</p>\n<p class=\"state\">This page reloads by itself until it "
                        "is up.</p>\n");
        html_close(&body);
    } else {
        json_error_open(&body, 503, message);
        buf_puts(&body, ", \"environment\": ");
        json_str(&body, e->name);
        buf_puts(&body, ", \"phase\": ");
        json_str(&body, env_phase_name(e->phase));
        buf_puts(&body, ", \"service\": ");
        json_str(&body, svc->name);
        buf_puts(&body, ", \"state\": ");
        json_str(&body, svc_state_name(svc->state));
        buf_puts(&body, "}\n");
    }
    respond(out, pr, 503, "Retry-After: 1\r\n", &body);
    buf_release(&body);
}
