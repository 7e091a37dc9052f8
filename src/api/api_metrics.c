/*
 * api/api_metrics.c - the Prometheus text of GET /metrics: the server's own
 * gauges (environments by phase, from the store), then whatever the
 * composition root adds (the gateway's counters, through api_hooks).
 */
#include "api/api_int.h"

#include <string.h>

#include "util/xmalloc.h"

/* Counts the environments of each phase and formats the whole scrape. */
int
api__metrics_text(struct store *st, api_metrics_cb *extra, void *arg, struct buf *out,
                  struct eph_err *err)
{
    static const enum env_phase phases[] = {
        ENV_PHASE_PENDING,  ENV_PHASE_PREPARING, ENV_PHASE_STARTING, ENV_PHASE_READY,
        ENV_PHASE_SLEEPING, ENV_PHASE_FAILED,    ENV_PHASE_DELETING,
    };
    int64_t counts[ARRAY_LEN(phases)];
    struct env **envs = NULL;
    size_t n = 0;
    int rc = store_env_list(st, false, &envs, &n, err);

    if (rc < 0)
        return rc;
    memset(counts, 0, sizeof(counts));
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < ARRAY_LEN(phases); k++) {
            if (envs[i]->phase == phases[k])
                counts[k]++;
        }
    }
    env_list_free(envs, n);
    rc = buf_printf(out,
                    "# HELP eph_build_info The running server's version.\n"
                    "# TYPE eph_build_info gauge\n"
                    "eph_build_info{version=\"%s\"} 1\n"
                    "# HELP eph_environments Environments not yet deleted, by phase.\n"
                    "# TYPE eph_environments gauge\n",
                    EPH_VERSION);
    for (size_t k = 0; k < ARRAY_LEN(phases) && rc == 0; k++)
        rc = buf_printf(out, "eph_environments{phase=\"%s\"} %lld\n", env_phase_name(phases[k]),
                        (long long)counts[k]);
    if (rc == 0 && extra)
        extra(arg, out);
    if (rc < 0)
        return eph_err_set(err, rc, "the metrics do not fit in %zu bytes", out->max_bytes);
    return 0;
}
