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
