/*
 * fuzz/fuzz_spec.c - libFuzzer target for the template parser (core/spec.c).
 *
 * Feeds the bytes to spec_parse() as they come (not NUL-terminated, any size
 * up to the limit and past it). A template that parses is also put through
 * everything the rest of the tree does with one: dependency order, params
 * with their defaults, expansion of every templated string and the
 * environment of every service, so that those meet odd but valid input too.
 *
 *   make fuzz && build/fuzz/fuzz_spec fuzz/corpus/spec -max_total_time=60
 */
#include "core/spec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
expand_one(const struct spec *s, const struct spec_vars *vars, const char *text)
{
    struct eph_err err = {0};
    char *out = NULL;

    if (text != NULL && spec_expand(s, vars, text, &out, &err) == 0)
        free(out);
}

/* Exercises a parsed spec the way the reconciler and drivers will. */
static void
use_spec(const struct spec *s)
{
    size_t order[SPEC_MAX_SERVICES];
    int ports[SPEC_MAX_SERVICES];
    char *hosts[SPEC_MAX_SERVICES], *urls[SPEC_MAX_SERVICES];
    struct spec_vars vars = {.env_name = "fuzz", .ports = ports, .hosts = hosts, .urls = urls};
    struct spec_kv *given = xcalloc(s->n_params ? s->n_params : 1, sizeof(*given));
    struct eph_err err = {0};
    char **values = NULL;
    size_t n_given = 0;

    spec_order(s, order);
    for (size_t i = 0; i < s->n_services; i++) {
        ports[i] = 10000 + (int)i;
        hosts[i] = "127.0.0.1";
        urls[i] = xasprintf("http://127.0.0.1:%d", ports[i]);
    }
    /* Params without a default get a value, so that resolution succeeds. */
    for (size_t i = 0; i < s->n_params; i++) {
        if (s->params[i].default_value == NULL) {
            given[n_given].key = s->params[i].name;
            given[n_given].value = s->params[i].n_allowed ? s->params[i].allowed[0] : "x";
            n_given++;
        }
    }
    if (spec_resolve_params(s, given, n_given, &values, &err) == 0) {
        vars.param_values = values;
        for (size_t i = 0; i < s->n_services; i++) {
            const struct spec_service *svc = &s->services[i];
            char **envp = NULL;
            size_t n = 0;

            expand_one(s, &vars, svc->run);
            expand_one(s, &vars, svc->setup);
            expand_one(s, &vars, svc->upstream);
            expand_one(s, &vars, svc->health_path);
            if (spec_service_environ(s, i, &vars, &envp, &n, &err) == 0)
                spec_strv_free(envp, n);
        }
        spec_strv_free(values, s->n_params);
    }
    free(given);
    for (size_t i = 0; i < s->n_services; i++)
        free(urls[i]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct eph_err err = {0};
    struct spec *s = NULL;

    if (spec_parse((const char *)data, size, "fuzz.yaml", &s, &err) == 0)
        use_spec(s);
    spec_free(s);
    return 0;
}
