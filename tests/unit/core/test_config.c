/*
 * tests/unit/core/test_config.c - settings: defaults, file, environment,
 * validation, repository allowlist.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "util/fs.h"
#include "util/xmalloc.h"

Test(config, has_defaults_that_validate)
{
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    cr_expect_eq(config_validate(&cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg.listen_host, "127.0.0.1");
    cr_expect_eq(cfg.listen_port, 8080);
    cr_expect_eq(cfg.port_lo, 20000);
    cr_expect_eq(cfg.port_hi, 29999);
    cr_expect_eq(cfg.default_ttl_s, 8 * 3600);
    cr_expect_eq(cfg.stop_grace_ms, 10000);
    config_release(&cfg);
}

Test(config, has_gateway_defaults_as_documented)
{
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    cr_expect_eq(config_validate(&cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg.domain, "localhost");
    cr_expect_str_eq(cfg.host_pattern, "{service}.{env}.{domain}");
    cr_expect_eq(cfg.gateway_workers, 0, "0: one worker per core");
    cr_expect_eq(cfg.max_header_bytes, 16 * 1024);
    cr_expect_eq(cfg.header_timeout_ms, 10000);
    cr_expect_eq(cfg.idle_timeout_ms, 60000);
    cr_expect_eq(cfg.upstream_connect_timeout_ms, 5000);
    cr_expect_eq(cfg.upstream_first_byte_timeout_ms, 60000);
    cr_expect_eq(cfg.upstream_idle_timeout_ms, 4000);
    cr_expect_eq(cfg.max_connections, 10000);
    cr_expect_str_eq(cfg.access_log, "", "no access log unless asked");
    cr_expect_eq(cfg.shutdown_grace_ms, 10000);
    cr_expect_eq(cfg.public_url_port, 0, "0: the port the gateway listens on");
    config_release(&cfg);
}

Test(config, takes_milliseconds_where_the_setting_is_in_milliseconds)
{
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    cr_expect_eq(config_set(&cfg, "header_timeout", "250ms", &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.header_timeout_ms, 250);
    cr_expect_eq(config_set(&cfg, "shutdown_grace", "1m30s", &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.shutdown_grace_ms, 90000);
    cr_expect_eq(config_set(&cfg, "max_ttl", "250ms", &err), EPH_EINVAL, "seconds only");
    cr_expect_eq(config_set(&cfg, "gateway_workers", "4", &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.gateway_workers, 4);
    cr_expect_eq(config_set(&cfg, "gateway_workers", "four", &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "gateway_workers: 'four' is not a number");
    cr_expect_eq(config_validate(&cfg, &err), 0, "%s", err.msg);
    config_release(&cfg);
}

Test(config, reads_a_file_then_the_environment)
{
    char path[] = "/tmp/eph-test-config-XXXXXX";
    int fd = mkstemp(path);
    const char *yaml = "listen: 127.0.0.1:9999\nport_range: 30000-30010\nmax_ttl: 1d\n";
    struct config cfg;
    struct eph_err err = {0};

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    config_init(&cfg);
    cr_expect_eq(config_load_file(&cfg, path, &err), 0, "%s", err.msg);
    setenv("EPH_PORT_RANGE", "31000-31005", 1);
    cr_expect_eq(config_load_environment(&cfg, &err), 0, "%s", err.msg);
    unsetenv("EPH_PORT_RANGE");
    cr_expect_eq(config_validate(&cfg, &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.listen_port, 9999);
    cr_expect_eq(cfg.port_lo, 31000);
    cr_expect_eq(cfg.max_ttl_s, 86400);
    config_release(&cfg);
    unlink(path);
}

Test(config, names_the_position_of_a_bad_setting_in_a_file)
{
    char path[] = "/tmp/eph-test-config-XXXXXX";
    int fd = mkstemp(path);
    const char *yaml = "listen: 127.0.0.1:9999\nstop_grace: soon\n";
    struct config cfg;
    struct eph_err err = {0};
    char want[256];

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    config_init(&cfg);
    cr_expect_eq(config_load_file(&cfg, path, &err), EPH_EINVAL);
    snprintf(want, sizeof(want),
             "%s:2:1: stop_grace: invalid duration 'soon', expected e.g. 30m, 2h or 1h30m", path);
    cr_expect_str_eq(err.msg, want);
    config_release(&cfg);
    unlink(path);
}

Test(config, refuses_bad_values)
{
    static const struct { const char *key, *value, *want; } bad[] = {
        {"listen", "nocolon", "listen: 'nocolon' is not HOST:PORT"},
        {"listen", "127.0.0.1:99999", "listen: bad port in '127.0.0.1:99999'"},
        {"port_range", "30000-20000", "port_range: '30000-20000' is not LO-HI within 1024-65535"},
        {"port_range", "80-90", "port_range: '80-90' is not LO-HI within 1024-65535"},
        {"log_level", "loud", "log_level: 'loud' is not debug, info, warn or error"},
        {"default_ttl", "30d", "default_ttl is longer than max_ttl"},
        {"gateway_workers", "300", "gateway_workers: 300 is not from 0 to 256"},
        {"gateway_workers", "-1", "gateway_workers: -1 is not from 0 to 256"},
        {"max_header_bytes", "100", "max_header_bytes: 100 is not from 1024 to 1048576"},
        {"header_timeout", "50ms", "header_timeout: must be from 100ms to 1d"},
        {"max_connections", "0", "max_connections: 0 is not from 1 to 1000000"},
        {"public_url_port", "65536", "public_url_port: 65536 is not from 0 to 65535"},
        {"domain", "Example.com", "domain: 'Example.com' is not a lower-case host name such as "
                                  "'localhost'"},
        {"domain", "", "domain: '' is not a lower-case host name such as 'localhost'"},
        {"domain", "a..b", "domain: 'a..b' is not a lower-case host name such as 'localhost'"},
        {"domain", "-x.test", "domain: '-x.test' is not a lower-case host name such as "
                              "'localhost'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct config cfg;
        struct eph_err err = {0};
        config_init(&cfg);
        cr_assert_eq(config_set(&cfg, bad[i].key, bad[i].value, &err), 0, "%s", err.msg);
        cr_expect_lt(config_validate(&cfg, &err), 0, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        config_release(&cfg);
    }
    struct config cfg;
    struct eph_err err = {0};
    config_init(&cfg);
    cr_expect_eq(config_set(&cfg, "colour", "blue", &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "unknown setting 'colour'");
    config_release(&cfg);
}

Test(config, allows_only_repositories_matching_its_patterns)
{
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    cr_expect(config_repo_allowed(&cfg, "/anything"), "the default allows all");
    config_set(&cfg, "allowed_repos", "https://git.example.com/*, /srv/git/*", &err);
    cr_expect(config_repo_allowed(&cfg, "https://git.example.com/team/shop.git"));
    cr_expect(config_repo_allowed(&cfg, "/srv/git/shop"));
    cr_expect(!config_repo_allowed(&cfg, "https://evil.example/shop.git"));
    cr_expect(!config_repo_allowed(&cfg, "/home/me/shop"));
    config_release(&cfg);
}

/* ------------------------------------------- sleep, schedules, limits */

