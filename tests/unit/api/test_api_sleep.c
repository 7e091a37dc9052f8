/*
 * tests/unit/api/test_api_sleep.c - what the API reads about sleep and
 * limits (api/api_request.c): the sleep_after, keep, schedule and limits
 * members of POST /envs with the exact message of each refusal, the body
 * of POST /envs/{name}/keep, and the server's caps on limits.
 */
#include "api/api_int.h"

#include <criterion/criterion.h>
#include <string.h>

#include "util/xmalloc.h"

#define MAX_TTL_S (7 * 86400)
#define MI (1024LL * 1024)

static const struct {
    const char *body, *want;
} bad_sleep[] = {
    /* sleep_after: a positive duration or never */
    {"{\"project\": \"shop\", \"sleep_after\": 30}", "'sleep_after' must be a string"},
    {"{\"project\": \"shop\", \"sleep_after\": \"soon\"}",
     "'sleep_after' (a duration or never): invalid duration 'soon', expected e.g. 30m, 2h or "
     "1h30m"},
    {"{\"project\": \"shop\", \"sleep_after\": \"Never\"}",
     "'sleep_after' (a duration or never): invalid duration 'Never', expected e.g. 30m, 2h or "
     "1h30m"},
    {"{\"project\": \"shop\", \"sleep_after\": \"0s\"}",
     "sleep_after 0s is not a positive duration: give never to keep it from sleeping when idle"},
    /* keep */
    {"{\"project\": \"shop\", \"keep\": \"yes\"}", "'keep' must be true or false"},
    {"{\"project\": \"shop\", \"keep\": 1}", "'keep' must be true or false"},
    /* schedule */
    {"{\"project\": \"shop\", \"schedule\": \"Mon-Fri 08:00-20:00\"}",
     "'schedule' must be an object like {\"awake\": \"Mon-Fri 08:00-20:00\", \"timezone\": "
     "\"Europe/Madrid\"}"},
    {"{\"project\": \"shop\", \"schedule\": {\"hours\": \"x\"}}",
     "unknown member 'schedule.hours': expected awake, timezone or wake_outside_hours"},
    {"{\"project\": \"shop\", \"schedule\": {}}",
     "'schedule.awake' is required, e.g. \"Mon-Fri 08:00-20:00\""},
    {"{\"project\": \"shop\", \"schedule\": {\"awake\": \"\"}}",
     "'schedule.awake' is required, e.g. \"Mon-Fri 08:00-20:00\""},
    {"{\"project\": \"shop\", \"schedule\": {\"awake\": 8}}", "'schedule.awake' must be a string"},
    {"{\"project\": \"shop\", \"schedule\": {\"awake\": \"Mon 08:00-09:00\", \"timezone\": 1}}",
     "'schedule.timezone' must be a string"},
    {"{\"project\": \"shop\", \"schedule\": {\"awake\": \"Mon 08:00-09:00\", \"timezone\": \"\"}}",
     "'schedule.timezone' must not be empty: leave it out for UTC"},
    {"{\"project\": \"shop\", \"schedule\": {\"awake\": \"Mon 08:00-09:00\", "
     "\"wake_outside_hours\": \"no\"}}",
     "'schedule.wake_outside_hours' must be true or false"},
    /* limits */
    {"{\"project\": \"shop\", \"limits\": \"512Mi\"}",
     "'limits' must be an object like {\"memory\": \"512Mi\", \"cpu\": \"1.0\", \"pids\": 512}"},
    {"{\"project\": \"shop\", \"limits\": {\"mem\": \"512Mi\"}}",
     "unknown member 'limits.mem': expected memory, cpu or pids"},
    {"{\"project\": \"shop\", \"limits\": {\"memory\": \"512MB\"}}",
     "'limits.memory': invalid size '512MB', expected e.g. 512Mi, 2Gi or a number of bytes"},
    {"{\"project\": \"shop\", \"limits\": {\"memory\": true}}",
     "'limits.memory': invalid size '(not a string)', expected e.g. 512Mi, 2Gi or a number of "
     "bytes"},
    {"{\"project\": \"shop\", \"limits\": {\"memory\": \"0\"}}",
     "'limits.memory' must be above zero: leave it out for none"},
    {"{\"project\": \"shop\", \"limits\": {\"memory\": -5}}",
     "'limits.memory' must be above zero: leave it out for none"},
    {"{\"project\": \"shop\", \"limits\": {\"cpu\": \"lots\"}}",
     "'limits.cpu': invalid cpu 'lots', expected cores like 1, 0.5 or 250m"},
    {"{\"project\": \"shop\", \"limits\": {\"cpu\": 0}}",
     "'limits.cpu' must be above zero: leave it out for none"},
    {"{\"project\": \"shop\", \"limits\": {\"cpu\": 1e9}}",
     "'limits.cpu': invalid cpu '(not a string)', expected cores like 1, 0.5 or 250m"},
    {"{\"project\": \"shop\", \"limits\": {\"pids\": \"many\"}}",
     "'limits.pids' must be a whole number of processes, e.g. 512"},
    {"{\"project\": \"shop\", \"limits\": {\"pids\": 1.5}}",
     "'limits.pids' must be a whole number of processes, e.g. 512"},
    {"{\"project\": \"shop\", \"limits\": {\"pids\": 0}}",
     "'limits.pids' must be above zero: leave it out for none"},
};

