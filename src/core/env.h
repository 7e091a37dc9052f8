/*
 * core/env.h - the model: projects, environments, their services and phases,
 * and events, as the store keeps them and the API shows them.
 *
 * An environment's spec (what was asked: project, ref, params, expiry,
 * desired state) and status (what is observed: phase, reason, services) are
 * kept apart; the reconciler makes the second follow the first.
 */
#ifndef EPH_CORE_ENV_H
#define EPH_CORE_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/access.h"
#include "util/err.h"

#define ENV_NAME_MAX 40 /* DNS label: [a-z0-9]([a-z0-9-]{0,38}[a-z0-9])? */

enum env_phase {
    ENV_PHASE_PENDING,   /* recorded, nothing done yet */
    ENV_PHASE_PREPARING, /* checking out the source */
    ENV_PHASE_STARTING,  /* running setup and starting services in order */
    ENV_PHASE_READY,     /* every service healthy */
    ENV_PHASE_SLEEPING,  /* processes stopped (idle, schedule, by hand); checkout, data,
                            ports and routes kept (docs/sleep.md) */
    ENV_PHASE_FAILED,    /* see reason */
    ENV_PHASE_DELETING,  /* stopping services, removing files */
    ENV_PHASE_DELETED,   /* gone; the record stays for the audit log */
};

enum env_desired {
    ENV_WANT_RUNNING,
    ENV_WANT_DELETED,
    ENV_WANT_ASLEEP, /* stopped, kept: see sleep_cause and transition_reason */
};

enum svc_state {
    SVC_STATE_PENDING,    /* waiting for its dependencies */
    SVC_STATE_SETUP,      /* its setup command is running */
    SVC_STATE_STARTING,   /* process started, health check not yet passed */
    SVC_STATE_HEALTHY,    /* health check passed, process running */
    SVC_STATE_RESTARTING, /* crashed; waiting out the back-off before the next start */
    SVC_STATE_FAILED,     /* gave up: see reason */
    SVC_STATE_STOPPED,    /* not running, on purpose */
};

struct project {
    int64_t id;
    char *name;          /* DNS label, like environment names */
    char *repo;          /* git URL or absolute local path */
    char *created_by;
    int64_t created_at_ms;
};

struct env_param {
    char *name;
    char *value;
};

struct env_svc {
    char *name;
    int port;                /* allocated at creation and kept; 0: none */
    /* observed */
    enum svc_state state;
    int pid;                 /* process group leader, 0 when not running */
    int restarts;            /* crashes restarted so far */
    char *reason;            /* why FAILED/RESTARTING; NULL otherwise */
    int64_t started_at_ms;   /* wall clock of the last start, 0 if never */
};

struct env {
    int64_t id;              /* unique forever; names can be reused after deletion */
    char *name;
    char *project;
    char *ref;               /* as requested: branch, tag or commit */
    char *commit;            /* resolved full sha */
    char *owner;
    enum visibility visibility; /* who sees it; VIS_TEAM unless asked otherwise */
    int64_t links_since_ms;     /* wall clock: share links made at or before this were withdrawn
                                   (the visibility last left link); 0 none. Set by the store */
    char *template_yaml;     /* ephemera.yaml at `commit`, kept with the record */
    struct env_param *params;
    size_t n_params;
    int64_t created_at_ms;   /* wall clock */
    int64_t expires_at_ms;   /* wall clock; deleted automatically after this */
    enum env_desired desired;
    /* sleep and limits, as asked at creation (0 / -1 / NULL / "": the template's or
     * the server's setting applies; docs/sleep.md) */
    int64_t sleep_after_s;   /* idle this long: sleep. 0 inherit, -1 never, > 0 seconds */
    bool keep;               /* exempt from idle sleep and schedules */
    char *schedule_awake;    /* "Mon-Fri 08:00-20:00"; NULL or "": inherit */
    char *schedule_tz;       /* IANA time zone of schedule_awake; NULL or "": inherit */
    int wake_outside_hours;  /* may a request wake it outside hours: -1 inherit, 0, 1 */
    int64_t limit_memory_bytes; /* 0: none asked (the template's, capped by the server's) */
    int64_t limit_cpu_millis;   /* 1000 = one core; 0: none asked */
    int64_t limit_pids;         /* 0: none asked */
    /* sleep state, kept by the reconciler */
    int64_t last_activity_ms; /* wall clock of the last request or API call naming it, 0 none;
                                 written at most every 10 s, so up to 10 s old */
    char *last_activity;      /* what it was: "request web", "api get"; "" none */
    int64_t slept_at_ms;      /* wall clock of the last entry into SLEEPING, 0 never */
    int64_t woke_at_ms;       /* wall clock of the last exit from SLEEPING, 0 never */
    char *sleep_cause;        /* while desired asleep: "idle", "schedule", "manual"; else "" */
    char *transition_reason;  /* of the last sleep or wake ("idle for 30m (last: request
                                 web)"); "" none */
    /* status */
    enum env_phase phase;
    char *reason;            /* why FAILED (or other detail); NULL if none */
    int64_t phase_at_ms;     /* wall clock of the last phase change */
    int64_t ready_at_ms;     /* wall clock of the first time ready, 0 until then */
    struct env_svc *services;
    size_t n_services;
};

struct event {
    int64_t id;              /* increasing; clients page with after_id */
    int64_t at_ms;           /* wall clock */
    char *actor;             /* user or token name, or "system" */
    char *source;            /* client address, or "" for the system */
    char *action;            /* "env.create", "env.phase", "service.crash", ... */
    char *target;            /* "env/fx", "project/shop", ... */
    char *detail;            /* human text */
};

const char *env_phase_name(enum env_phase phase);
int env_phase_parse(const char *name, enum env_phase *out); /* 0 or EPH_EINVAL */
const char *env_desired_name(enum env_desired desired);
int env_desired_parse(const char *name, enum env_desired *out);
const char *svc_state_name(enum svc_state state);
int svc_state_parse(const char *name, enum svc_state *out);

/* True for a DNS label of at most ENV_NAME_MAX characters. */
bool env_name_valid(const char *name);

/* Zeroed (pending, VIS_TEAM, inheriting every sleep setting) but for
 * wake_outside_hours, -1 (inherit). The text fields of the sleep state are
 * NULL here and never NULL in records the store returns ("" for none). */
struct env *env_new(void);
void env_free(struct env *env);        /* frees services and params too; NULL is fine */
void env_list_free(struct env **envs, size_t n);
struct env_svc *env_svc_find(const struct env *env, const char *name);

struct project *project_new(void);
void project_free(struct project *p);
void project_list_free(struct project **ps, size_t n);

void event_free(struct event *ev);
void event_list_free(struct event **evs, size_t n);

#endif