Test(config, has_sleep_schedule_and_limit_defaults_as_documented)
{
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    cr_expect_eq(config_validate(&cfg, &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.sleep_after_s, 30 * 60);
    cr_expect_eq(cfg.delete_after_sleeping_s, 0, "0: never");
    cr_expect_eq(cfg.wake_timeout_ms, 60000);
    cr_expect_eq(cfg.wake_queue, 1024);
    cr_expect_str_eq(cfg.schedule_awake, "", "no schedule: always office hours");
    cr_expect_str_eq(cfg.schedule_timezone, "UTC");
    cr_expect_eq(cfg.wake_outside_hours, false);
    cr_expect_eq(cfg.quota_keep_per_user, 1);
    cr_expect_eq(cfg.limit_memory_max_bytes, 0);
    cr_expect_eq(cfg.limit_cpu_max_millis, 0);
    cr_expect_eq(cfg.limit_pids_max, 0);
    cr_expect_str_eq(cfg.cgroup_root, "auto");
    config_release(&cfg);
}

Test(config, reads_sleep_schedule_and_limit_settings_as_written)
{
    static const struct {
        const char *key, *value;
    } set[] = {
        {"sleep_after", "never"},
        {"delete_after_sleeping", "7d"},
        {"wake_timeout", "1500ms"},
        {"wake_queue", "10"},
        {"schedule_awake", "Mon-Fri 08:00-20:00, Sat 10:00-14:00"},
        {"schedule_timezone", "Europe/Madrid"},
        {"wake_outside_hours", "yes"},
        {"quota_keep_per_user", "0"},
        {"limit_memory_max", "2Gi"},
        {"limit_cpu_max", "1.5"},
        {"limit_pids_max", "1024"},
        {"cgroup_root", "/sys/fs/cgroup/eph"},
    };
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    for (size_t i = 0; i < ARRAY_LEN(set); i++)
        cr_expect_eq(config_set(&cfg, set[i].key, set[i].value, &err), 0, "%s", err.msg);
    cr_expect_eq(config_validate(&cfg, &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.sleep_after_s, -1);
    cr_expect_eq(cfg.delete_after_sleeping_s, 7 * 86400);
    cr_expect_eq(cfg.wake_timeout_ms, 1500);
    cr_expect_eq(cfg.wake_queue, 10);
    cr_expect_str_eq(cfg.schedule_timezone, "Europe/Madrid");
    cr_expect_eq(cfg.wake_outside_hours, true);
    cr_expect_eq(cfg.quota_keep_per_user, 0);
    cr_expect_eq(cfg.limit_memory_max_bytes, 2LL << 30);
    cr_expect_eq(cfg.limit_cpu_max_millis, 1500);
    cr_expect_eq(cfg.limit_pids_max, 1024);
    cr_expect_eq(config_set(&cfg, "sleep_after", "45m", &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.sleep_after_s, 45 * 60);
    cr_expect_eq(config_set(&cfg, "delete_after_sleeping", "never", &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.delete_after_sleeping_s, 0);
    cr_expect_eq(config_set(&cfg, "limit_cpu_max", "250m", &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.limit_cpu_max_millis, 250);
    cr_expect_eq(config_set(&cfg, "wake_outside_hours", "FALSE", &err), 0, "%s", err.msg);
    cr_expect_eq(cfg.wake_outside_hours, false);
    config_release(&cfg);
}

Test(config, refuses_bad_sleep_schedule_and_limit_settings_when_set)
{
    static const struct {
        const char *key, *value, *want;
    } bad[] = {
        {"sleep_after", "soon", "sleep_after: invalid duration 'soon', expected e.g. 30m, 2h or "
                                "1h30m"},
        {"delete_after_sleeping", "-1d", "delete_after_sleeping: invalid duration '-1d', expected "
                                         "e.g. 30m, 2h or 1h30m"},
        {"wake_outside_hours", "maybe", "wake_outside_hours: 'maybe' is not true or false"},
        {"limit_memory_max", "2GB", "limit_memory_max: '2GB' is not a size such as 512Mi or 2Gi"},
        {"limit_cpu_max", "two", "limit_cpu_max: 'two' is not a number of cores such as 2, 0.5 "
                                 "or 250m"},
        {"schedule_awake", "Mon-Fry 08:00-20:00",
         "schedule_awake: unknown day 'Fry' in window 'Mon-Fry 08:00-20:00', expected Mon, Tue, "
         "Wed, Thu, Fri, Sat or Sun"},
        {"schedule_awake", "weekdays", "schedule_awake: invalid window 'weekdays', expected days "
                                       "and hours such as 'Mon-Fri 08:00-20:00'"},
        {"schedule_timezone", "Mars/Olympus",
         "schedule_timezone: unknown time zone 'Mars/Olympus' (not in /usr/share/zoneinfo)"},
        {"schedule_timezone", "../../etc/shadow",
         "schedule_timezone: invalid time zone name '../../etc/shadow', expected an IANA name "
         "such as Europe/Madrid"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct config cfg;
        struct eph_err err = {0};

        config_init(&cfg);
        cr_expect_eq(config_set(&cfg, bad[i].key, bad[i].value, &err), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        cr_expect_eq(config_validate(&cfg, &err), 0, "case %zu: the old value stays: %s", i,
                     err.msg);
        config_release(&cfg);
    }
}

Test(config, refuses_bad_sleep_settings_when_validated)
{
    static const struct {
        const char *key, *value, *want;
    } bad[] = {
        {"sleep_after", "0s", "sleep_after: must be at least 1s, or never"},
        {"wake_timeout", "10ms", "wake_timeout: must be from 100ms to 1d"},
        {"wake_queue", "0", "wake_queue: 0 is not from 1 to 1000000"},
        {"limit_pids_max", "-1", "limit_pids_max: -1 is not from 0 to 4194304"},
        {"quota_keep_per_user", "-2", "quota_keep_per_user: -2 is not from 0 to 1000000"},
        {"cgroup_root", "cgroups", "cgroup_root: 'cgroups' is not auto, off or an absolute path"},
        {"cgroup_root", "", "cgroup_root: '' is not auto, off or an absolute path"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct config cfg;
        struct eph_err err = {0};

        config_init(&cfg);
        cr_assert_eq(config_set(&cfg, bad[i].key, bad[i].value, &err), 0, "%s", err.msg);
        cr_expect_eq(config_validate(&cfg, &err), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        config_release(&cfg);
    }
}

Test(config, checks_a_schedule_set_behind_its_back_when_validated)
{
    struct config cfg;
    struct eph_err err = {0};

    config_init(&cfg);
    free(cfg.schedule_awake);
    cfg.schedule_awake = xstrdup("Mon-Fri 08:00-26:00");
    cr_expect_eq(config_validate(&cfg, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "schedule_awake: invalid time '26:00' in window 'Mon-Fri "
                              "08:00-26:00', expected HH:MM from 00:00 to 24:00");
    free(cfg.schedule_timezone);
    cfg.schedule_timezone = xstrdup("Nowhere/Town");
    cr_expect_eq(config_validate(&cfg, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "schedule_timezone: unknown time zone 'Nowhere/Town' (not in "
                              "/usr/share/zoneinfo)");
    config_release(&cfg);
}

Test(config, names_the_line_of_a_bad_schedule_in_a_file_and_reads_the_environment)
{
    char path[] = "/tmp/eph-test-config-XXXXXX";
    int fd = mkstemp(path);
    const char *yaml = "sleep_after: 10m\n"
                       "schedule_timezone: Europe/Madrid\n"
                       "schedule_awake: Mon-Fri 08:00-20:00, Sat 25:00-26:00\n";
    struct config cfg;
    struct eph_err err = {0};
    char want[512];

    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    config_init(&cfg);
    cr_expect_eq(config_load_file(&cfg, path, &err), EPH_EINVAL);
    snprintf(want, sizeof(want),
             "%s:3:1: schedule_awake: invalid time '25:00' in window 'Sat 25:00-26:00', expected "
             "HH:MM from 00:00 to 24:00",
             path);
    cr_expect_str_eq(err.msg, want);
    setenv("EPH_SLEEP_AFTER", "never", 1);
    setenv("EPH_WAKE_OUTSIDE_HOURS", "1", 1);
    setenv("EPH_LIMIT_MEMORY_MAX", "512Mi", 1);
    cr_expect_eq(config_load_environment(&cfg, &err), 0, "%s", err.msg);
    unsetenv("EPH_SLEEP_AFTER");
    unsetenv("EPH_WAKE_OUTSIDE_HOURS");
    unsetenv("EPH_LIMIT_MEMORY_MAX");
    cr_expect_eq(cfg.sleep_after_s, -1);
    cr_expect_eq(cfg.wake_outside_hours, true);
    cr_expect_eq(cfg.limit_memory_max_bytes, 512LL << 20);
    cr_expect_str_eq(cfg.schedule_timezone, "Europe/Madrid", "lines before the error were read");
    config_release(&cfg);
    unlink(path);
}

Test(config, prints_settings_that_read_back_the_same)
{
    static const struct {
        const char *key, *value;
    } set[] = {
        {"sleep_after", "90s"},
        {"delete_after_sleeping", "1d2h3m4s"},
        {"schedule_awake", "Mon 08:00-09:00"},
        {"schedule_timezone", "America/New_York"},
        {"wake_outside_hours", "true"},
        {"limit_memory_max", "1536Mi"},
        {"limit_cpu_max", "0.25"},
        {"wake_timeout", "2500ms"},
        {"max_ttl", "1d1s"},
    };
    char path[] = "/tmp/eph-test-config-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;
    struct config a, b;
    struct eph_err err = {0};
    char *text = NULL;
    size_t len = 0;

    cr_assert(fd >= 0);
    config_init(&a);
    for (size_t i = 0; i < ARRAY_LEN(set); i++)
        cr_assert_eq(config_set(&a, set[i].key, set[i].value, &err), 0, "%s", err.msg);
    f = fdopen(fd, "w");
    cr_assert_not_null(f);
    config_print(&a, f);
    fclose(f);
    config_init(&b);
    cr_expect_eq(config_load_file(&b, path, &err), 0, "%s", err.msg);
    cr_expect_eq(b.sleep_after_s, 90);
    cr_expect_eq(b.delete_after_sleeping_s, 86400 + 2 * 3600 + 3 * 60 + 4);
    cr_expect_str_eq(b.schedule_awake, "Mon 08:00-09:00");
    cr_expect_str_eq(b.schedule_timezone, "America/New_York");
    cr_expect_eq(b.wake_outside_hours, true);
    cr_expect_eq(b.limit_memory_max_bytes, 1536LL << 20);
    cr_expect_eq(b.limit_cpu_max_millis, 250);
    cr_expect_eq(b.wake_timeout_ms, 2500);
    cr_expect_eq(b.max_ttl_s, 86401);
    cr_assert_eq(fs_read_all(path, 1 << 20, &text, &len), 0);
    cr_expect(strstr(text, "sleep_after: \"1m30s\"\n") != NULL, "%s", text);
    cr_expect(strstr(text, "limit_memory_max: \"1536Mi\"\n") != NULL, "%s", text);
    cr_expect(strstr(text, "wake_outside_hours: \"true\"\n") != NULL, "%s", text);
    free(text);
    config_release(&a);
    config_release(&b);
    unlink(path);
}

Test(config, prints_never_and_lists_every_new_setting_in_its_help)
{
    static const char *names[] = {
        "sleep_after",      "delete_after_sleeping", "wake_timeout",   "wake_queue",
        "schedule_awake",   "schedule_timezone",     "wake_outside_hours",
        "quota_keep_per_user", "limit_memory_max",   "limit_cpu_max",  "limit_pids_max",
        "cgroup_root",
    };
    struct config cfg;
    struct eph_err err = {0};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    config_init(&cfg);
    cr_assert_eq(config_set(&cfg, "sleep_after", "never", &err), 0);
    config_print(&cfg, f);
    fflush(f);
    cr_expect(strstr(buf, "sleep_after: \"never\"\n") != NULL, "%s", buf);
    cr_expect(strstr(buf, "delete_after_sleeping: \"0\"\n") != NULL, "%s", buf);
    cr_expect(strstr(buf, "schedule_timezone: \"UTC\"\n") != NULL, "%s", buf);
    fclose(f);
    free(buf);
    buf = NULL;
    f = open_memstream(&buf, &len);
    config_print_help(f);
    fflush(f);
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char flag[64];

        snprintf(flag, sizeof(flag), "  --%s ", names[i]);
        cr_expect(strstr(buf, flag) != NULL, "--%s missing from the help", names[i]);
    }
    cr_expect(strstr(buf, "(default 30m)") != NULL, "%s", buf);
    fclose(f);
    free(buf);
    config_release(&cfg);
}