Test(api_sleep, refuses_bad_sleep_and_limit_members_with_their_message)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_sleep); i++) {
        const char *body = bad_sleep[i].body;
        struct eph_err err = {0};
        struct api_env_create req;
        int rc = api__parse_env_create(body, strlen(body), MAX_TTL_S, &req, &err);

        cr_expect_eq(rc, EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_sleep[i].want, "case %zu", i);
        cr_expect_null(req.project, "case %zu", i);
        cr_expect_null(req.schedule_awake, "case %zu", i);
        api__env_create_release(&req);
    }
}

Test(api_sleep, refuses_a_schedule_the_schedule_parser_refuses)
{
    static const char *const bodies[] = {
        "{\"project\": \"shop\", \"schedule\": {\"awake\": \"Mox-Fri 08:00-20:00\"}}",
        "{\"project\": \"shop\", \"schedule\": {\"awake\": \"Mon-Fri 08:00-20:00\", "
        "\"timezone\": \"Europe/Madird\"}}",
        "{\"project\": \"shop\", \"schedule\": {\"awake\": \"Mon-Fri 08:00-20:00\", "
        "\"timezone\": \"../../etc/passwd\"}}",
    };
    static const char *const mentions[] = {"Mox", "Europe/Madird", "../../etc/passwd"};

    for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
        struct eph_err err = {0};
        struct api_env_create req;
        int rc = api__parse_env_create(bodies[i], strlen(bodies[i]), MAX_TTL_S, &req, &err);

        cr_expect_eq(rc, EPH_EINVAL, "case %zu", i);
        cr_expect(strncmp(err.msg, "'schedule': ", 12) == 0, "case %zu: %s", i, err.msg);
        cr_expect(strstr(err.msg, mentions[i]) != NULL, "case %zu: %s", i, err.msg);
        api__env_create_release(&req);
    }
}

Test(api_sleep, takes_every_sleep_member)
{
    static const char body[] =
        "{\"project\": \"shop\", \"sleep_after\": \"1h30m\", \"keep\": true, "
        "\"schedule\": {\"awake\": \"Mon-Fri 08:00-20:00\", \"timezone\": \"Europe/Madrid\", "
        "\"wake_outside_hours\": true}, "
        "\"limits\": {\"memory\": \"512Mi\", \"cpu\": \"250m\", \"pids\": 512}}";
    struct eph_err err = {0};
    struct api_env_create req;

    cr_assert_eq(api__parse_env_create(body, strlen(body), MAX_TTL_S, &req, &err), 0, "%s",
                 err.msg);
    cr_expect_eq(req.sleep_after_s, 5400);
    cr_expect(req.keep);
    cr_expect_str_eq(req.schedule_awake, "Mon-Fri 08:00-20:00");
    cr_expect_str_eq(req.schedule_tz, "Europe/Madrid");
    cr_expect_eq(req.wake_outside_hours, 1);
    cr_expect_eq(req.limit_memory_bytes, 512 * MI);
    cr_expect_eq(req.limit_cpu_millis, 250);
    cr_expect_eq(req.limit_pids, 512);
    api__env_create_release(&req);
    cr_expect_null(req.schedule_awake);
    cr_expect_eq(req.wake_outside_hours, -1);
}

Test(api_sleep, takes_never_numbers_and_a_schedule_without_a_zone)
{
    static const char body[] =
        "{\"project\": \"shop\", \"sleep_after\": \"never\", \"keep\": false, "
        "\"schedule\": {\"awake\": \"always\", \"wake_outside_hours\": "
        "false}, \"limits\": {\"memory\": 67108864, \"cpu\": 0.5, "
        "\"pids\": \"64\"}}";
    struct eph_err err = {0};
    struct api_env_create req;

    cr_assert_eq(api__parse_env_create(body, strlen(body), MAX_TTL_S, &req, &err), 0, "%s",
                 err.msg);
    cr_expect_eq(req.sleep_after_s, -1);
    cr_expect_not(req.keep);
    cr_expect_str_eq(req.schedule_awake, "always");
    cr_expect_null(req.schedule_tz, "no zone asked: the template's or the server's");
    cr_expect_eq(req.wake_outside_hours, 0);
    cr_expect_eq(req.limit_memory_bytes, 64 * MI);
    cr_expect_eq(req.limit_cpu_millis, 500);
    cr_expect_eq(req.limit_pids, 64);
    api__env_create_release(&req);
}

Test(api_sleep, leaves_absent_and_null_sleep_members_to_the_template)
{
    static const char *const bodies[] = {
        "{\"project\": \"shop\"}",
        "{\"project\": \"shop\", \"sleep_after\": null, \"keep\": null, \"schedule\": null, "
        "\"limits\": null}",
        "{\"project\": \"shop\", \"limits\": {}}",
        "{\"project\": \"shop\", \"limits\": {\"memory\": null, \"cpu\": null, \"pids\": null}}",
    };

    for (size_t i = 0; i < ARRAY_LEN(bodies); i++) {
        struct eph_err err = {0};
        struct api_env_create req;
        int rc = api__parse_env_create(bodies[i], strlen(bodies[i]), MAX_TTL_S, &req, &err);

        cr_assert_eq(rc, 0, "case %zu: %s", i, err.msg);
        cr_expect_eq(req.sleep_after_s, 0, "case %zu", i);
        cr_expect_not(req.keep, "case %zu", i);
        cr_expect_null(req.schedule_awake, "case %zu", i);
        cr_expect_null(req.schedule_tz, "case %zu", i);
        cr_expect_eq(req.wake_outside_hours, -1, "case %zu", i);
        cr_expect_eq(req.limit_memory_bytes, 0, "case %zu", i);
        cr_expect_eq(req.limit_cpu_millis, 0, "case %zu", i);
        cr_expect_eq(req.limit_pids, 0, "case %zu", i);
        api__env_create_release(&req);
    }
}

Test(api_sleep, measures_limits_against_the_server_caps)
{
    struct api_env_create req = {
        .limit_memory_bytes = 4096 * MI, .limit_cpu_millis = 2500, .limit_pids = 5000};
    struct api_limit_caps none = {0};
    struct api_limit_caps caps = {.memory_bytes = 2048 * MI, .cpu_millis = 2000, .pids = 1024};
    struct eph_err err = {0};

    cr_expect_eq(api__check_limit_caps(&req, &none, &err), 0, "0 is no cap");
    cr_expect_eq(api__check_limit_caps(&req, &caps, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "limits.memory 4Gi exceeds the server maximum of 2Gi");
    req.limit_memory_bytes = 2048 * MI; /* at the cap is fine */
    cr_expect_eq(api__check_limit_caps(&req, &caps, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "limits.cpu 2.5 exceeds the server maximum of 2");
    req.limit_cpu_millis = 0; /* not asked: the template's, which the server caps itself */
    cr_expect_eq(api__check_limit_caps(&req, &caps, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "limits.pids 5000 exceeds the server maximum of 1024");
    req.limit_pids = 1024;
    cr_expect_eq(api__check_limit_caps(&req, &caps, &err), 0, "%s", err.msg);
}

Test(api_sleep, reads_the_keep_body)
{
    static const struct {
        const char *body, *want;
    } bad[] = {
        {"", "a JSON object body is required"},
        {"{}", "'keep' is required, e.g. {\"keep\": true}"},
        {"{\"keep\": null}", "'keep' is required, e.g. {\"keep\": true}"},
        {"{\"keep\": \"true\"}", "'keep' must be true or false"},
        {"{\"keep\": 0}", "'keep' must be true or false"},
    };
    struct eph_err err = {0};
    bool keep = true;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        cr_expect_eq(api__parse_keep(bad[i].body, strlen(bad[i].body), &keep, &err), EPH_EINVAL,
                     "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
    }
    cr_expect_eq(api__parse_keep("{\"keep\": true}", 14, &keep, &err), 0);
    cr_expect(keep);
    cr_expect_eq(api__parse_keep("{\"keep\": false}", 15, &keep, &err), 0);
    cr_expect_not(keep);
}
